"""The text family through the real `genrun` command: train, TensorBoard, sample, resume, errors."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import check_ok, read_metrics, run_dirs
from conftest import run_genrun as _run_genrun
from genrun.checkpoint import load_checkpoint

TINY_GPT = ["model=gpt", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=32",
            "model.sample_length=20", "dataset.batch_size=16", "dataset.eval_batch_size=8"]
SOURCE = ["dataset=python_source", "dataset.max_chars=40000"]


def run_genrun(args, cwd):
    """Tiny nets gain nothing from a second thread, and on a shared machine its spinning costs seconds."""
    return _run_genrun(args, cwd, env={"OMP_NUM_THREADS": "1"})


def _newest(root, task):
    return max(run_dirs(root, task), key=lambda p: p.stat().st_mtime)


def _one_line_error(result, *needles):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = [s for s in result.stderr.splitlines() if s.startswith("genrun: error:")]
    for needle in needles:
        assert needle in line, line


@pytest.fixture(scope="module")
def trained_gpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt_run")
    (root / "data").mkdir()
    check_ok(run_genrun(["train", *TINY_GPT, *SOURCE, "trainer.max_epochs=1", "trainer.limit_train_batches=6",
                         "trainer.limit_val_batches=2", "num_samples=2"], root))
    return root


def test_training_records_vocab_metrics_and_tensorboard_text(trained_gpt):
    [run_dir] = run_dirs(trained_gpt)
    assert run_dir.parent.name == "gpt_python_source"
    info = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["genrun"]
    assert info["pipeline"]["class"].endswith("TextPipeline") and info["data"]["tokenizer"] == "char"
    assert info["data"]["vocab_size"] == len(info["data"]["vocab"]) == info["config"]["dataset"]["vocab_size"]
    metrics = read_metrics(run_dir)["metrics"]
    nats = metrics["val/loss"]
    assert math.isclose(metrics["val/bits_per_char"], nats / math.log(2), rel_tol=1e-4)
    assert math.isclose(metrics["val/perplexity"], math.exp(nats), rel_tol=1e-3)
    assert 0 < metrics["test/nats_per_char"] < math.log(info["data"]["vocab_size"]) + 1
    assert (run_dir / "samples" / "samples.txt").read_text().count("=== sample") == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for event_file in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file), size_guidance={"tensors": 0})
        acc.Reload()
        tags |= set(acc.Tags().get("tensors", [])) | set(acc.Tags().get("scalars", []))
    assert {"val/loss", "val/bits_per_char", "val/perplexity"} <= tags
    for t in ("0.2", "0.5", "1", "1.2"):
        assert any(tag.startswith(f"samples/temperature_{t}/") for tag in tags), tags


def test_sampling_streams_writes_and_repeats_with_the_same_seed(trained_gpt):
    args = ["sample", "model=gpt", "prompt=def", "temperature=0.8", "top_k=40", "top_p=0.95", "max_new_tokens=40",
            "num_samples=3", "seed=1"]
    first = check_ok(run_genrun(args, trained_gpt))
    text_a = (_newest(trained_gpt, "sample") / "samples.txt").read_text()
    check_ok(run_genrun(args, trained_gpt))
    text_b = (_newest(trained_gpt, "sample") / "samples.txt").read_text()
    assert text_a == text_b and text_a.count("=== sample") == 3
    first_sample = text_a.split("===\n", 1)[1].split("\n\n=== ", 1)[0]
    assert first_sample.startswith("def") and len(first_sample) == 3 + 40
    assert first_sample in first.stdout  # streamed to the terminal


def test_temperature_demo_and_greedy_decoding(trained_gpt):
    result = check_ok(run_genrun(["sample", "model=gpt", "mode=temperatures", "temperatures=[0,1.0]", "prompt=import",
                                  "max_new_tokens=30"], trained_gpt))
    sample_dir = _newest(trained_gpt, "sample")
    text = (sample_dir / "samples.txt").read_text()
    assert "=== temperature 0 ===" in text and "=== temperature 1 ===" in text
    assert "temperature 0" in result.stdout and "temperature 1" in result.stdout
    greedy = text.split("=== temperature 0 ===\n", 1)[1].split("\n\n", 1)[0]

    # Greedy decoding is the argmax path, whatever the seed: recompute it from the checkpoint in process.
    from genrun.data.tokenizers import tokenizer_from_info
    from genrun.pipeline import load_pipeline
    from genrun.sampling import generate

    path = run_dirs(trained_gpt)[0] / "checkpoints" / "last.ckpt"
    payload = load_checkpoint(path)
    net = load_pipeline(payload, path).net
    tok = tokenizer_from_info(payload["genrun"]["data"])
    ids = generate(net, tok.encode("import")[None], 30, 0.0)
    assert greedy == "import" + tok.decode(ids[0].tolist())


def test_prompt_outside_the_vocabulary_is_one_line(trained_gpt):
    result = run_genrun(["sample", "model=gpt", "prompt='hé☃'", "max_new_tokens=5"], trained_gpt)
    _one_line_error(result, "outside the model's", "'☃'", "tokenizer=byte")


def test_bad_text_file_is_one_line(workdir):
    empty = workdir / "empty.txt"
    empty.write_text("")
    _one_line_error(run_genrun(["train", "model=gpt", "dataset=text", f"dataset.path={empty}"], workdir),
                    "empty.txt", "empty")


def test_byte_tokenizer_trains_and_samples_any_prompt(workdir):
    check_ok(run_genrun(["train", *TINY_GPT, *SOURCE, "tokenizer=byte", "debug=fast_dev_run", "num_samples=1"],
                        workdir))
    info = read_metrics(run_dirs(workdir)[0])["data"]
    assert info["tokenizer"] == "byte" and info["vocab_size"] == 256
    result = check_ok(run_genrun(["sample", f"ckpt={run_dirs(workdir)[0]}", "prompt='héllo ☃'", "max_new_tokens=10",
                                  "num_samples=1"], workdir))
    assert "héllo ☃" in result.stdout


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.mark.slow  # exact mid-epoch resume is in the suite through test_runs and test_distributed's preemption
def test_char_lstm_resumes_mid_epoch_exactly_with_its_carried_state(workdir):
    corpus = workdir / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(12)))  # ~ 4 batches per epoch
    common = ["model=char_lstm", "dataset=text", f"dataset.path={corpus}", "model.hidden_size=16", "model.n_embd=8",
              "model.block_size=16", "dataset.batch_size=4", "model.sample_length=10", "num_samples=1",
              "test=false"]
    full, part = workdir / "outputs" / "full", workdir / "outputs" / "part"
    check_ok(run_genrun(["train", *common, "trainer.max_steps=6", f"hydra.run.dir={full}"], workdir))
    check_ok(run_genrun(["train", *common, "trainer.max_steps=3", f"hydra.run.dir={part}"], workdir))
    assert "text_train_state" in load_checkpoint(part / "checkpoints" / "last.ckpt")
    check_ok(run_genrun(["train", f"resume={part}", "trainer.max_steps=6"], workdir))
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
