"""Similarity, distances and retrieval metrics (chapter 13; used again by CLIP and the binding chapters).

1. similarity and distance matrices: dot product, cosine similarity, Euclidean distance, and the
   identity ``||a - b||^2 = 2 - 2 cos(a, b)`` that ties the last two together for unit vectors
2. ranking: the items of every query ordered by decreasing similarity (brute-force search)
3. retrieval metrics: Recall@K and mean reciprocal rank (MRR)

Conventions.

* A similarity matrix has shape ``(num_queries, num_items)``: row ``q`` scores every item for query ``q``
  (higher is better). Pass ``-distance`` to rank by a distance.
* ``positives`` says which items are correct for each query:

  - ``None``: paired data (image ``i`` with caption ``i``), query ``i``'s one correct item is item ``i``
    (needs ``num_queries <= num_items``);
  - an integer array ``(num_queries,)``: the index of each query's one correct item;
  - a boolean array ``(num_queries, num_items)``: a relevance matrix, several correct items per query
    allowed (an image with five captions); every query needs at least one.

* **Ties count against the query.** Where a correct item has exactly the same score as an incorrect
  one, the incorrect one is ranked first (ties among correct items do not matter). So a model that
  gives every item the same score earns no credit, instead of whatever a sort order happens to give.
  This is scikit-learn's rule in ``label_ranking_average_precision_score``. Without ties every
  convention agrees. :func:`rank_items`, which lists items for display, breaks ties by the lower index.

Similarity functions accept torch tensors (any device, kept there) or NumPy arrays / lists (computed in
NumPy's dtype, float64 for lists) and return the same kind. Metrics accept either and return floats.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["normalize", "dot_product_matrix", "cosine_similarity_matrix", "euclidean_distance_matrix",
           "squared_distance_from_cosine", "rank_items", "positive_mask", "first_relevant_rank",
           "recall_at_k", "mean_reciprocal_rank"]


# ==================================================================================================
# 1. Similarity and distance matrices
# ==================================================================================================
def _as_tensor(values: Any, name: str) -> tuple[torch.Tensor, bool]:
    """``(tensor, was_tensor)``: a floating tensor of an embedding batch and whether the caller gave one."""
    was_tensor = isinstance(values, torch.Tensor)
    if not was_tensor:
        try:
            array = np.asarray(values)
        except Exception as error:  # ragged lists
            raise TypeError(f"{name} must be array-like, got {type(values).__name__}") from error
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
        # np.ascontiguousarray would turn a scalar into a 1-vector; copy only what is not contiguous
        values = torch.from_numpy(array if array.flags.c_contiguous else array.copy(order="C"))
    if values.is_complex():                 # casting would drop the imaginary part without a word
        raise TypeError(f"{name} must hold real numbers, got complex dtype {values.dtype}")
    if not values.is_floating_point():
        values = values.to(torch.float64 if not was_tensor else torch.get_default_dtype())
    # NaN would flow into every similarity it touches; checked where it costs no device synchronisation
    if values.device.type == "cpu" and not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} must be finite, got {int((~torch.isfinite(values)).sum())} NaN or infinite "
                         f"values of {values.numel()}")
    return values, was_tensor


def _check_eps(eps: Any) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0 < eps < 1 and math.isfinite(eps)):
        raise ValueError(f"eps (the smallest norm divided by) must be a small number in (0, 1), got {eps!r}")


def _embedding_pair(queries: Any, items: Any | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Check two ``(n, dim)`` batches with one ``dim``; ``items=None`` compares ``queries`` with itself."""
    query_tensor, was_tensor = _as_tensor(queries, "queries")
    item_tensor = query_tensor if items is None else _as_tensor(items, "items")[0]
    for name, tensor in (("queries", query_tensor), ("items", item_tensor)):
        if tensor.ndim != 2:
            hint = "; add a batch axis with x[None] for one vector" if tensor.ndim == 1 else ""
            raise ValueError(f"{name} must have shape (n, dim), got shape {tuple(tensor.shape)}{hint}")
    if query_tensor.shape[1] != item_tensor.shape[1]:
        raise ValueError(f"queries and items must have the same dim, got {query_tensor.shape[1]} and "
                         f"{item_tensor.shape[1]}")
    if item_tensor.dtype != query_tensor.dtype or item_tensor.device != query_tensor.device:
        item_tensor = item_tensor.to(dtype=query_tensor.dtype, device=query_tensor.device)
    return query_tensor, item_tensor, was_tensor


def _back(result: torch.Tensor, was_tensor: bool):
    return result if was_tensor else result.numpy()


def normalize(vectors: Any, eps: float = 1e-12):
    """Each row divided by its L2 norm (rows of zeros stay zero), like ``torch.nn.functional.normalize``."""
    _check_eps(eps)
    tensor, was_tensor = _as_tensor(vectors, "vectors")
    if tensor.ndim < 1:
        raise ValueError("vectors must have at least one axis, got a scalar")
    norms = tensor.norm(dim=-1, keepdim=True).clamp_min(eps)                  # (..., 1)
    return _back(tensor / norms, was_tensor)


def dot_product_matrix(queries: Any, items: Any | None = None):
    """``S[q, i] = queries[q] . items[i]``: one matrix product, ``(num_queries, num_items)``."""
    query_tensor, item_tensor, was_tensor = _embedding_pair(queries, items)
    return _back(query_tensor @ item_tensor.T, was_tensor)                    # (Q, N)


def cosine_similarity_matrix(queries: Any, items: Any | None = None, eps: float = 1e-12):
    """``S[q, i] = cos(queries[q], items[i])``, shape ``(num_queries, num_items)``, values in [-1, 1].

    Normalise the rows once, then take one matrix product: ``cos = (a / |a|) . (b / |b|)``. A zero vector
    has similarity 0 with everything (scikit-learn's convention), since its normalised row stays zero.
    """
    _check_eps(eps)
    query_tensor, item_tensor, was_tensor = _embedding_pair(queries, items)
    query_unit = query_tensor / query_tensor.norm(dim=1, keepdim=True).clamp_min(eps)   # (Q, dim)
    item_unit = item_tensor / item_tensor.norm(dim=1, keepdim=True).clamp_min(eps)      # (N, dim)
    # Rounding can push |cos| a hair past 1 for parallel vectors; clamp so arccos and 2 - 2cos stay valid.
    return _back((query_unit @ item_unit.T).clamp(-1.0, 1.0), was_tensor)                # (Q, N)


def euclidean_distance_matrix(queries: Any, items: Any | None = None, squared: bool = False):
    """``D[q, i] = ||queries[q] - items[i]||``, shape ``(num_queries, num_items)``.

    Uses ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b`` so the work is one matrix product (what
    scikit-learn's ``euclidean_distances`` does) rather than a ``(Q, N, dim)`` difference tensor.
    Cancellation can make the expansion slightly negative for near-identical rows: it is clamped at 0,
    and with ``items=None`` the diagonal is set to exactly 0. In float32 the error of that expansion is
    about ``1e-7 * ||a||^2``; use float64 (or ``torch.cdist``) when tiny distances matter.
    """
    query_tensor, item_tensor, was_tensor = _embedding_pair(queries, items)
    query_sq = (query_tensor * query_tensor).sum(dim=1, keepdim=True)         # (Q, 1)
    item_sq = (item_tensor * item_tensor).sum(dim=1)[None, :]                 # (1, N)
    squared_distance = (query_sq + item_sq - 2.0 * (query_tensor @ item_tensor.T)).clamp_min(0.0)  # (Q, N)
    if items is None:
        squared_distance.fill_diagonal_(0.0)
    result = squared_distance if squared else squared_distance.sqrt()
    return _back(result, was_tensor)


def squared_distance_from_cosine(cosine: Any):
    """``||a - b||^2 = 2 - 2 cos(a, b)``, which holds when ``a`` and ``b`` are unit vectors.

    Proof: ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b = 1 + 1 - 2 cos``. So on the unit sphere ranking by
    cosine (descending) and by Euclidean distance (ascending) give the same order.
    """
    tensor, was_tensor = _as_tensor(cosine, "cosine")
    # Rounding leaves computed cosines a hair outside [-1, 1]; beyond that they are not cosines at all.
    if tensor.device.type == "cpu" and tensor.numel() and float(tensor.abs().max()) > 1.0 + 1e-5:
        raise ValueError(f"cosine values must lie in [-1, 1], got values in [{float(tensor.min()):.4g}, "
                         f"{float(tensor.max()):.4g}]; pass cosine similarities of the embeddings (not dot products)")
    return _back(2.0 - 2.0 * tensor, was_tensor)


# ==================================================================================================
# 2. Ranking
# ==================================================================================================
def _as_similarity(similarity: Any) -> np.ndarray:
    """A finite float64 ``(num_queries, num_items)`` NumPy matrix."""
    if isinstance(similarity, torch.Tensor):
        similarity = similarity.detach().cpu()
        if similarity.dtype in (torch.bfloat16, torch.float16):   # NumPy has no bfloat16
            similarity = similarity.float()
        similarity = similarity.numpy()
    try:
        array = np.asarray(similarity)
    except Exception as error:
        raise TypeError(f"similarity must be array-like, got {type(similarity).__name__}") from error
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"similarity must hold numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"similarity must have shape (num_queries, num_items), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"similarity is empty (shape {array.shape}); expected at least one query and item")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("similarity must be finite, got NaN or infinity")
    return array


def rank_items(similarity: Any, k: int | None = None) -> np.ndarray:
    """Item indices of every query by decreasing similarity, ``(num_queries, num_items)`` (or ``k`` columns).

    This is brute-force nearest-neighbour search: ``O(num_queries * num_items * dim)`` for the similarity
    matrix plus a sort per row. Ties go to the lower item index (a stable sort), so the order is
    deterministic. (The metrics below count ties against the query instead; see the module docstring.)
    """
    scores = _as_similarity(similarity)
    if k is not None:
        _check_k(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")                        # (Q, N)
    return order if k is None else order[:, :k]


# ==================================================================================================
# 3. Retrieval metrics
# ==================================================================================================
def _check_k(k: Any, num_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= num_items:
        raise ValueError(f"k must be between 1 and num_items={num_items}, got {k}")
    return int(k)


def positive_mask(similarity: Any, positives: Any = None) -> np.ndarray:
    """The boolean relevance matrix ``(num_queries, num_items)`` described by ``positives``."""
    return _relevance(_as_similarity(similarity).shape, positives)


def _relevance(shape: tuple[int, int], positives: Any) -> np.ndarray:
    """:func:`positive_mask` for a similarity matrix of ``shape`` that is already validated."""
    num_queries, num_items = shape
    if positives is None:
        if num_queries > num_items:
            raise ValueError(f"positives=None pairs query i with item i, so it needs num_queries <= num_items; "
                             f"got {num_queries} queries and {num_items} items; pass positives explicitly")
        return np.eye(num_queries, num_items, dtype=bool)
    if isinstance(positives, torch.Tensor):
        positives = positives.detach().cpu().numpy()
    positives = np.asarray(positives)
    if positives.dtype == bool:
        if positives.shape != (num_queries, num_items):
            raise ValueError(f"a boolean positives matrix must have the similarity's shape "
                             f"{(num_queries, num_items)}, got {positives.shape}")
        empty = np.flatnonzero(~positives.any(axis=1))
        if empty.size:
            raise ValueError(f"every query needs at least one correct item; queries {empty[:10].tolist()} "
                             "have none")
        return positives
    if not np.issubdtype(positives.dtype, np.integer):
        raise TypeError(f"positives must be None, integer indices (num_queries,) or a boolean "
                        f"(num_queries, num_items) matrix, got dtype {positives.dtype}")
    if positives.shape != (num_queries,):
        raise ValueError(f"integer positives must have shape (num_queries,) = ({num_queries},), "
                         f"got {positives.shape}")
    if positives.min() < 0 or positives.max() >= num_items:
        raise ValueError(f"positives must be item indices in [0, {num_items}), got values from "
                         f"{positives.min()} to {positives.max()}")
    mask = np.zeros((num_queries, num_items), dtype=bool)
    mask[np.arange(num_queries), positives] = True
    return mask


def _pessimistic_order(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``relevant`` reordered by decreasing score, incorrect items first among equal scores."""
    # lexsort sorts by the last key first: score descending, then relevant (False before True).
    order = np.lexsort((relevant.astype(np.int8), -scores), axis=1)           # (Q, N)
    return np.take_along_axis(relevant, order, axis=1)                         # (Q, N) bool


def first_relevant_rank(similarity: Any, positives: Any = None) -> np.ndarray:
    """The 1-based rank of each query's best-ranked correct item, int array ``(num_queries,)``.

    Rank 1 means a correct item came first. Ties count against the query (see the module docstring):
    the rank is ``1 + number of incorrect items scoring at least as high as the best correct one``.
    """
    scores = _as_similarity(similarity)
    relevant = _relevance(scores.shape, positives)
    ordered = _pessimistic_order(scores, relevant)                             # (Q, N)
    return ordered.argmax(axis=1) + 1                                          # first True, 1-based


def recall_at_k(similarity: Any, k: int, positives: Any = None, *, fraction_of_positives: bool = False) -> float:
    """Recall@K: the fraction of queries with a correct item among their ``k`` highest-scoring items.

    This is the cross-modal retrieval definition (CLIP, COCO/Flickr30k image↔text): a query scores 1
    when *any* correct item is in its top ``k``, else 0, and Recall@K averages over queries. With one
    correct item per query it equals top-k accuracy. With ``fraction_of_positives=True`` a query scores
    the fraction of its correct items found in the top ``k`` (the information-retrieval definition,
    ``torchmetrics.retrieval.RetrievalRecall``); with one correct item per query both agree.
    """
    scores = _as_similarity(similarity)
    k = _check_k(k, scores.shape[1])
    relevant = _relevance(scores.shape, positives)
    ordered = _pessimistic_order(scores, relevant)                             # (Q, N)
    found = ordered[:, :k].sum(axis=1)                                         # (Q,) correct items in top k
    if fraction_of_positives:
        return float(np.mean(found / relevant.sum(axis=1)))
    return float(np.mean(found > 0))


def mean_reciprocal_rank(similarity: Any, positives: Any = None) -> float:
    """MRR: the mean over queries of ``1 / rank`` of the best-ranked correct item (1.0 is perfect).

    A first-place hit scores 1, second place 1/2, tenth 1/10, so MRR rewards getting the answer near the
    top without a cut-off ``k``. Ties count against the query, as in :func:`first_relevant_rank`.
    """
    return float(np.mean(1.0 / first_relevant_rank(similarity, positives)))
