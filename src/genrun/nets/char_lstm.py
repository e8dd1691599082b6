"""char-rnn's model (Karpathy 2015): embedding, a stack of LSTM layers, a linear head over characters."""

from __future__ import annotations

import torch
from torch import nn

from genrun.nets.base import Net
from genrun.nets.checks import require_positive

State = tuple[torch.Tensor, torch.Tensor]


class CharLSTM(Net):
    """Token ids (B×T) and an optional (h, c) state -> (logits B×T×vocab_size, new state).

    The state is what makes both truncated BPTT across batches and constant-cost sampling possible.
    """

    recurrent = True

    def __init__(self, vocab_size: int, n_embd: int = 64, hidden_size: int = 512, n_layer: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        require_positive(n_embd=n_embd, hidden_size=hidden_size, n_layer=n_layer)
        self.vocab_size, self.hidden_size, self.n_layer = int(vocab_size), int(hidden_size), int(n_layer)
        self.embed = nn.Embedding(vocab_size, n_embd)
        self.lstm = nn.LSTM(n_embd, hidden_size, num_layers=n_layer, dropout=dropout if n_layer > 1 else 0.0,
                            batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        out, state = self.lstm(self.embed(idx), state)
        return self.head(self.drop(out)), state
