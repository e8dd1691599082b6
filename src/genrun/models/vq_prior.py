"""Training a prior over a frozen VQ-VAE's codes (`model=vq_prior model.vqvae=RUN_DIR`).

The VQ-VAE is another run's checkpoint, loaded as a frozen reference (path and content digest), so the
prior samples only with the very VQ-VAE whose codes it learnt; without `model.vqvae`, the newest VQ-VAE run
under the outputs directory is used (and named on the console).

The training and validation images are encoded into code grids once, when fitting starts, and cached
under `<outputs>/.cache/vq_codes/`, keyed by the VQ-VAE checkpoint's digest and the images' own digest. For
the fit, the run's dataset serves those grids in place of its images (same order, same labels, same
shuffling); the images are put back when fitting ends, for the end-of-run evaluation and samples.
Logged: the NLL in nats per code (`loss`) and in bits per code.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from genrun.errors import GenrunError
from genrun.families.vq_prior import PRIORS, VQPriorPipeline, nats_per_code, transformer_vocabulary
from genrun.models.base import GenrunModule

log = logging.getLogger("genrun")
LN2 = math.log(2.0)
ENCODE_BATCH = 500


def load_vqvae(where: str | None, output_root: str, dataset_target: str | None, channels: int, image_size: int):
    """The `net` of the VQ-VAE run (or checkpoint) `where`, or of the newest VQ-VAE run, frozen; else one line."""
    from genrun.checkpoint import load_checkpoint
    from genrun.pipeline import class_path, frozen_reference, stored_spec
    from genrun.runs import choose_checkpoint

    key = f"model.vqvae={where}" if where else "model.vqvae"
    if where:
        given = Path(str(where)).expanduser().resolve()
        if not given.exists():
            raise GenrunError(f"{key}: no such run directory or checkpoint")
        try:
            path, _why = choose_checkpoint(str(given), ".")
        except GenrunError as err:
            raise GenrunError(f"{key}: not a training run or checkpoint ({err})") from None
    else:
        try:
            path, _why = choose_checkpoint(None, output_root, "vqvae")
        except GenrunError:
            raise GenrunError(f"model.vqvae: required: no VQ-VAE run under {output_root} to default to; train one "
                              "with genrun train model=vqvae, or pass model.vqvae=RUN_DIR") from None
        log.info("model.vqvae: the newest VQ-VAE run, %s", path)
    payload = load_checkpoint(path)
    from genrun.families.vqvae import VQVAEPipeline

    spec = stored_spec(payload, path)
    if spec.get("class") != class_path(VQVAEPipeline):
        model = (payload.get("genrun", {}).get("choices") or {}).get("model") or spec.get("class")
        raise GenrunError(f"{key}: {path} holds a model={model} run, not a VQ-VAE (train one with model=vqvae)")
    stored_data = ((payload["genrun"].get("config") or {}).get("dataset") or {}).get("_target_")
    if not where and dataset_target and stored_data and stored_data != dataset_target:
        raise GenrunError(f"model.vqvae: the newest VQ-VAE run ({path}) was trained on {stored_data}, this run's "
                          f"dataset is {dataset_target}; name the VQ-VAE with model.vqvae=RUN_DIR")
    net = frozen_reference(path, "net")
    trained = (int(net.init_config["channels"]), int(net.init_config["image_size"]))
    if trained != (int(channels), int(image_size)):
        raise GenrunError(f"{key}: it was trained on {trained[0]}-channel {trained[1]}px images; this dataset has "
                          f"{channels}-channel {image_size}px images")
    return net


def build_prior(kind: str, codebook_size: int, grid: tuple[int, int], num_classes: int, transformer: dict,
                pixelcnn: dict):
    if kind == "transformer":
        from genrun.nets.gpt import GPT

        return GPT(vocab_size=transformer_vocabulary(codebook_size, num_classes), block_size=math.prod(grid),
                   **dict(transformer))
    from genrun.nets.pixelcnn import GatedPixelCNN

    return GatedPixelCNN(channels=1, levels=codebook_size, num_classes=num_classes, **dict(pixelcnn))


def images_digest(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class VQPriorModule(GenrunModule):
    ema_of = "prior"

    def __init__(self, vqvae: str | None, prior: str, transformer: dict, pixelcnn: dict, optimizer: Callable,
                 channels: int, image_size: int, output_root: str, cache_dir: str | None = None,
                 dataset_target: str | None = None, codebook_size: int | None = None, num_classes: int = 0,
                 scheduler: Callable | None = None, weight_decay: float = 0.0, grad_clip: float | None = 1.0,
                 num_log_images: int = 16, ema: bool = False, ema_decay: float = 0.999):
        super().__init__(optimizer, scheduler, scheduler_interval="step", ema=ema, ema_decay=ema_decay)
        if prior not in PRIORS:
            raise GenrunError(f"model.prior={prior}: choose {' or '.join(PRIORS)}")
        if int(num_classes) < 0:
            raise GenrunError(f"model.num_classes={num_classes}: 0 (unconditional) or the number of classes")
        frozen = load_vqvae(vqvae, output_root, dataset_target, channels, image_size)
        if codebook_size is not None and int(codebook_size) != frozen.codebook_size:
            raise GenrunError(f"model.codebook_size={codebook_size}: the VQ-VAE "
                              f"({frozen.frozen_reference['path']}) has {frozen.codebook_size} codes; leave it "
                              "null to take the VQ-VAE's")
        self.kind, self.num_classes = prior, int(num_classes)
        self.codebook_size = frozen.codebook_size
        self.prior = build_prior(prior, self.codebook_size, frozen.grid, self.num_classes, transformer, pixelcnn)
        self.vqvae = frozen
        self.cache_dir = Path(cache_dir) if cache_dir else Path(output_root) / ".cache" / "vq_codes"
        self.weight_decay = float(weight_decay)
        self.grad_clip = None if grad_clip in (None, 0) else float(grad_clip)
        self.num_log_images = int(num_log_images)
        self._images = None  # the dataset's image splits while it serves code grids
        self.setup_ema()

    def pipeline(self, data_info: dict | None = None) -> VQPriorPipeline:
        settings = {"prior": self.kind, "num_classes": self.num_classes}
        return VQPriorPipeline({"prior": self.averaged("prior"), "vqvae": self.vqvae}, settings, data_info)

    # --- the code grids the prior learns -----------------------------------------------------------------------

    def on_fit_start(self) -> None:
        self.vqvae.eval()  # frozen: never in training mode, so its codebook never moves
        data = getattr(self.trainer.datamodule, "data", None)
        if data is None or data.splits is None:
            raise GenrunError("model=vq_prior trains on a genrun image dataset (mnist, fashion_mnist, image_folder)")
        if self._images is None:
            self._images = data.splits
            grids = self.code_grids(data.splits)
            data.splits = {**data.splits, **{name: (grids[name], data.splits[name][1]) for name in grids}}

    def on_fit_end(self) -> None:
        self._restore_images()

    def teardown(self, stage: str) -> None:
        self._restore_images()

    def _restore_images(self) -> None:
        data = getattr(getattr(self.trainer, "datamodule", None), "data", None) if self._trainer else None
        if self._images is not None and data is not None:
            data.splits = self._images
        self._images = None

    def cache_path(self, splits: dict) -> Path:
        reference = self.vqvae.frozen_reference
        key = hashlib.sha256(f"{reference['digest']}:{images_digest(splits['train'][0], splits['val'][0])}"
                             .encode()).hexdigest()[:24]
        return self.cache_dir / f"{key}.pt"

    @torch.no_grad()
    def code_grids(self, splits: dict) -> dict[str, torch.Tensor]:
        """The train and val images as code grids: from the cache, or encoded once and cached."""
        from genrun.checkpoint import atomic_save, load_checkpoint

        path = self.cache_path(splits)
        device = splits["train"][0].device
        if path.is_file():
            grids = load_checkpoint(path)["state_dict"]
            log.info("code grids of the training data read from the cache %s", path)
            return {name: grids[name].to(device) for name in ("train", "val")}
        self.vqvae.to(device)
        grids = {}
        for name in ("train", "val"):
            x = splits[name][0]
            parts = [self.vqvae.codes(x[s : s + ENCODE_BATCH].float()) for s in range(0, len(x), ENCODE_BATCH)]
            grids[name] = torch.cat(parts) if parts else torch.zeros(0, *self.vqvae.grid, dtype=torch.long,
                                                                     device=device)
        atomic_save({"state_dict": {name: g.cpu() for name, g in grids.items()},
                     "vqvae": dict(self.vqvae.frozen_reference)}, path)
        log.info("the training data encoded once into code grids, cached in %s", path)
        return grids

    # --- objective ---------------------------------------------------------------------------------------------

    def _loss(self, batch) -> torch.Tensor:
        codes, y = batch
        if codes.is_floating_point():
            raise RuntimeError("vq_prior received images instead of code grids: on_fit_start did not run")
        labels = y.long() if self.num_classes else None
        return nats_per_code(self.prior, self.kind, codes, labels, self.codebook_size)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.train_scalars.update(self, {"train/loss": loss, "train/bits_per_code": loss / LN2}, len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        kwargs = {"on_epoch": True, "batch_size": len(batch[0]), "sync_dist": True}
        self.log("val/loss", loss, prog_bar=True, **kwargs)
        self.log("val/bits_per_code", loss / LN2, **kwargs)

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if self.num_log_images < 1 or not self.draws_pictures():
            return
        pipeline = self.pipeline()
        fixed = torch.Generator().manual_seed(0)  # the same draws every time, so progress is comparable
        n = self.num_log_images
        self.log_images("samples/prior", pipeline.images(n, 1.0, fixed, pipeline.labels(None, n)), nrow=8)

    def on_train_epoch_start(self) -> None:
        self.vqvae.eval()  # Lightning puts every submodule in train mode at each epoch

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.prior.parameters(), self.grad_clip)

    def parameter_groups(self):
        # Weight decay on matrices only (not on biases, norms), as GPT-2 and nanoGPT do.
        params = [p for p in self.prior.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": self.weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A resumed run must still use the VQ-VAE it started with (model.vqvae unset picks the newest run)."""
        super().on_load_checkpoint(checkpoint)
        spec = ((checkpoint.get("genrun") or {}).get("pipeline") or {}).get("components", {})
        stored = (spec.get("vqvae") or {}).get("ref", {})
        if stored.get("digest") and stored["digest"] != self.vqvae.frozen_reference["digest"]:
            raise GenrunError(f"model.vqvae: this run was trained on the VQ-VAE {stored.get('path')}, not "
                              f"{self.vqvae.frozen_reference['path']}; resume with model.vqvae={stored.get('path')}")
