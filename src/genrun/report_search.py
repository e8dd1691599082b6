"""`genrun report` on a search (a sweep directory with search.json): the study's trials, the best one as a
command that reproduces it, the optimisation history and the parameters' importances.

Reads the study from its storage with Optuna (genrun[search]); writes search.csv and search.png beside the
jobs (or where --out says), replacing the previous ones: they are always rebuilt from the study.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from genrun.errors import GenrunError

MIN_TRIALS_FOR_IMPORTANCE = 3  # fANOVA's forest says nothing useful about fewer completed trials


@dataclass
class Search:
    """What the report shows: the study, its trials in order, the best one and how to reproduce it."""

    sweep_dir: Path
    name: str
    storage: str
    metric: str
    direction: str  # "minimize" or "maximize"
    trials: list  # optuna FrozenTrials, by number
    params: list[str]  # every parameter any trial sampled, in first-seen order
    best: object | None
    command: str | None
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""

    def count(self, state: str) -> int:
        return sum(t.state.name == state for t in self.trials)


def reproduce_command(task: str, fixed: list[str], params: dict, space_order: list[str]) -> str:
    """`genrun TASK <fixed overrides> <the trial's values>` (a recipe's sweep switched off with hydra.mode=RUN)."""
    lines = list(fixed)
    if any(line.split("=", 1)[0].lstrip("+~") == "hparams_search" for line in fixed):
        lines.append("hydra.mode=RUN")  # the recipe asks for a sweep; this runs its settings once
    lines += [f"{key}={_value_text(params[key])}" for key in space_order if key in params]
    return " ".join(["genrun", task, *(shlex.quote(line) for line in lines)])


def _value_text(value) -> str:
    from genrun.search.space import override_text

    # A categorical choice of lists is stored as its override text already ("[512,256]").
    if isinstance(value, str) and value[:1] in "[{":
        return value
    return override_text(value)


def _importances(study, trials: list) -> tuple[dict[str, float], str]:
    import optuna

    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, f"needs {MIN_TRIALS_FOR_IMPORTANCE} completed trials ({len(complete)} so far)"
    varied = [k for k in dict.fromkeys(p for t in complete for p in t.params)
              if len({repr(t.params.get(k)) for t in complete}) > 1]
    if not varied:
        return {}, "no parameter varied between completed trials"
    try:
        evaluator, how = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA"
        values = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied)
    except ImportError:  # fANOVA's forest is scikit-learn's
        evaluator, how = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
        values = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied)
    except (RuntimeError, ValueError) as err:  # e.g. a search space that changed between trials
        return {}, f"not computed: {err}"
    return dict(values), f"{how} over {len(complete)} completed trials"


def read_search(sweep_dir: Path, facts: dict) -> Search:
    from genrun.search import require_optuna
    from genrun.search.study import load_study

    require_optuna("genrun report on a search")
    study = load_study(facts["storage"], facts.get("study_name"))
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    if not trials:
        raise GenrunError(f"{sweep_dir}: the study {study.study_name!r} has no trials yet")
    params = list(dict.fromkeys(p for t in trials for p in t.params))
    try:
        best = study.best_trial
    except ValueError:
        best = None
    command = reproduce_command(facts.get("task", "train"), list(facts.get("fixed_overrides", [])), best.params,
                                params) if best is not None else None
    importances, note = _importances(study, trials)
    return Search(sweep_dir, study.study_name, facts["storage"], str(facts.get("metric", "value")),
                  study.direction.name.lower(), trials, params, best, command, importances, note)


# --- table -------------------------------------------------------------------------------------------------


def _fmt(value, digits: int | None = None) -> str:
    """A cell: floats in full (the csv) or to `digits` significant digits (the terminal)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if digits else repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _last_reported(trial) -> float | None:
    values = trial.intermediate_values
    return values[max(values)] if values else None


def _seconds(trial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def rows(search: Search, digits: int | None = None) -> tuple[list[str], list[list[str]]]:
    """The trials table (also the csv): one row per trial, the optimised value or the last one reported."""
    header = ["trial", "state", search.metric, *search.params, "validations", "seconds", "note", "job_dir"]
    table = []
    for trial in search.trials:
        state = trial.state.name.lower()
        if trial.user_attrs.get("interrupted"):
            state = "interrupted"
        value = trial.value if trial.value is not None else None
        note = ""
        if state == "pruned":
            value = _last_reported(trial)
            note = f"stopped by the pruner; {search.metric} is the last value it reported"
        if trial.user_attrs.get("error"):
            note = str(trial.user_attrs["error"])
        seconds = _seconds(trial)
        table.append([str(trial.number), state, _fmt(value, digits),
                      *[_fmt(trial.params.get(p), digits) for p in search.params],
                      str(len(trial.intermediate_values)), f"{seconds:.1f}" if seconds is not None else "-", note,
                      str(trial.user_attrs.get("job_dir", ""))])
    return header, table


def print_search(search: Search, files: dict, console=None) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from genrun.report import short_names

    console = console or Console(highlight=False)
    arrow = "↓" if search.direction == "minimize" else "↑"
    tally = ", ".join(f"{search.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if search.count(s))
    console.print(escape(f"search {search.name!r}: {len(search.trials)} trials ({tally}); "
                         f"{search.direction} {search.metric}"))
    names = short_names(search.params)
    header, table = rows(search, digits=4)
    grid = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    shown = header[:-2]  # the note goes under the table, the job directory to the csv only
    for i, column in enumerate(shown):
        title = {search.metric: f"{search.metric} {arrow}", "validations": "vals", "seconds": "s"}.get(
            column, names.get(column, column))
        whole = column not in search.params  # trial, state and the numbers are never shortened
        width = max(len(title), *(len(row[i]) for row in table)) if whole else min(len(title), 6)
        grid.add_column(title, no_wrap=True, min_width=width, overflow="ellipsis",
                        justify="right" if column in (search.metric, "validations", "seconds") else "left")
    for row in table:
        best = search.best is not None and row[0] == str(search.best.number)
        style = "bold" if best else {"complete": None, "fail": "red"}.get(row[1], "dim")
        grid.add_row(*[escape(cell) for cell in row[: len(shown)]], style=style)
    console.print(grid)
    for row in table:
        if row[1] != "complete" and row[-2]:
            console.print(escape(f"trial {row[0]} {row[1]}: {row[-2]}"))
    if search.best is not None:
        console.print(escape(f"best: trial {search.best.number}, {search.metric} = {search.best.value:.6g}"))
        console.print(escape(f"reproduce: {search.command}"), soft_wrap=True)
    else:
        console.print("no trial completed: no best trial yet")
    if search.importances:
        said = ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in search.importances.items())
        console.print(escape(f"importance ({search.importance_note}): {said}"))
    else:
        console.print(escape(f"importance: {search.importance_note}"))
    console.print(escape(f"table: {files['csv']}"), soft_wrap=True)
    console.print(escape(f"plot: {files['png']} ({'; '.join(files['titles'])})"), soft_wrap=True)


def search_report(sweep_dir: Path, facts: dict, out: Path | None = None) -> dict:
    """Read the study, write the csv and the plot; returns what `main` prints."""
    from genrun.report import write_csv
    from genrun.report_search_plot import save_search_plot

    search = read_search(sweep_dir, facts)
    png = out or sweep_dir / "search.png"
    files = {"png": png, "csv": png.with_suffix(".csv")}
    header, table = rows(search)
    write_csv(files["csv"], header, table)
    titles = save_search_plot(search, png)
    return {"search": search, "header": header, "rows": table, "titles": titles, **files}
