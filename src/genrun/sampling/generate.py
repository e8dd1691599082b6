"""The sampling loop shared by `genrun sample`, end-of-training samples and TensorBoard text samples."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from genrun.sampling.decoders import decoder_for
from genrun.sampling.filters import next_token


@contextmanager
def _one_cpu_thread(device: torch.device):
    """Per-token work is too small to share among CPU threads; on a busy machine extra threads only spin."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def generate(net, prompt: torch.Tensor, max_new_tokens: int, temperature: float | torch.Tensor = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, on_token: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """New token ids (B×max_new_tokens) continuing `prompt` (B×T, T ≥ 1).

    `on_token` receives each new column of B ids as soon as it is drawn (for streaming).
    """
    was_training = net.training
    net.eval()
    decoder = decoder_for(net, prompt.shape[0], use_cache)
    out = torch.empty(prompt.shape[0], max_new_tokens, dtype=torch.long, device=prompt.device)
    with _one_cpu_thread(prompt.device):
        try:
            logits = decoder.prefill(prompt)
            for i in range(max_new_tokens):
                token = next_token(logits, temperature, top_k, top_p, generator)
                out[:, i] = token
                if on_token is not None:
                    on_token(token)
                if i + 1 < max_new_tokens:
                    logits = decoder.step(token)
        finally:
            net.train(was_training)
    return out
