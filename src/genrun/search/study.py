"""The study's storage, opened the same way by the sweeper, the trials and `genrun report`."""

from __future__ import annotations

from pathlib import Path

from genrun.errors import GenrunError
from genrun.search import STORAGE_FILE, require_optuna

# SQLite waits this long for a lock: trials running side by side (hydra/launcher=joblib) write to one file.
SQLITE_TIMEOUT_S = 60


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / STORAGE_FILE}"


def open_storage(url: str):
    """Optuna's RDB storage for `url` (a SQLite file waits for locks instead of failing at once)."""
    optuna = require_optuna()
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite:") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as err:  # noqa: BLE001 (SQLAlchemy's and Optuna's errors alike: one line naming the URL)
        raise GenrunError(f"study storage {url}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") \
            from None


def load_study(url: str, name: str | None = None, pruner=None):
    """An existing study (the only one in the storage when `name` is None)."""
    optuna = require_optuna()
    storage = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            raise GenrunError(f"{url}: holds {len(names)} studies ({', '.join(names) or 'none'}); name one")
        name = names[0]
    if name not in names:
        raise GenrunError(f"{url}: no study named {name!r} (found: {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
