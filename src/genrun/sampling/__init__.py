"""Token-by-token decoding, kept apart from the networks (as diffusers keeps schedulers apart from models).

- `filters.next_token`: temperature (0 = greedy), top-k and top-p (nucleus) choice of the next token.
- `decoders`: incremental decoders with a constant cost per new token (GPT key/value cache, LSTM state),
  plus the cache-less GPT decoder that recomputes its window (for comparison and benchmarks).
- `generate.generate`: the loop, calling back with every new token so text can stream to a terminal.
"""

from genrun.sampling.decoders import decoder_for
from genrun.sampling.filters import next_token
from genrun.sampling.generate import generate

__all__ = ["decoder_for", "generate", "next_token"]
