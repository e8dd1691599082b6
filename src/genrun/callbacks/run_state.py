"""Callbacks that make checkpoints self-describing and resumes exact."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RunInfo(Callback):
    """Stores in every checkpoint the model's pipeline (classes, arguments and weight prefixes of its
    components: what `genrun sample` rebuilds it from) beside the run's config and data description, all
    plain containers. The config is a record; nothing is ever built from it."""

    def __init__(self, info: dict):
        self.info = info

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        from genrun.pipeline import pipeline_spec

        checkpoint["genrun"] = {**self.info, "pipeline": pipeline_spec(pl_module.pipeline(), pl_module)}


class ResumeRecord(Callback):
    """Appends to run.json which overrides are in force from which step on, each time a run is resumed, so
    the run's files say what it did (the overrides file alone holds only the latest)."""

    def __init__(self, run_dir, overrides: list[str]):
        self.path = Path(run_dir) / "run.json"
        self.overrides = [o for o in overrides if o.split("=", 1)[0] not in ("resume", "hydra.run.dir")]

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        run = json.loads(self.path.read_text()) if self.path.is_file() else {}
        run.setdefault("resumes", []).append({"from_step": trainer.global_step, "from_epoch": trainer.current_epoch,
                                              "overrides": self.overrides})
        self.path.write_text(json.dumps(run) + "\n")


def _capture() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RNGState(Callback):
    """One random stream per DDP rank, saved with every checkpoint and restored on resume.

    `seed_everything` gives every rank the same seed, so without this GAN noise, a VAE's ε and diffusion
    timesteps repeat across ranks and N processes add no sample diversity. Once the model is built (DDP
    copies rank 0's weights anyway), rank r > 0 is reseeded with seed + r; rank 0 keeps the single-process
    stream. Lightning does not checkpoint RNG states: this saves every rank's (gathered into rank 0's
    file) and restores them when the resumed run's first training epoch starts, so the resumed run draws
    the same noise as an uninterrupted one.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._pending: dict | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.seed is not None and trainer.world_size > 1 and trainer.global_rank > 0:
            _seed_all(self.seed + trainer.global_rank)

    def state_dict(self) -> dict:
        # Lightning builds the checkpoint on every rank (only rank 0 writes it), so this gather is collective.
        state = _capture()
        if not _distributed():
            return {"ranks": [state]}
        states: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(states, state)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        # A run resumed in the middle of an epoch does not start that epoch again (no on_train_epoch_start).
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is None:
            return
        saved, self._pending = self._pending, None
        ranks = saved.get("ranks", [saved])  # checkpoints from before per-rank states hold one state
        rank = trainer.global_rank
        _restore(ranks[rank] if rank < len(ranks) else ranks[0])
        if rank >= len(ranks):
            # Resumed on more processes than were saved: a new rank continues from rank 0's state, offset.
            _seed_all(int(torch.randint(2**31 - 1, ())) + rank)
