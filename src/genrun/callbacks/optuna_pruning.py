"""The trial's side of a search: report the monitored validation metric after each validation, stop when pruned.

Rank zero reports to the study and asks the pruner; every rank gets the decision, so DDP processes stop
together. A pruned trial is told to the study here (with the values it reported), then the trial ends with
genrun.search.TrialPruned, which the task records as `pruned` rather than as a failure.
"""

from __future__ import annotations

import logging
import math

from lightning.pytorch import Callback

from genrun.search import TrialPruned


class OptunaPruning(Callback):
    """Trial `number` of study `study_name` in `storage`; `monitor` is the metric reported, `pruner` Optuna's."""

    def __init__(self, storage: str, study_name: str, number: int, monitor: str, pruner=None) -> None:
        self.storage, self.study_name, self.number, self.monitor = storage, study_name, int(number), monitor
        self.pruner = pruner
        self.validations = 0
        self._trial = None
        self._warned = False

    def _live_trial(self, trainer):
        if self._trial is None:
            import optuna

            from genrun.search.study import load_study

            study = load_study(self.storage, self.study_name, pruner=self.pruner)
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.number)
            self._trial = optuna.trial.Trial(study, trial_id)
            self._trial.set_user_attr("job_dir", str(trainer.default_root_dir))
        return self._trial

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        prune, value = False, None
        if trainer.is_global_zero:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is None:
                if not self._warned:
                    logging.getLogger("genrun").warning(f"search: {self.monitor} is not logged at validation; "
                                                        "this trial reports nothing and cannot be pruned")
                    self._warned = True
            else:
                value = float(metric)
                trial = self._live_trial(trainer)
                trial.report(value, step=self.validations - 1)  # 0-based: n_warmup_steps=1 spares the first
                prune = not math.isfinite(value) or trial.should_prune()
        if not trainer.strategy.broadcast(prune):
            return
        if trainer.is_global_zero:
            from optuna.trial import TrialState

            self._trial.study.tell(self.number, state=TrialState.PRUNED)
        raise TrialPruned(f"trial {self.number} pruned after validation {self.validations}: "
                          f"{self.monitor} = {value:.6g}" if value is not None else f"trial {self.number} pruned")
