"""mmtutorial.tokenizers: byte-level BPE against a naive trainer, Hugging Face `tokenizers` and round trips."""
import json
import random
from collections import Counter

import pytest

from mmtutorial.tokenizers import (ENDOFTEXT, GPT2_SPLIT_PATTERN, SPLIT_PATTERN, BPETokenizer, _merge,
                                   bytes_to_unicode, split_text)

TEXT = ("In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.\n"
        "And God said, Let there be light: and there was light. 1:3 The light's 22 days -- don't stop!\n") * 20
UNICODE = "naïve café — 你好，世界！ 🤖🎉 Ελληνικά, русский; ☃ 𝔘𝔫𝔦 \t\n\r\x00 end"


def naive_train(text: str, num_merges: int) -> list[tuple[int, int]]:
    """Recount every pair after every merge (the definition), same tie-break as the package."""
    chunks = [list(c.encode("utf-8")) for c in split_text(text)]
    merges = []
    for _ in range(num_merges):
        counts = Counter(p for c in chunks for p in zip(c, c[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        if counts[pair] < 2:
            break
        merges.append(pair)
        chunks = [_merge(c, pair, 255 + len(merges)) for c in chunks]
    return merges


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train(TEXT + UNICODE * 3, vocab_size=400)


def test_incremental_training_equals_the_naive_definition():
    fast = BPETokenizer.train(TEXT, vocab_size=256 + 80, special_tokens=())
    assert list(fast.merges) == naive_train(TEXT, 80)
    assert fast.vocab_size == 256 + 80


def test_training_is_deterministic_and_counts_special_tokens(tokenizer):
    again = BPETokenizer.train(TEXT + UNICODE * 3, vocab_size=400)
    assert list(again.merges) == list(tokenizer.merges)
    assert tokenizer.vocab_size == 400 and tokenizer.special_tokens == {ENDOFTEXT: 399}


def test_training_stops_when_nothing_repeats():
    small = BPETokenizer.train("abcdef", vocab_size=1000, special_tokens=())
    assert len(small.merges) == 0


def test_split_pattern_matches_gpt2_regex():
    regex = pytest.importorskip("regex")
    for text in (TEXT, "Hello world!! it's 2024, isn't it?\n\n  x  ", "你好，世界 🤖 naïve"):
        assert split_text(text) == regex.findall(GPT2_SPLIT_PATTERN, text)


def test_encode_matches_huggingface_tokenizers(tokenizer):
    pytest.importorskip("tokenizers")
    reference = tokenizer.to_huggingface()
    for text in (TEXT, UNICODE, "Let there be light 12345 !!"):
        assert reference.encode(text).ids == tokenizer.encode(text)
        assert reference.decode(tokenizer.encode(text)) == text


def test_round_trip_unicode_and_random_bytes(tokenizer):
    for text in (TEXT, UNICODE, "", " ", "😀" * 7, "x" + ENDOFTEXT + "y"):
        assert tokenizer.decode(tokenizer.encode(text)) == text
        assert tokenizer.decode(tokenizer.encode(text, allowed_special=False)) == text
    rng = random.Random(0)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        assert tokenizer.decode_bytes(tokenizer.encode_bytes(data)) == data
        as_text = data.decode("utf-8", errors="surrogateescape")
        assert tokenizer.decode(tokenizer.encode(as_text), errors="surrogateescape") == as_text


def test_special_tokens(tokenizer):
    eot = tokenizer.special_tokens[ENDOFTEXT]
    ids = tokenizer.encode("In the" + ENDOFTEXT + "earth")
    assert ids.count(eot) == 1 and ids == tokenizer.encode("In the") + [eot] + tokenizer.encode("earth")
    assert eot not in tokenizer.encode("In the" + ENDOFTEXT, allowed_special=False)


def test_merges_compress(tokenizer):
    assert len(tokenizer.encode(TEXT)) < 0.5 * len(TEXT.encode("utf-8"))


def test_save_load_round_trip(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "sub" / "bpe.json")
    loaded = BPETokenizer.load(path)
    assert loaded.merges == tokenizer.merges and loaded.special_tokens == tokenizer.special_tokens
    assert loaded.encode(UNICODE) == tokenizer.encode(UNICODE)
    assert [p.name for p in path.parent.iterdir()] == ["bpe.json"]        # no temp file left behind
    state = json.loads(path.read_text())
    assert state["pattern"] == SPLIT_PATTERN
    state["format"] = "something-else"
    (tmp_path / "bad.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="expected a dict with format='mmtutorial-bpe'"):
        BPETokenizer.load(tmp_path / "bad.json")


def test_bytes_to_unicode_is_a_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ"     # GPT-2's visible space


def test_errors(tokenizer):
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 257 .* got 100"):
        BPETokenizer.train(TEXT, vocab_size=100)
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 256 .* got 255"):
        BPETokenizer.train(TEXT, vocab_size=255, special_tokens=())
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        BPETokenizer.train(b"abc", vocab_size=300)
    with pytest.raises(TypeError, match="special tokens must be non-empty strings, got ''"):
        BPETokenizer.train(TEXT, vocab_size=300, special_tokens=[""])
    with pytest.raises(ValueError, match=r"token id 400 is out of range: expected 0 <= id < vocab_size=400"):
        tokenizer.decode([1, 400])
    with pytest.raises(ValueError, match="token id -1 is out of range"):
        tokenizer.decode([-1])
    with pytest.raises(TypeError, match="token ids must be ints, got str"):
        tokenizer.decode(["a"])
    with pytest.raises(TypeError, match="encode wants a str .* got bytes"):
        tokenizer.encode(b"abc")
    with pytest.raises(TypeError, match="encode_bytes wants bytes, got str"):
        tokenizer.encode_bytes("abc")
    with pytest.raises(ValueError, match=r"merge 0 = \(300, 1\) refers to an id that does not exist yet"):
        BPETokenizer([(300, 1)])


def test_merges_never_cross_a_special_token():
    """Training cuts the corpus at special tokens: no merge spans one, whatever the pair counts say.

    Joined across the separators the corpus reads "aqzbcqzg...", where "qz" (straddling the separator)
    is the most frequent pair, twice as frequent as any pair inside a document.
    """
    documents = ["aq", "zb", "cq", "zg"] * 50
    corpus = ENDOFTEXT.join(documents)
    trained = BPETokenizer.train(corpus, vocab_size=256 + 10 + 1)
    learnt = [trained.vocab[new_id] for new_id in trained.merges.values()]
    assert learnt == [b"aq", b"cq", b"zb", b"zg"]              # only pairs inside a document, ties by id
    special_bytes = set(ENDOFTEXT.encode())
    for token in learnt:
        assert any(token in document.encode() for document in set(documents)), token   # never across documents
        assert not set(token) & special_bytes, token           # never a piece of the special token's text
    eot = trained.special_tokens[ENDOFTEXT]
    ids = trained.encode(corpus)
    assert ids.count(eot) == len(documents) - 1                # every separator is its single id
    assert trained.encode(ENDOFTEXT) == [eot]
    assert trained.encode("aq" + ENDOFTEXT + "zb") == [trained.merges[(ord("a"), ord("q"))], eot,
                                                      trained.merges[(ord("z"), ord("b"))]]
    assert trained.decode(ids) == corpus


def test_special_tokens_of_other_names_cut_the_corpus_too():
    separator = "<|sep|>"
    trained = BPETokenizer.train(("ab" + separator) * 30 + "ba", vocab_size=256 + 5 + 1, special_tokens=[separator])
    assert [trained.vocab[i] for i in trained.merges.values()] == [b"ab"]   # never "abab" across a separator
    assert trained.encode(separator) == [trained.special_tokens[separator]]


def test_load_names_the_file_and_what_is_wrong(tokenizer, tmp_path):
    truncated = tmp_path / "truncated.json"
    truncated.write_text(tokenizer.save(tmp_path / "good.json").read_text()[:50])
    with pytest.raises(ValueError, match=r"cannot load a BPE tokeniser from .*truncated\.json: it is not a JSON file"):
        BPETokenizer.load(truncated)
    binary = tmp_path / "weights.json"
    binary.write_bytes(b"\x80\x04\x95 not text")
    with pytest.raises(ValueError, match=r"weights\.json: it is not a JSON file"):
        BPETokenizer.load(binary)
    state = tokenizer.to_dict()
    del state["merges"]
    no_merges = tmp_path / "no_merges.json"
    no_merges.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"no_merges\.json: the tokeniser has no 'merges'"):
        BPETokenizer.load(no_merges)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list\.json: not an mmtutorial BPE tokeniser: .* got list"):
        BPETokenizer.load(tmp_path / "list.json")
    (tmp_path / "bad_pairs.json").write_text(json.dumps({**tokenizer.to_dict(), "merges": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match=r"bad_pairs\.json: 'merges' must be a list of \[id, id\] pairs"):
        BPETokenizer.load(tmp_path / "bad_pairs.json")
    with pytest.raises(FileNotFoundError):
        BPETokenizer.load(tmp_path / "absent.json")
