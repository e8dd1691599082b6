"""Hyperparameter search: genrun's own Hydra sweeper over a current Optuna (`hydra/sweeper=optuna`).

Why not Hydra's hydra-optuna-sweeper 1.3.0: it pins optuna<3, its SQLite storage fails under SQLAlchemy 2
(hydra issue 2562) unless sqlalchemy<2 is pinned too, and it hides the trial from the job, so trials cannot
report per-epoch values and nothing can be pruned (hydra issues 1710, 1954). This sweeper implements Hydra's
Sweeper interface, so `-m`, `hydra/sweeper=...`, the launchers and the `hparams_search` group work as usual.

A trial learns which trial it is from three environment variables that the sweeper sets through
`hydra.job.env_set` (inherited by DDP workers and launcher processes alike); the pruning callback in
genrun.callbacks.optuna_pruning reads them.
"""

from __future__ import annotations

from genrun.errors import GenrunError

SWEEPER_TARGET = "hydra_plugins.genrun_search.optuna_sweeper.OptunaSweeper"
TRIAL_ENV = "GENRUN_SEARCH_TRIAL"
STORAGE_ENV = "GENRUN_SEARCH_STORAGE"
STUDY_ENV = "GENRUN_SEARCH_STUDY"
STORAGE_FILE = "optuna.db"
EXTRA = "pip install 'genrun[search]'"


def require_optuna(what: str = "hydra/sweeper=optuna"):
    """The optuna module, or one line naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise GenrunError(f"{what} needs optuna, which is not installed: {EXTRA}") from None
    return optuna


class TrialPruned(GenrunError):
    """A search stopped this trial early: recorded as pruned (genrun.tasks.run_task), never a failure."""

    status = "pruned"
