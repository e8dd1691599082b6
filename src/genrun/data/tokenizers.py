"""Character and byte tokenizers for the text family.

Kept apart from the datamodules (no Lightning import) because `genrun sample` rebuilds a tokenizer from
the checkpoint's data description alone: `tokenizer_from_info(checkpoint["genrun"]["data"])`.
"""

from __future__ import annotations

import codecs

import torch

from genrun.errors import GenrunError

KINDS = ("char", "byte")
# Stands in for characters of the validation text that the training split never shows.
UNKNOWN = "\ufffd"


class CharTokenizer:
    """One id per character of a fixed vocabulary (a plain list of str, saved with the model)."""

    kind = "char"

    def __init__(self, vocab: list[str]):
        self.vocab = list(vocab)
        self.index = {ch: i for i, ch in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(ch for ch in text if ch not in self.index))

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        missing = self.unknown(text)
        if missing:
            shown = " ".join(repr(ch) for ch in missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise GenrunError(f"{what} has {len(missing)} character(s) outside the model's {self.vocab_size}-character "
                              f"vocabulary: {shown} (remove them, or train with tokenizer=byte)")
        return torch.tensor([self.index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in ids)

    def stream_decoder(self):
        """A function id -> text piece, for printing tokens as they are generated."""
        return lambda i: self.vocab[int(i)]

    def default_prompt(self) -> str:
        return "\n" if "\n" in self.index else self.vocab[0]


class ByteTokenizer:
    """Raw bytes, vocabulary 256: trains on a file's bytes as they are (any encoding, or binary data).

    Prompts are encoded as UTF-8; output is shown as UTF-8, bytes that do not decode becoming U+FFFD.
    """

    kind = "byte"
    vocab_size = 256

    def unknown(self, corpus) -> list[str]:
        return []

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        """A prompt's ids: its UTF-8 bytes."""
        return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self):
        """Bytes of one character can arrive over several steps: decode incrementally."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda i: decoder.decode(bytes([int(i)]))

    def default_prompt(self) -> str:
        return "\n"


def build_tokenizer(kind: str, train_part: str | bytes):
    """The tokenizer `kind`; a char vocabulary is the characters of the training part (bytes need none)."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer(sorted(set(train_part)))
    raise GenrunError(f"dataset.tokenizer={kind!r}: choose one of {', '.join(KINDS)}")


def tokenizer_from_info(data_info: dict):
    """The tokenizer a text checkpoint was trained with, from its stored data description."""
    kind = data_info.get("tokenizer")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char" and isinstance(data_info.get("vocab"), list):
        return CharTokenizer(data_info["vocab"])
    raise GenrunError("checkpoint holds no text vocabulary (data.tokenizer / data.vocab); was it trained by the "
                      "text family?")
