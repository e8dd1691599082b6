"""`resume=RUN_DIR`: the run's own overrides, read back as data and checked, with what may change on top.

A run directory can come from anywhere: its stored overrides may not name code (a `_target_` off genrun's
allow-list) or set Hydra itself, and a resume may not change the model, the data or the seed, since the
restored weights and optimiser state would keep doing what the checkpoint says while the config said otherwise.
"""

from __future__ import annotations

from pathlib import Path

from genrun.errors import GenrunError
from genrun.overrides import compose_task


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# What a resume may not change: the run it continues would no longer be the run its files describe.
FIXED_ON_RESUME = ("model", "dataset", "tokenizer", "seed")


def resume_overrides(overrides: list[str], multirun: bool,
                     config_dir: str | None = None) -> tuple[list[str], Path | None]:
    """Turn `resume=RUN_DIR` into the run's original overrides, placed back into RUN_DIR.

    Later overrides that extend or steer the training (trainer.max_epochs=20, callbacks, loggers) apply on
    top; one that would change the model, the data or the seed is refused, since the restored weights and
    optimiser state would keep doing what the checkpoint says while the config said otherwise. The stored
    overrides are data: any that names code (a `_target_` off genrun's allow-list) or a Hydra setting is
    refused. `config_dir` is the --config-dir the run's own configs may come from. Returns the overrides
    and the run directory (None without resume=).
    """
    resume = [o for o in overrides if o.split("=", 1)[0] == "resume"]
    if not resume:
        return overrides, None
    value = resume[-1].split("=", 1)[1].strip("'\"")
    if value in ("", "null"):
        return [o for o in overrides if o not in resume], None
    if multirun:
        raise GenrunError("resume= continues one run; it cannot be combined with -m")
    run_dir = Path(value).expanduser().resolve()
    if not run_dir.is_dir():
        raise GenrunError(f"resume={value}: no such run directory")
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise GenrunError(f"resume={value}: no checkpoint at {last}; nothing to resume (train afresh instead)")
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise GenrunError(f"resume={value}: {saved} is missing, so the run's config cannot be rebuilt")
    original = _stored_overrides(saved, config_dir)
    rest = [o for o in overrides if o not in resume]
    _refuse_changes(original, rest, value, config_dir)
    return [*original, *rest, f"resume={_quote(str(run_dir))}", f"hydra.run.dir={_quote(str(run_dir))}"], run_dir


def _stored_overrides(saved: Path, config_dir: str | None = None) -> list[str]:
    """The run's own overrides, checked as data: plain strings, no Hydra settings, only trusted targets."""
    from omegaconf import OmegaConf

    from genrun.trust import check_stored_config

    try:
        stored = OmegaConf.to_container(OmegaConf.load(saved))
    except Exception as err:  # a YAML or OmegaConf error: the file is damaged
        raise GenrunError(f"{saved}: unreadable ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise GenrunError(f"{saved}: not a list of overrides")
    original = [o for o in stored if o.split("=", 1)[0].lstrip("+") not in ("resume", "hydra.run.dir")]
    for override in original:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise GenrunError(f"{saved}: refused: {override!r} sets Hydra itself; a stored override may set "
                              "only the run's own config")
    check_stored_config(OmegaConf.to_container(compose_task("train", original, config_dir), resolve=False),
                        str(saved))
    return original


def _refuse_changes(original: list[str], rest: list[str], value: str, config_dir: str | None = None) -> None:
    """One line naming the first model/data/seed setting that `rest` would change."""
    from omegaconf import OmegaConf

    if not rest:
        return
    before = OmegaConf.to_container(compose_task("train", original, config_dir), resolve=False)
    after = OmegaConf.to_container(compose_task("train", [*original, *rest], config_dir), resolve=False)
    for section in FIXED_ON_RESUME:
        changed = _first_difference(before.get(section), after.get(section), section)
        if changed:
            key, old, new = changed
            raise GenrunError(f"resume={value}: {key}={new!r} differs from the run's {old!r}; a resume continues "
                              f"the same model, data and seed (change only trainer, callbacks or logger "
                              f"settings), or start a new run with {key}={new!r}")


def _first_difference(old, new, path: str):
    """(dotted key, old value, new value) of the first place two config trees differ, else None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if old == new else (path, old, new)
