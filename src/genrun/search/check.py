"""What `genrun` checks before Hydra starts a search: optuna is installed, and the search space's keys exist."""

from __future__ import annotations

from genrun.search import require_optuna
from genrun.search.space import first_values, parse_space


def search_jobs(master, overrides: list[str], loader) -> tuple[list[str], list[list[str]]]:
    """(the fixed overrides, the sampled values to add to them): one value of each key together, then each
    further choice of a categorical key on its own (a range or interval is checked at its low end)."""
    optuna = require_optuna()
    space = parse_space(master.hydra.sweeper.get("params"), overrides, loader)
    base = first_values(space)
    jobs = [base]
    for i, (key, distribution) in enumerate(space.distributions.items()):
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            for choice in distribution.choices[1:]:
                jobs.append([*base[:i], *space.overrides({key: choice}), *base[i + 1 :]])
    return space.fixed, jobs
