"""Text corpora as one token stream in memory: a file, tiny shakespeare, the Python standard library.

The stream is split contiguously (the first 90% trains, the last 10% validates) so no validation text
leaks into training through overlapping windows. The character vocabulary comes from the training split
only; validation characters it lacks map to an UNKNOWN entry and are counted in `info()`.

`splits` hold non-overlapping (input, target) windows of `block_size` tokens in stream order (views, no
copy): the shape tasks/train.py expects, and consecutive windows let a recurrent net carry its state.
Training batches are drawn by the loaders below, whose draws depend only on (seed, epoch, batch index),
so a run resumed from any step sees the batches an uninterrupted run would.
"""

from __future__ import annotations

import logging
import os
import sysconfig
import urllib.request
from pathlib import Path

import numpy as np
import torch

from genrun.data.base import InMemoryDataModule
from genrun.data.loaders import _rank_and_world
from genrun.data.tokenizers import UNKNOWN, CharTokenizer, build_tokenizer
from genrun.errors import GenrunError

log = logging.getLogger(__name__)
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_FILE = "tinyshakespeare.txt"
BATCH_ORDERS = ("random", "contiguous")


def read_file_bytes(path: Path, key: str = "dataset.path") -> bytes:
    """The file's bytes, or one line naming what is wrong with it."""
    if not path.exists():
        raise GenrunError(f"{key}={path}: no such file")
    if path.is_dir():
        raise GenrunError(f"{key}={path}: is a directory, expected a text file")
    data = path.read_bytes()
    if not data:
        raise GenrunError(f"{key}={path}: the file is empty")
    return data


def decode_utf8(data: bytes, path: Path, key: str = "dataset.path") -> str:
    """The bytes as UTF-8 text, for the char tokenizer; else one line naming the first invalid byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GenrunError(f"{key}={path}: not UTF-8 text (invalid byte 0x{data[err.start]:02x} at offset "
                          f"{err.start}); convert it first (e.g. iconv -t UTF-8) or train on its raw bytes "
                          "with tokenizer=byte") from None


def encode_chars(text: str, tokenizer: CharTokenizer) -> torch.Tensor:
    """Vectorised char -> id through a code-point lookup table (a Python loop takes seconds on 10 MB)."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.long)
    unk = tokenizer.index.get(UNKNOWN, 0)
    table = np.full(max(int(points.max()), max(ord(c) for c in tokenizer.vocab)) + 1, unk, dtype=np.int64)
    for ch, i in tokenizer.index.items():
        table[ord(ch)] = i
    return torch.from_numpy(table[points])


def encode(corpus: str | bytes, tokenizer) -> torch.Tensor:
    """Token ids: characters through the vocabulary, or the raw bytes themselves (ids 0..255)."""
    if isinstance(tokenizer, CharTokenizer):
        return encode_chars(corpus, tokenizer)
    return torch.from_numpy(np.frombuffer(corpus, dtype=np.uint8).astype(np.int64))


def windows(stream: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping (input, next-token target) windows, in stream order, as views of the stream."""
    n = max(0, (len(stream) - 1) // block_size)
    return stream[: n * block_size].view(n, block_size), stream[1 : n * block_size + 1].view(n, block_size)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


class RandomWindowLoader:
    """nanoGPT's batches: `batch_size` windows at uniformly random offsets, drawn afresh every batch."""

    def __init__(self, stream, batch_size: int, block_size: int, seed: int, position):
        self.stream, self.batch_size, self.block_size = stream, batch_size, block_size
        self.seed, self.position = seed, position
        self.steps = torch.arange(block_size + 1)

    def __len__(self) -> int:
        return max(1, len(self.stream) // (self.batch_size * self.block_size))

    def __iter__(self):
        epoch, start = self.position()
        generator = _epoch_generator(self.seed, epoch)
        high = len(self.stream) - self.block_size
        device = self.stream.device
        for i in range(len(self)):
            offsets = torch.randint(high, (self.batch_size,), generator=generator)
            if i < start:
                continue  # a resumed epoch: skip the batches already trained on
            chunk = self.stream[(offsets[:, None] + self.steps).to(device)]
            yield chunk[:, :-1], chunk[:, 1:]


class ContiguousLoader:
    """char-rnn's batches: row b of batch i+1 continues row b of batch i, so an RNN can carry its state.

    Each epoch starts at a random shift below `block_size`, so window boundaries move between epochs.
    """

    def __init__(self, stream, batch_size: int, block_size: int, seed: int, position):
        self.stream, self.batch_size, self.block_size = stream, batch_size, block_size
        self.seed, self.position = seed, position
        self.row_length = (len(stream) - block_size - 1) // batch_size

    def __len__(self) -> int:
        return max(1, self.row_length // self.block_size)

    def __iter__(self):
        epoch, start = self.position()
        shift = int(torch.randint(self.block_size, (1,), generator=_epoch_generator(self.seed, epoch)))
        starts = shift + torch.arange(self.batch_size) * self.row_length
        steps = torch.arange(self.block_size + 1)
        device = self.stream.device
        for i in range(start, len(self)):
            chunk = self.stream[(starts[:, None] + i * self.block_size + steps).to(device)]
            yield chunk[:, :-1], chunk[:, 1:]


class RowWindowLoader:
    """Evaluation batches: `rows` parallel runs of consecutive windows (batch j holds window j of each run)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, rows: int):
        rows = max(1, min(rows, len(x)))
        per_row = len(x) // rows
        self.x = x[: rows * per_row].view(rows, per_row, -1)
        self.y = y[: rows * per_row].view(rows, per_row, -1)

    def __len__(self) -> int:
        return self.x.shape[1]

    def __iter__(self):
        for j in range(len(self)):
            yield self.x[:, j], self.y[:, j]


class TextDataModule(InMemoryDataModule):
    """Any file (`dataset=text dataset.path=FILE`): UTF-8 text for tokenizer=char, any bytes for tokenizer=byte.

    Subclasses change where the corpus comes from (`corpus_file`, or `read_text` and `read_bytes`).
    """

    name = "text"

    def __init__(self, path: str | None = None, tokenizer: str = "char", block_size: int = 256,
                 batch_size: int = 64, eval_batch_size: int = 64, val_fraction: float = 0.1,
                 batch_order: str = "random", seed: int = 0, max_chars: int | None = None,
                 vocab_size: int | None = None):
        super().__init__(batch_size=batch_size, shuffle_seed=seed)
        if batch_order not in BATCH_ORDERS:
            raise GenrunError(f"dataset.batch_order={batch_order!r}: choose one of {', '.join(BATCH_ORDERS)}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise GenrunError(f"dataset.val_fraction={val_fraction}: must be in [0, 1)")
        if int(block_size) < 1:
            raise GenrunError(f"dataset.block_size={block_size}: must be at least 1")
        self.path = None if path in (None, "") else Path(path).expanduser()
        self.tokenizer_kind = str(tokenizer)
        self.block_size, self.eval_batch_size = int(block_size), int(eval_batch_size)
        self.val_fraction, self.batch_order, self.seed = float(val_fraction), batch_order, int(seed)
        self.max_chars = None if max_chars is None else int(max_chars)
        self.requested_vocab_size = vocab_size
        self.tokenizer = None
        self.streams: dict[str, torch.Tensor] = {}
        self.train_dataloader_cache = None

    def corpus_file(self) -> tuple[Path, str]:
        """(the file to read, the config key that names it in errors)."""
        if self.path is None:
            raise GenrunError("dataset.path: required for dataset=text (dataset.path=FILE)")
        return self.path, "dataset.path"

    def read_bytes(self) -> tuple[bytes, str]:
        """(the file's bytes as they are, where they came from): what tokenizer=byte trains on."""
        path, key = self.corpus_file()
        return read_file_bytes(path, key), str(path.resolve())

    def read_text(self) -> tuple[str, str]:
        """(the file's text, where it came from): what tokenizer=char trains on; it must be UTF-8."""
        path, key = self.corpus_file()
        return decode_utf8(read_file_bytes(path, key), path, key), str(path.resolve())

    def load(self):
        # The byte tokenizer never decodes: any bytes train as they are (max_chars then counts bytes).
        corpus, source = self.read_bytes() if self.tokenizer_kind == "byte" else self.read_text()
        if self.max_chars is not None:
            corpus = corpus[: self.max_chars]
        n_val = int(round(len(corpus) * self.val_fraction))
        train_part, val_part = corpus[: len(corpus) - n_val], corpus[len(corpus) - n_val :]
        tokenizer = build_tokenizer(self.tokenizer_kind, train_part)
        unseen = tokenizer.unknown(val_part)
        if unseen and UNKNOWN not in tokenizer.index:
            tokenizer = CharTokenizer([*tokenizer.vocab, UNKNOWN])
        self.tokenizer = tokenizer
        train, val = encode(train_part, tokenizer), encode(val_part, tokenizer)
        if len(train) < self.block_size + 2:
            raise GenrunError(f"{self._what()}: {len(train)} training tokens, fewer than block_size + 2 = "
                              f"{self.block_size + 2}; use a longer text or a smaller model.block_size")
        if self.requested_vocab_size is not None and int(self.requested_vocab_size) < tokenizer.vocab_size:
            raise GenrunError(f"dataset.vocab_size={self.requested_vocab_size}: the text needs "
                              f"{tokenizer.vocab_size}; leave it null to take it from the data")
        self.streams = {"train": train, "val": val}
        self.details = {
            "source": source, "dataset": self.name, "tokenizer": tokenizer.kind,
            "vocab": getattr(tokenizer, "vocab", None), "vocab_size": tokenizer.vocab_size,
            "split": f"contiguous: first {1 - self.val_fraction:.0%} train, last {self.val_fraction:.0%} "
                     "validation (test = validation)",
            "test_split": "validation split (a text has no separate test part)",
            "val_fraction": self.val_fraction, "characters": len(corpus),
            "tokens": {"train": len(train), "val": len(val)}, "block_size": self.block_size,
            "batch_order": self.batch_order,
            "val_unseen_characters": sum(val_part.count(ch) for ch in unseen),
        }
        val_windows = windows(val, self.block_size)
        return {"train": windows(train, self.block_size), "val": val_windows, "test": val_windows}

    def _what(self) -> str:
        return f"dataset.path={self.path}" if self.path else f"dataset={self.name}"

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        device = self._device()
        self.streams = {k: v.to(device) for k, v in self.streams.items()}

    def info(self) -> dict:
        self.setup()
        sizes = {name: len(pair[0]) for name, pair in self.splits.items()}
        return {**self.details, "split_sizes": sizes, "split_unit": f"windows of {self.block_size} tokens"}

    def position(self) -> tuple[int, int]:
        """(data epoch, batches of it already trained), counted from the batches trained so far.

        Not Lightning's epoch counter: a run stopped by max_steps is saved as if its epoch had ended, so
        after a resume that counter is one ahead of the data.
        """
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        done = trainer.fit_loop.epoch_loop.batch_progress.total.completed
        per_epoch = len(self.train_dataloader_cache) if self.train_dataloader_cache is not None else 1
        limit = trainer.limit_train_batches
        if isinstance(limit, int) and not isinstance(limit, bool):
            per_epoch = min(per_epoch, limit)
        elif isinstance(limit, float) and limit < 1.0:
            per_epoch = max(1, int(per_epoch * limit))
        return divmod(done, max(1, per_epoch))

    def train_dataloader(self):
        self.setup()
        cls = RandomWindowLoader if self.batch_order == "random" else ContiguousLoader
        rank, _world = _rank_and_world()  # each DDP process draws its own windows
        self.train_dataloader_cache = cls(self.streams["train"], self.batch_size, self.block_size,
                                          self.seed + 7919 * rank, self.position)
        return self.train_dataloader_cache

    def _eval_loader(self, split: str):
        self.setup()
        x, y = self.splits[split]
        return RowWindowLoader(x, y, self.eval_batch_size) if len(x) else []

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    def state_dict(self) -> dict:
        # Batches depend on (seed, epoch, index) alone; the seed is recorded to refuse a mismatched resume.
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise GenrunError(f"dataset.seed={self.seed}: the run being resumed used {state['seed']}")


class ShakespeareDataModule(TextDataModule):
    """Tiny shakespeare (Karpathy's char-rnn corpus, 1.1 MB): `dataset.path`, else data_dir, else downloaded."""

    name = "shakespeare"

    def __init__(self, data_dir: str, url: str = SHAKESPEARE_URL, **kwargs):
        super().__init__(**kwargs)
        self.data_dir, self.url = Path(data_dir), url

    def corpus_file(self) -> tuple[Path, str]:
        if self.path is not None:
            return super().corpus_file()
        target = self.data_dir / SHAKESPEARE_FILE
        if not target.is_file():
            download(self.url, target)
        return target, "dataset=shakespeare file"


def download(url: str, target: Path, timeout: float = 30.0) -> None:
    """Fetch `url` into `target` atomically; offline, one line saying where to put the file instead."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    log.info("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            out.write(response.read())
        os.replace(tmp, target)
    except Exception as err:  # offline, DNS, HTTP errors: all end the same way
        tmp.unlink(missing_ok=True)
        raise GenrunError(f"dataset=shakespeare: {target} is missing and downloading {url} failed "
                          f"({type(err).__name__}); put tiny shakespeare's input.txt at {target} or pass "
                          "dataset.path=FILE") from None


class PythonSourceDataModule(TextDataModule):
    """The running Python's standard-library `.py` files, sorted by relative path: a real offline corpus.

    Each file is preceded by a `# file: <relative path>` line. Test suites are left out unless asked for.
    """

    name = "python_source"

    def __init__(self, include_tests: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.include_tests = bool(include_tests)

    def read_text(self) -> tuple[str, str]:
        root = Path(sysconfig.get_paths()["stdlib"])
        skip = {"site-packages", "dist-packages"} | (set() if self.include_tests else {"test", "tests", "idle_test"})
        files = []
        for folder, subdirs, names in os.walk(root):
            subdirs[:] = [d for d in subdirs if d not in skip]  # prune: site-packages can be huge
            files += [Path(folder, name) for name in names if name.endswith(".py")]
        parts, total = [], 0
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
            rel = path.relative_to(root)
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            parts.append(f"# file: {rel.as_posix()}\n{text}\n")
            total += len(parts[-1])
            if self.max_chars is not None and total >= self.max_chars:
                break
        if not parts:
            raise GenrunError(f"dataset=python_source: no readable .py files under {root}")
        return "".join(parts), f"python stdlib {root} ({len(parts)} files)"

    def read_bytes(self) -> tuple[bytes, str]:
        """The same text as UTF-8 bytes: it was decoded strictly, so encoding it back is exact."""
        text, source = self.read_text()
        return text.encode("utf-8"), source
