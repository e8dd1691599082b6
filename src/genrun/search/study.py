"""The study's storage, opened the same way by the sweeper, the trials and `genrun report`."""

from __future__ import annotations

from pathlib import Path

from genrun.errors import GenrunError
from genrun.search import STORAGE_FILE, require_optuna

# Beside the jobs of a search: where its study is and what it optimises (read by `genrun report`).
SEARCH_FILE = "search.json"

# SQLite waits this long for a lock: trials running side by side (hydra/launcher=joblib) write to one file.
SQLITE_TIMEOUT_S = 60


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{Path(sweep_dir).resolve() / STORAGE_FILE}"


_OPENED: dict = {}  # url -> storage: the sweeper and the trials it runs in its own process share one


def open_storage(url: str):
    """Optuna's RDB storage for `url` (a SQLite file waits for locks instead of failing at once). Opening one
    checks its schema (about a second), so a process opens each URL once."""
    optuna = require_optuna()
    if url in _OPENED:
        return _OPENED[url]
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite:") else {}
    try:
        _OPENED[url] = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        return _OPENED[url]
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


def write_search_file(sweep_dir: Path, facts: dict) -> None:
    import json

    (Path(sweep_dir) / SEARCH_FILE).write_text(json.dumps(facts, indent=2) + "\n")


def read_search_file(sweep_dir: Path) -> dict | None:
    """The search's facts, or None when `sweep_dir` is not a search (an ordinary sweep)."""
    import json

    path = Path(sweep_dir) / SEARCH_FILE
    if not path.is_file():
        return None
    try:
        facts = json.loads(path.read_text())
    except ValueError as err:
        raise GenrunError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(facts, dict) or not isinstance(facts.get("storage"), str):
        raise GenrunError(f"{path}: does not name the study's storage")
    return facts
