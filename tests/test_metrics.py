import math

import numpy as np
import pytest
import torch

from hybridlib import metrics
from hybridlib.metrics import METRICS, pad_ranks
from hybridlib.retrieval import relevant_ranks, search


def one(ranks):
    return pad_ranks([np.asarray(ranks, dtype=float)])


@pytest.mark.parametrize("name", list(METRICS))
def test_perfect_ranking_scores_one(name):
    # three relevant items at ranks 1-3: recall@1 can see only one of them
    assert METRICS[name](one([1, 2, 3]))[0] == pytest.approx(1 / 3 if name == "recall@1" else 1.0)
    assert METRICS[name](one([1]))[0] == pytest.approx(1.0)


@pytest.mark.parametrize("name", list(METRICS))
def test_nothing_retrieved_scores_zero(name):
    assert METRICS[name](one([np.inf, np.inf]))[0] == 0.0


def test_worked_example():
    r = one([6, 1, 3])  # relevant items at ranks 1, 3 and 6
    assert metrics.average_precision(r)[0] == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    assert metrics.reciprocal_rank(r)[0] == 1.0
    assert metrics.reciprocal_rank(one([12, 4]))[0] == 0.25
    assert metrics.reciprocal_rank(one([11]))[0] == 0.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(7)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg(r)[0] == pytest.approx(dcg / idcg)
    assert metrics.recall(r, 1)[0] == pytest.approx(1 / 3)
    assert metrics.recall(r, 5)[0] == pytest.approx(2 / 3)
    assert metrics.recall(r, 100)[0] == 1.0


def test_rank_distance_worked_example():
    assert metrics.rank_distance(one([40, 2, 5]))[0] == 38
    assert metrics.rank_distance(pad_ranks([np.array([3.0]), np.array([7.0, 9.0])])).tolist() == [0, 2]


def test_query_without_relevant_items_is_an_error():
    with pytest.raises(ValueError, match="no relevant item"):
        metrics.average_precision(pad_ranks([np.array([])]))


def test_metrics_equal_ir_measures_on_random_rankings():
    ir_measures = pytest.importorskip("ir_measures")
    rng = np.random.default_rng(0)
    n_q, n_docs = 60, 300
    scores = rng.normal(size=(n_q, n_docs))  # continuous: no ties
    relevant = [rng.choice(n_docs, size=rng.integers(1, 12), replace=False) for _ in range(n_q)]
    qrels = [ir_measures.Qrel(str(q), str(d), 1) for q in range(n_q) for d in relevant[q]]
    run = [ir_measures.ScoredDoc(str(q), str(d), float(scores[q, d])) for q in range(n_q) for d in range(n_docs)]
    names = {"map": ir_measures.AP, "mrr@10": ir_measures.RR @ 10, "ndcg@10": ir_measures.nDCG @ 10,
             "recall@1": ir_measures.R @ 1, "recall@5": ir_measures.R @ 5, "recall@10": ir_measures.R @ 10,
             "recall@100": ir_measures.R @ 100}
    ref = {(m.query_id, str(m.measure)): m.value for m in ir_measures.iter_calc(list(names.values()), qrels, run)}
    # Ranks from the scores, as hybridlib's retrieval computes them (identity embeddings make q @ P.T = scores).
    ranks = pad_ranks(relevant_ranks(scores, np.eye(n_docs), relevant))
    for name, measure in names.items():
        ours = METRICS[name](ranks)
        theirs = np.array([ref[(str(q), str(measure))] for q in range(n_q)])
        np.testing.assert_allclose(ours, theirs, atol=1e-9, err_msg=name)


def test_relevant_ranks_match_a_full_sort_and_break_ties_by_position():
    rng = np.random.default_rng(1)
    q, p = rng.normal(size=(7, 16)).astype(np.float32), rng.normal(size=(50, 16)).astype(np.float32)
    p[10] = p[3]  # an exact tie: item 3 ranks before item 10
    rel = [np.array([3, 10, 20]) for _ in range(7)]
    got = relevant_ranks(q, p, rel, block=3)
    for i in range(7):
        order = np.lexsort((np.arange(50), -(q[i] @ p.T)))
        expected = np.empty(50, int)
        expected[order] = np.arange(1, 51)
        assert got[i].tolist() == expected[[3, 10, 20]].tolist()


def test_block_ranks_equal_the_ranks_of_each_row():
    """What a GPU computes per block (block_ranks) against the per-row reference, ties and empty lists included."""
    from hybridlib.retrieval import block_ranks, ranks_in
    rng = np.random.default_rng(4)
    scores = torch.from_numpy(rng.integers(0, 5, size=(6, 40)).astype(np.float32))  # many exact ties
    rel = [np.array([3, 10, 20]), np.array([0]), np.array([], dtype=int), np.array([39, 1]), np.array([5]),
           np.array([7, 8, 9, 10])]
    got = block_ranks(scores, rel)
    assert [g.tolist() for g in got] == [ranks_in(scores[i], r).tolist() for i, r in enumerate(rel)]
    assert got[0].tolist() != [1, 1, 1]  # the ranks are not trivially equal


def test_faiss_search_agrees_with_exact_topk():
    rng = np.random.default_rng(2)
    q, p = rng.normal(size=(20, 8)).astype(np.float32), rng.normal(size=(200, 8)).astype(np.float32)
    top = search(q, p, k=10)
    np.testing.assert_array_equal(top, np.argsort(-(q @ p.T), axis=1)[:, :10])
    assert (search(q, p, k=10, index="hnsw")[:, 0] == top[:, 0]).mean() > 0.9


def test_search_without_faiss_is_an_exact_torch_top_k(monkeypatch):
    import sys
    rng = np.random.default_rng(3)
    q, p = rng.normal(size=(2500, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    with_faiss = search(q, p, k=10)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    np.testing.assert_array_equal(search(q, p, k=10), with_faiss)
    assert search(q[:3], p[:4], k=10).shape == (3, 4)
    with pytest.raises(ImportError, match="index 'hnsw' needs FAISS: pip install faiss-cpu"):
        search(q, p, index="hnsw")


def test_mismatched_dimensions_and_empty_pool():
    with pytest.raises(ValueError, match="embedding dimensions differ"):
        relevant_ranks(np.zeros((2, 4)), np.zeros((3, 5)), [np.array([0])] * 2)
    with pytest.raises(ValueError, match="empty pool"):
        search(np.zeros((2, 4), np.float32), np.zeros((0, 4), np.float32))
