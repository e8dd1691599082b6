"""Next-token training for the text family (GPT and character LSTM), with the metrics text people quote.

Losses are per token in nats; with the char tokenizer a token is a character, so `val/loss` is nats/char
(nanoGPT's and char-rnn's figure), `val/bits_per_char` = loss / ln 2 and `val/perplexity` = exp(loss).
With tokenizer=byte the same numbers are per byte.

The LSTM's state policy (`carry_state`): true carries (h, c) from each batch to the next (truncated BPTT,
char-rnn; needs `batch_order=contiguous`, and validation carries it across consecutive windows too);
false starts every window from zeros. The carried state is saved in the checkpoint, so resuming is exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from genrun.data.lightning import dataset_of
from genrun.errors import GenrunError
from genrun.models.base import GenrunModule

LN2 = math.log(2.0)


def warmup_cosine(optimizer, warmup_steps: int = 100, decay_steps: int = 2000, min_lr_ratio: float = 0.1):
    """Linear warm-up, cosine decay to `min_lr_ratio` × lr at `decay_steps`, flat after (nanoGPT's schedule)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if step >= decay_steps:
            return min_lr_ratio
        progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
        return min_lr_ratio + 0.5 * (1.0 - min_lr_ratio) * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class LanguageModelModule(GenrunModule):
    """Trains a net mapping token ids (B×T) to next-token logits: a GPT, or a recurrent net with a state."""

    ema_of = "net"
    compiled_step = "_loss"

    def __init__(self, net: torch.nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 weight_decay: float = 0.0, grad_clip: float | None = 1.0, carry_state: bool = False,
                 sample_prompt: str = "\n", sample_temperatures: tuple[float, ...] = (0.2, 0.5, 1.0, 1.2),
                 sample_length: int = 200, ema: bool = False, ema_decay: float = 0.999):
        super().__init__(optimizer, scheduler, scheduler_interval="step", ema=ema, ema_decay=ema_decay)
        self.net = net
        self.weight_decay = float(weight_decay)
        self.grad_clip = None if grad_clip in (None, 0) else float(grad_clip)
        self.recurrent = bool(getattr(net, "recurrent", False))
        self.carry_state = bool(carry_state) and self.recurrent
        self.sample_prompt, self.sample_length = str(sample_prompt), int(sample_length)
        self.sample_temperatures = tuple(float(t) for t in sample_temperatures)
        self._state = {"train": None, "val": None}
        self._val_sum, self._val_tokens = 0.0, 0
        self.unit = "char"  # "byte" with tokenizer=byte: metric names say what a token is
        self.setup_ema()

    def pipeline(self, data_info: dict | None = None):
        from genrun.families.text import TextPipeline

        return TextPipeline({"net": self.averaged("net")}, {"carry_state": self.carry_state}, data_info)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, stage: str) -> torch.Tensor:
        if self.recurrent:
            state = self._state[stage] if self.carry_state else None
            if state is not None and state[0].shape[1] != x.shape[0]:
                state = None  # a batch of another size (the last evaluation batch) starts afresh
            logits, state = self.net(x, state)
            if self.carry_state:
                self._state[stage] = tuple(s.detach() for s in state)
        else:
            logits = self.net(x)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))

    def _log_metrics(self, loss: torch.Tensor, stage: str, tokens: int) -> None:
        if stage == "train":
            self.train_scalars.update(self, {"train/loss": loss}, tokens)
            return
        kwargs = {"on_epoch": True, "batch_size": tokens, "sync_dist": True}
        self.log(f"{stage}/loss", loss, prog_bar=True, **kwargs)
        self.log(f"{stage}/nats_per_{self.unit}", loss, **kwargs)
        self.log(f"{stage}/bits_per_{self.unit}", loss / LN2, **kwargs)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self._loss(x, y, "train")
        self._log_metrics(loss, "train", y.numel())
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = self._loss(x, y, "val")
        self._log_metrics(loss, "val", y.numel())
        self._val_sum += float(loss) * y.numel()
        self._val_tokens += y.numel()

    def _dataset(self):
        """The genrun dataset being trained on (its tokenizer, batch order and position), if any."""
        return dataset_of(getattr(self.trainer, "datamodule", None))

    def on_fit_start(self) -> None:
        datamodule = self._dataset()
        order = getattr(datamodule, "batch_order", "contiguous")
        self.unit = "byte" if getattr(getattr(datamodule, "tokenizer", None), "kind", "char") == "byte" else "char"
        if self.carry_state and order != "contiguous":
            raise GenrunError("model.carry_state=true needs batches that continue each other: set "
                              "dataset.batch_order=contiguous (or model.carry_state=false)")

    def on_train_epoch_start(self) -> None:
        # A new epoch's rows start elsewhere in the text; a carried state restored from a checkpoint is
        # kept only when resuming mid-epoch.
        position = getattr(self._dataset(), "position", None)
        if position is None or position()[1] == 0:
            self._state["train"] = None

    def on_validation_epoch_start(self) -> None:
        self._state["val"] = None
        self._val_sum, self._val_tokens = 0.0, 0

    def on_validation_epoch_end(self) -> None:
        if self._val_tokens:
            # exp of the mean loss (not the mean of per-batch perplexities); under DDP, averaged over ranks.
            perplexity = math.exp(min(self._val_sum / self._val_tokens, 80.0))
            self.log("val/perplexity", torch.tensor(perplexity), sync_dist=True)
        if not self.trainer.sanity_checking:
            self._log_text_samples()

    @torch.no_grad()
    def _log_text_samples(self) -> None:
        """The same prompt at several temperatures, in TensorBoard's TEXT tab, at every validation."""
        experiment = getattr(self.logger, "experiment", None)
        datamodule = self._dataset()
        if experiment is None or not hasattr(experiment, "add_text") or getattr(datamodule, "tokenizer", None) is None:
            return
        pipeline = self.pipeline(datamodule.info())
        texts = pipeline.continue_at_temperatures(self.sample_prompt, self.sample_temperatures, self.sample_length,
                                                  torch.Generator(device=self.device).manual_seed(0))
        for t, text in zip(self.sample_temperatures, texts, strict=True):
            # Markdown: indent by four spaces so newlines and spacing survive.
            experiment.add_text(f"samples/temperature_{t:g}", "    " + text.replace("\n", "\n    "),
                                self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.carry_state and self._state["train"] is not None:
            checkpoint["text_train_state"] = [s.cpu() for s in self._state["train"]]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("text_train_state")
        self._state["train"] = tuple(s.to(self.device) for s in state) if state else None

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)

    def parameter_groups(self):
        # Weight decay on matrices only (not on biases, norms), as GPT-2 and nanoGPT do.
        params = [p for p in self.net.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": self.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
