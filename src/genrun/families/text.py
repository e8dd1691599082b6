"""Text-family inference without Lightning: rebuild the net, sample from a prompt, measure nats/char.

Modes: `prior` (the default of `genrun sample`) and its alias `sample` draw `num_samples` continuations
of one prompt, decoded side by side in batches; the first streams to the terminal as it is generated.
`temperatures` continues the prompt once at each of `temperatures`, streaming each, then prints them
side by side. Every continuation is appended to `samples.txt` as it finishes, so memory does not grow
with num_samples or max_new_tokens.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch

from genrun.budget import Budget, timed
from genrun.data.tokenizers import tokenizer_from_info
from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode
from genrun.pipeline import Pipeline, knob
from genrun.progress import track
from genrun.sampling.filters import check_settings
from genrun.sampling.generate import generate_stream

MODES = ("prior", "sample", "temperatures")
# Continuations decoded side by side, each with its own key/value cache (see batch_rows).
TEXT_BATCH = 64
# Tokens of finished rows a batch may hold until it ends, across its rows.
HELD_TOKENS = 1 << 20
# Token columns gathered before the held rows decode them into text.
DECODE_CHUNK = 1024
# Decoding steps timed to estimate a long draw's time.
PROBE_STEPS = 8


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
    """Continue the prompt, appending each finished continuation to samples.txt; refused up front when the
    text would not fit on disk or in the time limit."""
    _check(request)
    tokenizer = tokenizer_from_info(context.data_info)
    prompt_text = request.prompt if request.prompt else tokenizer.default_prompt()
    prompt = tokenizer.encode(prompt_text, what=f"prompt={prompt_text!r}").to(context.device)
    net = net.to(context.device).eval()
    generator = torch.Generator(device=context.device).manual_seed(int(request.seed))
    count = len(request.temperatures) if request.mode == "temperatures" else request.num_samples
    rows = 1 if request.mode == "temperatures" else batch_rows(count, request.max_new_tokens)
    out = Path(context.out_dir)
    budget = Budget(_what(request), request.max_minutes, "tokens")
    budget.check_disk(count * _text_bytes(tokenizer, prompt_text, request.max_new_tokens), out, "text")
    if math.ceil(count / rows) * request.max_new_tokens > 4 * PROBE_STEPS:
        budget.check_rate(count * request.max_new_tokens, _tokens_per_second(net, prompt, rows, request))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samples.txt"
    with path.open("w", encoding="utf-8") as file:
        if request.mode == "temperatures":
            _sample_temperatures(net, tokenizer, prompt_text, prompt, request, generator, file)
        else:
            _sample_batches(net, tokenizer, prompt_text, prompt, request, generator, file, rows)
    return {"text": path}


def batch_rows(count: int, max_new_tokens: int) -> int:
    """Continuations decoded side by side: up to TEXT_BATCH, fewer when long, since every row but the first
    is held until its batch ends (the first is written as it is drawn)."""
    return max(1, min(TEXT_BATCH, count, 1 + HELD_TOKENS // max_new_tokens))


def _what(request: SampleRequest) -> str:
    if request.mode == "temperatures":
        return f"max_new_tokens={request.max_new_tokens} at {len(request.temperatures)} temperatures"
    if request.num_samples == 1:
        return f"max_new_tokens={request.max_new_tokens}"
    return f"num_samples={request.num_samples}, max_new_tokens={request.max_new_tokens}"


def _text_bytes(tokenizer, prompt_text: str, max_new_tokens: int) -> int:
    """Bytes of one continuation in samples.txt: its heading, the prompt and the new tokens as UTF-8."""
    vocab = getattr(tokenizer, "vocab", None)
    per_token = sum(len(ch.encode("utf-8")) for ch in vocab) / len(vocab) if vocab else 1.0
    return int(80 + len(prompt_text.encode("utf-8")) + per_token * max_new_tokens)


def _tokens_per_second(net, prompt, rows: int, request: SampleRequest) -> float:
    """Decoding speed of a batch like the real ones, timed over a few steps after the first (which pays the
    prefill); drawn from a random stream of its own, so the samples do not change."""
    probe = torch.Generator(device=prompt.device).manual_seed(0)
    stream = generate_stream(net, prompt[None].expand(rows, -1), PROBE_STEPS + 1, request.temperature,
                             request.top_k, request.top_p, probe)
    next(stream)
    _, seconds = timed(lambda: sum(1 for _ in stream))
    return rows * PROBE_STEPS / seconds


def _sample_batches(net, tokenizer, prompt_text, prompt, request, generator, file, rows: int) -> None:
    """`num_samples` continuations, `rows` at a time; the first streams to the terminal, the next few are
    printed when done, and every one is appended to `file` as it finishes."""
    n = request.num_samples
    settings = _settings_line(request, request.temperature)
    starts = range(0, n, rows)
    rest = track(starts[1:], f"{n:,} samples", total=len(starts) - 1) if len(starts) > 1 else []
    for first in chain(starts[:1], rest):
        batch = prompt[None].expand(min(rows, n - first), -1)
        stream = generate_stream(net, batch, request.max_new_tokens, request.temperature, request.top_k,
                                 request.top_p, generator)
        _decode_batch(stream, len(batch), tokenizer, prompt_text, first, n, settings, file, request.shown)
    if n > request.shown:
        _write(f"... {n - request.shown} more in samples.txt\n")


def _decode_batch(stream, rows: int, tokenizer, prompt_text: str, first: int, n: int, settings: str, file,
                  shown: int) -> None:
    """Write one batch of continuations (samples first+1, first+2, ...) to `file` in order: the first row as
    its tokens arrive (so a single continuation of any length never sits in memory), the others when the
    batch ends."""
    number = first + 1
    file.write(f"=== sample {number}/{n} | {settings} ===\n{prompt_text}")
    echo = number <= shown
    if echo:
        _write(f"--- sample {number}/{n}{f' ({settings})' if number == 1 else ''} ---\n{prompt_text}")
    piece, decoders = tokenizer.stream_decoder(), [tokenizer.stream_decoder() for _ in range(rows - 1)]
    held, columns = [[] for _ in range(rows - 1)], []
    for column in stream:
        text = piece(column[0])
        file.write(text)
        if echo:
            _write(text)
        if rows > 1:
            columns.append(column[1:])
            if len(columns) == DECODE_CHUNK:
                _decode_rows(columns, decoders, held)
    _decode_rows(columns, decoders, held)
    file.write("\n\n")
    if echo:
        _write("\n")
    for offset, pieces in enumerate(held, start=1):
        text = prompt_text + "".join(pieces)
        file.write(f"=== sample {number + offset}/{n} | {settings} ===\n{text}\n\n")
        if number + offset <= shown:
            _write(f"--- sample {number + offset}/{n} ---\n{text}\n")
    file.flush()


def _decode_rows(columns: list[torch.Tensor], decoders: list, held: list[list[str]]) -> None:
    """Turn the token columns gathered so far into one text piece per row, and empty `columns`."""
    if columns:
        for row, ids, decode in zip(held, torch.stack(columns, 1).tolist(), decoders, strict=True):
            row.append("".join(decode(i) for i in ids))
    columns.clear()


def _sample_temperatures(net, tokenizer, prompt_text, prompt, request, generator, file) -> None:
    """The softmax-temperature demo: one prompt, one continuation per temperature, each streamed to the
    terminal and `file`; side by side at the end when they are short enough to hold."""
    sections = []
    hold = len(request.temperatures) * request.max_new_tokens <= HELD_TOKENS
    for t in request.temperatures:
        piece, pieces = tokenizer.stream_decoder(), []
        _write(f"--- {_settings_line(request, t)} ---\n{prompt_text}")
        file.write(f"=== temperature {t:g} ===\n{prompt_text}")
        for column in generate_stream(net, prompt[None], request.max_new_tokens, t, request.top_k, request.top_p,
                                      generator):
            text = piece(column[0])
            _write(text)
            file.write(text)
            if hold:
                pieces.append(text)
        _write("\n")
        file.write("\n\n")
        file.flush()
        sections.append((f"temperature {t:g}", prompt_text + "".join(pieces)))
    if hold:
        _print_side_by_side(sections)
    else:
        _write("(no side-by-side table: the continuations are too long to hold; they are in samples.txt)\n")


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


@dataclass(frozen=True)
class TextKnobs:
    prompt: str | None = knob(None, "the text to continue (default: a newline)")
    max_new_tokens: int = knob(500, "tokens generated after the prompt")
    shown: int = knob(5, "continuations printed on the terminal (every one is in samples.txt)")
    top_k: int | None = knob(None, "sample only from the k most likely tokens")
    top_p: float | None = knob(None, "sample only from the smallest set of tokens whose probability reaches p")
    temperatures: tuple[float, ...] = field(default=(0.2, 0.5, 1.0, 1.2), metadata={
        "help": "mode=temperatures: one continuation at each of these softmax temperatures"})

    def check(self) -> None:
        if self.max_new_tokens < 1:
            raise GenrunError(f"max_new_tokens={self.max_new_tokens}: must be at least 1")
        if self.shown < 0:
            raise GenrunError(f"shown={self.shown}: must be 0 or more")


class TextPipeline(Pipeline):
    """A next-token net with its tokenizer: continuations of a prompt (KV-cached or carried state)."""

    components = ("net",)
    modes = MODES
    Knobs = TextKnobs
    after_training = {"max_new_tokens": 200, "shown": 3}  # a glance at the model, not a page of text

    def __init__(self, components, settings=None, data_info=None):
        super().__init__(components, settings, data_info)
        self.net.carry_state = bool(self.settings.get("carry_state", False))

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        return sample(self.net, request, context)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        return evaluate(self.net, context)

    @torch.no_grad()
    def continue_at_temperatures(self, prompt_text: str, temperatures: tuple[float, ...], length: int,
                                 generator: torch.Generator) -> list[str]:
        """The prompt continued once at each temperature, side by side (the training-time TEXT samples)."""
        from genrun.sampling import generate

        tokenizer = tokenizer_from_info(self.data_info)
        if tokenizer.unknown(prompt_text):
            prompt_text = tokenizer.default_prompt()
        device = next(self.net.parameters()).device
        prompt = tokenizer.encode(prompt_text).to(device)[None].expand(len(temperatures), -1)
        out = generate(self.net, prompt, length, torch.tensor(temperatures, device=device), generator=generator)
        return [prompt_text + tokenizer.decode(row.tolist()) for row in out]
