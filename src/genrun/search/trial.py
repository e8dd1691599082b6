"""Inside a search trial: the callbacks the training task adds (none outside a search)."""

from __future__ import annotations

import os

from genrun.search import STORAGE_ENV, STUDY_ENV, TRIAL_ENV


def search_callbacks(cfg) -> list:
    """[OptunaPruning] when this job is a trial of genrun's Optuna sweeper, else []."""
    if not os.environ.get(TRIAL_ENV):
        return []
    from genrun.callbacks.optuna_pruning import OptunaPruning

    sweeper = _sweeper_config()
    monitor = (sweeper or {}).get("monitor") or cfg.get("optimized_metric") or "val/loss"
    pruner = None
    if sweeper is not None and (sweeper.get("pruner") or {}).get("_target_"):
        from hydra.utils import instantiate

        pruner = instantiate(sweeper.pruner)
    return [OptunaPruning(os.environ[STORAGE_ENV], os.environ[STUDY_ENV], int(os.environ[TRIAL_ENV]), str(monitor),
                          pruner)]


def _sweeper_config():
    """This job's hydra.sweeper node (a DDP worker runs without the sweep's: it only follows rank zero)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        sweeper = HydraConfig.get().sweeper
    except ValueError:
        return None
    from genrun.search import SWEEPER_TARGET

    return sweeper if sweeper.get("_target_") == SWEEPER_TARGET else None
