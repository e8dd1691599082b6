"""`hydra/sweeper=optuna`: genrun's Optuna sweeper, registered with Hydra from its plugin namespace.

Hydra imports every plugin module on each run, so this one imports neither optuna nor genrun's search code
until a search starts (genrun.search.sweeper does the work).
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """A Bayesian (TPE by default) search with pruning and a resumable study; see genrun.search."""

    def __init__(self, direction: str = "minimize", n_trials: int = 20, n_jobs: int = 1,
                 study_name: str | None = None, storage: str | None = None, sampler: Any = None,
                 pruner: Any = None, monitor: str | None = None, params: Any = None) -> None:
        self.settings = {"direction": direction, "n_trials": n_trials, "n_jobs": n_jobs, "study_name": study_name,
                         "storage": storage, "sampler": sampler, "pruner": pruner, "monitor": monitor,
                         "params": params}
        self.hydra_context = None
        self.config = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from genrun.search.sweeper import run_search

        return run_search(self, arguments)
