"""Evaluation results in the evaluated training run's own TensorBoard, where a sweep's runs are compared.

Training records each run's HPARAMS row in `<run>/tensorboard/` (genrun.tasks.train: Lightning's
`log_hyperparams`, i.e. a session record holding `flat_hparams(config)`, an experiment record naming the
metric columns `hparams/<metric>`, and those metrics as scalars at the first step). An evaluation adds, in a
new event file of that same directory, each of its figures twice at the checkpoint's global step:
`eval/<name>` as an ordinary scalar and `hparams/eval/<name>` for the HPARAMS view, plus a session and
experiment record with the same hyperparameters, so the run stays one row. A likelihood figure
(`test/nll_iwae`) is kept apart from training's own test figure as `eval/test/nll_iwae`.

TensorBoard keeps the first session and experiment record it reads in a directory (training's), and takes the
HPARAMS columns from one experiment record: a column shows an evaluation figure when that record names it.
`write_hparams` writes training's record in Lightning's layout with the evaluation's columns named in advance
(`hparam_metric_names`), for training to call in place of `log_hyperparams`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)
# The sample-quality and likelihood headlines: the HPARAMS columns an evaluation fills.
HEADLINE_METRICS = ("eval/domain_fid", "eval/kid", "eval/precision", "eval/recall", "eval/memorization_ratio",
                    "eval/coverage_kl", "eval/classifier_test_acc", "eval/conditional_acc", "eval/inception_fid",
                    "eval/inception_score", "test/nll_iwae", "test/bits_per_dim", "test/neg_elbo", "test/acc",
                    "test/loss", "test/nats_per_char", "test/perplexity", "test/denoising_mse")
RUN_MARKERS = ("run.json", ".hydra", "metrics.json")


def scalar_name(metric: str) -> str:
    """Where an evaluation figure goes in the run's TensorBoard: under `eval/`, apart from training's."""
    return metric if metric.startswith("eval/") else f"eval/{metric}"


def hparam_metric_names(metrics=HEADLINE_METRICS) -> list[str]:
    """The HPARAMS column names of evaluation figures, as training names its own (`hparams/<metric>`)."""
    return [f"hparams/{scalar_name(m)}" for m in metrics]


def training_run_of(checkpoint: Path) -> Path | None:
    """The `genrun train` run directory a checkpoint lies in (`<run>/checkpoints/<file>`), or None."""
    checkpoint = Path(checkpoint).resolve()
    run = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and any((run / marker).exists() for marker in RUN_MARKERS):
        return run
    return None


def checkpoint_step(checkpoint: Path) -> int:
    """The global step a checkpoint was saved at (memory-mapped: the weights are not read), else the
    first step."""
    import torch

    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        return int(payload.get("global_step") or 0)
    except Exception:  # an unusual file: the step only places the points on the axis
        return 0


def write_hparams(writer, hparams: dict, metrics: dict[str, float], columns: list[str] = (), step: int = 0) -> None:
    """A run's HPARAMS record as Lightning's `log_hyperparams(hparams, metrics)` writes it (the metrics as
    scalars, a session record, an experiment record naming the columns), with further `columns` named: values
    that a later evaluation writes. `writer` is a torch SummaryWriter (a TensorBoardLogger's `experiment`)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    for name, value in metrics.items():
        writer.add_scalar(name, value, step)
    named = dict.fromkeys([*metrics, *columns], 0.0)  # only the names count in the experiment record
    for summary in hparams_summaries(hparams, named):
        writer.file_writer.add_summary(summary)


def write_evaluation(tb_dir: Path, metrics: dict, step: int, hparams: dict, images: list[Path] = ()) -> list[str]:
    """Write `metrics` into the TensorBoard directory `tb_dir` at `step` (see the module's description);
    returns the scalar tags written."""
    from torch.utils.tensorboard import SummaryWriter

    numbers = {scalar_name(k): float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    tags = []
    with SummaryWriter(str(tb_dir)) as writer:
        for name, value in numbers.items():
            writer.add_scalar(name, value, step)
            tags += [name, f"hparams/{name}"]
        write_hparams(writer, hparams, {f"hparams/{n}": v for n, v in numbers.items()}, step=step)
        for png in images:
            import numpy as np
            from PIL import Image

            writer.add_image(f"eval/{png.stem}", np.asarray(Image.open(png).convert("RGB")), step, dataformats="HWC")
    return tags


def log_evaluation(checkpoint: Path, run_config: dict, metrics: dict, out_dir: Path) -> Path:
    """Record an evaluation in the checkpoint's training run's TensorBoard, or, for a checkpoint outside any
    run (or a run directory that cannot be written), in the evaluation's own `out_dir/tensorboard`; returns
    the TensorBoard directory written."""
    from genrun.tasks.train import flat_hparams

    run = training_run_of(checkpoint)
    step = checkpoint_step(checkpoint)
    hparams = flat_hparams(run_config)
    images = sorted(Path(out_dir).glob("*.png"))
    if run is not None:
        try:
            write_evaluation(run / "tensorboard", metrics, step, hparams, images)
            return run / "tensorboard"
        except OSError as err:
            log.warning("could not write the evaluation into %s (%s); written to %s instead", run / "tensorboard",
                        err, Path(out_dir) / "tensorboard")
    write_evaluation(Path(out_dir) / "tensorboard", metrics, step, hparams, images)
    return Path(out_dir) / "tensorboard"
