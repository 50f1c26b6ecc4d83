import numpy as np
import pandas as pd
import pytest

from hybridlib.evalsets import Collection, CollectionError
from hybridlib.evaluate import subset

from .conftest import needs_data


@pytest.fixture(scope="module")
def xquad():
    from hybridlib.evalsets import xquad_r
    return xquad_r()


@needs_data
def test_xquad_r_views(xquad):
    assert (len(xquad.queries), len(xquad.pool)) == (13090, 13014)
    assert len(list(xquad.views("mono"))) == 11
    assert len(list(xquad.views("cross"))) == 110
    multi = list(xquad.views("multi"))
    assert len(multi) == 11 and all(len(items) == 13014 for *_, items in multi)
    _, _, queries, items = multi[0]
    rel = xquad.relevance(queries, items)
    assert all(len(r) == 11 for r in rel)  # one answer sentence per language
    assert sorted(xquad.pool["lang"].to_numpy()[items[rel[0]]]) == sorted(xquad.pool_languages)


@needs_data
def test_relevant_item_is_the_answer_sentence(xquad):
    from hybridlib.data import load
    en = {r.qid: r for r in load("xquad-r", "en")}
    for x, y, queries, items in xquad.views("cross"):
        if (x, y) != ("de", "en"):
            continue
        rel = xquad.relevance(queries, items)
        for q, r in zip(queries[:50], rel[:50]):
            record = en[xquad.queries["qid"][q]]
            assert xquad.pool["text"][items[r[0]]] == record.sentences[record.answer_sentence]


@needs_data
def test_tydi_mono_has_one_relevant_passage_and_no_cross_views():
    from hybridlib.evalsets import tydi
    t = tydi()
    assert list(t.views("cross")) == []
    for _, _, queries, items in t.views("mono"):
        assert all(len(r) == 1 for r in t.relevance(queries, items))


@needs_data
def test_subset_keeps_relevant_items(xquad):
    small = subset(xquad, 5)
    assert len(small.queries) == 55
    for _, _, queries, items in small.views("multi"):
        assert all(len(r) == 11 for r in small.relevance(queries, items))


def tiny(qrels):
    return Collection("tiny", pd.DataFrame({"qid": ["a"], "lang": ["en"], "text": ["q"], "group": ["a"]}),
                      pd.DataFrame({"lang": ["en", "de"], "text": ["p1", "p2"]}), pd.DataFrame(qrels, columns=["query", "item"]))


def test_bad_collections():
    with pytest.raises(CollectionError, match=r"relevance names unknown item ids \[5\] \(valid 0..1\)"):
        tiny([(0, 5)])
    with pytest.raises(CollectionError, match=r"relevance names unknown query ids \[3\]"):
        tiny([(3, 0)])
    with pytest.raises(CollectionError, match="empty pool"):
        Collection("empty", pd.DataFrame({"qid": ["a"], "lang": ["en"], "text": ["q"], "group": ["a"]}),
                   pd.DataFrame({"lang": [], "text": []}), pd.DataFrame({"query": [], "item": []}))
    with pytest.raises(ValueError, match="unknown setting 'bilingual'"):
        list(tiny([(0, 0)]).views("bilingual"))


def test_relevance_lists_positions_into_the_items_sorted_per_query():
    """Hand-computed: three queries over four items; the view holds items 3, 1, 2 (positions 0, 1, 2)."""
    c = Collection("hand", pd.DataFrame({"qid": list("abc"), "lang": ["en"] * 3, "text": list("abc"), "group": list("abc")}),
                   pd.DataFrame({"lang": ["en"] * 4, "text": ["p0", "p1", "p2", "p3"]}),
                   pd.DataFrame([(2, 2), (0, 3), (0, 1), (2, 0), (0, 2)], columns=["query", "item"]))
    rel = c.relevance(np.array([0, 1, 2]), np.array([3, 1, 2]))
    assert [r.tolist() for r in rel] == [[0, 1, 2], [], [2]]  # query 1 has none; item 0 is outside the view


def test_save_and_load_round_trip(tmp_path):
    c = tiny([(0, 0), (0, 1)])
    c.save(tmp_path)
    d = Collection.load(tmp_path, "tiny")
    pd.testing.assert_frame_equal(c.qrels, d.qrels)
    assert [len(r) for r in d.relevance(np.array([0]), np.array([0, 1]))] == [2]
    with pytest.raises(CollectionError, match="missing; build the collections first"):
        Collection.load(tmp_path, "nope")


def miracl_rows():
    import json
    from pathlib import Path
    path = Path(__file__).parent / "fixtures" / "miracl-sw-dev.jsonl"
    return {"sw": [json.loads(line) for line in path.read_text().splitlines()]}


def test_miracl_from_rows_in_the_official_format(small_encoder):
    from hybridlib.evalsets import miracl
    from hybridlib.evaluate import evaluate
    c = miracl(["sw"], miracl_rows())
    assert (len(c.queries), len(c.pool), len(c.qrels)) == (3, 4, 4)  # passages deduplicated by docid
    x, y, queries, items = next(c.views("mono"))
    assert [len(r) for r in c.relevance(queries, items)] == [1, 1, 2]
    pq, _, _ = evaluate(small_encoder, c, settings=("mono",), cache=False, progress=False)
    assert set(pq.columns) >= {"ndcg@10", "recall@100"} and pq["recall@100"].eq(1).all()


def test_miracl_offline_fails_fast_with_a_clear_message(monkeypatch):
    import time

    from hybridlib.data import DataError
    from hybridlib.evalsets import miracl
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError, match="MIRACL needs internet access"):
        miracl(["sw"])
    assert time.perf_counter() - start < 30
    with pytest.raises(ValueError, match="unknown MIRACL language"):
        miracl(["xx"])
