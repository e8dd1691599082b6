"""The sampling loop shared by `genrun sample`, end-of-training samples and TensorBoard text samples."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from genrun.sampling.decoders import decoder_for
from genrun.sampling.filters import next_token
from genrun.sampling.threads import one_cpu_thread


@torch.no_grad()
def generate_stream(net, prompt: torch.Tensor, max_new_tokens: int, temperature: float | torch.Tensor = 1.0,
                    top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                    use_cache: bool = True) -> Iterator[torch.Tensor]:
    """Each new column of B token ids continuing `prompt` (B×T, T ≥ 1), yielded as soon as it is drawn.

    Nothing is kept here: the decoders hold at most a context window, so memory does not grow with
    max_new_tokens, and the caller decides what to keep of the text.
    """
    was_training = net.training
    net.eval()
    decoder = decoder_for(net, prompt.shape[0], use_cache)
    with one_cpu_thread(prompt.device):
        try:
            logits = decoder.prefill(prompt)
            for i in range(max_new_tokens):
                token = next_token(logits, temperature, top_k, top_p, generator)
                yield token
                if i + 1 < max_new_tokens:
                    logits = decoder.step(token)
        finally:
            net.train(was_training)


@torch.no_grad()
def generate(net, prompt: torch.Tensor, max_new_tokens: int, temperature: float | torch.Tensor = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, on_token: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """New token ids (B×max_new_tokens) continuing `prompt` (B×T, T ≥ 1), held in memory.

    `on_token` receives each new column of B ids as soon as it is drawn (for streaming). For continuations
    too long to hold, iterate `generate_stream` instead.
    """
    out = torch.empty(prompt.shape[0], max_new_tokens, dtype=torch.long, device=prompt.device)
    for i, token in enumerate(generate_stream(net, prompt, max_new_tokens, temperature, top_k, top_p, generator,
                                              use_cache)):
        out[:, i] = token
        if on_token is not None:
            on_token(token)
    return out
