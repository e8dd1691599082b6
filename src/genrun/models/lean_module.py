"""A LightningModule base that sets plain attributes without nn.Module's registry checks.

Lightning assigns `module._current_fx_name` before and after every hook it calls, module and callback
hooks alike: some thirty assignments a training step. `nn.Module.__setattr__` runs its isinstance checks
on each (Parameter's goes through a Python-level metaclass hook); bench/results/lightning_step_overhead*.md
has the cost. A value that is neither a tensor nor a module, assigned to a name that is already a plain
attribute, cannot touch the parameter, buffer or submodule registries, so it goes straight to the instance
dict; everything else takes nn.Module's path unchanged.
"""

from __future__ import annotations

import lightning as L
import torch


class LeanLightningModule(L.LightningModule):
    def __setattr__(self, name: str, value) -> None:
        if name in self.__dict__ and not isinstance(value, (torch.Tensor, torch.nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
