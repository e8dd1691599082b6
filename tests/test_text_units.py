"""The text family's parts in process: tokenizers, text data, decoding filters, KV cache, loaders."""

from __future__ import annotations

import pytest
import torch

from genrun.data.text import (
    ContiguousLoader,
    PythonSourceDataModule,
    RandomWindowLoader,
    TextDataModule,
    windows,
)
from genrun.data.tokenizers import UNKNOWN, ByteTokenizer, CharTokenizer, tokenizer_from_info
from genrun.errors import GenrunError
from genrun.nets.char_lstm import CharLSTM
from genrun.nets.gpt import GPT
from genrun.sampling import generate, next_token
from genrun.sampling.decoders import GPTCachedDecoder, GPTWindowDecoder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny nets: a second thread only spins (badly so on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _module(tmp_path, text: str | bytes, **kwargs) -> TextDataModule:
    path = tmp_path / "corpus.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    module = TextDataModule(path=str(path), **{"block_size": 8, "batch_size": 4, **kwargs})
    module.setup()
    return module


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"), (b"ok \xff\xfe bad", "not UTF-8 text")])
def test_bad_files_are_named_in_one_line(tmp_path, content, message):
    with pytest.raises(GenrunError) as err:
        _module(tmp_path, content)
    assert message in str(err.value) and "corpus.txt" in str(err.value) and "\n" not in str(err.value)


def test_missing_path_and_no_path(tmp_path):
    with pytest.raises(GenrunError, match="no such file"):
        TextDataModule(path=str(tmp_path / "nope.txt")).setup()
    with pytest.raises(GenrunError, match="dataset.path"):
        TextDataModule(path=None).setup()


def test_contiguous_split_vocab_from_training_part_and_unseen_characters(tmp_path):
    text = "abcabcabc" * 20 + "abcz"  # 'z' only in the last 10%
    module = _module(tmp_path, text)
    info = module.info()
    n_val = round(len(text) * 0.1)
    assert info["tokens"] == {"train": len(text) - n_val, "val": n_val}
    assert info["vocab"] == ["a", "b", "c", UNKNOWN] and info["vocab_size"] == 4
    assert info["val_unseen_characters"] == 1 and "contiguous" in info["split"]
    train = module.streams["train"]
    assert CharTokenizer(info["vocab"]).decode(train.tolist()) == text[: len(text) - n_val]
    x, y = module.splits["train"]
    assert x.shape[1] == 8 and torch.equal(x[0, 1:], y[0, :-1]) and torch.equal(x[1, 0], y[0, -1])


def test_byte_tokenizer_takes_any_text_and_streams_multibyte_characters(tmp_path):
    module = _module(tmp_path, "naïve café ☃ " * 20, tokenizer="byte")
    info = module.info()
    assert info["vocab_size"] == 256 and info["tokenizer"] == "byte"
    tok = tokenizer_from_info(info)
    ids = tok.encode("héllo ☃")
    piece = tok.stream_decoder()
    assert "".join(piece(i) for i in ids) == "héllo ☃" == tok.decode(ids)


def test_char_tokenizer_lists_unknown_prompt_characters_once():
    tok = CharTokenizer(list("abc \n"))
    with pytest.raises(GenrunError) as err:
        tok.encode("ab☃xx", what="prompt='ab☃xx'")
    message = str(err.value)
    assert "'☃' 'x'" in message and "tokenizer=byte" in message and "\n" not in message


def test_python_source_is_a_fixed_real_corpus():
    a = PythonSourceDataModule(max_chars=30_000, block_size=16)
    b = PythonSourceDataModule(max_chars=30_000, block_size=16)
    text_a, source = a.read_text()
    assert text_a == b.read_text()[0] and text_a.startswith("# file: ") and "stdlib" in source
    assert "def " in text_a or "import " in text_a


def test_random_loader_resumes_mid_epoch_with_the_same_batches():
    stream = torch.arange(1000)
    full = list(RandomWindowLoader(stream, 4, 8, seed=3, position=lambda: (2, 0)))
    tail = list(RandomWindowLoader(stream, 4, 8, seed=3, position=lambda: (2, 5)))
    assert len(tail) == len(full) - 5
    for (xa, ya), (xb, yb) in zip(full[5:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa[:, 1:], ya[:, :-1])
    other_epoch = list(RandomWindowLoader(stream, 4, 8, seed=3, position=lambda: (3, 0)))
    assert not torch.equal(full[0][0], other_epoch[0][0])


def test_contiguous_loader_rows_continue_each_other():
    stream = torch.arange(1000)
    batches = list(ContiguousLoader(stream, 4, 8, seed=0, position=lambda: (0, 0)))
    for (x0, _), (x1, _) in zip(batches, batches[1:], strict=False):
        assert torch.equal(x0[:, -1] + 1, x1[:, 0])


def test_windows_are_views():
    stream = torch.arange(20)
    x, y = windows(stream, 6)
    assert x.shape == (3, 6) and x.data_ptr() == stream.data_ptr() and torch.equal(y, x + 1)


def test_temperature_zero_is_greedy_and_filters_restrict_the_support():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    assert next_token(logits, 0.0).tolist() == [1, 0]
    assert next_token(logits, 1.0, top_k=1, generator=g).tolist() == [1, 0]
    assert next_token(logits, 5.0, top_p=1e-6, generator=g).tolist() == [1, 0]
    draws = {int(next_token(logits[:1], 10.0, top_k=2, generator=g)) for _ in range(200)}
    assert draws == {1, 3}
    # per-row temperatures: row 0 greedy, row 1 sampled
    assert int(next_token(logits, torch.tensor([0.0, 1.0]), generator=g)[0]) == 1


def test_kv_cache_gives_the_logits_of_full_recomputation():
    torch.manual_seed(0)
    net = GPT(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16).eval()
    prompt = torch.randint(11, (2, 5))
    cached, window = GPTCachedDecoder(net, 2), GPTWindowDecoder(net, 2)
    a, b = cached.prefill(prompt), window.prefill(prompt)
    with torch.no_grad():
        for _ in range(16 - 5):  # up to a full window the two see the same context
            assert torch.allclose(a, b, atol=1e-5)
            token = a.argmax(-1)
            a, b = cached.step(token), window.step(token)
        # past the window, the cache refills from the last 3/4 of it: the same as recomputing that context
        for _ in range(30):
            token = a.argmax(-1)
            a = cached.step(token)
            reference = net(cached.history[:, -cached.cache.length :])[:, -1]
            assert torch.allclose(a, reference, atol=1e-5)


class _CountingNet(torch.nn.Module):
    """Wraps a net and records how many positions each call processes."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []
        self.recurrent, self.block_size = getattr(net, "recurrent", False), getattr(net, "block_size", None)

    def new_cache(self, batch):
        return self.net.new_cache(batch)

    def forward(self, idx, *args):
        self.calls.append(idx.shape[1])
        return self.net(idx, *args)


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_cost_per_token_does_not_grow_with_length(kind):
    net = GPT(13, block_size=16, n_layer=1, n_head=1, n_embd=8) if kind == "gpt" else CharLSTM(13, 8, 16, 1)
    counting = _CountingNet(net.eval())
    generate(counting, torch.zeros(1, 3, dtype=torch.long), 300, 1.0, generator=torch.Generator().manual_seed(0))
    early, late = counting.calls[12:156], counting.calls[156:]  # whole refill cycles of 4 (16 - 12) tokens
    assert max(counting.calls) <= 16
    # positions computed per new token (amortised over cache refills) stay flat as the text grows
    assert abs(sum(early) / len(early) - sum(late) / len(late)) < 0.2
    assert sum(late) / len(late) <= (4.0 if kind == "gpt" else 1.0)


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_same_seed_same_text(kind):
    torch.manual_seed(0)
    net = GPT(13, block_size=16, n_layer=1, n_head=1, n_embd=8) if kind == "gpt" else CharLSTM(13, 8, 16, 1)
    prompt = torch.zeros(3, 2, dtype=torch.long)

    def draw(seed):
        return generate(net, prompt, 40, 0.9, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))


def test_byte_tokenizer_decodes_invalid_sequences_without_error():
    assert ByteTokenizer().decode([0xFF, 0x41]) == "\ufffdA"
