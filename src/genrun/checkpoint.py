"""Reading and writing checkpoints safely.

- Loading is always `torch.load(..., weights_only=True)`: a checkpoint handed to us never runs code.
- Saving goes to a temporary file in the target directory, then `os.replace`, so the previous checkpoint
  stays whole if the process dies mid-save; non-finite weights are refused, never written.
- Every save carries a digest of its contents, checked on load: a flipped bit in a tensor would otherwise
  load and sample NaN images without a word. Files from before digests load unchecked.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from genrun.errors import GenrunError

TMP_PREFIX = ".tmp-"
DIGEST_KEY = "genrun_digest"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """A checkpoint's contents, refusing anything but tensors and plain containers."""
    return load_checkpoint_with_digest(path, map_location)[0]


def load_checkpoint_with_digest(path: str | os.PathLike, map_location: Any = "cpu") -> tuple[dict, str]:
    """A checkpoint's contents and their digest (checked against the stored one; computed for older files),
    which a run that uses this checkpoint as a frozen component records."""
    path = Path(path)
    if not path.is_file():
        raise GenrunError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickling_detail(str(err))
        if not zipfile.is_zipfile(path) and detail.startswith("Unsupported operand"):
            raise GenrunError(f"checkpoint {path}: not a PyTorch checkpoint ({detail})") from None
        raise GenrunError(f"checkpoint {path}: refused, it holds more than weights ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise GenrunError(f"checkpoint {path}: unreadable ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise GenrunError(f"checkpoint {path}: not a genrun checkpoint (no state_dict)")
    stored = payload.pop(DIGEST_KEY, None)
    digest = content_digest(payload)
    if stored is not None and stored != digest:
        raise GenrunError(f"checkpoint {path}: corrupted: its contents no longer match the digest written with "
                          "them (the file changed after it was saved)")
    bad = non_finite_keys(payload["state_dict"])
    if bad:
        raise GenrunError(f"checkpoint {path}: refused: non-finite weights in {', '.join(bad[:3])}")
    return payload, digest


def content_digest(payload: object) -> str:
    """SHA-256 over every tensor's dtype, shape and bytes and every plain value, in the payload's order."""
    digest = hashlib.sha256()

    def feed(value: object) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for key, item in value.items():
                feed(key)
                feed(item)
        elif isinstance(value, (list, tuple)):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        elif isinstance(value, (set, frozenset)):
            feed(sorted(value, key=repr))
        elif value is None or isinstance(value, (bool, int, float, str, bytes)):
            digest.update(f"{type(value).__name__}:{value!r};".encode())
        else:
            digest.update(f"?{type(value).__name__};".encode())

    feed(payload)
    return digest.hexdigest()


def _unpickling_detail(message: str) -> str:
    """The line of torch's weights-only error that says what was found, without its boilerplate (which
    suggests loading with weights_only=False: genrun never does)."""
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(boilerplate) and line != "WeightsUnpickler error:"]
    return (useful or lines or ["unreadable"])[0]


def non_finite_keys(state_dict: dict) -> list[str]:
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()]


def atomic_save(payload: dict, path: str | os.PathLike) -> None:
    """torch.save into a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = non_finite_keys(payload.get("state_dict", {}))
    if bad:
        raise GenrunError(f"refusing to save {path}: non-finite weights in {', '.join(bad[:3])}")
    payload = {k: v for k, v in payload.items() if k != DIGEST_KEY}
    payload[DIGEST_KEY] = content_digest(payload)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Temporary files left by a process killed mid-save (SIGKILL gives it no chance to clean up)."""
    directory = Path(directory)
    stale = sorted(directory.glob(f"{TMP_PREFIX}*")) if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def checkpoint_io():
    """Lightning's checkpoint I/O with atomic, finite-only, digested saves and weights-only, checked loads."""
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from genrun.data.lightning import rename_data_state

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            atomic_save(checkpoint, path)

        def load_checkpoint(self, path, map_location=None, weights_only=None):
            checkpoint = load_checkpoint(path, map_location=map_location or "cpu")
            rename_data_state(checkpoint)
            return checkpoint

    return AtomicCheckpointIO()
