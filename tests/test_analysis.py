"""The chapters' analyses on small tables whose answers are worked out by hand."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hybridlib import analysis, compare
from hybridlib.losses import info_nce
from hybridlib.strategy import Strategy


def test_alpha_sweep_places_xy_at_zero_and_xx_at_one_in_the_profiles_own_regime():
    rows = [("xy", 0.70), ("hybrid(0.25)", 0.72), ("hybrid(0.75)", 0.75), ("xx", 0.77), ("pcgrad", 0.73),
            ("xx(budget=4.1)", 0.79), ("hybrid(0.5, lr=2e-05)", 0.74)]
    intervals = pd.DataFrame([{"strategy": s, "figure": f, "mean": v, "lo": v - 0.02, "hi": v + 0.02}
                              for s, v in rows for f in ("XQuAD-R mono mAP", "TyDi mono MRR@10")])
    sweep = analysis.alpha_sweep(intervals)  # pcgrad has no alpha; the budget and lr arms are other regimes
    assert sweep["strategy"].tolist() == ["xy", "hybrid(0.25)", "hybrid(0.75)", "xx"]
    assert sweep["alpha"].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert sweep["mean"].tolist() == pytest.approx([0.70, 0.72, 0.75, 0.77])
    assert set(sweep["figure"]) == {"XQuAD-R mono mAP"}


def per_query_tydi():
    # xx: query 0 keeps rank 1, query 1 falls from 2 to 5, query 2 from 1 to 1; xy: every query falls by 1
    rows = []
    for strategy, mono, multi in (("xx", [1, 2, 1], [1, 5, 1]), ("xy", [1, 1, 3], [2, 2, 4])):
        for q in range(3):
            rows.append({"strategy": strategy, "seed": 0, "collection": "tydi", "setting": "mono", "query": q,
                         "first_rank": mono[q], "own_language@10": np.nan})
            rows.append({"strategy": strategy, "seed": 0, "collection": "tydi", "setting": "multi", "query": q,
                         "first_rank": multi[q], "own_language@10": 0.5 if strategy == "xx" else 1.0})
    return pd.DataFrame(rows)


def test_gold_rank_drop_by_hand():
    t = analysis.gold_rank_drop(per_query_tydi())
    assert t.loc["xx"].tolist() == pytest.approx([0.5, 1 / 3, 0.0, 1.0])  # median 0: two of three never fall
    assert t.loc["xy"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_seen_unseen_macro_averages_views_then_languages():
    rows = []
    for qlang, plang, values in (("en", "en", [1.0, 0.0]), ("de", "de", [0.5]), ("th", "th", [0.2, 0.4]),
                                 ("en", "th", [0.3])):
        for v in values:
            rows.append({"strategy": "xx", "collection": "xquad-r", "setting": "mono" if qlang == plang else "cross",
                         "qlang": qlang, "plang": plang, "map": v})
    t = analysis.seen_unseen(pd.DataFrame(rows))
    assert t.loc["xx", ("mono", "seen")] == pytest.approx((0.5 + 0.5) / 2)  # en view mean .5, de .5
    assert t.loc["xx", ("mono", "unseen")] == pytest.approx(0.3)
    assert t.loc["xx", ("cross", "seen")] == pytest.approx(0.3)


def test_notebook_durations_read_papermill_metadata_and_the_machine_each_run_records(tmp_path):
    for rel, seconds in (("xx-s0/02_train.ipynb", 5400.0), ("xx-s0/03_evaluate.ipynb", 1800.0),
                         ("xy-s0/02_train.ipynb", 3600.0), ("05_compare.ipynb", 360.0), ("06_performance.ipynb", None)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps({"metadata": {"papermill": {"duration": seconds}}, "cells": []}))
    xeon = {"cpu": "Xeon", "cpu_capability": "AVX512", "cores": 2}
    (tmp_path / "xx-s0" / "train_summary.json").write_text(json.dumps({"machine": xeon}))
    (tmp_path / "xx-s0" / "eval_meta.json").write_text(json.dumps({"machine": None}))  # recorded before machines were
    (tmp_path / "xy-s0" / ".03_evaluate.running.ipynb").write_text("")  # a task of another job, still running
    t = analysis.notebook_durations(tmp_path)
    assert t.to_dict("records") == [{"notebook": "05 compare", "run": tmp_path.name, "seconds": 360.0, "machine": None},
                                    {"notebook": "02 train", "run": "xx-s0", "seconds": 5400.0, "machine": xeon},
                                    {"notebook": "03 evaluate", "run": "xx-s0", "seconds": 1800.0, "machine": None},
                                    {"notebook": "02 train", "run": "xy-s0", "seconds": 3600.0, "machine": None}]
    assert analysis.hours_by_machine(t) == ("3.1 notebook hours (trainings 2.5, evaluations 0.5): 1.5 in runs that record "
                                            "no machine (1 trainings, 1 evaluations); 1.5 on Xeon, AVX512 (1 trainings)")
    (tmp_path / "xx-s0" / "02_train.ipynb").write_text("")
    with pytest.raises(ValueError, match="02_train.ipynb: unreadable executed notebook"):
        analysis.notebook_durations(tmp_path)


def test_describe_names_better_and_worse_by_comparison_and_counts_the_rest():
    v = pd.DataFrame({"question": ["vs mixing, equal pairs"] * 4 + ["vs X-X and X-Y (frozen=0)"] * 2,
                      "figure": ["XQuAD-R mono mAP"] * 4 + ["XQuAD-R rank distance", "TyDi mono MRR@10"],
                      "a": ["hybrid(0.5)"] * 4 + ["hybrid(0.5, frozen=0)"] * 2,
                      "b": ["sum", "pcgrad", "mgda", "cagrad", "xx(frozen=0)", "xx(frozen=0)"],
                      "diff": [0.01, -0.01, 0.0, 0.002, -20.4, 0.0],
                      "verdict": ["better", "worse", "equivalent", "inconclusive", "better", "inconclusive"]})
    claims = pd.DataFrame({"verdict": ["supported", "inconclusive", "inconclusive", "not run"]})
    text = analysis.describe(v, ["xx", "hybrid(0.25)"], claims).splitlines()
    assert text[0] == ("- **vs mixing, equal pairs** (4 comparisons, 1 equivalent, 1 inconclusive): hybrid(0.5) vs sum "
                       "better on XQuAD-R mono +.010; hybrid(0.5) vs pcgrad worse on XQuAD-R mono -.010.")
    assert text[1] == ("- **vs X-X and X-Y (frozen=0)** (2 comparisons, 1 inconclusive): hybrid(0.5) vs xx better "
                       "on XQuAD-R RD -20.")
    assert text[2] == "- **Pareto front (mono vs cross, XQuAD-R)**: xx, hybrid(0.25)."
    assert text[3] == "- **Paper claims**: of 3 tested, 2 inconclusive, 1 supported."
    counts = analysis.verdict_counts(v)  # in the table's order, every verdict a column even when none has it
    assert counts.to_dict("list") == {"question": ["vs mixing, equal pairs", "vs X-X and X-Y (frozen=0)"],
                                      "comparisons": [4, 2], "better": [1, 1], "worse": [1, 0],
                                      "equivalent": [1, 0], "inconclusive": [1, 1]}


def test_span_and_by_regime_sum_up_a_question_in_one_sentence():
    v = pd.DataFrame({"question": ["vs mixing, equal pairs"] * 4 + ["positive control: X-X vs X-Y"] * 2
                      + ["positive control: X-X vs X-Y (budget=4.1)"],
                      "figure": ["XQuAD-R mono mAP", "XQuAD-R rank distance", "TyDi multi MRR@10", "XQuAD-R rank distance",
                                 "XQuAD-R mono mAP", "XQuAD-R cross mAP", "XQuAD-R mono mAP"],
                      "a": ["hybrid(0.5)"] * 4 + ["xx", "xx", "xx(budget=4.1)"],
                      "b": ["sum", "sum", "pcgrad", "mgda", "xy", "xy", "xy(budget=4.1)"],
                      "diff": [0.004, -12.6, -0.0071, 18.2, 0.025, -0.005, 0.001],
                      "p_holm": [0.5, 0.11, 0.3, 1.0, 1e-6, 0.02, 0.9],
                      "verdict": ["inconclusive", "inconclusive", "worse", "inconclusive", "better", "worse", "inconclusive"]})
    v = v.assign(bound=[0.006, 14.0, 0.012, 25.0, 0.03, 0.008, 0.004], margin=[0.01, 30.0, 0.01, 30.0, 0.01, 0.01, 0.01],
                 equivalent_strict=[False, True, False, False, False, False, True])
    v.loc[v.a.eq("hybrid(0.5)") & v.b.eq("sum") & v.figure.eq("XQuAD-R mono mAP"), "verdict"] = "equivalent"
    assert analysis.span(v, "vs mixing, equal pairs") == (
        "hybrid(0.5) vs sum, pcgrad and mgda: at most .012 in mAP or MRR@10 and 25 in rank distance apart (90% "
        "intervals); of 4 comparisons, 1 equivalent within ±.01 / ±30 (1 within ±.005 / ±15), 2 inconclusive, 1 worse")
    assert analysis.span(v, "vs mixing, equal steps") == "not run"
    assert analysis.by_regime(v, "positive control: X-X vs X-Y") == (
        "the profile's own regime: xx vs xy better on XQuAD-R mono +.025, worse on XQuAD-R cross -.005; "
        "budget=4.1: xx vs xy neither better nor worse")
    span = analysis.control_table(v.assign(seeds=[5, 5, 5, 5, 5, 4, 2]))  # the seeds both arms ran, at fewest
    assert span.to_dict("records") == [
        {"regime": "own", "seeds": 4, "XQuAD-R mono": "+.025", "XQuAD-R cross": "-.005", "widest": ".025"},
        {"regime": "budget=4.1", "seeds": 2, "XQuAD-R mono": "+.001", "XQuAD-R cross": "-", "widest": ".001"}]
    assert analysis.by_collection(span).columns.tolist() == [  # one header per collection, the rest blank
        ("", "regime"), ("", "seeds"), ("XQuAD-R", "mono"), ("XQuAD-R", "cross"), ("", "widest")]
    none = analysis.control_table(v[~v.question.str.startswith("positive control")].assign(seeds=5))
    assert none.empty and analysis.by_collection(none).empty  # the smoke grid asks no control: an empty table


def test_more_seeds_sorts_the_inconclusive_comparisons_by_what_more_seeds_would_make_of_them():
    # the cases of tests/test_seeds.py::test_seeds_to_settle_by_hand: (diff, sd over seeds, seeds, groups' se)
    rows = [("vs mixing, equal pairs", "better", 0.02, 0.001, 5, 0.001),  # settled: not counted
            ("vs mixing, equal pairs", "inconclusive", 0.002, 0.0, 5, 0.001),  # equivalent at 3
            ("vs mixing, equal pairs", "inconclusive", 0.003, 0.006, 5, 0.0),  # equivalent at 27, a difference at 18
            ("vs mixing, equal pairs", "inconclusive", 0.010, 0.006, 5, 0.002),  # a difference at 4
            ("vs mixing, equal pairs", "inconclusive", 0.003, 0.006, 5, 0.00456),  # never: question noise
            ("vs mixing, equal steps", "inconclusive", 0.003, np.nan, 1, 0.003)]
    v = pd.DataFrame(rows, columns=["question", "verdict", "diff", "sd", "seeds", "se_groups"]).assign(
        margin=0.005, groups=10**6)
    counts = analysis.more_seeds(v, horizon=10).set_index("question")
    assert counts.loc["vs mixing, equal pairs"].tolist() == [4, 0, 1, 1, 2]  # inconclusive, one seed, =, difference, neither
    assert counts.loc["vs mixing, equal steps"].tolist() == [1, 1, 0, 0, 0]
    assert analysis.more_seeds(v, horizon=20).set_index("question").loc["vs mixing, equal pairs"].tolist() == [4, 0, 1, 2, 1]


def test_training_effect_seed_spread_and_agreement_by_hand():
    intervals = pd.DataFrame({"strategy": ["zero-shot", "xx", "xy"] * 2,
                              "figure": ["XQuAD-R multi mAP"] * 3 + ["XQuAD-R rank distance"] * 3,
                              "mean": [0.299, 0.546, 0.558, 1213.7, 337.2, 358.0],
                              "sd_over_seeds": [0.0, 0.004, 0.002, 0.0, 9.4, 3.0], "seeds": [1, 3, 2, 1, 3, 2]})
    assert analysis.training_effect(intervals, ["xx", "xy"], figures=("XQuAD-R multi mAP", "XQuAD-R rank distance")) == (
        "XQuAD-R multi mAP from .299 to .546-.558, XQuAD-R rank distance from 1214 to 337-358")
    assert analysis.training_effect(intervals, [], figures=("XQuAD-R multi mAP",)) == "not measured"
    assert analysis.seed_spread(intervals) == ("over 2 strategies with 2 or more seeds, a standard deviation of up to "
                                               ".004 in mAP or MRR@10 (median .003) and 9 in rank distance (median 6)")
    assert analysis.seed_spread(intervals[intervals.figure == "XQuAD-R multi mAP"]) == (
        "over 2 strategies with 2 or more seeds, a standard deviation of up to .004 in mAP or MRR@10 (median .003)")
    assert analysis.seed_spread(intervals.assign(seeds=1)) == "not measured: one seed per strategy"


def test_option_effect_pairs_each_run_with_the_same_strategy_and_seed_without_the_option():
    def runs(seeds, values):  # one question group: each seed's figure is its sum over its weight
        return np.array(seeds), np.array([values]) * 2.0, np.full((1, len(seeds)), 2.0)
    sums = {"XQuAD-R mono mAP": {"xx": runs([0, 1], [0.70, 0.80]), "xx(frozen=0)": runs([1, 2], [0.8012, 0.9]),
                                 "xy": runs([0], [0.75]), "xy(frozen=0)": runs([0], [0.7496]),
                                 "hybrid(0.5, frozen=0)": runs([0], [0.1])},  # no hybrid(0.5) to pair with
            "XQuAD-R rank distance": {"xx": runs([0, 1], [100, 200]), "xx(frozen=0)": runs([1, 2], [200.5, 300]),
                                      "xy": runs([0], [150]), "xy(frozen=0)": runs([0], [148.5])}}
    assert analysis.option_effect(sums, "frozen") == ("at most .0012 in mAP or MRR@10 (median .0008) and 1.5 in rank "
                                                      "distance (median 1.0), over 2 pairs of runs")
    assert analysis.option_effect(sums, "lr") == "not run"


def test_coverage_counts_trained_runs_per_seed_until_the_study_is_complete():
    xx, xy, zero = Strategy("xx"), Strategy("xy"), Strategy("zero-shot")
    expected = [(zero, 0), (xx, 0), (xy, 0), (xx, 1), (xy, 1)]
    results = pd.DataFrame({"strategy": ["zero-shot", "xx", "xx", "xy", "xx", "xx"], "seed": [0, 0, 0, 0, 1, 1],
                            "run": ["zero-shot-s0", "xx-s0", "xx-s0", "xy-s0", "xx-s1", "xx-s1"]})
    assert analysis.coverage(results, expected) == ("as it stands, 4 of 5 runs committed (seed 0 complete; seed 1: 1 "
                                                    "of 2 trained runs); the figures below move as the rest land")
    complete = pd.concat([results, pd.DataFrame({"strategy": ["xy"], "seed": [1], "run": ["xy-s1"]})])
    assert analysis.coverage(complete, expected) == "all 5 runs committed, 2 seeds per trained strategy"
    # extra seeds for xx only: seed 2 expects one trained run
    more = pd.concat([complete, pd.DataFrame({"strategy": ["xx"], "seed": [2], "run": ["xx-s2"]})])
    assert analysis.coverage(more, [*expected, (xx, 2)]) == ("all 6 runs committed, 3 seeds for 1 trained strategy, "
                                                             "2 for 1")
    assert analysis.coverage(complete, [*expected, (xx, 2), (xx, 3)]) == (
        "as it stands, 5 of 7 runs committed (seeds 0-1 complete; seeds 2-3: 0 of 1 trained runs each); the figures "
        "below move as the rest land")


def test_glue_records_text_and_tables_for_other_pages_under_myst_nbs_protocol(monkeypatch):
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda bundle, **kw: shown.append((bundle, kw)))
    analysis.glue("claims", "of 3 tested, 1 supported")
    analysis.glue("counts", pd.DataFrame({"question": ["q"], "better": [2]}))
    prefix = "application/papermill.record/"
    (text, kw), (table, _) = shown
    assert text == {prefix + "text/plain": "'of 3 tested, 1 supported'"} and kw["raw"]
    assert kw["metadata"]["scrapbook"] == {"name": "claims", "mime_prefix": prefix}
    assert table[prefix + "text/html"].startswith('<table class="dataframe table">')  # no index column
    assert "<td>q</td>\n      <td>2</td>" in table[prefix + "text/html"]


def test_headline_cells_and_verdict_grid_are_one_short_line_each():
    table = pd.DataFrame({("XQuAD-R mono mAP", "value"): [0.7612, np.nan], ("XQuAD-R mono mAP", "lo"): [0.7512, np.nan],
                          ("XQuAD-R mono mAP", "hi"): [0.7712, np.nan], ("XQuAD-R rank distance", "value"): [350.4, 301],
                          ("XQuAD-R rank distance", "lo"): [340.0, 290], ("XQuAD-R rank distance", "hi"): [361.0, 312]},
                         index=["xx", "bm25"])
    cells = analysis.headline_cells(table, ["XQuAD-R mono mAP", "XQuAD-R rank distance", "TyDi mono MRR@10"])
    assert cells.to_dict("index") == {"xx": {"XQuAD-R mono": ".761 ±.010", "XQuAD-R RD": "350 ±10"},
                                      "bm25": {"XQuAD-R mono": "-", "XQuAD-R RD": "301 ±11"}}
    v = pd.DataFrame({"question": ["q (lr=2e-05)", "q (lr=2e-05)", "p"], "a": ["hybrid(0.5, lr=2e-05)"] * 2 + ["xx"],
                      "b": ["xx(lr=2e-05)", "xx(lr=2e-05)", "xy"],
                      "figure": ["XQuAD-R mono mAP", "XQuAD-R rank distance", "XQuAD-R mono mAP"],
                      "diff": [0.0123, -12.4, 0.002], "verdict": ["better", "inconclusive", "equivalent"]})
    grid = analysis.verdict_grid(v, ["XQuAD-R mono mAP", "XQuAD-R rank distance"])
    assert grid.to_dict("index") == {
        ("q (lr=2e-05)", "hybrid(0.5) vs xx"): {("XQuAD-R", "mono"): "+ +.012", ("XQuAD-R", "RD"): "-12"},
        ("p", "xx vs xy"): {("XQuAD-R", "mono"): "= +.002", ("XQuAD-R", "RD"): ""}}
    assert list(grid.index.names) == ["question", "comparison"]
    assert [analysis.number("XQuAD-R mono mAP", v, signed=True) for v in (-0.0003, 0.0123, -0.012)] == [".000", "+.012", "-.012"]
    assert [analysis.number("XQuAD-R rank distance", v, signed=True) for v in (-0.4, -12.4)] == ["0", "-12"]
    assert compare.interval("XQuAD-R mono mAP", -0.0041, 0.00049) == "[-.004, .000]"
    assert compare.interval("XQuAD-R rank distance", -9.2, 14.6) == "[-9, +15]"


def test_info_nce_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    t = 0.5
    # row 0: logits (1, 0.6)/t, positive 0; row 1: logits (0, 0.8)/t, positive 1
    expected = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1.2))) - math.log(math.exp(1.6) / (1 + math.exp(1.6)))) / 2
    assert info_nce(q, p, temperature=t).item() == pytest.approx(expected, rel=1e-6)
    # a hard negative equal to the positive halves the positive's share: loss grows by about ln 2 when dominant
    hard = info_nce(q, p, negatives=p.clone(), temperature=0.01).item()
    assert hard == pytest.approx(math.log(2), abs=1e-3)
    sym = info_nce(q, p, temperature=t, symmetric=True).item()
    back = (-math.log(math.exp(2) / (math.exp(2) + math.exp(0))) - math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))) / 2
    assert sym == pytest.approx((expected + back) / 2, rel=1e-6)
    # uniform scores: the loss is ln(batch), the chance level the trainer's collapse check watches for
    same = torch.ones(4, 2) / math.sqrt(2)
    assert info_nce(same, same).item() == pytest.approx(math.log(4), rel=1e-6)


def test_rank_distance_tail_by_hand():
    rd = [0, 1, 1, 2, 2, 2, 3, 3, 4, 82]  # one query carries most of the sum
    pq = pd.DataFrame({"strategy": "xx", "collection": "xquad-r", "setting": "multi", "rank_distance": rd})
    t = analysis.rank_distance_tail(pq).loc["xx"]
    assert t["mean"] == 10.0 and t["median"] == 2.0
    assert t["trimmed mean (10% each side)"] == pytest.approx(18 / 8)
    assert t["share of the sum in the worst 10%"] == pytest.approx(0.82)


def test_claims_carry_the_papers_own_difference():
    from hybridlib import compare
    rng = np.random.default_rng(0)
    rows = []
    for coll, setting in (("xquad-r", "cross"), ("xquad-r", "multi"), ("mlqa-r", "cross")):  # the claims' views
        xx = pd.DataFrame({"collection": coll, "setting": setting, "qlang": "en", "plang": "de", "query": np.arange(50),
                           "group": np.arange(50), "map": rng.uniform(0, 0.8, 50), "rank_distance": rng.uniform(0, 500, 50),
                           "strategy": "xx"})
        shift = 0.2 if (coll, setting) == ("xquad-r", "cross") else 0.0  # hybrid far better on one claim only
        rows += [xx, xx.assign(strategy="hybrid(0.5)", map=xx["map"] + shift + rng.normal(0, 0.01, 50))]
    claims = compare.claims(pd.concat(rows).assign(seed=0), {"map": 0.005, "rank_distance": 15})
    claims = claims.set_index("claim")
    assert claims.loc["Hybrid batches improve cross-lingual retrieval over X-X training", "verdict"] == "supported"
    assert claims.loc["Hybrid batches improve multilingual retrieval over X-X training", "verdict"] == "inconclusive"
    assert claims.loc["Hybrid batches improve monolingual retrieval over X-Y training", "verdict"] == "not run"
    assert claims.loc["Gains on MIRACL (nDCG@10, Recall@100)", "verdict"] == "not testable offline"
    assert "+.200 [" in claims.loc["Hybrid batches improve cross-lingual retrieval over X-X training", "evidence"]
    assert claims.loc["Hybrid batches improve cross-lingual retrieval over X-X training", "paper (XLM-R)"] == "+.031"
    assert claims.loc["Hybrid batches reduce language bias (rank distance) against X-X", "paper (XLM-R)"] == "-123"


def test_runs_of_different_devices_are_never_compared():
    gpu, cpu = {"cpu": "Xeon", "cuda": "NVIDIA H200"}, {"cpu": "Xeon", "cuda": None}
    times = pd.DataFrame({"notebook": ["02 train", "03 evaluate", "03 evaluate", "03 evaluate", "05 compare"],
                          "run": ["sum-s0", "sum-s0", "xx-s0", "zero-shot-s0", "study"],
                          "machine": [gpu, gpu, cpu, None, None]})  # zero-shot-s0: recorded before machines were
    assert analysis.one_device(times, ["xx-s0", "zero-shot-s0"]) == "cpu"
    assert analysis.one_device(times.iloc[:2]) == "NVIDIA H200"
    with pytest.raises(ValueError, match=r"different devices cannot be compared: NVIDIA H200: sum-s0; cpu: xx-s0, zero-shot-s0"):
        analysis.one_device(times)


def test_points_that_coincide_are_labelled_once_together():
    points = pd.DataFrame({"mono": [0.670, 0.6704, 0.681, 0.6702], "cross": [0.599, 0.5993, 0.608, 0.5991]},
                          index=["sum", "pcgrad", "hybrid(0.75)", "gradvac"])
    g = analysis.coinciding(points, "mono", "cross", within=0.0005)
    assert g["label"].tolist() == ["sum = pcgrad = gradvac", "hybrid(0.75)"] and g["size"].tolist() == [3, 1]
    assert g[["mono", "cross"]].values.tolist() == [[0.670, 0.599], [0.681, 0.608]]


def test_the_answer_lists_only_the_questions_the_runs_ask():
    from hybridlib.compare import QUESTIONS
    from hybridlib.config import Profile
    row = {"a": "hybrid(0.5)", "b": "sum", "figure": "XQuAD-R mono mAP", "diff": 0.001, "bound": 0.004, "margin": 0.01,
           "verdict": "equivalent", "equivalent_strict": True, "seeds": 3}
    verdicts = pd.DataFrame([{**row, "question": QUESTIONS["pairs"]}])
    profile = Profile("t", batch_size=32, budget_pairs=3072, strategies=("hybrid(0.5)", "sum"))
    text, bullets = analysis.answer(profile, verdicts, pd.DataFrame())
    assert text.startswith("Fine-tuning multilingual-e5-small on 3,072 MLQA pairs (96 steps of 32), hybrid batches "
                           "and gradient mixing end equivalent at equal pairs: hybrid(0.5) vs sum: at most .004 in mAP")
    assert "conflict" not in text  # no floor probed: nothing said about it
    assert bullets[0].startswith("**vs mixing, equal pairs**: hybrid(0.5) vs sum") and len(bullets) == 2
    assert bullets[1] == ("Not asked by this profile's runs: vs mixing, equal steps; vs matched sum(alpha); vs X-X and "
                          "X-Y (the `study` profile asks them).")
    # the lead follows the verdicts: one open comparison, then one difference
    open_ = pd.concat([verdicts, verdicts.assign(figure="XQuAD-R cross mAP", bound=0.013, verdict="inconclusive",
                                                 equivalent_strict=False)])
    assert ("), no comparison of hybrid batches with gradient mixing at equal pairs finds a difference: hybrid(0.5) vs "
            "sum: at most .013 in mAP") in analysis.answer(profile, open_, pd.DataFrame())[0]
    differ = open_.assign(verdict=["equivalent", "worse"], bound=[0.004, 0.021])
    assert "), hybrid batches and gradient mixing differ at equal pairs: hybrid(0.5) vs sum: at most .021 in mAP" in \
        analysis.answer(profile, differ, pd.DataFrame())[0]
    text, bullets = analysis.answer(profile, verdicts.iloc[:0], pd.DataFrame())
    assert text.endswith("(96 steps of 32), no pair of its runs compares hybrid batches with gradient mixing.") and len(bullets) == 1
    # the lead alone, as the introduction quotes it
    assert analysis.lead(open_) == "no comparison of hybrid batches with gradient mixing at equal pairs finds a difference"


def test_claims_summary_counts_the_tested_claims_and_says_when_none_was():
    claims = pd.DataFrame({"verdict": ["supported", "inconclusive", "inconclusive", "not run", "not testable offline"]})
    assert analysis.claims_summary(claims) == "of 3 tested, 2 inconclusive, 1 supported"
    assert analysis.claims_summary(claims.iloc[3:]) == "none tested: no pair of this profile's runs asks one"


def test_labels_are_placed_where_they_cover_no_other_label_and_no_point():
    points = np.array([[100.0, 100.0], [130.0, 100.0], [100.0, 120.0], [400.0, 300.0]])
    sizes = np.array([[60.0, 12.0], [60.0, 12.0], [40.0, 12.0], [50.0, 12.0]])
    marks = np.vstack([points, [[408.0, 300.0]]])  # an unlabelled marker right of point 3
    off, rings = analysis.place_labels(points, sizes, marks)
    assert off[0].tolist() == [-68.0, -6.0]  # right of point 0 lies on point 1: left instead
    assert off[3].tolist() == [-58.0, -6.0]  # right of point 3 lies on the unlabelled marker: left
    assert rings.tolist() == [1, 1, 1, 1]
    lo, hi = points + off, points + off + sizes
    for i in range(4):
        for j in range(5):
            if j < 4 and i != j:  # no two labels overlap
                assert np.any(hi[i] <= lo[j]) or np.any(lo[i] >= hi[j])
            if i != j:  # and no label covers another marker (6 either side)
                assert np.any(hi[i] <= marks[j] - 6) or np.any(lo[i] >= marks[j] + 6)
    off, _ = analysis.place_labels(points[:1], sizes[:1], bounds=((50.0, 0.0), (160.0, 500.0)))
    assert off[0].tolist() == [-30.0, 8.0]  # right (to 168) and left (from 32) leave the bounds: above
    off, rings = analysis.place_labels(np.zeros((30, 2)), np.full((30, 2), 10.0))  # 24 spots around one point
    assert rings[:8].tolist() == [1] * 8 and rings[8:16].tolist() == [2] * 8 and rings[16:24].tolist() == [3] * 8
    assert off[24:].tolist() == [[8.0, -5.0]] * 6 and rings[24:].tolist() == [1] * 6  # none free: the first spot


def test_annotate_labels_every_point_without_overlaps_inside_the_axes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3))
    xy = np.array([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [1.0, 1.0]])
    ax.scatter(xy[:, 0], xy[:, 1])
    analysis.annotate(ax, xy, ["sum = pcgrad", "mgda", "xx", "zero-shot"], marks=xy)
    fig.canvas.draw()
    boxes = [t.get_window_extent().expanded(0.99, 0.99) for t in ax.texts]  # labels may touch, not overlap
    assert [t.get_text() for t in ax.texts] == ["sum = pcgrad", "mgda", "xx", "zero-shot"]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    axes = ax.get_window_extent()
    assert all(axes.x0 <= b.x0 and b.x1 <= axes.x1 + 1 and axes.y0 <= b.y0 and b.y1 <= axes.y1 + 1 for b in boxes)
    plt.close(fig)
