"""Comparing strategies: collect a profile's runs, headline table, paired tests, Pareto front, claims."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .stats import bootstrap_sums, group_draws, holm, paired_randomization, seed_test, verdict4
from .strategy import Strategy

KEY = ["collection", "setting", "qlang", "plang", "query"]


def collect(profile_dir: str | Path, name: str) -> pd.DataFrame:
    """Concatenate one result file (``results.parquet``, ``per_query.parquet``, ``preference.parquet``,
    ``train_log.jsonl``, ``train_summary.json``) over every run directory of a profile."""
    frames = []
    for path in sorted(Path(profile_dir).glob(f"*/{name}")):
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


def macro_weights(d: pd.DataFrame) -> np.ndarray:
    """Per-row weights that turn a weighted mean into the macro-average over (qlang, plang) views."""
    views = d.groupby(["qlang", "plang"], sort=False)["query"].transform("size").to_numpy()
    return 1.0 / (d.groupby(["qlang", "plang"], sort=False).ngroups * views)


def reproduction(a: str | Path, b: str | Path, tolerance: float = 1e-6) -> tuple[pd.DataFrame, list[str]]:
    """Compare every run's results in two profile directories: per run the number of values, the largest
    absolute difference, and the largest headline (``qlang = all``) difference relative to ``max(1, abs(value))``
    (so rank distances, in the hundreds, are held to the same relative standard as mAP). Problems: a run
    in one directory only, rows in one table only, unreadable tables, NaN values, headline differences
    above ``tolerance``."""
    key = ["collection", "setting", "qlang", "plang", "metric"]
    runs = [{p.parent.name for p in Path(d).glob("*/results.parquet")} for d in (a, b)]
    problems = [f"{run}: results in {d} only" for d, only in ((a, runs[0] - runs[1]), (b, runs[1] - runs[0]))
                for run in sorted(only)]
    if not runs[0] | runs[1]:
        problems.append(f"no run has results.parquet in {a} or {b}")
    rows = []
    for run in sorted(runs[0] & runs[1]):
        try:
            ta, tb = (pd.read_parquet(Path(d) / run / "results.parquet") for d in (a, b))
        except Exception as e:
            problems.append(f"{run}: unreadable results ({type(e).__name__}: {e})")
            continue
        m = ta.merge(tb, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
        for side, d in (("left_only", a), ("right_only", b)):
            if (m["_merge"] == side).any():
                problems.append(f"{run}: {int((m['_merge'] == side).sum())} result rows only in {d}")
        m = m[m["_merge"] == "both"]
        nan = m[["value_a", "value_b"]].isna().any(axis=1) & (m["qlang"] == "all")
        if nan.any():
            problems.append(f"{run}: NaN headline value(s) for {sorted(set(m.loc[nan, 'metric']))}")
        diff = (m["value_a"] - m["value_b"]).abs()
        rel = (diff / np.maximum(1.0, m["value_a"].abs()))[m["qlang"] == "all"]
        worst = rel.idxmax() if rel.notna().any() else None
        row = {"run": run, "values": len(m), "max_abs_diff": float(diff.max()) if len(m) else np.nan,
               "max_rel_diff_headline": float(rel.max()) if worst is not None else np.nan,
               "worst": "/".join(m.loc[worst, ["collection", "setting", "metric"]]) if worst is not None else ""}
        if worst is not None and rel.max() > tolerance:
            problems.append(f"{run}: {row['worst']} differs by {diff[worst]:.6g} ({m.loc[worst, 'value_a']:.6g} vs "
                            f"{m.loc[worst, 'value_b']:.6g}), above the tolerance {tolerance:g}")
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", "values", "max_abs_diff", "max_rel_diff_headline", "worst"]), problems


def headline(results: pd.DataFrame, rows: dict[str, tuple[str, str, str]]) -> pd.DataFrame:
    """Strategy x named figure (collection, setting, metric), macro-averaged, with interval, as 'value [lo, hi]'
    strings and a numeric table (mean over seeds)."""
    out = {}
    for label, (coll, setting, metric) in rows.items():
        sel = results[(results.collection == coll) & (results.setting == setting) & (results.metric == metric)
                      & (results.qlang == "all")]
        out[label] = sel.groupby("strategy")[["value", "lo", "hi"]].mean()
    return pd.concat(out, axis=1)


def paired(per_query: pd.DataFrame, a: str, b: str, collection: str, setting: str, metric: str,
           n_perm: int = 5000) -> dict:
    """Macro-averaged difference a - b on the same queries (per-query values averaged over seeds first)
    and its randomization-test p-value; question groups are the resampling unit."""
    d = per_query[(per_query.collection == collection) & (per_query.setting == setting)]
    if metric not in d:
        raise KeyError(f"metric {metric!r} not in the per-query table of {collection}/{setting}")
    means = d.groupby(["strategy", *KEY], sort=False).agg(value=(metric, "mean"), group=("group", "first")).reset_index()
    left = means[means.strategy == a].drop(columns="strategy")
    right = means[means.strategy == b].drop(columns="strategy")
    both = left.merge(right, on=[*KEY, "group"], suffixes=("_a", "_b")).dropna()
    if both.empty:
        raise ValueError(f"no shared queries between {a!r} and {b!r} on {collection}/{setting}")
    diff, p = paired_randomization(both["value_a"], both["value_b"], both["group"], macro_weights(both), n_perm)
    return {"a": a, "b": b, "collection": collection, "setting": setting, "metric": metric, "diff": diff, "p": p,
            "queries": len(both)}


def significance(per_query: pd.DataFrame, base: str, others: list[str], figures: dict[str, tuple[str, str, str]]) -> pd.DataFrame:
    """``base`` against each of ``others`` on every figure; Holm correction over the whole family."""
    rows = [{"figure": label, **paired(per_query, base, o, *fig)} for label, fig in figures.items() for o in others]
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"])
    return table


def pareto(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True for the points no other point beats on both ``x`` and ``y`` (higher is better)."""
    xs, ys = points[x].to_numpy(), points[y].to_numpy()
    dominated = [((xs >= xs[i]) & (ys >= ys[i]) & ((xs > xs[i]) | (ys > ys[i]))).any() for i in range(len(points))]
    return pd.Series(~np.array(dominated), index=points.index)


def verdict(diff: float, p_holm: float, direction: int, alpha: float = 0.05) -> str:
    """'supported' when the difference has the claimed sign and the corrected test rejects equality."""
    if p_holm < alpha:
        return "supported" if np.sign(diff) == direction else "contradicted"
    return "not supported (no significant difference)"


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


def verdicts(per_query: pd.DataFrame, base: str, others: list[str], figures: dict[str, tuple[str, str, str]],
             margins: dict[str, float], n_boot: int = 1000, sums: dict | None = None) -> pd.DataFrame:
    """``base`` against each of ``others`` on every figure, paired by seed and question: the mean difference
    over seeds with its hierarchical-bootstrap 95% interval, Holm over the whole family, the TOST of
    equivalence within the figure's margin (``margins`` by metric), and the four-way verdict. A strategy
    evaluated once (zero-shot) is paired with every seed of ``base``. ``sums``: :func:`study_sums` of the
    figures when the caller has them already."""
    sums_by_figure = sums or study_sums(per_query, figures)
    rows = []
    for label, (coll, setting, metric) in figures.items():
        sums = sums_by_figure[label]
        if base not in sums:
            raise ValueError(f"{base!r} has no {coll}/{setting} {metric} values")
        seeds_a, sa, wa = sums[base]
        draws = group_draws(len(sa), n_boot)
        for other in others:
            if other not in sums:
                raise ValueError(f"{other!r} has no {coll}/{setting} {metric} values")
            seeds_b, sb, wb = sums[other]
            if len(seeds_b) == 1 and not Strategy.parse(other).trains:
                sb, wb, seeds_b = np.repeat(sb, len(seeds_a), 1), np.repeat(wb, len(seeds_a), 1), seeds_a
            shared = np.intersect1d(seeds_a, seeds_b)
            ia, ib = np.searchsorted(seeds_a, shared), np.searchsorted(seeds_b, shared)
            if not len(shared) or not np.allclose(wa[:, ia], wb[:, ib]):
                raise ValueError(f"{base!r} and {other!r} were not scored on the same queries of {coll}/{setting}")
            r = seed_test(sa[:, ia] - sb[:, ib], wa[:, ia], margins[metric], draws=draws)
            rows.append({"figure": label, "a": base, "b": other, **r})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"])
    table["verdict"] = [verdict4(r.diff, r.p_holm, r.equivalent, FIGURES.get(r.figure, ("", "", ""))[2] not in LOWER_IS_BETTER)
                        for r in table.itertuples()]
    return table


def seed_intervals(per_query: pd.DataFrame, figures: dict[str, tuple[str, str, str]], n_boot: int = 1000,
                   sums: dict | None = None) -> pd.DataFrame:
    """Per strategy and figure: the mean over seeds, the spread between seeds and the hierarchical 95% interval."""
    sums_by_figure = sums or study_sums(per_query, figures)
    rows = []
    for label in figures:
        draws = None
        for strategy, (seeds, sums, weights) in sums_by_figure[label].items():
            draws = group_draws(len(sums), n_boot) if draws is None else draws
            mean, lo, hi, _ = bootstrap_sums(sums, weights, n_boot, draws=draws)
            per_seed = sums.sum(0) / weights.sum(0)
            rows.append({"strategy": strategy, "figure": label, "mean": mean, "lo": lo, "hi": hi,
                         "sd_over_seeds": float(per_seed.std(ddof=1)) if len(seeds) > 1 else 0.0,
                         "seeds": len(seeds)})
    return pd.DataFrame(rows)


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

# The hybrid-batch paper's claims (arXiv 2408.10536, abstract and section 4), as testable comparisons:
# (claim, strategy a, strategy b, figure, +1 when the claim says a is better than b).
# (claim, strategy a, strategy b, figure, +1 when the claim says a is better than b, the paper's own
# difference a - b for XLM-R: its Table of XQuAD-R / MLQA-R results, see DESIGN.md; None where it has none).
CLAIMS = [
    ("Hybrid batches improve cross-lingual retrieval over X-X training", "hybrid(0.5)", "xx", "XQuAD-R cross mAP", 1, 0.031),
    ("Hybrid batches improve multilingual retrieval over X-X training", "hybrid(0.5)", "xx", "XQuAD-R multi mAP", 1, 0.046),
    ("Hybrid batches improve monolingual retrieval over X-Y training", "hybrid(0.5)", "xy", "XQuAD-R mono mAP", 1, 0.043),
    ("Hybrid batches improve multilingual retrieval over X-Y training", "hybrid(0.5)", "xy", "XQuAD-R multi mAP", 1, 0.000),
    ("Hybrid batches reduce language bias (rank distance) against X-X", "hybrid(0.5)", "xx", "XQuAD-R rank distance", 1, -123),
    ("Hybrid batches reduce language bias (rank distance) against X-Y", "hybrid(0.5)", "xy", "XQuAD-R rank distance", 1, -8),
    ("On MLQA-R too, hybrid improves cross-lingual retrieval over X-X", "hybrid(0.5)", "xx", "MLQA-R cross mAP", 1, 0.039),
    ("On MLQA-R too, hybrid improves monolingual retrieval over X-Y", "hybrid(0.5)", "xy", "MLQA-R mono mAP", 1, 0.022),
    ("Hybrid training improves monolingual retrieval on unseen data over the initial model (TyDi here, MIRACL in the paper)",
     "hybrid(0.5)", "zero-shot", "TyDi mono MRR@10", 1, None),
]
NOT_TESTABLE = [
    ("The gains hold for XLM-R and LaBSE initialisations",
     "needs hub models (the paper profile); offline only the embedded multilingual-e5-small is available"),
    ("Gains on MIRACL (nDCG@10, Recall@100)", "MIRACL's passages are on the Hugging Face hub (several GB), unreachable offline"),
    ("Results at the paper's scale of machine-translated training data", "the paper's training data is not released"),
]


def claims(per_query: pd.DataFrame, alpha: float = 0.05, n_perm: int = 5000) -> pd.DataFrame:
    """Each testable claim with the measured difference, Holm-corrected p-value and verdict; untestable
    claims with the reason. A claim is 'supported' only when the corrected test says so."""
    present = set(per_query["strategy"])
    rows = []
    for claim, a, b, label, direction, paper in CLAIMS:
        delta = "-" if paper is None else f"{paper:+.0f}" if FIGURES[label][2] in LOWER_IS_BETTER else f"{paper:+.3f}"
        if not {a, b} <= present:
            rows.append({"claim": claim, "evidence": f"{a} vs {b}: not run in this profile", "verdict": "not run",
                         "paper (XLM-R)": delta})
            continue
        coll, setting, metric = FIGURES[label]
        r = paired(per_query, a, b, coll, setting, metric, n_perm)
        sign = -1 if metric in LOWER_IS_BETTER else 1
        rows.append({"claim": claim, "a": a, "b": b, "figure": label, "diff": r["diff"], "p": r["p"],
                     "direction": direction * sign, "paper (XLM-R)": delta})
    table = pd.DataFrame(rows)
    tested = table["p"].notna() if "p" in table else pd.Series(False, index=table.index)
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"])
        table.loc[tested, "verdict"] = [verdict(d, p, s, alpha) for d, p, s in
                                        table.loc[tested, ["diff", "p_holm", "direction"]].itertuples(index=False)]
        table.loc[tested, "evidence"] = [f"{a} - {b} on {f}: {d:+.4f} (Holm p = {p:.3g})" for a, b, f, d, p in
                                         table.loc[tested, ["a", "b", "figure", "diff", "p_holm"]].itertuples(index=False)]
    untestable = pd.DataFrame([{"claim": c, "verdict": "not testable offline", "evidence": why, "paper (XLM-R)": "-"}
                               for c, why in NOT_TESTABLE])
    return pd.concat([table, untestable], ignore_index=True)[["claim", "paper (XLM-R)", "verdict", "evidence"]]
