"""Incremental decoders: `prefill(ids B×T)` then `step(token B)`, each returning next-token logits (B×V).

A GPT with learned absolute positions cannot slide its cache (every cached key carries its position), so
when the cache is full the cached decoder refills it from the last `keep` tokens (3/4 of the window by
default): one prefill every `block_size - keep` tokens, a bounded cost per token however long the text.
"""

from __future__ import annotations

import torch


class GPTCachedDecoder:
    """Key/value cache: each new token runs through the network alone."""

    def __init__(self, net, batch: int, keep: int | None = None):
        self.net, self.block_size = net, net.block_size
        self.keep = max(1, min(self.block_size - 1, keep or self.block_size * 3 // 4))
        self.cache = net.new_cache(batch)
        self.history: torch.Tensor | None = None

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, -self.block_size :]
        self.cache.reset()
        self.history = ids
        return self.net(ids, self.cache)[:, -1]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        self.history = torch.cat([self.history, token[:, None]], dim=1)[:, -self.block_size :]
        if self.cache.length >= self.block_size:
            return self.prefill(self.history[:, -self.keep :])
        return self.net(token[:, None], self.cache)[:, -1]


class GPTWindowDecoder:
    """No cache (nanoGPT's `generate`): every step recomputes the whole last window of tokens."""

    def __init__(self, net, batch: int):
        self.net, self.block_size = net, net.block_size
        self.history: torch.Tensor | None = None

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.history = ids[:, -self.block_size :]
        return self.net(self.history)[:, -1]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        self.history = torch.cat([self.history, token[:, None]], dim=1)[:, -self.block_size :]
        return self.net(self.history)[:, -1]


class RecurrentDecoder:
    """An RNN carries its state: each new token is one step of the recurrence."""

    def __init__(self, net, batch: int):
        self.net, self.state = net, None

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.net(ids, None)
        return logits[:, -1]

    def step(self, token: torch.Tensor) -> torch.Tensor:
        logits, self.state = self.net(token[:, None], self.state)
        return logits[:, -1]


def decoder_for(net, batch: int, use_cache: bool = True):
    if getattr(net, "recurrent", False):
        return RecurrentDecoder(net, batch)
    return GPTCachedDecoder(net, batch) if use_cache else GPTWindowDecoder(net, batch)
