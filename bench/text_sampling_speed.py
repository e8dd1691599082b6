"""Benchmark: sampling speed (new tokens per second) for 100 and 2,000 new tokens, with and without the
GPT's key/value cache, and for the char LSTM's carried state; batch of one, temperature 1, top-k off.

    .venv/bin/python bench/text_sampling_speed.py                  # nets of the CPU recipes' sizes
    .venv/bin/python bench/text_sampling_speed.py --ckpt RUN_DIR   # a trained GPT or LSTM instead

Speed does not depend on the weights, so random weights of the recipe's size measure the same thing.
Results are appended to bench/results/text_sampling_speed.md with the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genrun.nets.char_lstm import CharLSTM  # noqa: E402
from genrun.nets.gpt import GPT  # noqa: E402
from genrun.sampling import generate  # noqa: E402
from text_common import RESULTS, append_markdown, load_average, machine  # noqa: E402


def tokens_per_second(net, new_tokens: int, use_cache: bool, repeats: int) -> float:
    prompt = torch.zeros(1, 8, dtype=torch.long)
    best = 0.0
    for _ in range(repeats):
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        generate(net, prompt, new_tokens, 1.0, generator=generator, use_cache=use_cache)
        best = max(best, new_tokens / (time.perf_counter() - start))
    return best


def nets(ckpt: str | None) -> dict:
    if ckpt:
        from genrun.checkpoint import load_checkpoint
        from genrun.pipeline import load_pipeline
        from genrun.runs import locate_checkpoint

        path = locate_checkpoint(ckpt, ".")
        return {Path(ckpt).name: load_pipeline(load_checkpoint(path), path).net}
    torch.manual_seed(0)
    return {"gpt 4x4x128, context 64": GPT(65, block_size=64, n_layer=4, n_head=4, n_embd=128).eval(),
            "char_lstm 2x256": CharLSTM(65, n_embd=64, hidden_size=256, n_layer=2).eval()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--repeats", type=int, default=3, help="best of N (the machine may be shared)")
    parser.add_argument("--results", default=str(RESULTS / "text_sampling_speed.md"))
    args = parser.parse_args()
    info = machine()
    table = [["net", "decoding", "new tokens", f"tokens/s (best of {args.repeats})"]]
    for name, net in nets(args.ckpt).items():
        modes = [("carried state", True)] if getattr(net, "recurrent", False) else [
            ("KV cache", True), ("no cache (recompute window)", False)]
        for label, use_cache in modes:
            for n in (100, 2000):
                speed = tokens_per_second(net, n, use_cache, args.repeats)
                table.append([name, label, str(n), f"{speed:.0f}"])
                print(f"{name:28s} {label:28s} {n:5d} tokens: {speed:7.0f} tokens/s", flush=True)
    info["load average (1/5/15 min) at end"] = load_average()
    info["command"] = "`.venv/bin/python bench/text_sampling_speed.py" + (f" --ckpt {args.ckpt}`" if args.ckpt else "`")
    append_markdown(Path(args.results), f"sampling speed ({info['date']})", info, table, [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
