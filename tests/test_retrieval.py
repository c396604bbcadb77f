"""mmtutorial.retrieval against scikit-learn, torch and torchmetrics, plus tie rules, bad-input errors and
the chapter 13 exercise checkers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import label_ranking_average_precision_score, top_k_accuracy_score
from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances
from torch.testing import assert_close

from mmtutorial import retrieval
from mmtutorial.exercises import ExerciseError, ch13


def _embeddings(seed: int, num: int, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(num, dim))                # (num, dim) float64


# --------------------------------------------------------------------------------------------------
# Similarities and distances
# --------------------------------------------------------------------------------------------------
def test_cosine_example_from_the_errata():
    cosine = retrieval.cosine_similarity_matrix([[1, 2, 3]], [[4, 5, 6]])
    assert cosine.shape == (1, 1)
    assert math.isclose(cosine[0, 0], 32 / math.sqrt(14 * 77), rel_tol=1e-12)
    assert round(float(cosine[0, 0]), 4) == 0.9746                           # not 0.765


def test_cosine_matrix_matches_sklearn_and_torch():
    queries, items = _embeddings(0, 7), _embeddings(1, 11)
    ours = retrieval.cosine_similarity_matrix(queries, items)                  # (7, 11) NumPy
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64
    assert_close(ours, cosine_similarity(queries, items), rtol=1e-12, atol=1e-12)
    assert_close(retrieval.cosine_similarity_matrix(queries), cosine_similarity(queries), rtol=1e-12, atol=1e-12)
    q32, i32 = torch.tensor(queries, dtype=torch.float32), torch.tensor(items, dtype=torch.float32)
    torch_cos = F.cosine_similarity(q32[:, None, :], i32[None, :, :], dim=-1)  # (7, 11) by broadcasting
    ours_torch = retrieval.cosine_similarity_matrix(q32, i32)
    assert isinstance(ours_torch, torch.Tensor) and ours_torch.dtype == torch.float32
    assert_close(ours_torch, torch_cos, rtol=1e-5, atol=1e-6)


def test_cosine_of_zero_vector_is_zero_like_sklearn():
    vectors = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    assert_close(retrieval.cosine_similarity_matrix(vectors), cosine_similarity(vectors))
    assert retrieval.cosine_similarity_matrix(vectors)[0, 1] == 0.0


def test_cosine_is_scale_invariant_and_bounded():
    queries, items = _embeddings(2, 5), _embeddings(3, 6)
    base = retrieval.cosine_similarity_matrix(queries, items)
    assert_close(retrieval.cosine_similarity_matrix(queries * 7.5, items * 0.01), base, rtol=1e-12, atol=1e-12)
    parallel = retrieval.cosine_similarity_matrix(queries, queries * 3.0)
    assert np.all(np.abs(parallel) <= 1.0) and np.allclose(np.diag(parallel), 1.0)


def test_dot_product_matrix():
    queries, items = _embeddings(4, 3), _embeddings(5, 4)
    assert_close(retrieval.dot_product_matrix(queries, items), queries @ items.T)


def test_euclidean_matches_sklearn_and_cdist():
    queries, items = _embeddings(6, 9), _embeddings(7, 5)
    assert_close(retrieval.euclidean_distance_matrix(queries, items), euclidean_distances(queries, items),
                 rtol=1e-10, atol=1e-10)
    assert_close(retrieval.euclidean_distance_matrix(queries, items, squared=True),
                 euclidean_distances(queries, items, squared=True), rtol=1e-10, atol=1e-10)
    tensor_q, tensor_i = torch.from_numpy(queries), torch.from_numpy(items)
    assert_close(retrieval.euclidean_distance_matrix(tensor_q, tensor_i), torch.cdist(tensor_q, tensor_i),
                 rtol=1e-10, atol=1e-10)
    self_distance = retrieval.euclidean_distance_matrix(queries)
    assert np.all(np.diag(self_distance) == 0.0)                               # exactly zero, not 1e-8
    assert_close(self_distance, euclidean_distances(queries), rtol=1e-10, atol=1e-10)


def test_unit_vector_identity_and_same_ranking():
    queries = retrieval.normalize(_embeddings(8, 20))
    items = retrieval.normalize(_embeddings(9, 30))
    assert_close(np.linalg.norm(queries, axis=1), np.ones(20))
    cosine = retrieval.cosine_similarity_matrix(queries, items)
    squared = retrieval.euclidean_distance_matrix(queries, items, squared=True)
    assert_close(retrieval.squared_distance_from_cosine(cosine), squared, rtol=1e-10, atol=1e-10)
    assert np.array_equal(retrieval.rank_items(cosine), retrieval.rank_items(-squared))
    # Without normalisation the identity, and the equal ranking, fail.
    raw_q, raw_i = _embeddings(8, 20) * np.linspace(0.2, 5, 20)[:, None], _embeddings(9, 30) * 3
    raw_squared = retrieval.euclidean_distance_matrix(raw_q, raw_i, squared=True)
    assert not np.allclose(retrieval.squared_distance_from_cosine(retrieval.cosine_similarity_matrix(raw_q, raw_i)),
                           raw_squared)


def test_normalize_matches_torch():
    tensor = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    assert_close(retrieval.normalize(tensor), F.normalize(tensor, dim=-1))
    assert_close(retrieval.normalize(np.zeros((2, 3))), np.zeros((2, 3)))


def test_embedding_shape_errors():
    with pytest.raises(ValueError, match=r"shape \(n, dim\).*x\[None\]"):
        retrieval.cosine_similarity_matrix(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match="same dim"):
        retrieval.euclidean_distance_matrix(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(TypeError, match="numbers"):
        retrieval.dot_product_matrix(np.array([["a", "b"]]), None)


# --------------------------------------------------------------------------------------------------
# Ranking and metrics
# --------------------------------------------------------------------------------------------------
def test_rank_items_is_a_stable_descending_sort():
    similarity = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    assert retrieval.rank_items(similarity).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]
    assert retrieval.rank_items(similarity, k=2).tolist() == [[1, 3], [0, 1]]
    scores = _embeddings(10, 6, 40)
    assert np.array_equal(retrieval.rank_items(torch.from_numpy(scores)), np.argsort(-scores, axis=1))


def test_recall_matches_sklearn_top_k_accuracy():
    rng = np.random.default_rng(11)
    similarity = rng.normal(size=(40, 25))                                     # (queries, items)
    correct = rng.integers(0, 25, 40)
    for k in (1, 2, 5, 10, 24):
        expected = top_k_accuracy_score(correct, similarity, k=k, labels=np.arange(25))
        assert math.isclose(retrieval.recall_at_k(similarity, k, correct), expected, rel_tol=1e-12)
        fraction = retrieval.recall_at_k(similarity, k, correct, fraction_of_positives=True)
        assert math.isclose(fraction, expected, rel_tol=1e-12)                  # one positive: same thing
    assert retrieval.recall_at_k(similarity, 25, correct) == 1.0


def test_mrr_matches_sklearn_lrap_even_with_ties():
    # With one correct label per row, label-ranking average precision is 1 / rank with ties counted
    # against the label: exactly our reciprocal rank.
    rng = np.random.default_rng(12)
    similarity = rng.integers(0, 4, size=(60, 8)).astype(float)               # many ties
    correct = rng.integers(0, 8, 60)
    relevant = np.zeros((60, 8), dtype=bool)
    relevant[np.arange(60), correct] = True
    expected = label_ranking_average_precision_score(relevant, similarity)
    assert math.isclose(retrieval.mean_reciprocal_rank(similarity, correct), expected, rel_tol=1e-12)
    assert math.isclose(retrieval.mean_reciprocal_rank(similarity, relevant), expected, rel_tol=1e-12)


def test_paired_default_equals_diagonal_indices():
    similarity = _embeddings(13, 12, 12)
    diagonal = np.arange(12)
    for k in (1, 3):
        assert retrieval.recall_at_k(similarity, k) == retrieval.recall_at_k(similarity, k, diagonal)
    assert retrieval.mean_reciprocal_rank(similarity) == retrieval.mean_reciprocal_rank(similarity, diagonal)
    # Extra distractor items after the paired ones are allowed.
    assert retrieval.recall_at_k(_embeddings(14, 5, 9), 3) == retrieval.recall_at_k(_embeddings(14, 5, 9), 3,
                                                                                    np.arange(5))


def test_multi_positive_against_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics")
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalRecall

    generator = torch.Generator().manual_seed(15)
    # Positive scores: torchmetrics 1.9's RetrievalRecall counts an item as retrieved only if its score is > 0.
    similarity = 0.1 + torch.rand(30, 20, generator=generator, dtype=torch.float64)     # distinct, positive
    relevant = torch.rand(30, 20, generator=generator) < 0.15
    relevant[torch.arange(30), torch.randint(0, 20, (30,), generator=generator)] = True  # >= 1 each
    indexes = torch.arange(30)[:, None].expand(30, 20).reshape(-1)
    flat_scores, flat_target = similarity.reshape(-1), relevant.reshape(-1)
    for k in (1, 3, 10):
        hit_rate = RetrievalHitRate(top_k=k)(flat_scores, flat_target, indexes=indexes).item()
        recall = RetrievalRecall(top_k=k)(flat_scores, flat_target, indexes=indexes).item()
        assert math.isclose(retrieval.recall_at_k(similarity, k, relevant), hit_rate, rel_tol=1e-6)
        assert math.isclose(retrieval.recall_at_k(similarity, k, relevant.numpy(), fraction_of_positives=True),
                            recall, rel_tol=1e-6)
    mrr = RetrievalMRR()(flat_scores, flat_target, indexes=indexes).item()
    assert math.isclose(retrieval.mean_reciprocal_rank(similarity, relevant), mrr, rel_tol=1e-6)
    assert torchmetrics is not None


def test_ties_count_against_the_query():
    constant = np.zeros((6, 6))
    assert retrieval.recall_at_k(constant, 1) == 0.0                            # no credit for a tie
    assert retrieval.recall_at_k(constant, 6) == 1.0
    assert math.isclose(retrieval.mean_reciprocal_rank(constant), 1 / 6)
    assert retrieval.first_relevant_rank(constant).tolist() == [6] * 6
    # Ties among correct items do not hurt: two tied correct items at the top give rank 1.
    similarity = np.array([[0.9, 0.9, 0.1]])
    assert retrieval.first_relevant_rank(similarity, np.array([[True, True, False]])).tolist() == [1]
    assert retrieval.recall_at_k(similarity, 2, np.array([[True, True, False]]), fraction_of_positives=True) == 1.0
    # A correct item tied with one incorrect item comes second.
    assert retrieval.first_relevant_rank(np.array([[0.5, 0.9, 0.9]]), np.array([2])).tolist() == [2]


def test_metrics_are_invariant_to_item_order_and_monotone_in_k():
    rng = np.random.default_rng(16)
    similarity = rng.normal(size=(25, 40))
    correct = rng.integers(0, 40, 25)
    permutation = rng.permutation(40)                       # new position p holds old item permutation[p]
    inverse = np.argsort(permutation)
    for k in (1, 5):
        assert retrieval.recall_at_k(similarity, k, correct) == \
            retrieval.recall_at_k(similarity[:, permutation], k, inverse[correct])
    recalls = [retrieval.recall_at_k(similarity, k, correct) for k in range(1, 41)]
    assert all(a <= b for a, b in zip(recalls, recalls[1:])) and recalls[-1] == 1.0
    mrr = retrieval.mean_reciprocal_rank(similarity, correct)
    assert retrieval.recall_at_k(similarity, 1, correct) <= mrr <= 1.0
    assert isinstance(mrr, float) and isinstance(recalls[0], float)


def test_metrics_accept_low_precision_tensors():
    similarity = torch.eye(4, dtype=torch.bfloat16) + 0.01 * torch.arange(4, dtype=torch.bfloat16)  # autocast-like
    assert retrieval.recall_at_k(similarity, 1) == 1.0
    assert retrieval.mean_reciprocal_rank(similarity.half()) == 1.0


def test_perfect_and_reversed_rankings():
    similarity = np.eye(5) + 0.01 * np.arange(5)                               # diagonal wins
    assert retrieval.recall_at_k(similarity, 1) == 1.0 and retrieval.mean_reciprocal_rank(similarity) == 1.0
    worst = -np.eye(5)
    assert retrieval.recall_at_k(worst, 4) == 0.0
    assert math.isclose(retrieval.mean_reciprocal_rank(worst), 1 / 5)


def test_metric_input_errors():
    similarity = np.zeros((3, 4))
    with pytest.raises(ValueError, match="num_queries, num_items"):
        retrieval.recall_at_k(np.zeros(4), 1)
    with pytest.raises(ValueError, match="finite"):
        retrieval.mean_reciprocal_rank(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="between 1 and num_items=4"):
        retrieval.recall_at_k(similarity, 0)
    with pytest.raises(ValueError, match="between 1 and num_items=4"):
        retrieval.recall_at_k(similarity, 5)
    with pytest.raises(TypeError, match="k must be an int"):
        retrieval.recall_at_k(similarity, 1.5)
    with pytest.raises(TypeError, match="k must be an int"):
        retrieval.recall_at_k(similarity, True)
    with pytest.raises(ValueError, match=r"shape \(num_queries,\)"):
        retrieval.recall_at_k(similarity, 1, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        retrieval.mean_reciprocal_rank(similarity, np.array([0, 1, 4]))
    with pytest.raises(TypeError, match="integer indices"):
        retrieval.mean_reciprocal_rank(similarity, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="similarity's shape"):
        retrieval.mean_reciprocal_rank(similarity, np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match=r"queries \[1\] have none"):
        retrieval.mean_reciprocal_rank(similarity, np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]], bool))
    with pytest.raises(ValueError, match="num_queries <= num_items"):
        retrieval.recall_at_k(np.zeros((5, 4)), 1)
    with pytest.raises(ValueError, match="empty"):
        retrieval.mean_reciprocal_rank(np.zeros((0, 4)))


# --------------------------------------------------------------------------------------------------
# Exercise checkers: they accept a right answer and reject a wrong one
# --------------------------------------------------------------------------------------------------
def test_ch13_checkers_accept_correct_answers(capsys):
    ch13.check_cosine(lambda a, b: float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))

    def mean_average_precision(similarity, relevant):
        order = np.argsort(-similarity, axis=1)
        hits = np.take_along_axis(relevant, order, axis=1)                       # (Q, N) bool
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        return float(np.mean((precision * hits).sum(axis=1) / hits.sum(axis=1)))

    ch13.check_mean_average_precision(mean_average_precision)

    def chunked_top_k(queries, items, k, chunk_size):             # the chapter's solution
        best_scores = queries.new_empty((len(queries), 0))
        best_indices = torch.empty((len(queries), 0), dtype=torch.long)
        for start in range(0, len(items), chunk_size):
            chunk_scores = queries @ items[start:start + chunk_size].T
            chunk_indices = torch.arange(start, start + chunk_scores.shape[1]).expand_as(chunk_scores)
            scores = torch.cat([best_scores, chunk_scores], dim=1)
            indices = torch.cat([best_indices, chunk_indices], dim=1)
            top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            best_scores, best_indices = top.values, indices.gather(1, top.indices)
        return best_indices

    ch13.check_chunked_top_k(chunked_top_k)
    assert capsys.readouterr().out.count("correct") == 3


def test_ch13_checkers_reject_wrong_answers():
    with pytest.raises(ExerciseError):
        ch13.check_cosine(lambda a, b: float(np.dot(a, b) / (np.dot(a, a) * np.dot(b, b))))   # no sqrt
    with pytest.raises(ExerciseError):
        ch13.check_mean_average_precision(lambda similarity, relevant: 0.5)
    with pytest.raises(ExerciseError):
        ch13.check_chunked_top_k(lambda queries, items, k, chunk_size: torch.topk(queries @ items.T, k,
                                                                                  largest=False).indices)
    with pytest.raises(ExerciseError):                   # forgets to offset each chunk's indices
        ch13.check_chunked_top_k(lambda queries, items, k, chunk_size: torch.topk(
            queries @ items[:chunk_size].T, min(k, chunk_size), dim=1).indices)
    with pytest.raises(ExerciseError, match="NotImplementedError"):
        def stub(a, b):
            raise NotImplementedError
        ch13.check_cosine(stub)


def test_package_exposes_the_module_lazily():
    import mmtutorial as mmt

    assert mmt.retrieval is retrieval
    assert {"recall_at_k", "mean_reciprocal_rank", "rank_items"} <= set(retrieval.__all__)
