"""The search loop behind `hydra/sweeper=optuna`: ask Optuna for trials, launch them as Hydra jobs, tell results.

The study lives in persistent storage (by default `optuna.db` in the sweep directory), so running the same
command again continues it: `n_trials` counts every finished trial in the study, not those of this command.
A trial that fails or is pruned is recorded as such and the search goes on; a trial cut short by Ctrl-C (or
left running by a killed search) is recorded as failed and marked interrupted, and does not count.
Each job's directory is named after its trial number, so a continued study never reuses a directory.
The search space's keys are checked before Hydra starts (genrun.overrides through genrun.search.check).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from genrun.errors import GenrunError
from genrun.search import STORAGE_ENV, STUDY_ENV, TRIAL_ENV, require_optuna
from genrun.search.space import Space, override_text, parse_space
from genrun.search.study import default_storage, open_storage, write_search_file

DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


def run_search(sweeper, arguments: list[str]):
    """Hydra's Sweeper.sweep for genrun's OptunaSweeper; a user mistake ends in one line and exit status 1."""
    try:
        return _search(sweeper, list(arguments))
    except GenrunError as err:
        print(f"genrun: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def _direction(word: str) -> str:
    direction = DIRECTIONS.get(str(word).lower())
    if direction is None:
        raise GenrunError(f"hydra.sweeper.direction={word!r}: choose minimize or maximize")
    return direction


def _instantiate(node, key: str, **extra):
    """The sampler or pruner `node` names (None without one); a constructor's refusal is one line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    if node is None or not node.get("_target_"):
        return None
    try:
        return instantiate(node, **extra)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise GenrunError(f"hydra.sweeper.{key} ({node._target_}): {type(cause).__name__}: "
                          f"{str(cause).splitlines()[0] if str(cause) else ''}") from None


def _sampler(node, already: int):
    """The configured sampler, reseeded past the trials already in the study: a continued study with a fixed
    seed must not draw its first trials' parameters again."""
    seed = node.get("seed") if node is not None else None
    return _instantiate(node, "sampler", **({"seed": int(seed) + already} if seed is not None else {}))


def _same_study(study, space: Space, direction: str) -> None:
    """A study continued by a different command would mix trials of two searches: refuse, naming the difference."""
    stored = study.user_attrs.get("fixed_overrides")
    where = study.user_attrs.get("sweep_dir", "its sweep directory")
    if study.direction.name.lower() != direction:
        raise GenrunError(f"study {study.study_name!r} in {where} was started to {study.direction.name.lower()}; "
                          f"this command says {direction}: pass hydra.sweep.dir=NEW_DIR for a new study")
    if stored is not None and list(stored) != space.fixed:
        raise GenrunError(f"study {study.study_name!r} in {where} was started with overrides "
                          f"[{' '.join(stored)}]; this command has [{' '.join(space.fixed)}]: run it with the same "
                          "overrides to continue, or pass hydra.sweep.dir=NEW_DIR for a new study")


def _fail_interrupted(study) -> int:
    """Trials left RUNNING by a search that was stopped: recorded as failed, marked interrupted."""
    import optuna

    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for frozen in stale:
        _finish(study, frozen.number, optuna.trial.TrialState.FAIL, interrupted=True,
                error="interrupted (the search stopped while it ran)")
    return len(stale)


def _finish(study, number: int, state, value: float | None = None, **attrs) -> None:
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    live = optuna.trial.Trial(study, trial_id)
    for key, attr in attrs.items():
        live.set_user_attr(key, attr)
    study.tell(number, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)


def counted(trials) -> list:
    """Finished trials that count towards n_trials (interrupted ones do not)."""
    return [t for t in trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]


def _env(storage: str, study_name: str, number: int) -> list[str]:
    return [f"++hydra.job.env_set.{TRIAL_ENV}={number}", f"++hydra.job.env_set.{STORAGE_ENV}={override_text(storage)}",
            f"++hydra.job.env_set.{STUDY_ENV}={override_text(study_name)}"]


def _job_error(ret, metric: str) -> str:
    """Why a job gave no value: its metrics.json error, or the metric it did not log (optimized_metric misnamed)."""
    import json

    try:
        job_dir = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        record = json.loads((job_dir / "metrics.json").read_text())
    except (OSError, ValueError, AttributeError):
        return "the job returned no value and wrote no metrics.json"
    if record.get("error"):
        return str(record["error"])
    logged = sorted(k for k in record.get("metrics", {}) if not k.endswith(("_step", "_epoch")))
    return f"the job logged no {metric} (optimized_metric); it logged: {', '.join(logged) or 'nothing'}"


def _record(study, trial, ret, metric: str) -> str:
    """Tell the study how the trial's job ended (unless the job did: a pruned trial); returns the outcome line."""
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    frozen = study.trials[trial.number]
    job_dir = str(ret.hydra_cfg.hydra.runtime.output_dir) if ret.hydra_cfg is not None else ""
    if frozen.state == TrialState.PRUNED:
        last = frozen.intermediate_values.get(max(frozen.intermediate_values, default=0))
        count = len(frozen.intermediate_values)
        return f"pruned after {count} validation{'s' * (count != 1)} ({metric} {last:.6g})" \
            if last is not None else "pruned"
    if frozen.state.is_finished():
        return frozen.state.name.lower()
    if ret.status == JobStatus.FAILED:
        error = f"{type(ret._return_value).__name__}: {ret._return_value}"
    else:
        value = ret.return_value
        if value is not None and math.isfinite(float(value)):
            _finish(study, trial.number, TrialState.COMPLETE, float(value), job_dir=job_dir)
            return f"{metric} = {float(value):.6g}"
        error = f"{metric} is {value}" if value is not None else _job_error(ret, metric)
    _finish(study, trial.number, TrialState.FAIL, job_dir=job_dir, error=error)
    return f"failed: {error}"


def _search(sweeper, arguments: list[str]):
    optuna = require_optuna()
    from omegaconf import OmegaConf

    settings, config = sweeper.settings, sweeper.config
    direction = _direction(settings["direction"])
    n_trials, n_jobs = int(settings["n_trials"]), int(settings["n_jobs"])
    if n_trials < 1 or n_jobs < 1:
        raise GenrunError(f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: both must be at least 1")
    space = parse_space(settings["params"], arguments, sweeper.hydra_context.config_loader)
    if not space.distributions:
        raise GenrunError("hydra/sweeper=optuna: nothing to search; give hydra.sweeper.params (an hparams_search "
                          "recipe does) or a sweep such as model.lr='tag(log,interval(1e-4,1e-2))'")
    sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = str(settings["storage"] or default_storage(sweep_dir))
    study_name = str(settings["study_name"] or sweep_dir.name)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = _instantiate(settings["pruner"], "pruner") or optuna.pruners.NopPruner()
    study = optuna.create_study(storage=open_storage(storage), study_name=study_name, direction=direction,
                                pruner=pruner, load_if_exists=True)
    metric = str(config.get("optimized_metric") or "the objective")
    if "fixed_overrides" not in study.user_attrs:
        for key, value in {"fixed_overrides": space.fixed, "sweep_dir": str(sweep_dir), "metric": metric,
                           "task": str(config.hydra.job.name)}.items():
            study.set_user_attr(key, value)
    _same_study(study, space, direction)
    write_search_file(sweep_dir, {"storage": storage, "study_name": study_name, "metric": metric,
                                  "direction": direction, "task": str(config.hydra.job.name),
                                  "fixed_overrides": space.fixed})
    stale = _fail_interrupted(study)
    study.sampler = _sampler(settings["sampler"], len(study.trials)) or optuna.samplers.TPESampler()
    done = len(counted(study.trials))
    left = n_trials - done
    resumed = f", continuing from {done} finished trials" if done else ""
    note = f" ({stale} interrupted trials marked failed)" if stale else ""
    print(f"genrun: search {study_name!r} ({direction} {metric}){resumed}{note}: {max(left, 0)} trials to run; "
          f"study in {storage}")
    if left <= 0:
        print(f"genrun: the study has {done} finished trials, hydra.sweeper.n_trials={n_trials}: nothing to run "
              f"(raise hydra.sweeper.n_trials to continue it)")
    returns = []
    while left > 0:
        trials = [study.ask(space.distributions) for _ in range(min(n_jobs, left))]
        jobs = [[*space.fixed, *space.overrides(t.params), *_env(storage, study_name, t.number)] for t in trials]
        numbers = [t.number for t in trials]
        consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        try:
            if consecutive:  # a job's number is its trial's: job directories never collide across runs
                results = list(sweeper.launcher.launch(jobs, initial_job_idx=numbers[0]))
            else:
                results = [sweeper.launcher.launch([job], initial_job_idx=n)[0] for job, n in zip(jobs, numbers,
                                                                                                strict=True)]
        except KeyboardInterrupt:
            _fail_interrupted(study)
            raise
        for trial, ret in zip(trials, results, strict=True):
            outcome = _record(study, trial, ret, metric)
            print(f"genrun: trial {trial.number} [{' '.join(space.overrides(trial.params))}]: {outcome}")
        returns.append(results)
        left -= len(trials)
    _print_best(study, metric, space)
    return returns


def _print_best(study, metric: str, space: Space) -> None:
    from optuna.trial import TrialState

    states = [t.state for t in study.trials]
    tally = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                     TrialState.FAIL) if states.count(s))
    try:
        best = study.best_trial
    except ValueError:
        print(f"genrun: study {study.study_name!r}: {tally}; no trial completed")
        return
    print(f"genrun: study {study.study_name!r}: {tally}; best {metric} = {best.value:.6g} at trial {best.number} "
          f"[{' '.join(space.overrides(best.params))}]")
