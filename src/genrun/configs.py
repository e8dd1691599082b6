"""Finds the config tree (inside the wheel, or beside src/ in a checkout) and lists its groups.

Kept free of torch and Hydra so that `genrun --help` answers at once.
"""

from __future__ import annotations

from pathlib import Path

TASK_CONFIGS = ("train", "sample", "evaluate")


def config_dir() -> Path:
    """The directory holding train.yaml and the config groups."""
    packaged = Path(__file__).resolve().parent / "configs"
    if (packaged / "train.yaml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "configs"
    if (checkout / "train.yaml").is_file():
        return checkout
    raise FileNotFoundError(f"genrun's configs are missing: looked in {packaged} and {checkout}")


def config_groups(root: Path | None = None) -> dict[str, list[str]]:
    """Every config group and its choices, e.g. {'model': ['ae', 'vae', ...]}."""
    root = root or config_dir()
    groups = {}
    for group in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        groups[group.name] = sorted(f.stem for f in group.glob("*.yaml"))
    return groups
