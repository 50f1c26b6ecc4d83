import re

import numpy as np
import pandas as pd
import pytest

from hybridlib import compare
from hybridlib.stats import holm


def test_pareto_front_by_hand():
    points = pd.DataFrame({"mono": [0.8, 0.7, 0.75, 0.6], "cross": [0.6, 0.7, 0.6, 0.5]}, index=list("abcd"))
    assert compare.pareto(points, "mono", "cross").tolist() == [True, True, False, False]


def per_query(strategy, shift, rng):
    n = 200
    return pd.DataFrame({"collection": "xquad-r", "setting": "mono", "qlang": np.repeat(["en", "de"], n // 2),
                         "plang": np.repeat(["en", "de"], n // 2), "query": np.arange(n), "group": np.arange(n) % 100,
                         "map": np.clip(rng.normal(0.6, 0.1, n) + shift, 0, 1), "strategy": strategy})


def test_design_pairs_each_hybrid_with_its_matched_and_same_regime_arms():
    d = compare.design(["zero-shot", "xx", "xy", "hybrid(0.25)", "hybrid(0.5)", "sum", "pcgrad", "sum(0.25)",
                        "pcgrad(budget=2)", "pcgrad(lr=2e-05)", "hybrid(0.5, lr=2e-05)", "xx(frozen=0)",
                        "xy(frozen=0)", "hybrid(0.5, frozen=0)", "sum(0.75)"])
    got = {(r.question, r.a, r.b) for r in d.itertuples()}
    assert got == {
        ("vs matched sum(alpha)", "hybrid(0.25)", "sum(0.25)"),  # sum(0.75) has no hybrid(0.75) to match
        ("vs mixing, equal pairs", "hybrid(0.5)", "sum"), ("vs mixing, equal pairs", "hybrid(0.5)", "pcgrad"),
        ("vs mixing, equal steps", "hybrid(0.5)", "pcgrad(budget=2)"),
        ("vs X-X and X-Y", "hybrid(0.25)", "xx"), ("vs X-X and X-Y", "hybrid(0.25)", "xy"),
        ("vs X-X and X-Y", "hybrid(0.5)", "xx"), ("vs X-X and X-Y", "hybrid(0.5)", "xy"),
        ("positive control: X-X vs X-Y", "xx", "xy"),
        ("vs mixing, equal pairs (lr=2e-05)", "hybrid(0.5, lr=2e-05)", "pcgrad(lr=2e-05)"),
        ("vs X-X and X-Y (frozen=0)", "hybrid(0.5, frozen=0)", "xx(frozen=0)"),
        ("vs X-X and X-Y (frozen=0)", "hybrid(0.5, frozen=0)", "xy(frozen=0)"),
        ("positive control: X-X vs X-Y (frozen=0)", "xx(frozen=0)", "xy(frozen=0)")}
    # the profile's own regime first, then the others in the order the profile lists them
    assert list(dict.fromkeys(d.question)) == [
        "vs matched sum(alpha)", "vs mixing, equal pairs", "vs mixing, equal steps", "vs X-X and X-Y",
        "positive control: X-X vs X-Y", "vs mixing, equal pairs (lr=2e-05)", "vs X-X and X-Y (frozen=0)",
        "positive control: X-X vs X-Y (frozen=0)"]
    assert compare.plain("hybrid(0.5, lr=2e-05)") == "hybrid(0.5)"
    assert compare.plain("cagrad(c=0.2, budget=2)") == "cagrad(c=0.2)"
    assert compare.design(["zero-shot", "xx"]).empty


def test_collect_reads_every_run_or_the_named_runs_only(tmp_path):
    for run, seed in (("xx-s0", 0), ("xx-s1", 1), ("xy-s0", 0)):
        (tmp_path / run).mkdir()
        pd.DataFrame({"strategy": [run[:2]], "seed": [seed]}).to_parquet(tmp_path / run / "results.parquet")
    (tmp_path / "xy-s1").mkdir()  # a run still in training: no results yet
    assert compare.collect(tmp_path, "results.parquet")[["strategy", "seed"]].values.tolist() == \
        [["xx", 0], ["xx", 1], ["xy", 0]]
    assert compare.collect(tmp_path, "results.parquet", ["xy-s0", "xx-s0"])[["strategy", "seed"]].values.tolist() == \
        [["xx", 0], ["xy", 0]]
    with pytest.raises(FileNotFoundError, match="no run has results.parquet"):
        compare.collect(tmp_path, "results.parquet", ["xy-s1"])


def test_reproduction_reports_the_largest_difference(tmp_path):
    rows = pd.DataFrame({"collection": ["x", "x"], "setting": ["mono", "mono"], "qlang": ["all", "en"],
                         "plang": ["all", "en"], "metric": ["map", "map"], "value": [0.5, 0.4]})
    for side, delta in (("a", 0.0), ("b", 0.001)):
        (tmp_path / side / "run-s0").mkdir(parents=True)
        rows.assign(value=rows["value"] + delta).to_parquet(tmp_path / side / "run-s0" / "results.parquet")
    table, problems = compare.reproduction(tmp_path / "a", tmp_path / "b", tolerance=0.01)
    assert table["max_rel_diff"].iloc[0] == pytest.approx(0.001) and problems == []
    table, problems = compare.reproduction(tmp_path / "a", tmp_path / "b", tolerance=1e-6)
    assert problems == ["run-s0: x/mono/all/all/map differs by 0.001 (0.5 vs 0.501), above the tolerance 1e-06"]


@pytest.mark.parametrize("argv, message", [
    (["--tolerance", "nan"], r"tolerance=nan: expected a finite number >= 0"),
    (["--tolerance", "-1"], r"tolerance=-1.0: expected a finite number >= 0"),
    (["--tolerance", "inf"], r"tolerance=inf: expected a finite number >= 0"),
    (["missing"], r"missing: no such directory \(expected a profile's results directory"),
])
def test_verify_refuses_a_tolerance_that_passes_anything_and_a_missing_directory(tmp_path, capsys, argv, message):
    from hybridlib.__main__ import main
    write_results(tmp_path / "a" / "xx-s0")
    dirs = [str(tmp_path / "a"), str(tmp_path / argv[0])] if argv[0] == "missing" else [str(tmp_path / "a")] * 2
    assert main(["verify", *dirs, *[x for x in argv if x != "missing"]]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1  # one line, no traceback


def write_results(path, **changes):
    rows = pd.DataFrame({"collection": ["x", "x", "x"], "setting": ["mono", "multi", "multi"], "qlang": ["all"] * 3,
                         "plang": ["all"] * 3, "metric": ["map", "map", "rank_distance"], "value": [0.5, 0.3, 350.0]})
    for metric, value in changes.items():
        rows.loc[rows.metric == metric, "value"] = value
    path.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(path / "results.parquet")


@pytest.mark.parametrize("case, expected", [
    ("missing run", "xy-s0: results in {a} only"),
    ("missing rows", "xx-s0: 1 result rows only in {a}"),
    ("nan", r"xx-s0: 2 value\(s\) NaN on one side only, e.g. x/mono/all/all/map"),
    ("rank distance off by 1000", r"xx-s0: x/multi/all/all/rank_distance differs by 1000"),
    ("a per-language figure off by .5", r"xx-s0: x/mono/de/de/map differs by 0.5"),
])
def test_verify_fails_on_what_a_reproduction_must_not_lose(tmp_path, case, expected):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        write_results(d / "xx-s0")
    write_results(a / "xy-s0")
    if case != "missing run":
        write_results(b / "xy-s0")
    if case == "missing rows":
        pd.read_parquet(b / "xx-s0" / "results.parquet").iloc[:2].to_parquet(b / "xx-s0" / "results.parquet")
    if case == "nan":
        write_results(b / "xx-s0", map=float("nan"))
    if case == "rank distance off by 1000":
        write_results(b / "xx-s0", rank_distance=1350.0)
    if case == "a per-language figure off by .5":
        for d, value in ((a, 0.4), (b, 0.9)):
            t = pd.read_parquet(d / "xx-s0" / "results.parquet")
            t.loc[len(t)] = ["x", "mono", "de", "de", "map", value]
            t.to_parquet(d / "xx-s0" / "results.parquet")
    _, problems = compare.reproduction(a, b)
    assert any(re.search(expected.format(a=a), p) for p in problems), problems
    from hybridlib.__main__ import main
    assert main(["verify", str(a), str(b)]) == 1


def test_summary_keeps_run_strategy_and_training_seed_columns():
    from hybridlib.evaluate import summarize
    pq = per_query("xx", 0.0, np.random.default_rng(1)).drop(columns="strategy")
    table = summarize(pq, n_boot=50, run="xx-s3", strategy="xx", seed=3)
    assert list(table.columns[:3]) == ["run", "strategy", "seed"] and (table["seed"] == 3).all()
    macro = table[(table.qlang == "all") & (table.metric == "map")]["value"].iloc[0]
    assert macro == pytest.approx(pq.groupby("qlang")["map"].mean().mean())


def test_four_way_verdicts_paired_by_seed_and_question():
    """Five seeds of three strategies on the same 400 questions: one two margins better than the base, one
    the base re-measured (equivalent), one with a small shift drowned in seed noise (inconclusive)."""
    rng = np.random.default_rng(5)
    n, frames = 400, []
    base = rng.normal(0.6, 0.15, n)
    for seed in range(5):
        for strategy, shift, seed_sd in (("hybrid(0.5)", 0.0, 0.0), ("sum", 0.0, 0.0005), ("xx", -0.010, 0.0005),
                                         ("xy", 0.003, 0.02)):
            values = base + shift + rng.normal(0, seed_sd) + rng.normal(0, 0.005, n)
            frames.append(pd.DataFrame({"collection": "xquad-r", "setting": "mono", "qlang": np.repeat(["en", "de"], n // 2),
                                        "plang": np.repeat(["en", "de"], n // 2), "query": np.arange(n),
                                        "group": np.arange(n) % 200, "map": values, "strategy": strategy, "seed": seed}))
    pq = pd.concat(frames)
    figures = {"XQuAD-R mono mAP": ("xquad-r", "mono", "map")}
    table = compare.verdicts(pq, [("hybrid(0.5)", b) for b in ("sum", "xx", "xy")], figures, {"map": 0.005})
    assert table.set_index("b")["verdict"].to_dict() == {"sum": "equivalent", "xx": "better", "xy": "inconclusive"}
    assert (table["seeds"] == 5).all() and (table["p_holm"] >= table["p"]).all()
    assert table.set_index("b").loc["xx", "diff"] == pytest.approx(0.010, abs=0.001)
    assert table.set_index("b").loc["xy", "sd"] > 5 * table.set_index("b").loc["sum", "sd"]  # the seeds' spread
    one = compare.verdicts(pq[pq.seed == 0], [("hybrid(0.5)", "sum")], {"m": ("xquad-r", "mono", "map")}, {"map": 0.005})
    assert one["verdict"].item() == "inconclusive"  # one seed never says "the same"
    # Holm within each question: xx alone in its family keeps its own p; the family of two corrects both
    asked = pd.DataFrame({"question": ["q1", "q2", "q2"], "a": "hybrid(0.5)", "b": ["xx", "sum", "xy"]})
    by_question = compare.verdicts(pq, asked, figures, {"map": 0.005}).set_index("b")
    assert by_question.loc["xx", "p_holm"] == by_question.loc["xx", "p"]
    assert by_question.loc[["sum", "xy"], "p_holm"].tolist() == pytest.approx(holm(by_question.loc[["sum", "xy"], "p"]))
    intervals = compare.seed_intervals(pq, {"m": ("xquad-r", "mono", "map")}, n_boot=300).set_index("strategy")
    assert intervals.loc["xy", "sd_over_seeds"] > 5 * intervals.loc["sum", "sd_over_seeds"]
    assert (intervals["lo"] < intervals["mean"]).all() and (intervals["mean"] < intervals["hi"]).all()


def test_collecting_the_figures_columns_as_categories_gives_the_same_sums():
    """The study's answer reads only the columns its figures need, text as categories (a fifth of the memory):
    the same (group, seed) sums as the full tables, a run lacking a column (BM25: no rank distance) included."""
    from hybridlib.paths import REPO_ROOT
    profile = REPO_ROOT / "runs" / "cpu"
    full = compare.collect(profile, "per_query.parquet")
    lean = compare.collect(profile, "per_query.parquet", columns=compare.FIGURES_PER_QUERY)
    assert len(lean) == len(full) and str(lean["strategy"].dtype) == "category"
    a, b = compare.study_sums(full, compare.FIGURES), compare.study_sums(lean, compare.FIGURES)
    for label in compare.FIGURES:
        assert a[label].keys() == b[label].keys()
        for s in a[label]:
            for x, y in zip(a[label][s], b[label][s]):
                np.testing.assert_array_equal(x, y)


def test_arms_with_more_seeds_pair_on_the_seeds_both_ran():
    """hybrid(0.5) and xx ran seeds 0-9, sum seeds 0-4 (a profile's extra_seeds): hybrid vs sum uses seeds 0-4,
    hybrid vs xx all ten; each arm's own interval uses all of its seeds. Seed s adds s/1000 to xx only."""
    rng = np.random.default_rng(0)
    n, frames = 200, []
    base = rng.normal(0.6, 0.15, n)
    for strategy, seeds in (("hybrid(0.5)", range(10)), ("xx", range(10)), ("sum", range(5))):
        for seed in seeds:
            values = base + (seed / 1000 if strategy == "xx" else 0.0)
            frames.append(pd.DataFrame({"collection": "xquad-r", "setting": "mono", "qlang": "en", "plang": "en",
                                        "query": np.arange(n), "group": np.arange(n), "map": values,
                                        "strategy": strategy, "seed": seed}))
    pq = pd.concat(frames)
    figures = {"XQuAD-R mono mAP": ("xquad-r", "mono", "map")}
    table = compare.verdicts(pq, [("hybrid(0.5)", "sum"), ("hybrid(0.5)", "xx")], figures, {"map": 0.01}).set_index("b")
    assert table.loc["sum", "seeds"] == 5 and table.loc["xx", "seeds"] == 10
    assert table.loc["sum", "diff"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["xx", "diff"] == pytest.approx(-0.0045)  # -(0 + 1 + ... + 9) / 10 / 1000
    intervals = compare.seed_intervals(pq, figures, n_boot=50).set_index("strategy")
    assert intervals.seeds.to_dict() == {"hybrid(0.5)": 10, "sum": 5, "xx": 10}
