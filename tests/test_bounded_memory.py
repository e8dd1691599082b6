"""Sampling and evaluation in batches: memory stays flat as counts grow, every sample reaches the file, the
pictures stay small, and work that cannot finish is refused up front in one line naming the key."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genrun.errors import GenrunError
from genrun.families import autoencoder, classifier, gan, text
from genrun.families.base import EvalContext, SampleContext, SampleRequest
from genrun.nets.autoencoder import Autoencoder
from genrun.nets.classifier import ConvClassifier
from genrun.nets.gan import MLPGenerator
from genrun.nets.gpt import GPT

# A larger count may add at most this much to the peak memory of the same work at a smaller count. The extra
# samples themselves would add several times more: 49,000 MNIST-sized images are 154 MB as float32, and a
# batch of 2,000 GPT rows holds a 500 MB key/value cache.
MARGIN_MB = 64
VOCAB = list("abcdefghijklmnopqrstuvwxyz \n")
TEXT_INFO = {"tokenizer": "char", "vocab": VOCAB}

# Run in a child process so that nothing else of the test session counts. Before each measured call the
# child resets its peak resident set (VmHWM, via /proc/self/clear_refs), so each figure is what that call
# alone added to memory, in MB.
MEASURE = r"""
import gc, io, json, sys
from contextlib import redirect_stdout
from pathlib import Path
import torch
torch.set_num_threads(1)
from genrun.evaluation.precision_recall import knn_radii
from genrun.families import autoencoder, text
from genrun.families.base import SampleContext, SampleRequest
from genrun.nets.autoencoder import Autoencoder
from genrun.nets.gpt import GPT

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

def grown(work):
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    work()
    return status("VmHWM") - before

def context(info):
    out = Path(sys.argv[1]) / str(len(list(Path(sys.argv[1]).iterdir())))
    return SampleContext(out, torch.device("cpu"), info, None)

torch.manual_seed(0)
vae = Autoencoder(1, 28).eval()
gpt = GPT(len(VOCAB), block_size=256, n_layer=2, n_head=2, n_embd=64).eval()
gpt.carry_state = False

def vae_sample(n):
    autoencoder.sample(vae, SampleRequest.of(autoencoder.AutoencoderKnobs, num_samples=n), context({}))

def gpt_sample(n):
    with redirect_stdout(io.StringIO()):
        text.sample(gpt, SampleRequest.of(text.TextKnobs, num_samples=n, max_new_tokens=8, prompt="ab"), context(INFO))

def knn(n):
    knn_radii(torch.randn(n, 16, generator=torch.Generator().manual_seed(0)), 3)

vae_sample(10), gpt_sample(2), knn(100)  # first calls pay one-time costs
print(json.dumps({"vae": [grown(lambda: vae_sample(n)) for n in (1000, 50000)],
                  "gpt": [grown(lambda: gpt_sample(n)) for n in (50, 2000)],
                  "knn": [grown(lambda: knn(n)) for n in (2000, 20000)]}))
"""


@pytest.fixture(scope="module")
def peaks(tmp_path_factory) -> dict[str, list[float]]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak memory figure")
    code = f"VOCAB = {VOCAB!r}\nINFO = {TEXT_INFO!r}\n{MEASURE}"
    out = tmp_path_factory.mktemp("peaks")
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_vae_sampling_memory_stays_flat_from_1000_to_50000_images(peaks):
    small, large = peaks["vae"]
    assert large <= small + MARGIN_MB, f"50,000 images added {large:.0f} MB, 1,000 added {small:.0f} MB"


def test_gpt_sampling_memory_stays_flat_from_50_to_2000_samples(peaks):
    small, large = peaks["gpt"]
    assert large <= small + MARGIN_MB, f"2,000 samples added {large:.0f} MB, 50 added {small:.0f} MB"


def test_precision_recall_neighbours_work_in_blocks_of_flat_memory(peaks):
    small, large = peaks["knn"]
    assert large <= small + MARGIN_MB, f"k-NN radii of 20,000 points added {large:.0f} MB, of 2,000 {small:.0f} MB"


def _context(tmp_path: Path, info: dict | None = None, splits: dict | None = None) -> SampleContext:
    return SampleContext(tmp_path, torch.device("cpu"), info or {}, (splits or {}).__getitem__)


def _counting_decoder(net: Autoencoder) -> list[int]:
    """Record the batch sizes `net` decodes."""
    seen, decode = [], net.decode

    def counted(z):
        seen.append(len(z))
        return decode(z)

    net.decode = counted
    return seen


def test_samples_stream_to_a_memory_mapped_npy_and_the_picture_is_capped(tmp_path):
    net = Autoencoder(1, 28).eval()
    seen = _counting_decoder(net)
    context = _context(tmp_path)
    files = autoencoder.sample(net, SampleRequest.of(autoencoder.AutoencoderKnobs, num_samples=1200, seed=1), context)
    samples = np.load(files["tensor"], mmap_mode="r")
    assert files["tensor"].name == "samples.npy" and samples.shape == (1200, 1, 28, 28)
    assert seen == [500, 500, 200]
    assert samples[1199].min() >= 0 and samples[1199].max() <= 1
    with Image.open(files["grid"]) as grid:
        assert files["grid"].name == "prior.png" and grid.size[0] > 16 * 28 * 3  # the first 256, 16 to a row
    assert context.notes == ["prior.png shows 256 of the 1,200 samples; all are in samples.npy"]
    assert not list(tmp_path.glob("*.partial"))


def test_a_long_interpolation_row_is_shown_at_evenly_spaced_steps(tmp_path):
    net = Autoencoder(1, 28).eval()
    context = _context(tmp_path)
    request = SampleRequest.of(autoencoder.AutoencoderKnobs, mode="interpolate", num_samples=1, steps=1000,
                               interpolation="linear")
    files = autoencoder.sample(net, request, context)
    path = np.load(files["tensor"], mmap_mode="r")
    assert path.shape == (1000, 1, 28, 28)
    with Image.open(files["grid"]) as grid:
        assert grid.size[0] > 16 * 28 * 3  # 256 evenly spaced points and the two ends, 17 to a row
    assert context.notes == ["interpolate.png shows 256 of the 1,000 samples; all are in samples.npy"]


def test_too_little_disk_is_refused_before_the_long_work(tmp_path, monkeypatch):
    monkeypatch.setattr("genrun.budget.free_bytes", lambda path: 10**6)
    net = Autoencoder(1, 28).eval()
    seen = _counting_decoder(net)
    with pytest.raises(GenrunError) as refused:
        autoencoder.sample(net, SampleRequest.of(autoencoder.AutoencoderKnobs, num_samples=5000),
                           _context(tmp_path / "out"))
    assert re.fullmatch(r"num_samples=5000: ~15\.7 MB of samples on disk but 1\.0 MB free at \S+", str(refused.value))
    assert len(seen) <= 2 and not (tmp_path / "out").exists()  # two timed batches, no file opened
    with pytest.raises(GenrunError, match=r"^max_new_tokens=1000000: ~1\.0 MB of text on disk but 1\.0 MB free"):
        text.sample(GPT(len(VOCAB), block_size=16, n_layer=1, n_head=1, n_embd=8),
                    SampleRequest.of(text.TextKnobs, num_samples=1, max_new_tokens=10**6),
                    _context(tmp_path / "text", TEXT_INFO))
    assert not (tmp_path / "text").exists()


def test_over_the_time_limit_is_refused_with_the_measured_rate(tmp_path):
    net = Autoencoder(1, 28).eval()
    seen = _counting_decoder(net)
    with pytest.raises(GenrunError) as refused:
        autoencoder.sample(net, SampleRequest.of(autoencoder.AutoencoderKnobs, num_samples=200_000, max_minutes=0.001),
                           _context(tmp_path / "out"))
    assert re.fullmatch(r"num_samples=200000: ~\d+ s at the measured [\d,]+ images/s; the limit is max_minutes=0\.001 "
                        r"\(raise it, or ask for fewer\)", str(refused.value)), str(refused.value)
    assert seen == [500, 500] and not (tmp_path / "out").exists()

    gpt = GPT(len(VOCAB), block_size=32, n_layer=1, n_head=2, n_embd=16).eval()
    gpt.carry_state = False
    with pytest.raises(GenrunError, match=r"^max_new_tokens=1000000000: ~[\d.]+ (days|h) at the measured [\d,]+ "
                                          r"tokens/s; the limit is max_minutes=60 \(raise it"):
        text.sample(gpt, SampleRequest.of(text.TextKnobs, num_samples=1, max_new_tokens=10**9, max_minutes=60),
                    _context(tmp_path / "text", TEXT_INFO))
    assert not (tmp_path / "text").exists()


def test_text_samples_are_appended_in_batches_past_the_context_window(tmp_path, monkeypatch):
    gpt = GPT(len(VOCAB), block_size=16, n_layer=1, n_head=2, n_embd=16).eval()
    gpt.carry_state = False
    batches, written_before, stream = [], [], text.generate_stream

    def recorded(net, prompt, max_new_tokens, *args, **kwargs):
        if max_new_tokens == 40:  # not the few steps timed first
            batches.append(len(prompt))
            written_before.append((tmp_path / "samples.txt").read_text().count("=== sample"))
        return stream(net, prompt, max_new_tokens, *args, **kwargs)

    monkeypatch.setattr(text, "generate_stream", recorded)
    terminal = io.StringIO()
    with redirect_stdout(terminal):
        files = text.sample(gpt, SampleRequest.of(text.TextKnobs, num_samples=130, max_new_tokens=40, prompt="ab"),
                            _context(tmp_path, TEXT_INFO))
    assert batches == [64, 64, 2] and written_before == [0, 64, 128]  # each batch appended as it finished
    sections = files["text"].read_text().split("=== sample ")[1:]
    assert [s.split("/", 1)[0] for s in sections] == [str(i) for i in range(1, 131)]  # in order, three batches
    assert all(len(s.split(" ===\n", 1)[1]) == len("ab") + 40 + 2 for s in sections)  # 40 new tokens, then "\n\n"
    assert terminal.getvalue().startswith("--- sample 1/130 (") and "... 125 more in samples.txt" in terminal.getvalue()


def test_max_minutes_is_a_config_key_of_sample_evaluate_and_train():
    from hydra import compose, initialize_config_dir

    from genrun import resolvers
    from genrun.configs import config_dir
    from genrun.families.autoencoder import AutoencoderPipeline
    from genrun.tasks.evaluate import settings_from_config
    from genrun.tasks.sample import request_for

    vae = AutoencoderPipeline({"net": Autoencoder(1, 28)})
    resolvers.register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        assert request_for(compose("sample", ["max_minutes=5"]), vae, "vae").max_minutes == 5.0
        assert request_for(compose("sample", ["max_minutes=null"]), vae, "vae").max_minutes is None
        with pytest.raises(GenrunError, match=r"^max_minutes=0: must be positive"):
            request_for(compose("sample", ["max_minutes=0"]), vae, "vae")
        assert settings_from_config(compose("evaluate", []), {})["max_minutes"] == 60.0
        assert compose("train", []).max_minutes == 60.0


def test_evaluation_draws_in_batches_and_refuses_what_memory_cannot_hold(tmp_path):
    from genrun.evaluation.image_quality import evaluate_images

    g = torch.Generator().manual_seed(5)
    splits = {"train": (torch.rand(600, 1, 28, 28, generator=g), torch.zeros(600)),
              "test": (torch.rand(200, 1, 28, 28, generator=g), torch.zeros(200))}
    asked = []

    def generate(n, generator):
        asked.append(n)
        return torch.rand(n, 1, 28, 28, generator=generator)

    def context(**settings):
        return EvalContext(tmp_path, torch.device("cpu"), {"image_size": 28}, splits.__getitem__, settings)

    metrics = evaluate_images(generate, context(num_samples=1200))
    assert asked == [500, 500, 200] and metrics["eval/n_fake"] == 1200 and metrics["eval/n_real"] == 200
    assert 0.5 < metrics["eval/memorization_ratio"] < 2
    asked.clear()
    with pytest.raises(GenrunError, match=r"^num_samples=10000000000: ~80\.0 GB of sample features and distances "
                                          r"in memory but [\d.]+ [GMT]B available"):
        evaluate_images(generate, context(num_samples=10**10))
    assert asked == []  # refused before drawing anything
    with pytest.raises(GenrunError, match=r"^num_samples=1000000: ~.* at the measured [\d,]+ images/s .*max_minutes"):
        evaluate_images(generate, context(num_samples=10**6, max_minutes=0.001))
    assert asked == [500, 500]


def test_gan_class_rows_arithmetic_and_points_stream_with_bounded_pictures(tmp_path):
    conditional = MLPGenerator(latent_dim=8, shape=[1, 28, 28], hidden_dims=[16], num_classes=10).eval()
    context = _context(tmp_path / "rows")
    files = gan.sample(conditional, SampleRequest.of(gan.GANKnobs, num_samples=3000), context)
    rows = np.load(files["tensor"], mmap_mode="r")
    assert rows.shape == (3000, 1, 28, 28)
    with Image.open(files["grid"]) as grid:
        assert grid.size[0] > 25 * 28 * 3 and grid.size[1] > 10 * 28 * 3  # every class, the first 25 columns
    assert context.notes == ["prior.png shows 250 of the 3,000 samples; all are in samples.npy"]

    net = MLPGenerator(latent_dim=8, shape=[1, 28, 28], hidden_dims=[16]).eval()
    recipe = {"a": (0, 1, 2), "b": (3, 4, 5), "c": (6, 7, 600)}
    request = SampleRequest.of(gan.GANKnobs, mode="arithmetic", num_samples=10**7, arithmetic=recipe)
    arithmetic = gan.sample(net, request, _context(tmp_path / "arith"))  # draws latents only as far as index 600
    drawn = gan.sample(net, SampleRequest.of(gan.GANKnobs, num_samples=1000), _context(tmp_path / "prior"))
    tiles, images = np.load(arithmetic["tensor"]), np.load(drawn["tensor"])
    assert tiles.shape == (4 * 9, 1, 28, 28)
    np.testing.assert_allclose(tiles[9 * 2 + 2], images[600], atol=1e-6)  # row c, third sample: prior's #600

    points = MLPGenerator(latent_dim=4, shape=[2], hidden_dims=[8]).eval()
    data = (torch.randn(100, 2), torch.zeros(100))
    context = _context(tmp_path / "points", splits={"train": data})
    files = gan.sample(points, SampleRequest.of(gan.GANKnobs, num_samples=12_000), context)
    assert np.load(files["tensor"], mmap_mode="r").shape == (12_000, 2)
    assert context.notes == ["prior.png shows 10,000 of the 12,000 samples; all are in samples.npy"]


def test_classifier_predictions_picture_is_capped(tmp_path):
    net = ConvClassifier(channels=1, image_size=28, num_classes=10, width=4, feature_dim=8).eval()
    splits = {"test": (torch.rand(300, 1, 28, 28), torch.randint(10, (300,)))}
    context = _context(tmp_path, {"classes": [str(k) for k in range(10)]}, splits)
    files = classifier.sample(net, SampleRequest.of(classifier.ClassifierKnobs, num_samples=1000), context)
    assert len(json.loads(files["predictions"].read_text())["predictions"]) == 300
    with Image.open(files["grid"]) as grid:
        assert grid.size[0] > 16 * 28 * 3  # 16 columns of upscaled tiles: the first 256
    assert context.notes == ["num_samples=1000: the test split has 300 images; all 300 are predicted",
                             "predict.png shows 256 of the 300 predictions; all are in predictions.json"]


CHURN = """
import ctypes, resource, sys
# Transparent huge pages (which torch asks for on large tensors) fault 2 MiB at a time, and whether the kernel
# has them to give varies from run to run: without them every count below is in 4 KiB pages, as malloc sees them.
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE, for this process only
import torch
from genrun.allocator import keep_freed_memory
took = keep_freed_memory()
def churn():  # a forward pass's pattern: several activations at once, then all freed
    held = [torch.ones(2 << 20) for _ in range(3)]
    del held
for _ in range(5):
    churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    churn()
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_PER_CHURN = 3 * (8 << 20) // 4096  # three 8 MiB tensors in 4 KiB pages


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the setting is glibc's (Linux); elsewhere genrun leaves malloc as it is")
def test_freed_tensor_memory_is_reused_instead_of_faulted_back_in_from_the_kernel():
    """What the genrun command sets before torch allocates: after a loop's first steps, its activations reuse
    the pages the last step freed, with no page faults. A variable of the user's own (MALLOC_*) leaves malloc as
    the user tuned it: here one that gives freed memory straight back, so every page of every step is faulted
    in again, which is what the setting prevents (glibc's default does the same in some processes and not in
    others, depending on where their heap lies, so the default itself is not the comparison)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}

    def faults(**extra: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", CHURN], env={**env, **extra}, check=True,
                             capture_output=True, text=True).stdout.split()
        return out[0], int(out[1])

    took, kept = faults()
    assert took == "True"
    assert kept < PAGES_PER_CHURN // 3, kept  # fewer than one tensor's pages over 40 steps
    took, trimmed = faults(MALLOC_TRIM_THRESHOLD_="0")
    assert took == "False"
    assert trimmed >= 40 * PAGES_PER_CHURN, trimmed
