"""Text-family inference without Lightning: rebuild the net, sample from a prompt, measure nats/char.

Modes: `prior` (the default of `genrun sample`) and its alias `sample` draw `num_samples` continuations
of one prompt, decoded together in one batch; the first streams to the terminal as it is generated.
`temperatures` continues the prompt once at each of `temperatures`, streaming each, then prints them
side by side. Everything printed is also written to `samples.txt`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from genrun.data.tokenizers import tokenizer_from_info
from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, instantiate_net, load_weights
from genrun.sampling.filters import check_settings
from genrun.sampling.generate import generate

MODES = ("prior", "sample", "temperatures")
# Beyond this many samples, only the first is shown on the terminal; all are in samples.txt.
MAX_PRINTED = 5


def build_net(run_config: dict, state_dict: dict) -> torch.nn.Module:
    net = load_weights(instantiate_net(run_config["model"]["module"]["net"]), state_dict, "net.")
    net.carry_state = bool(run_config["model"]["module"].get("carry_state", False))
    return net


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _settings_line(request: SampleRequest, temperature: float) -> str:
    parts = [f"temperature {temperature:g}"]
    parts += [f"top_k {request.top_k}"] if request.top_k else []
    parts += [f"top_p {request.top_p:g}"] if request.top_p is not None else []
    return ", ".join(parts + [f"seed {request.seed}"])


def _check(request: SampleRequest) -> None:
    check_mode(request, MODES, "text")
    temps = list(request.temperatures) if request.mode == "temperatures" else request.temperature
    if request.mode == "temperatures" and not temps:
        raise GenrunError("temperatures=[]: give at least one temperature, e.g. temperatures=[0.5,1.0]")
    check_settings(temps, request.top_k, request.top_p)
    if request.max_new_tokens < 1:
        raise GenrunError(f"max_new_tokens={request.max_new_tokens}: must be at least 1")


@torch.no_grad()
def sample(net, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
    _check(request)
    tokenizer = tokenizer_from_info(context.data_info)
    prompt_text = request.prompt if request.prompt else tokenizer.default_prompt()
    prompt = tokenizer.encode(prompt_text, what=f"prompt={prompt_text!r}").to(context.device)
    net = net.to(context.device).eval()
    generator = torch.Generator(device=context.device).manual_seed(int(request.seed))
    if request.mode == "temperatures":
        sections = _sample_temperatures(net, tokenizer, prompt_text, prompt, request, generator)
    else:
        sections = _sample_batch(net, tokenizer, prompt_text, prompt, request, generator)
    out = Path(context.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samples.txt"
    path.write_text("".join(f"=== {title} ===\n{text}\n\n" for title, text in sections), encoding="utf-8")
    return {"text": path}


def _sample_batch(net, tokenizer, prompt_text, prompt, request, generator) -> list[tuple[str, str]]:
    n = request.num_samples
    piece = tokenizer.stream_decoder()
    _write(f"--- sample 1/{n} ({_settings_line(request, request.temperature)}) ---\n{prompt_text}")
    ids = generate(net, prompt[None].expand(n, -1), request.max_new_tokens, request.temperature, request.top_k,
                   request.top_p, generator, on_token=lambda column: _write(piece(column[0])))
    _write("\n")
    texts = [prompt_text + tokenizer.decode(row.tolist()) for row in ids]
    for i, text in enumerate(texts[1:MAX_PRINTED], start=2):
        _write(f"--- sample {i}/{n} ---\n{text}\n")
    if n > MAX_PRINTED:
        _write(f"... {n - MAX_PRINTED} more in samples.txt\n")
    settings = _settings_line(request, request.temperature)
    return [(f"sample {i}/{n} | {settings}", text) for i, text in enumerate(texts, start=1)]


def _sample_temperatures(net, tokenizer, prompt_text, prompt, request, generator) -> list[tuple[str, str]]:
    """The softmax-temperature demo: one prompt, one continuation per temperature."""
    sections = []
    for t in request.temperatures:
        piece = tokenizer.stream_decoder()
        _write(f"--- {_settings_line(request, t)} ---\n{prompt_text}")
        ids = generate(net, prompt[None], request.max_new_tokens, t, request.top_k, request.top_p, generator,
                       on_token=lambda column, piece=piece: _write(piece(column[0])))
        _write("\n")
        sections.append((f"temperature {t:g}", prompt_text + tokenizer.decode(ids[0].tolist())))
    _print_side_by_side(sections)
    return sections


def _print_side_by_side(sections: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, expand=True)
    for title, _text in sections:
        table.add_column(title, overflow="fold", ratio=1)
    table.add_row(*(text for _title, text in sections))
    Console(soft_wrap=False).print(table, markup=False, highlight=False)


@torch.no_grad()
def nll_per_token(net, x: torch.Tensor, y: torch.Tensor, rows: int = 64) -> tuple[float, int]:
    """(mean negative log-likelihood in nats, tokens counted) over windows x → y (N×T, in stream order).

    The windows are cut into `rows` runs of consecutive windows evaluated side by side, so a recurrent net
    trained with a carried state can carry it across windows, as during validation.
    """
    rows = max(1, min(int(rows), len(x)))
    per_row = len(x) // rows
    xs, ys = x[: rows * per_row].view(rows, per_row, -1), y[: rows * per_row].view(rows, per_row, -1)
    carry = getattr(net, "recurrent", False) and getattr(net, "carry_state", False)
    total, count, state = 0.0, 0, None
    for j in range(per_row):
        xj, yj = xs[:, j], ys[:, j]
        if getattr(net, "recurrent", False):
            logits, state = net(xj, state if carry else None)
        else:
            logits = net(xj)
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), yj.reshape(-1),
                                                   reduction="sum").item()
        count += yj.numel()
    return total / max(count, 1), count


def evaluate(net, context: EvalContext) -> dict[str, float]:
    x, y = context.load_split("test")
    if len(x) == 0:
        raise GenrunError("the test (validation) split holds no complete window; use a longer text or a larger "
                          "dataset.val_fraction")
    net = net.to(context.device).eval()
    nats, count = nll_per_token(net, x.to(context.device), y.to(context.device),
                                rows=int(context.settings.get("batch_size", 64)))
    unit = "byte" if context.data_info.get("tokenizer") == "byte" else "char"
    return {f"test/nats_per_{unit}": nats, f"test/bits_per_{unit}": nats / math.log(2),
            "test/perplexity": math.exp(min(nats, 80.0)), "test/tokens": float(count)}
