"""Choosing the next token from logits: temperature, top-k, top-p; temperature 0 is greedy (argmax)."""

from __future__ import annotations

import torch

from genrun.errors import GenrunError


def check_settings(temperature, top_k: int | None, top_p: float | None) -> None:
    temps = temperature if isinstance(temperature, (list, tuple)) else [temperature]
    if any(float(t) < 0 for t in temps):
        raise GenrunError(f"temperature={temperature}: must be non-negative")
    if top_k is not None and int(top_k) < 1:
        raise GenrunError(f"top_k={top_k}: must be at least 1 (or null for no limit)")
    if top_p is not None and not 0.0 < float(top_p) <= 1.0:
        raise GenrunError(f"top_p={top_p}: must be in (0, 1] (or null for no limit)")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Logits (B×V) with every token outside the top-k and outside the top-p nucleus set to -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, int(top_k), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the tokens before it already reach top_p; the most likely one always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: torch.Tensor, temperature: float | torch.Tensor, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of `logits` (B×V). `temperature` is a number or one value per row (B,)."""
    logits = logits.float()
    temps = torch.as_tensor(temperature, dtype=logits.dtype, device=logits.device).reshape(-1)
    temps = temps.expand(logits.shape[0]) if temps.numel() == 1 else temps
    greedy = logits.argmax(-1)
    if bool((temps == 0).all()):
        return greedy
    scaled = logits / temps.clamp_min(1e-6)[:, None]
    probs = filter_logits(scaled, top_k, top_p).softmax(-1)
    drawn = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return torch.where(temps == 0, greedy, drawn)
