"""A search space written in Hydra's sweep syntax, as Optuna distributions, and trials back as overrides.

`hydra.sweeper.params` (and sweeps on the command line) use Hydra's own grammar:
  choice(a,b) or a,b   categorical (lists and mappings become their override text: choice([256],[512,256]))
  range(lo,hi,step)    integers (or floats) on a grid, `hi` excluded as in Hydra's basic sweeper
  interval(lo,hi)      floats; tag(log, interval(...)) samples on a log scale, tag(int, interval(...)) integers
Everything else on the command line is fixed: every trial gets it unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from genrun.errors import GenrunError

_BARE = re.compile(r"[A-Za-z_/][\w\-./]*")
_WORDS = {"null", "true", "false", "nan", "inf", "none"}


def override_text(value) -> str:
    """A Python value as Hydra writes it on the command line (`[256,128]`, `'a b'`, `1e-05`, `null`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _BARE.fullmatch(text) and text.lower() not in _WORDS:
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Space:
    """The fixed overrides every trial gets and the sampled keys with their distributions (in order)."""

    fixed: list[str]
    distributions: dict  # key -> optuna distribution
    verbatim: frozenset  # categorical keys whose choices are override text already (lists, mappings)

    def overrides(self, params: dict) -> list[str]:
        """A trial's sampled values as `key=value` overrides, in the space's order."""
        return [f"{key}={params[key] if key in self.verbatim else override_text(params[key])}"
                for key in self.distributions if key in params]


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _distribution(line: str, sweep):
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    tags = set(sweep.tags)
    if isinstance(sweep, ChoiceSweep):
        values = list(sweep.list)
        if not values:
            raise GenrunError(f"search space {line}: no choices")
        if all(_scalar(v) for v in values):
            return CategoricalDistribution(values), False
        return CategoricalDistribution([override_text(v) for v in values]), True
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step <= 0 or stop <= start:
            raise GenrunError(f"search space {line}: a range needs start < stop and a positive step")
        count = math.ceil((stop - start) / step)
        last = start + (count - 1) * step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(int(start), int(last), step=int(step)), False
        return FloatDistribution(float(start), float(last), step=float(step)), False
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        log = "log" in tags
        if not low < high:
            raise GenrunError(f"search space {line}: an interval needs low < high")
        if log and low <= 0:
            raise GenrunError(f"search space {line}: a log-scale interval needs low > 0")
        if "int" in tags:
            return IntDistribution(math.ceil(low), math.floor(high), log=log), False
        return FloatDistribution(float(low), float(high), log=log), False
    raise GenrunError(f"search space {line}: not a choice, range or interval")


def parse_space(params: dict, arguments: list[str], loader=None) -> Space:
    """The space from `hydra.sweeper.params` then the command line (a key given on both: the command line's)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create(config_loader=loader)
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    fixed: list[str] = []
    fixed_keys: list[str] = []
    distributions: dict = {}
    verbatim: set[str] = set()
    for line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except OverrideParseException as err:
            reason = next((x.strip() for x in str(err).splitlines() if x.strip()), "cannot parse")
            raise GenrunError(f"search space {line}: {reason}") from None
        key = override.get_key_element()
        # A later line for a key replaces an earlier one: the command line wins over the recipe's params.
        distributions.pop(key, None)
        fixed = [f for f, k in zip(fixed, fixed_keys, strict=True) if k != key]
        fixed_keys = [k for k in fixed_keys if k != key]
        if not override.is_sweep_override():
            fixed.append(line)
            fixed_keys.append(key)
            continue
        if override.is_hydra_override():
            raise GenrunError(f"search space {line}: Hydra's own settings cannot be searched")
        distributions[key], as_text = _distribution(line, override.value())
        verbatim.discard(key)
        if as_text:
            verbatim.add(key)
    return Space(fixed, distributions, frozenset(verbatim))


def first_values(space: Space) -> list[str]:
    """One value per sampled key (a choice's first, a range's or interval's low end): a job to check."""
    from optuna.distributions import CategoricalDistribution

    params = {key: (d.choices[0] if isinstance(d, CategoricalDistribution) else d.low)
              for key, d in space.distributions.items()}
    return space.overrides(params)
