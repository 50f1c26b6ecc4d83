"""Comparing strategies: collect a profile's runs, the study's comparisons and their four-way verdicts, the
Pareto front, the paper's claims."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError
from .stages import RunDir
from .stats import bootstrap_sums, group_draws, holm, seed_test, verdict4
from .strategy import RUN_PARAMS, Strategy


def collect(profile_dir: str | Path, name: str, runs: list[str] | None = None,
            columns: list[str] | None = None) -> pd.DataFrame:
    """Concatenate one result file (``results.parquet``, ``per_query.parquet``, ``preference.parquet``,
    ``train_log.jsonl``, ``train_summary.json``) over every run directory of a profile, or over ``runs``
    (directory names) only: the runs an analysis reads, not a run still in training or evaluation.
    ``columns`` (tables only): read just these, and text as categories: a study's per-query tables hold
    24 million rows, which as Python strings take more memory than a small machine has."""
    paths = [p for p in sorted(Path(profile_dir).glob(f"*/{name}")) if runs is None or p.parent.name in runs]
    if columns is not None and name.endswith(".parquet") and paths:
        import pyarrow as pa
        import pyarrow.parquet as pq
        tables = [pq.read_table(p, columns=[c for c in columns if c in pq.read_schema(p).names]) for p in paths]
        tables = [t for t in tables if t.num_rows]  # a run without a column (BM25: no rank distance) has nulls
        if tables:
            return pa.concat_tables(tables, promote_options="default").to_pandas(strings_to_categorical=True)
    frames = []
    for path in paths:
        if name.endswith(".parquet"):
            frame = pd.read_parquet(path)
            if len(frame):  # the BM25 baseline has no multilingual views, so an empty preference table
                frames.append(frame)
        elif name.endswith(".jsonl"):
            frames.append(pd.read_json(path, lines=True).assign(run=path.parent.name))
        else:
            frames.append(pd.json_normalize(pd.read_json(path, typ="series").to_dict()).assign(run=path.parent.name))
    if not frames:
        raise FileNotFoundError(f"{profile_dir}: no run has {name} yet")
    return pd.concat(frames, ignore_index=True)


def reproduction(a: str | Path, b: str | Path, tolerance: float = 1e-6) -> tuple[pd.DataFrame, list[str]]:
    """Compare every run's results in two profile directories: per run the number of values, the largest
    absolute difference, and the largest difference relative to ``max(1, abs(value))`` (so rank distances,
    in the hundreds, are held to the same relative standard as mAP), over every row: headline and
    per-language figures alike. Problems: a run in one directory only, rows in one table only, unreadable
    tables, a value NaN on one side only, differences above ``tolerance``."""
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"tolerance={tolerance!r}: expected a finite number >= 0")
    for d in (a, b):
        if not Path(d).is_dir():
            raise ConfigError(f"{d}: no such directory (expected a profile's results directory, e.g. runs/cpu)")
    key = ["collection", "setting", "qlang", "plang", "metric"]
    runs = [{p.parent.name for p in Path(d).glob(f"*/{RunDir.RESULTS}")} for d in (a, b)]
    problems = [f"{run}: results in {d} only" for d, only in ((a, runs[0] - runs[1]), (b, runs[1] - runs[0]))
                for run in sorted(only)]
    if not runs[0] | runs[1]:
        problems.append(f"no run has {RunDir.RESULTS} in {a} or {b}")
    rows = []
    for run in sorted(runs[0] & runs[1]):
        try:
            ta, tb = (pd.read_parquet(Path(d) / run / RunDir.RESULTS) for d in (a, b))
        except Exception as e:
            problems.append(f"{run}: unreadable results ({type(e).__name__}: {e})")
            continue
        m = ta.merge(tb, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
        for side, d in (("left_only", a), ("right_only", b)):
            if (m["_merge"] == side).any():
                problems.append(f"{run}: {int((m['_merge'] == side).sum())} result rows only in {d}")
        m = m[m["_merge"] == "both"].reset_index(drop=True)
        nan = m["value_a"].isna() != m["value_b"].isna()
        if nan.any():
            problems.append(f"{run}: {int(nan.sum())} value(s) NaN on one side only, e.g. "
                            f"{'/'.join(map(str, m.loc[nan.idxmax(), key]))}")
        diff = (m["value_a"] - m["value_b"]).abs()
        rel = diff / np.maximum(1.0, m["value_a"].abs())
        worst = rel.idxmax() if rel.notna().any() else None
        where = "/".join(map(str, m.loc[worst, key])) if worst is not None else ""
        row = {"run": run, "values": len(m), "max_abs_diff": float(diff.max()) if len(m) else np.nan,
               "max_rel_diff": float(rel.max()) if worst is not None else np.nan, "worst": where}
        if worst is not None and rel.max() > tolerance:
            problems.append(f"{run}: {where} differs by {diff[worst]:.6g} ({m.loc[worst, 'value_a']:.6g} vs "
                            f"{m.loc[worst, 'value_b']:.6g}), above the tolerance {tolerance:g}")
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "values", "max_abs_diff", "max_rel_diff", "worst"]), problems


def pareto(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True for the points no other point beats on both ``x`` and ``y`` (higher is better)."""
    xs, ys = points[x].to_numpy(), points[y].to_numpy()
    dominated = [((xs >= xs[i]) & (ys >= ys[i]) & ((xs > xs[i]) | (ys > ys[i]))).any() for i in range(len(points))]
    return pd.Series(~np.array(dominated, dtype=bool), index=points.index)


def pareto_frequency(sums: dict, x: str, y: str, strategies: list[str], n_boot: int = 1000, seed: int = 0) -> pd.Series:
    """How often each of ``strategies`` is on the Pareto front of figures ``x`` and ``y`` (:func:`study_sums`'
    labels) when the study is resampled: each draw takes the question groups with replacement (the same for
    every strategy and both figures) and the seeds with replacement (the same seed labels for every
    strategy; an untrained one, evaluated once, counts for every seed). A front member at 100% is there
    whatever the sample; one at 40% is there by the noise."""
    rng = np.random.default_rng(seed)
    trained = [s for s in strategies if Strategy.parse(s).trains] or strategies
    labels = sorted(set.intersection(*(set(sums[f][s][0]) for f in (x, y) for s in trained)))
    picks = rng.integers(len(labels), size=(n_boot, len(labels)))
    means = {}
    for f in (x, y):
        draws = group_draws(len(next(iter(sums[f].values()))[1]), n_boot, seed + 1)  # (n_boot, G)
        for s in strategies:
            seeds, total, weights = sums[f][s]
            cols = np.searchsorted(seeds, labels) if len(seeds) > 1 else np.zeros(len(labels), int)
            per_seed = (draws @ total[:, cols]) / (draws @ weights[:, cols])  # (n_boot, S)
            means[f, s] = np.take_along_axis(per_seed, picks, axis=1).mean(1)
    on = np.zeros(len(strategies))
    for b in range(n_boot):
        points = pd.DataFrame({"x": [means[x, s][b] for s in strategies], "y": [means[y, s][b] for s in strategies]})
        on += pareto(points, "x", "y").to_numpy()
    return pd.Series(on / n_boot, index=strategies)


def study_sums(per_query: pd.DataFrame, figures: dict[str, tuple[str, str, str]]) -> dict[str, dict]:
    """``figure_sums`` of every figure, with one pass over the rows to split them by view."""
    views = dict(iter(per_query.groupby(["collection", "setting"], sort=False)))
    return {label: figure_sums(views.get((coll, setting), per_query.iloc[:0]), coll, setting, metric, view_only=True)
            for label, (coll, setting, metric) in figures.items()}


def figure_sums(per_query: pd.DataFrame, collection: str, setting: str, metric: str, view_only: bool = False) -> dict:
    """Per strategy, the (question group, seed) sums of ``metric`` and of the view weights that make each
    seed's mean a macro-average over views: {strategy: (seed labels, sums (G, S), weights (G, S))}, every
    strategy on the same group axis. The whole analysis works from these: one pass over the rows a figure."""
    d = per_query if view_only else per_query[(per_query.collection == collection) & (per_query.setting == setting)]
    if metric not in d:
        raise KeyError(f"metric {metric!r} not in the per-query table of {collection}/{setting}")
    d = d[["strategy", "seed", "qlang", "plang", "query", "group", metric]].dropna(subset=[metric])
    run, view = ["strategy", "seed"], ["strategy", "seed", "qlang", "plang"]
    size = d.groupby(view, observed=True, sort=False)["query"].transform("size").to_numpy()
    n_views = d[view].drop_duplicates().groupby(run, observed=True).size().rename("n_views")
    w = 1.0 / (d[run].merge(n_views, left_on=run, right_index=True, how="left")["n_views"].to_numpy() * size)
    agg = (d.assign(wv=w * d[metric].to_numpy(), w=w).groupby(["strategy", "group", "seed"], observed=True)[["wv", "w"]]
           .sum())
    groups = np.unique(agg.index.get_level_values("group"))
    out = {}
    for strategy, x in agg.groupby(level="strategy", observed=True):
        x = x.droplevel("strategy").unstack("seed", fill_value=0.0).reindex(groups, fill_value=0.0)
        out[strategy] = (x["wv"].columns.to_numpy(), x["wv"].to_numpy(), x["w"].to_numpy())
    return out


QUESTIONS = {  # what each kind of comparison asks, in display order
    "matched": "vs matched sum(alpha)",
    "pairs": "vs mixing, equal pairs",
    "steps": "vs mixing, equal steps",
    "samplers": "vs X-X and X-Y",
    "control": "positive control: X-X vs X-Y",
}


def regime(strategy) -> dict[str, float]:
    """How a run is trained beyond its strategy: budget (1 when not given), learning rate, frozen embeddings."""
    return {"budget": 1.0, **Strategy.parse(strategy).run_options}


def plain(strategy) -> str:
    """The strategy without its run options: 'pcgrad(lr=2e-05)' -> 'pcgrad' (tables name the regime once)."""
    s = Strategy.parse(strategy)
    return str(Strategy(s.name, s.alpha, tuple((k, v) for k, v in s.options if k not in RUN_PARAMS)))


def design(strategies) -> pd.DataFrame:
    """The comparisons the study answers with, among ``strategies``: one row per (question, a, b).

    - every ``hybrid(alpha)`` against the mixing method that weighs the two gradients as it weighs the two
      kinds of batch: ``sum(alpha)`` ("matched"), and for alpha = 0.5 every plain mixing method, at equal
      pairs (same run options) and at equal optimizer steps (the mixing arm at twice the hybrid's budget);
    - every ``hybrid(alpha)`` against ``xx`` and ``xy`` trained the same way;
    - the positive control: ``xx`` against ``xy`` in every regime that has both.

    The ``question`` names the regime where it is not the profile's own, e.g. 'vs X-X and X-Y (budget=4.1)'."""
    parsed = [Strategy.parse(s) for s in dict.fromkeys(strategies)]
    trained = [s for s in parsed if s.trains]

    def where(s) -> str:
        r = {k: v for k, v in regime(s).items() if (k, v) != ("budget", 1.0)}
        return f" ({', '.join(f'{k}={v:g}' for k, v in r.items())})" if r else ""

    rows = []
    for h in (s for s in trained if s.name == "hybrid"):
        r = regime(h)
        for o in trained:
            weight = o.alpha if o.alpha is not None else 0.5  # a plain method weighs both objectives alike
            if o.mixing and weight == h.alpha:
                if regime(o) == r:
                    rows.append(("matched" if o.alpha is not None else "pairs", h, o, where(h)))
                elif regime(o) == {**r, "budget": 2 * r["budget"]}:
                    rows.append(("steps", h, o, where(h)))
            elif o.name in ("xx", "xy") and regime(o) == r:
                rows.append(("samplers", h, o, where(h)))
    for x in (s for s in trained if s.name == "xx"):
        rows += [("control", x, y, where(x)) for y in trained if y.name == "xy" and regime(y) == regime(x)]
    regimes, kinds = list(dict.fromkeys(["", *map(where, parsed)])), list(QUESTIONS)  # in the profile's order
    rows.sort(key=lambda r: (regimes.index(r[3]), kinds.index(r[0]), r[1].order, r[2].order))
    return pd.DataFrame([{"question": QUESTIONS[k] + w, "a": str(a), "b": str(b)} for k, a, b, w in rows],
                        columns=["question", "a", "b"])


def verdicts(per_query: pd.DataFrame, pairs, figures: dict[str, tuple[str, str, str]], margins: dict[str, float],
             sums: dict | None = None) -> pd.DataFrame:
    """Each comparison of ``pairs`` (a :func:`design` table, or (a, b) tuples) on every figure, or on its own
    ``figure`` where ``pairs`` has that column: the difference a - b averaged over seeds, paired by seed and
    question, with its 95% and 90% intervals and p-value from the seeds and the question groups with a t
    reference (``hybridlib.stats.seed_test``) and its bound (how far apart the two can be); Holm within
    each ``question`` (over the whole table without one); the TOST of equivalence within the figure's margin
    (``margins`` by metric), and within half of it (``equivalent_strict``); and the four-way verdict. A strategy evaluated once (zero-shot) is paired with every seed of the other.
    ``sums``: :func:`study_sums` of the figures when the caller has them already."""
    pairs = pairs if isinstance(pairs, pd.DataFrame) else pd.DataFrame(list(pairs), columns=["a", "b"])
    needed = dict.fromkeys(pairs["figure"]) if "figure" in pairs else figures
    sums_by_figure = sums or study_sums(per_query, {label: figures[label] for label in needed})
    rows = []
    for pair in pairs.to_dict("records"):
        for label in [pair["figure"]] if "figure" in pair else figures:
            coll, setting, metric = figures[label]
            sums = sums_by_figure[label]
            for s in (pair["a"], pair["b"]):
                if s not in sums:
                    raise ValueError(f"{s!r} has no {coll}/{setting} {metric} values")
            (seeds_a, sa, wa), (seeds_b, sb, wb) = sums[pair["a"]], sums[pair["b"]]
            if len(seeds_b) == 1 and not Strategy.parse(pair["b"]).trains:
                sb, wb, seeds_b = np.repeat(sb, len(seeds_a), 1), np.repeat(wb, len(seeds_a), 1), seeds_a
            shared = np.intersect1d(seeds_a, seeds_b)
            ia, ib = np.searchsorted(seeds_a, shared), np.searchsorted(seeds_b, shared)
            if not len(shared) or not np.allclose(wa[:, ia], wb[:, ib]):
                raise ValueError(f"{pair['a']!r} and {pair['b']!r} were not scored on the same queries of "
                                 f"{coll}/{setting}")
            r = seed_test(sa[:, ia] - sb[:, ib], wa[:, ia], margins[metric])
            strict = r["seeds"] >= 3 and r["bound"] < margins[metric] / 2
            rows.append({**pair, "figure": label, **r, "equivalent_strict": strict})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    family = table["question"] if "question" in table else pd.Series(0, index=table.index)
    table["p_holm"] = table.groupby(family, sort=False)["p"].transform(holm)
    table["verdict"] = [verdict4(r.diff, r.p_holm, r.equivalent, figures[r.figure][2] not in LOWER_IS_BETTER)
                        for r in table.itertuples()]
    return table


def seed_intervals(per_query: pd.DataFrame, figures: dict[str, tuple[str, str, str]], n_boot: int = 1000,
                   sums: dict | None = None) -> pd.DataFrame:
    """Per strategy and figure: the mean over seeds, the spread between seeds and the hierarchical 95% interval."""
    sums_by_figure = sums or study_sums(per_query, figures)
    rows = []
    for label in figures:
        draws = None
        for strategy, (seeds, totals, weights) in sums_by_figure[label].items():
            draws = group_draws(len(totals), n_boot) if draws is None else draws
            mean, lo, hi, _ = bootstrap_sums(totals, weights, n_boot, draws=draws)
            per_seed = totals.sum(0) / weights.sum(0)
            rows.append({"strategy": strategy, "figure": label, "mean": mean, "lo": lo, "hi": hi,
                         "sd_over_seeds": float(per_seed.std(ddof=1)) if len(seeds) > 1 else 0.0,
                         "seeds": len(seeds)})
    return pd.DataFrame(rows)


PER_QUERY = ["collection", "setting", "qlang", "plang", "query", "group", "strategy", "seed"]  # what the figures need
FIGURES = {  # label -> (collection, setting, metric)
    "XQuAD-R mono mAP": ("xquad-r", "mono", "map"),
    "XQuAD-R cross mAP": ("xquad-r", "cross", "map"),
    "XQuAD-R multi mAP": ("xquad-r", "multi", "map"),
    "XQuAD-R rank distance": ("xquad-r", "multi", "rank_distance"),
    "MLQA-R mono mAP": ("mlqa-r", "mono", "map"),
    "MLQA-R cross mAP": ("mlqa-r", "cross", "map"),
    "MLQA-R multi mAP": ("mlqa-r", "multi", "map"),
    "TyDi mono MRR@10": ("tydi", "mono", "mrr@10"),
    "TyDi multi MRR@10": ("tydi", "multi", "mrr@10"),
}
LOWER_IS_BETTER = {"rank_distance"}
FIGURES_PER_QUERY = PER_QUERY + sorted({metric for _, _, metric in FIGURES.values()})  # collect(columns=...)


def present(figures: dict[str, tuple[str, str, str]], per_query: pd.DataFrame) -> dict[str, tuple[str, str, str]]:
    """The figures the per-query table holds (a profile evaluates on the collections it names): those with
    rows of their collection and view and values of their metric."""
    views = dict(iter(per_query.groupby(["collection", "setting"], sort=False)))
    return {label: (c, s, m) for label, (c, s, m) in figures.items()
            if (c, s) in views and m in per_query and views[(c, s)][m].notna().any()}

# The hybrid-batch paper's claims (arXiv 2408.10536, abstract and section 4), as testable comparisons, each
# saying that a is better than b: (claim, strategy a, strategy b, figure, the paper's own difference a - b for
# XLM-R: its table of XQuAD-R / MLQA-R results; None where it has none).
CLAIMS = [
    ("Hybrid batches improve cross-lingual retrieval over X-X training", "hybrid(0.5)", "xx", "XQuAD-R cross mAP", 0.031),
    ("Hybrid batches improve multilingual retrieval over X-X training", "hybrid(0.5)", "xx", "XQuAD-R multi mAP", 0.046),
    ("Hybrid batches improve monolingual retrieval over X-Y training", "hybrid(0.5)", "xy", "XQuAD-R mono mAP", 0.043),
    ("Hybrid batches improve multilingual retrieval over X-Y training", "hybrid(0.5)", "xy", "XQuAD-R multi mAP", 0.000),
    ("Hybrid batches reduce language bias (rank distance) against X-X", "hybrid(0.5)", "xx", "XQuAD-R rank distance", -123),
    ("Hybrid batches reduce language bias (rank distance) against X-Y", "hybrid(0.5)", "xy", "XQuAD-R rank distance", -8),
    ("On MLQA-R too, hybrid improves cross-lingual retrieval over X-X", "hybrid(0.5)", "xx", "MLQA-R cross mAP", 0.039),
    ("On MLQA-R too, hybrid improves monolingual retrieval over X-Y", "hybrid(0.5)", "xy", "MLQA-R mono mAP", 0.022),
    ("Hybrid training improves monolingual retrieval on unseen data over the initial model (TyDi here, MIRACL in the paper)",
     "hybrid(0.5)", "zero-shot", "TyDi mono MRR@10", None),
]
# The paper's XQuAD-R mAP gains of hybrid batches over single-kind batches (its results table), per model:
# (setting, baseline) -> hybrid minus that baseline. Each claim rests on the baseline it names; against the
# better of the two baselines in a column the gains are smaller.
PAPER_GAINS = {
    "XLM-R": {("cross", "X-X"): 0.031, ("multi", "X-X"): 0.046, ("mono", "X-Y"): 0.043,
              ("mono", "X-X"): 0.006, ("cross", "X-Y"): 0.005, ("multi", "X-Y"): 0.000},
    "LaBSE": {("cross", "X-X"): 0.015, ("multi", "X-X"): 0.030, ("mono", "X-Y"): 0.016},
}


def paper_gains() -> str:
    """:data:`PAPER_GAINS` in a sentence: against the baseline each claim is about, then against the better one."""
    said = lambda gains, keys: ", ".join(f"{number('', gains[k], True)} {k[0]} over {k[1]}" for k in keys)  # noqa: E731
    claims, better = [("cross", "X-X"), ("multi", "X-X"), ("mono", "X-Y")], [("mono", "X-X"), ("cross", "X-Y"), ("multi", "X-Y")]
    return (f"against the baseline each claim is about, {said(PAPER_GAINS['XLM-R'], claims)} (XLM-R; LaBSE "
            f"{said(PAPER_GAINS['LaBSE'], claims)}); against the better of the two in each setting, "
            f"{said(PAPER_GAINS['XLM-R'], better)} (XLM-R)")


NOT_TESTABLE = [
    ("The gains hold for XLM-R and LaBSE initialisations",
     "needs hub models (the paper profile); offline only the embedded multilingual-e5-small is available"),
    ("Gains on MIRACL (nDCG@10, Recall@100)", "MIRACL's passages are on the Hugging Face hub (several GB), unreachable offline"),
    ("Results at the paper's scale of machine-translated training data", "the paper's training data is not released"),
]


def number(figure: str, v: float, signed: bool = False) -> str:
    """A figure's value as the tables show it: rank distance whole, the others to three decimals without the
    leading zero; ``signed``: with its sign, none where it rounds to zero ('.000', not '-.000')."""
    if pd.isna(v):
        return "-"
    digits = 0 if "rank distance" in figure else 3
    v = v if round(v, digits) != 0 else 0.0
    return f"{v:{'+' if signed and v else ''}.{digits}f}".replace("0.", ".", 1)


def interval(figure: str, lo: float, hi: float) -> str:
    """A difference's interval as the tables show it, e.g. '[-.004, +.006]' or '[-9, +15]'."""
    return f"[{number(figure, lo, True)}, {number(figure, hi, True)}]"


def claims(per_query: pd.DataFrame, margins: dict[str, float], sums: dict | None = None) -> pd.DataFrame:
    """Each testable claim with the paper's own difference, the measured one (mean over seeds, 95% interval)
    and its verdict: 'supported' when the four-way verdict says a is better than b (Holm over the claims),
    'contradicted' when worse, 'not supported (equivalent)', or 'inconclusive'; the untestable ones with the
    reason."""
    strategies, figures = set(per_query["strategy"]), present(FIGURES, per_query)
    words = {"better": "supported", "worse": "contradicted", "equivalent": "not supported (equivalent)",
             "inconclusive": "inconclusive"}
    rows = []
    for claim, a, b, label, paper in CLAIMS:
        delta = "-" if paper is None else number(label, paper, signed=True)
        rows.append({"claim": claim, "a": a, "b": b, "figure": label, "paper (XLM-R)": delta,
                     "run": {a, b} <= strategies and label in figures})
    table = pd.DataFrame(rows)
    tested = verdicts(per_query, table[table.run][["a", "b", "figure"]], figures, margins, sums)
    if len(tested):
        table = table.merge(tested[["a", "b", "figure", "diff", "lo", "hi", "seeds", "p_holm", "verdict"]],
                            on=["a", "b", "figure"], how="left")
        table.loc[table.run, "evidence"] = [
            f"{r.a} - {r.b} on {r.figure}: {number(r.figure, r.diff, True)} {interval(r.figure, r.lo, r.hi)}, "
            f"{r.seeds} seed{'s' * (r.seeds > 1)}, Holm p = {r.p_holm:.3g}" for r in table[table.run].itertuples()]
        table.loc[table.run, "verdict"] = table.loc[table.run, "verdict"].map(words)
    table.loc[~table.run, "verdict"] = "not run"
    table.loc[~table.run, "evidence"] = [f"{r.a} vs {r.b}: not run in this profile" if r.figure in figures else
                                         f"{r.figure}: not evaluated in this profile" for r in table[~table.run].itertuples()]
    untestable = pd.DataFrame([{"claim": c, "verdict": "not testable offline", "evidence": why, "paper (XLM-R)": "-"}
                               for c, why in NOT_TESTABLE])
    return pd.concat([table, untestable], ignore_index=True)[["claim", "paper (XLM-R)", "verdict", "evidence"]]
