"""Chapter 25's timeline: the shipped file is valid, cited and holds the published figures the chapter asserts."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from mmtutorial.data import timeline
from mmtutorial.data.timeline import TimelineError, load_timeline, parse_row

BIB = Path(__file__).resolve().parents[1] / "book" / "references.bib"
GOOD_ROW = {"name": "GPT-3", "date": "2020-05", "organisation": "OpenAI", "parameters": "175000000000",
            "training_flops": "3.14e23", "flops_source": "published", "training_tokens": "300000000000",
            "inputs": "text", "outputs": "text", "weights_released": "no", "reference": "brown2020language",
            "notes": ""}


@pytest.fixture(scope="module")
def rows():
    return {m.name: m for m in load_timeline()}


def test_every_reference_key_is_in_references_bib(rows):
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(encoding="utf-8"), flags=re.M))
    missing = sorted({key for m in rows.values() for key in m.references} - keys)
    assert not missing, f"timeline references missing from {BIB.name}: {missing}"


def test_dates_are_valid_and_ordered(rows):
    dates = [(m.year, m.month) for m in rows.values()]
    assert dates == sorted(dates) and all(1 <= month <= 12 for _, month in dates)


def test_published_figures(rows):
    assert rows["GPT"].parameters == 117e6 and rows["GPT"].date == "2018-06"
    assert rows["GPT-2"].parameters == 1.5e9 and rows["GPT-2"].date == "2019-02"
    assert rows["GPT-3"].parameters == 175e9 and rows["GPT-3"].date == "2020-05"
    assert rows["GPT-3"].training_flops == 3.14e23 and rows["GPT-3"].flops_source == "published"
    assert rows["DALL·E"].parameters == 12e9 and rows["DALL·E"].date == "2021-01" == rows["CLIP"].date
    assert rows["Transformer (big)"].date == "2017-06"
    # not published: left empty, never a rumour
    assert rows["GPT-4"].parameters is None and rows["GPT-4"].training_flops is None
    assert rows["GPT-4o"].parameters is None


def test_gpt3_is_text_only_and_unreleased_while_clip_and_dalle_are_multimodal(rows):
    assert rows["GPT-3"].inputs == ("text",) and not rows["GPT-3"].multimodal and not rows["GPT-3"].weights_released
    assert rows["CLIP"].multimodal and rows["DALL·E"].multimodal and rows["GPT-4"].multimodal


def test_parameters_positive_and_estimates_consistent(rows):
    for m in rows.values():
        assert m.parameters is None or m.parameters > 0
        if m.flops_source == "estimate 6ND":
            assert math.isclose(m.training_flops, timeline.six_nd(m.parameters, m.training_tokens), rel_tol=0.02)


def test_six_nd_matches_gpt3_published_compute(rows):
    gpt3 = rows["GPT-3"]
    assert abs(timeline.six_nd(gpt3.parameters, gpt3.training_tokens) / gpt3.training_flops - 1) < 0.01


def test_doubling_time():
    years = [2018.0, 2019.0, 2020.0]
    assert timeline.doubling_time_months(years, [1.0, 4.0, 16.0]) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="do not grow"):
        timeline.doubling_time_months(years, [16.0, 4.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        timeline.doubling_time_months(years, [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        timeline.doubling_time_months(years, [1.0, 2.0])


def test_gpt_training_flops_equals_torch_flop_counter():
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode
    num_layers, dim, vocab_size, seq_len, batch = 2, 32, 50, 12, 2
    config = transformers.GPT2Config(vocab_size=vocab_size, n_positions=16, n_embd=dim, n_layer=num_layers, n_head=4,
                                     bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, vocab_size, (batch, seq_len))
    with FlopCounterMode(display=False) as counter:
        logits = model(input_ids=ids).logits                                 # (batch, seq, vocab)
        torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab_size), ids[:, 1:].reshape(-1)).backward()
    assert counter.get_total_flops() == timeline.gpt_training_flops(num_layers, dim, vocab_size, seq_len, batch)
    with pytest.raises(ValueError, match="num_layers"):
        timeline.gpt_training_flops(0, dim, vocab_size, seq_len)


@pytest.mark.parametrize("field, value, message", [
    ("date", "2020-13", "YYYY-MM"), ("date", "May 2020", "YYYY-MM"), ("parameters", "-5", "positive"),
    ("parameters", "about 175B", "number"), ("flops_source", "", "go together"), ("flops_source", "rumour", "one of"),
    ("weights_released", "maybe", "'yes' or 'no'"), ("reference", "", "BibTeX"), ("inputs", "text+smell", "modalities"),
    ("name", " ", "name is empty")])
def test_malformed_rows_are_refused(field, value, message):
    assert parse_row(dict(GOOD_ROW)).parameters == 175e9
    with pytest.raises(TimelineError, match=re.escape(message)):
        parse_row({**GOOD_ROW, field: value})


def test_a_wrong_estimate_and_a_bad_file_are_refused(tmp_path):
    with pytest.raises(TimelineError, match="6ND estimate should be"):
        parse_row({**GOOD_ROW, "flops_source": "estimate 6ND", "training_flops": "1e20"})
    with pytest.raises(TimelineError, match="missing columns"):
        parse_row({"name": "x"})
    with pytest.raises(TypeError, match="dict"):
        parse_row(["GPT-3"])
    lines = timeline.TIMELINE_CSV.read_text(encoding="utf-8").splitlines()
    swapped = tmp_path / "swapped.csv"
    swapped.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(TimelineError, match="date order"):
        load_timeline(swapped)
    header = tmp_path / "header.csv"
    header.write_text("name,date\nGPT,2018-06\n", encoding="utf-8")
    with pytest.raises(TimelineError, match="header"):
        load_timeline(header)
    with pytest.raises(FileNotFoundError):
        load_timeline(tmp_path / "none.csv")


def test_chapter_25_checkers_accept_right_and_refuse_wrong_answers():
    import numpy as np
    from mmtutorial.exercises import ch25
    from mmtutorial.exercises._common import ExerciseError

    ch25.check_doubling_time(lambda years, values: 12 / np.polyfit(years, np.log2(values), 1)[0])
    with pytest.raises(ExerciseError, match="in years"):
        ch25.check_doubling_time(lambda years, values: 1 / np.polyfit(years, np.log2(values), 1)[0])
    ch25.check_gpt_training_flops(lambda *args: timeline.gpt_training_flops(*args))
    with pytest.raises(ExerciseError, match="forward pass only"):
        ch25.check_gpt_training_flops(lambda *args: timeline.gpt_training_flops(*args) // 3)
    with pytest.raises(ExerciseError, match="without the attention term"):
        ch25.check_gpt_training_flops(lambda layers, dim, vocab, seq: 6 * (12 * layers * dim ** 2 + dim * vocab) * seq)
    ch25.check_multimodal_names(lambda rows: [m.name for m in rows if m.multimodal])
    with pytest.raises(ExerciseError, match="GPT-3 reads and writes text only"):
        ch25.check_multimodal_names(lambda rows: [m.name for m in rows])
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        ch25.check_multimodal_names(lambda rows: (_ for _ in ()).throw(NotImplementedError))
