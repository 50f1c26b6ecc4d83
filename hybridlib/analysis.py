"""The analyses the chapters show, as tested functions of the result tables (the notebooks only plot them)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import conflict
from .compare import QUESTIONS, number, plain
from .data import MLQA_LANGS
from .stages import RunDir
from .strategy import Strategy, sort


def order(strategies) -> list[str]:
    """Strategies present, in display order (untrained, samplers with hybrid by alpha, mixing methods)."""
    return sort(set(strategies))


def alpha_sweep(intervals: pd.DataFrame, figures=("XQuAD-R mono mAP", "XQuAD-R cross mAP", "XQuAD-R multi mAP")
                ) -> pd.DataFrame:
    """The batch-sampling strategies of the profile's own regime along alpha, the share of monolingual
    batches: ``xy`` is alpha = 0, ``hybrid(alpha)``, ``xx`` is alpha = 1. From
    :func:`~hybridlib.compare.seed_intervals`' table; columns strategy, alpha, figure, mean, lo, hi."""
    def alpha(s):
        if plain(s) != s:
            return np.nan  # another budget, learning rate or embedding regime: not on this curve
        s = Strategy.parse(s)
        return {"xy": 0.0, "xx": 1.0}.get(s.name, s.alpha if s.name == "hybrid" else np.nan)
    d = intervals[intervals.figure.isin(figures)]
    d = d.assign(alpha=d["strategy"].map(alpha)).dropna(subset=["alpha"])
    d = d.assign(figure=pd.Categorical(d["figure"], categories=list(figures)))  # in the order asked for
    return d[["strategy", "alpha", "figure", "mean", "lo", "hi"]].sort_values(["figure", "alpha"], ignore_index=True)


def gold_rank_drop(per_query: pd.DataFrame, collection: str = "tydi") -> pd.DataFrame:
    """Per strategy, on a collection with monolingual and multilingual pools of the same queries: the
    own-language share of the multilingual top 10, and how far the gold passage falls when the other
    languages' passages join the pool (multilingual first rank minus monolingual first rank, >= 0 since
    the pool only grows): its mean, median and the share of queries where it falls at all."""
    d = per_query[per_query.collection == collection]
    key = ["strategy", "seed", "query"]
    mono = d[d.setting == "mono"].set_index(key)["first_rank"]
    multi = d[d.setting == "multi"].set_index(key)
    drop = (multi["first_rank"] - mono.reindex(multi.index)).rename("drop")
    by = drop.groupby(level="strategy")
    table = pd.DataFrame({"own language share @10": multi.groupby(level="strategy")["own_language@10"].mean(),
                          "queries whose gold passage falls": by.apply(lambda x: float((x > 0).mean())),
                          "median fall (ranks)": by.median(), "mean fall (ranks)": by.mean()})
    return table.reindex(order(table.index))


def seen_unseen(per_query: pd.DataFrame, collection: str = "xquad-r", metric: str = "map",
                seen=MLQA_LANGS) -> pd.DataFrame:
    """``metric`` macro-averaged over the views whose query language training saw (``seen``) or not,
    per strategy (rows) and setting (columns)."""
    d = per_query[(per_query.collection == collection) & per_query.setting.isin(["mono", "cross", "multi"])]
    d = d.assign(languages=np.where(d["qlang"].isin(seen), "seen", "unseen"))
    views = d.groupby(["strategy", "setting", "languages", "qlang", "plang"])[metric].mean()
    table = views.groupby(["strategy", "setting", "languages"]).mean().unstack(["setting", "languages"])
    return table.reindex(order(table.index))


def rank_distance_tail(per_query: pd.DataFrame, collection: str = "xquad-r", worst: float = 0.1) -> pd.DataFrame:
    """Rank distance is a tail statistic: per strategy, over the queries of the multilingual pool (pooled,
    not macro-averaged), its mean, median, mean with the worst and best ``worst`` share trimmed, and the
    share of its sum that the worst ``worst`` of the queries carry."""
    d = per_query[(per_query.collection == collection) & (per_query.setting == "multi")].dropna(subset=["rank_distance"])

    def tail(x: pd.Series) -> pd.Series:
        v = np.sort(x.to_numpy())
        k = int(len(v) * worst)
        return pd.Series({"mean": v.mean(), "median": float(np.median(v)),
                          f"trimmed mean ({worst:.0%} each side)": v[k:len(v) - k].mean(),
                          f"share of the sum in the worst {worst:.0%}": v[len(v) - k:].sum() / v.sum() if v.sum() else 0.0})
    table = d.groupby("strategy")["rank_distance"].apply(tail).unstack()
    return table.reindex(order(table.index))


MACHINE_RECORDS = {"02 train": RunDir.TRAIN_SUMMARY, "03 evaluate": RunDir.EVAL_META}  # notebook -> its machine record


def notebook_durations(profile_dir: str | Path) -> pd.DataFrame:
    """Wall time of every executed notebook under a profile directory (papermill's record; not the hidden
    ``.*.running.ipynb`` of a task still running beside it, nor a ``.failed.ipynb``): notebook, run, seconds, and
    the machine that ran it as the run records it (the dict of ``hybridlib.store.machine()``, in
    ``train_summary.json`` for a training, ``eval_meta.json`` for an evaluation; None where it records none)."""
    rows = []
    for nb in sorted(Path(profile_dir).rglob("*.ipynb")):
        if nb.name.startswith(".") or nb.name.endswith(".failed.ipynb"):
            continue
        try:
            meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        except (OSError, ValueError) as e:
            raise ValueError(f"{nb}: unreadable executed notebook ({e})") from None
        if meta.get("duration"):
            notebook = nb.stem.replace("_", " ", 1)
            record = nb.parent / MACHINE_RECORDS.get(notebook, "-")
            try:
                machine = json.loads(record.read_text()).get("machine") if record.is_file() else None
            except ValueError as e:
                raise ValueError(f"{record}: unreadable run record ({e})") from None
            rows.append({"notebook": notebook, "run": nb.parent.name, "seconds": meta["duration"], "machine": machine})
    return pd.DataFrame(rows, columns=["notebook", "run", "seconds", "machine"])


def one_device(times: pd.DataFrame, runs: list[str] | None = None) -> str:
    """The one kind of device ('cpu', or the GPU's name) every run of :func:`notebook_durations`' table (or of
    ``runs``) was trained and evaluated on, as the runs record it; runs that record no machine were made before
    any GPU run, on CPUs. A ``ValueError`` naming the runs of each kind when there are several: a comparison
    never pairs a run made on a GPU with one made on a CPU (a GPU run belongs to a profile of its own)."""
    t = times[times.notebook.isin(list(MACHINE_RECORDS)) & (times.run.isin(runs) if runs is not None else True)]
    kinds = t.groupby(t.machine.map(lambda m: (m or {}).get("cuda") or "cpu")).run.agg(lambda r: sorted(set(r)))
    if len(kinds) > 1:
        raise ValueError("runs made on different devices cannot be compared: " + "; ".join(
            f"{kind}: {', '.join(r[:4])}{f' and {len(r) - 4} more' if len(r) > 4 else ''}" for kind, r in kinds.items()))
    return kinds.index[0] if len(kinds) else "cpu"


def hours_by_machine(times: pd.DataFrame) -> str:
    """:func:`notebook_durations`' table in hours, in all and by the machine each run records, e.g. '57.6 notebook
    hours (trainings 31.6, evaluations 25.9): 19.4 on Intel(R) Xeon(R) Processor, AVX512 (66 trainings, 66
    evaluations); 19.0 in runs that record no machine (49 trainings, 50 evaluations)': the total counts every
    notebook, the machines only the trainings and evaluations."""
    h = times.assign(hours=times.seconds / 3600, on=[f"on {m['cpu']}, {m['cpu_capability']}" if m else
                                                     "in runs that record no machine" for m in times.machine])
    kinds = {"02 train": "trainings", "03 evaluate": "evaluations"}
    by_kind = h.groupby("notebook").hours.sum()
    parts = []
    runs = h[h.notebook.isin(list(kinds))]  # the analysis notebooks record no machine and are not runs
    for on, d in sorted(runs.groupby("on"), key=lambda x: -x[1].hours.sum()):
        counts = d.notebook.value_counts()
        parts.append(f"{d.hours.sum():.1f} {on} ({', '.join(f'{counts[k]} {w}' for k, w in kinds.items() if k in counts)})")
    return (f"{h.hours.sum():.1f} notebook hours (" + ", ".join(f"{w} {by_kind[k]:.1f}" for k, w in kinds.items() if k in by_kind)
            + "): " + "; ".join(parts))


VERDICT_MARKS = {"better": "+", "worse": "−", "equivalent": "=", "inconclusive": ""}


def short_label(figure: str) -> str:
    """A headline figure's column label: 'XQuAD-R mono mAP' -> 'XQuAD-R mono', rank distance -> 'RD'."""
    return figure.replace(" mAP", "").replace(" MRR@10", "").replace("rank distance", "RD")


def headline_cells(table: pd.DataFrame, figures) -> pd.DataFrame:
    """Strategy x figure as 'value ±half-width' of its 95% interval (:func:`~hybridlib.compare.headline`'s table), '-'
    where a strategy has no such figure: one short line per cell."""
    out = {}
    for figure in figures:
        if figure not in table:
            continue
        t = table[figure]
        out[short_label(figure)] = [f"{number(figure, v)} ±{number(figure, (hi - lo) / 2)}" if pd.notna(v) else "-"
                                    for v, lo, hi in t[["value", "lo", "hi"]].itertuples(index=False)]
    return pd.DataFrame(out, index=table.index)


def by_collection(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its figure columns ('XQuAD-R mono') under one header per collection, the others
    ('regime') under a blank one: narrow columns that do not wrap."""
    out = table.copy()
    if len(table.columns):  # a table of no columns (a profile without the question) has no headers to split
        out.columns = pd.MultiIndex.from_tuples([tuple(c.split(" ", 1)) if " " in c else ("", c) for c in table.columns])
    return out


def comparison(a: str, b: str) -> str:
    """A comparison's row label, without the run options its question already names."""
    return f"{plain(a)} vs {plain(b)}"


def verdict_grid(verdicts: pd.DataFrame, figures) -> pd.DataFrame:
    """(question, comparison) x (collection, figure), in the order of :func:`~hybridlib.compare.verdicts`'
    table: the verdict's mark (none when inconclusive) and the difference a - b, e.g. '+ +.012'."""
    cells = verdicts.assign(cell=[f"{VERDICT_MARKS[r.verdict]} {number(r.figure, r.diff, signed=True)}".strip()
                                  for r in verdicts.itertuples()],
                            comparison=[comparison(a, b) for a, b in zip(verdicts.a, verdicts.b)])
    rows = pd.MultiIndex.from_tuples(list(dict.fromkeys(zip(cells.question, cells.comparison))),
                                     names=["question", "comparison"])
    grid = cells.pivot(index=["question", "comparison"], columns="figure", values="cell").reindex(
        index=rows, columns=list(figures))
    grid.columns = pd.MultiIndex.from_tuples([tuple(short_label(f).split(" ", 1)) for f in grid.columns])
    return grid.fillna("")


def verdict_counts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per question of :func:`~hybridlib.compare.verdicts`' table, in its order: how many comparisons, and
    how many of them came out better, worse, equivalent and inconclusive."""
    counts = pd.crosstab(pd.Categorical(verdicts.question, categories=list(dict.fromkeys(verdicts.question))),
                         pd.Categorical(verdicts.verdict, categories=list(VERDICT_MARKS)), dropna=False)
    counts = counts.assign(comparisons=counts.sum(axis=1)).rename_axis(index="question", columns=None)
    return counts.reset_index()[["question", "comparisons", *VERDICT_MARKS]]


def more_seeds(verdicts: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Per question of :func:`~hybridlib.compare.verdicts`' table, its inconclusive comparisons by what
    ``horizon`` seeds per strategy would make of them were their means and noise to stay as measured
    (:func:`~hybridlib.stats.seeds_to_settle`): equivalent, a difference (before Holm) or neither; those on
    one seed have no spread to project from."""
    from .stats import seeds_to_settle
    kinds = ["one seed", "equivalent", "a difference", "neither"]
    open_ = verdicts[verdicts.verdict == "inconclusive"]
    settled = [seeds_to_settle(r.diff, r.sd, r.seeds, r.se_groups, r.margin, most=horizon, groups=r.groups)
               for r in open_.itertuples()]
    outcome = [kinds[0] if n < 2 else kinds[1] if eq else kinds[2] if diff else kinds[3]
               for n, (eq, diff) in zip(open_.seeds, settled)]
    counts = pd.crosstab(pd.Categorical(open_.question, categories=list(dict.fromkeys(verdicts.question))),
                         pd.Categorical(outcome, categories=kinds), dropna=False)
    counts = counts.assign(inconclusive=counts.sum(axis=1)).rename_axis(index="question", columns=None)
    return counts.reset_index()[["question", "inconclusive", *kinds]]


def coverage(results: pd.DataFrame, expected: list[tuple[Strategy, int]]) -> str:
    """How far a study has come, from its result table and the (strategy, seed) runs it expects
    (``runs.evaluated_runs``): 'all 142 runs committed, 5 seeds per trained strategy' (or '10 seeds for 10
    trained strategies, 5 for 18'), or while runs are missing 'as it stands, 3 of 142 runs committed (seed 0
    complete; seed 1: 1 of 28 trained runs); the figures below move as the rest land' (the untrained
    baselines run once and are not counted per seed)."""
    trained = results[[Strategy.parse(s).trains for s in results["strategy"]]]
    done, runs = trained.groupby("seed")["run"].nunique(), results["run"].nunique()
    per_seed = pd.Series([seed for s, seed in expected if s.trains], dtype=int).value_counts()
    if runs == len(expected):
        seeds = pd.Series([s for s, _ in expected if s.trains]).value_counts().value_counts().sort_index(ascending=False)
        if len(seeds) == 1:
            return f"all {runs} runs committed, {plural(seeds.index[0], 'seed')} per trained strategy"
        return f"all {runs} runs committed, " + ", ".join(
            f"{plural(n, 'seed')} for {plural(k, 'trained strateg', 'y', 'ies')}" if i == 0 else f"{n} for {k}"
            for i, (n, k) in enumerate(seeds.items()))
    status = {seed: "complete" if done.get(seed, 0) == n else f"{done.get(seed, 0)} of {n} trained runs"
              for seed, n in per_seed.sort_index().items()}
    groups: list[list[int]] = []  # consecutive seeds of one status, e.g. 'seeds 5-9: 0 of 10 trained runs each'
    for seed in status:
        if groups and status[groups[-1][-1]] == status[seed] and groups[-1][-1] + 1 == seed:
            groups[-1].append(seed)
        else:
            groups.append([seed])
    named = lambda g: f"seed {g[0]}" if len(g) == 1 else f"seeds {g[0]}-{g[-1]}"  # noqa: E731
    seeds = "; ".join(f"{named(g)} complete" if status[g[0]] == "complete" else
                      f"{named(g)}: {status[g[0]]}{' each' * (len(g) > 1)}" for g in groups)
    return f"as it stands, {runs} of {len(expected)} runs committed ({seeds}); the figures below move as the rest land"


def plural(n: int, word: str, one: str = "", many: str = "s") -> str:
    """'1 seed', '5 seeds', '1 trained strategy', '18 trained strategies'."""
    return f"{n} {word}{one if n == 1 else many}"


def glue(name: str, value) -> None:
    """Record ``value`` under ``name`` in the executed notebook, shown nowhere, for another page of the book
    to paste: ``{glue:text}`path/to/notebook.ipynb::name:s``` for text, the ``glue`` directive with ``:doc:``
    for a table (pasted as HTML, without its index). myst-nb's glue protocol, without needing myst-nb (the
    book's extra) where the notebook runs."""
    from IPython.core.formatters import format_display_data
    from IPython.display import HTML, display
    if isinstance(value, pd.DataFrame):
        value = HTML(value.to_html(index=False, border=0, classes="table", justify="left"))
    bundle, metadata = format_display_data(value)
    prefix = "application/papermill.record/"
    display({prefix + k: v for k, v in bundle.items()}, raw=True,
            metadata={**metadata, "scrapbook": {"name": name, "mime_prefix": prefix}})


def describe(verdicts: pd.DataFrame, front: list[str], claims: pd.DataFrame) -> str:
    """The answer in brief, as Markdown bullets: per question of :func:`~hybridlib.compare.verdicts`' table,
    how many comparisons are equivalent and inconclusive, and each comparison's better and worse figures
    with the difference; the Pareto front; the paper's claims."""
    if verdicts.empty:
        return "This profile has no comparison of the hybrid strategy."
    lines, counted = [], verdict_counts(verdicts).set_index("question")
    for question, v in verdicts.groupby("question", sort=False):
        n = counted.loc[question]
        counts = [f"{n[word]} {word}" for word in ("equivalent", "inconclusive") if n[word]]
        found = outcomes(v)
        lines.append(f"- **{question}** ({n.comparisons} comparisons{', ' if counts else ''}{', '.join(counts)})"
                     f"{': ' + '; '.join(found) if found else ''}.")
    lines.append(f"- **Pareto front (mono vs cross, XQuAD-R)**: {', '.join(front)}.")
    lines.append(f"- **Paper claims**: {claims_summary(claims)}.")
    return "\n".join(lines)


def outcomes(verdicts: pd.DataFrame, neither: str | None = None) -> list[str]:
    """Each comparison in :func:`~hybridlib.compare.verdicts`' rows, in order, with the figures it came out better
    and worse on and the differences, e.g. 'hybrid(0.5) vs sum better on XQuAD-R mono +.025, MLQA-R mono +.031,
    worse on XQuAD-R multi -.005'; one that is neither reads ``neither`` in their place, or is left out."""
    found = []
    for (a, b), c in verdicts.groupby(["a", "b"], sort=False):
        said = ", ".join(f"{word} on " + ", ".join(f"{short_label(r.figure)} {number(r.figure, r.diff, signed=True)}"
                                                   for r in c[c.verdict == word].itertuples())
                         for word in ("better", "worse") if (c.verdict == word).any()) or neither
        if said:
            found.append(f"{comparison(a, b)} {said}")
    return found


def by_kind(rows: pd.DataFrame) -> list[tuple[pd.DataFrame, str]]:
    """``rows`` (a table with a ``figure`` column) split into the two kinds of figure, each with the name of
    its unit: the scores ('mAP or MRR@10', three decimals) and the rank distances ('rank distance', whole);
    a kind without rows is left out."""
    rank = rows.figure.str.contains("rank distance")
    return [(rows[m], unit) for m, unit in ((~rank, "mAP or MRR@10"), (rank, "rank distance")) if m.any()]


def span(verdicts: pd.DataFrame, question: str) -> str:
    """One question of :func:`~hybridlib.compare.verdicts`' table in a sentence: what it compares, how far apart
    the compared strategies can be (the largest bound, the end of a 90% interval farthest from 0) in mAP or
    MRR@10 and in rank distance, how many comparisons are equivalent within the margin and within half of it,
    and how the rest came out, e.g. 'hybrid(0.5) vs sum, pcgrad, gradvac, cagrad and mgda: at most .016 apart
    in mAP or MRR@10 and 12 in rank distance (90% intervals); of 45 comparisons, 27 equivalent within
    ±.01 / ±30 (9 within ±.005 / ±15), 18 inconclusive, none better or worse'."""
    v = verdicts[verdicts.question == question]
    if v.empty:
        return "not run"
    def listed(names) -> str:
        names = list(dict.fromkeys(map(plain, names)))
        return ", ".join(names[:-1]) + " and " * (len(names) > 1) + names[-1]
    kinds = by_kind(v)
    largest = [f"{number(unit, d['bound'].max())} in {unit}" for d, unit in kinds]
    pm = lambda v: f"±{v:g}".replace("±0.", "±.")  # noqa: E731  (±.01, ±30)
    margins = [(pm(d["margin"].iloc[0]), pm(d["margin"].iloc[0] / 2)) for d, _ in kinds]
    n = verdict_counts(v).iloc[0]
    rest = [f"{n[word]} {word}" for word in ("inconclusive", "better", "worse") if n[word]]
    if not n["better"] and not n["worse"]:
        rest.append("none better or worse")
    return (f"{listed(v.a)} vs {listed(v.b)}: at most {' and '.join(largest)} apart (90% intervals); of "
            f"{n.comparisons} comparisons, {n.equivalent} equivalent within {' / '.join(m for m, _ in margins)} "
            f"({int(v.equivalent_strict.sum())} within {' / '.join(m for _, m in margins)}), {', '.join(rest)}")


def training_effect(intervals: pd.DataFrame, trained, untrained: str = "zero-shot",
                    figures=("XQuAD-R multi mAP", "XQuAD-R rank distance", "XQuAD-R mono mAP", "TyDi multi MRR@10")) -> str:
    """What training does to ``figures``: the untrained model's value, then the range over the ``trained``
    strategies (:func:`~hybridlib.compare.seed_intervals`' means), e.g. 'XQuAD-R multi mAP from .299 to
    .546-.558, XQuAD-R rank distance from 1214 to 337-358'."""
    means = intervals.pivot(index="strategy", columns="figure", values="mean")
    if untrained not in means.index or not len(trained):
        return "not measured"
    out = []
    for f in [f for f in figures if f in means]:
        after = means.loc[list(trained), f]
        out.append(f"{f} from {number(f, means.loc[untrained, f])} to {number(f, after.min())}-{number(f, after.max())}")
    return ", ".join(out)


def seed_spread(intervals: pd.DataFrame) -> str:
    """How much the training seed moves the figures (:func:`~hybridlib.compare.seed_intervals`' spread, for the
    strategies with two seeds or more), e.g. 'over 2 strategies with 2 or more seeds, a standard deviation of
    up to .007 in mAP or MRR@10 (median .003) and 9 in rank distance (median 4)'."""
    s = intervals[intervals.seeds > 1]
    if s.empty:
        return "not measured: one seed per strategy"
    n = s.strategy.nunique()
    spread = [f"{number(unit, d.sd_over_seeds.max())} in {unit} (median {number(unit, d.sd_over_seeds.median())})"
              for d, unit in by_kind(s)]
    return f"over {n} strateg{'y' if n == 1 else 'ies'} with 2 or more seeds, a standard deviation of up to {' and '.join(spread)}"


def option_effect(sums: dict, option: str) -> str:
    """How far a run option (``frozen``, ``lr``, ``budget``) moves a run: every figure of each run trained with
    it minus the same strategy and seed without it (:func:`~hybridlib.compare.study_sums`), e.g. 'at most
    .0017 in mAP or MRR@10 (median .0002) and 0.6 in rank distance (median 0.2), over 15 pairs of runs'; 'not
    run' where no strategy ran both ways. Four decimals: an option that changes next to nothing shows how little."""
    rows = []
    for figure, by_strategy in sums.items():
        for strategy, (seeds, s, w) in by_strategy.items():
            p = Strategy.parse(strategy)
            base = str(Strategy(p.name, p.alpha, tuple(o for o in p.options if o[0] != option)))
            if base == strategy or base not in by_strategy:
                continue
            base_seeds, bs, bw = by_strategy[base]
            shared = np.intersect1d(seeds, base_seeds)
            diff = (s.sum(0) / w.sum(0))[np.searchsorted(seeds, shared)] - \
                (bs.sum(0) / bw.sum(0))[np.searchsorted(base_seeds, shared)]
            rows += [{"figure": figure, "run": f"{strategy} s{seed}", "diff": abs(d)} for seed, d in zip(shared, diff)]
    if not rows:
        return "not run"
    rows = pd.DataFrame(rows)
    fmt = {"mAP or MRR@10": lambda v: f"{v:.4f}".replace("0.", ".", 1), "rank distance": lambda v: f"{v:.1f}"}
    parts = [f"{fmt[unit](d['diff'].max())} in {unit} (median {fmt[unit](d['diff'].median())})" for d, unit in by_kind(rows)]
    return f"at most {' and '.join(parts)}, over {rows.run.nunique()} pairs of runs"


def by_regime(verdicts: pd.DataFrame, question: str) -> str:
    """The outcome (:func:`outcomes`) of each comparison of ``question`` in every regime it was run in (the
    questions named ``question``, then a regime in brackets), e.g. 'the profile's own regime: xx vs xy better on
    XQuAD-R mono +.025; budget=4.1: xx vs xy better on XQuAD-R mono +.012, worse on XQuAD-R cross -.007'."""
    own = "the profile's own regime"
    parts = [f"{regime or own}: {', '.join(outcomes(v, neither='neither better nor worse'))}"
             for regime, v in regimes(verdicts, question)]
    return "; ".join(parts) or "not run"


def regimes(verdicts: pd.DataFrame, question: str):
    """(regime, its rows) for each regime ``question`` was asked in, in the table's order: the questions named
    ``question``, then a regime in brackets ('budget=4.1'); '' for the profile's own."""
    for q, v in verdicts[verdicts.question.str.startswith(question)].groupby("question", sort=False):
        yield q[len(question):].strip(" ()"), v


def control_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """How far each regime pulls X-X and X-Y training apart: per regime the positive control ran in, the seeds
    it pairs, X-X less X-Y on every headline figure (mean over seeds, verdict or not; '-' where a regime lacks
    the figure), and the *widest* of the mAP / MRR@10 differences, what a regime offers the methods to differ by."""
    rows = []
    for regime, v in regimes(verdicts, QUESTIONS["control"]):
        scores = v[~v.figure.str.contains("rank distance")]
        rows.append({"regime": regime or "own", "seeds": int(v.seeds.min()),
                     **{short_label(r.figure): number(r.figure, r.diff, signed=True) for r in v.itertuples()},
                     "widest": number("", scores["diff"].abs().max())})
    return pd.DataFrame(rows).fillna("-")


def claims_summary(claims: pd.DataFrame) -> str:
    """How the paper's claims that were tested came out (:func:`~hybridlib.compare.claims`' table), e.g.
    'of 9 tested, 6 inconclusive, 2 supported, 1 contradicted'."""
    tested = claims[~claims.verdict.isin(["not testable offline", "not run"])]
    if tested.empty:
        return "none tested: no pair of this profile's runs asks one"
    return f"of {len(tested)} tested, {', '.join(f'{n} {w}' for w, n in tested.verdict.value_counts().items())}"


ANSWERED = ("pairs", "steps", "matched", "samplers")  # the questions the answer's bullets take, in order


def lead(verdicts: pd.DataFrame) -> str:
    """The answer's verdict in a clause, from the comparisons at equal pairs: hybrid batches and gradient
    mixing differ (any better or worse), end equivalent (every comparison), or no comparison finds a
    difference."""
    v = verdicts[verdicts.question == QUESTIONS["pairs"]] if len(verdicts) else verdicts
    if v.empty:
        return "no pair of its runs compares hybrid batches with gradient mixing"
    n = verdict_counts(v).iloc[0]
    return ("hybrid batches and gradient mixing differ at equal pairs" if n["better"] or n["worse"] else
            "hybrid batches and gradient mixing end equivalent at equal pairs" if n["equivalent"] == n["comparisons"]
            else "no comparison of hybrid batches with gradient mixing at equal pairs finds a difference")


def answer(profile, verdicts: pd.DataFrame, logs: pd.DataFrame) -> tuple[str, list[str]]:
    """The answer in a paragraph, and one bullet per question the profile's runs ask (a question no pair of
    its runs asks is named once, at the end, not listed as 'not run'), led by :func:`lead`. The conflict
    clause only where the trainer probed the same-kind floor."""
    asked = [q for q in ANSWERED if len(verdicts) and (verdicts.question == QUESTIONS[q]).any()]
    floor, above = conflict.sentence(logs), conflict.above_floor(logs)
    steps = profile.steps(Strategy.parse("hybrid(0.5)"))
    text = (f"Fine-tuning multilingual-e5-small on {profile.budget_pairs:,} MLQA pairs ({steps} steps of "
            f"{profile.batch_size})")
    text += f", {lead(verdicts)}" + (f": {span(verdicts, QUESTIONS['pairs'])}." if "pairs" in asked else ".")
    if above is False:
        text += (f" In this regime the two objectives conflict no more than two batches of one kind do: {floor}. "
                 "The mixing methods have little to act on here; a regime with more room may tell them apart.")
    elif above:
        text += (f" In this regime the monolingual and the cross-lingual gradient agree less than two batches of one "
                 f"kind do: {floor}; the two objectives differ by more than batch noise.")
    if len(logs) and "pcgrad" in set(logs.strategy) and conflict.table(logs, warmup=0).loc["pcgrad", "conflict_share"] == 0:
        text += (" PCGrad, which projects only where the cosine is negative, never projected: its updates were "
                 "the plain sum's.")
    bullets = [f"**{QUESTIONS[q]}**: {span(verdicts, QUESTIONS[q])}." for q in asked]
    others = [QUESTIONS[q] for q in ANSWERED if q not in asked]
    if others:
        bullets.append(f"Not asked by this profile's runs: {'; '.join(others)} (the `study` profile asks them).")
    return text, bullets


def coinciding(points: pd.DataFrame, x: str, y: str, within: float) -> pd.DataFrame:
    """Points that coincide (both coordinates ``within`` of the group's first point) as one labelled point:
    x, y (the first point's) and label ('sum = pcgrad = gradvac'), so that a plot names every strategy once and
    says which ones sit on one spot."""
    groups: list[list] = []
    for name, row in points.iterrows():
        for g in groups:
            if abs(g[0][1] - row[x]) <= within and abs(g[0][2] - row[y]) <= within:
                g.append((name, row[x], row[y]))
                break
        else:
            groups.append([(name, row[x], row[y])])
    return pd.DataFrame({x: [g[0][1] for g in groups], y: [g[0][2] for g in groups],
                         "label": [" = ".join(str(n) for n, _, _ in g) for g in groups],
                         "size": [len(g) for g in groups]})


def place_labels(points: np.ndarray, sizes: np.ndarray, marks: np.ndarray | None = None, bounds=None,
                 gap: float = 8.0, marker: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Where to put each point's label so that no label covers another or any marker: ``points`` (n x 2) and
    the labels' ``sizes`` (n x 2, width and height) in display units (pixels), ``marks`` every marker's
    position (default: ``points``; a marker covers a square ``marker`` either side), ``bounds`` the
    (lower-left, upper-right) corners a label must stay inside (the axes; default: anywhere). Greedy, in the
    given order: the first free spot of right, left, above, below and the four corners, ``gap`` from the point,
    then four and seven times as far; when none is free, the first inside the bounds. Returns each label's
    lower-left corner as an offset from its point, and the ring it is in (1 nearest: ring 2 or 3 wants a line
    to its point)."""
    marks = points if marks is None else marks
    offsets, rings = np.zeros((len(points), 2)), np.ones(len(points), dtype=int)
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (p, size) in enumerate(zip(points, sizes)):
        w, h = size
        spots = [(k, np.array(s)) for k in (1, 2, 3) for g in [gap * (3 * k - 2)]
                 for s in [(g, -h / 2), (-g - w, -h / 2), (-w / 2, g), (-w / 2, -g - h),
                           (g, g), (g, -g - h), (-g - w, g), (-g - w, -g - h)]]
        taken = [(m - marker, m + marker) for m in marks if np.any(m != p)] + placed  # not its own marker
        inside = [(k, s) for k, s in spots
                  if bounds is None or (np.all(p + s >= bounds[0]) and np.all(p + s + size <= bounds[1]))]
        free = [(k, s) for k, s in inside if all(np.any(p + s + size <= lo) or np.any(p + s >= hi) for lo, hi in taken)]
        rings[i], offsets[i] = (free or inside or spots)[0]
        placed.append((p + offsets[i], p + offsets[i] + size))
    return offsets, rings


def annotate(ax, xy: np.ndarray, labels: list[str], marks: np.ndarray, fontsize: float = 10) -> None:
    """Label the points ``xy`` (n x 2, data coordinates) of ``ax`` where :func:`place_labels` finds room among
    ``marks`` (every marker drawn) inside the axes; a label set farther out gets a line to its point. Call it
    once the axes' limits are final."""
    fig = ax.figure
    fig.canvas.draw()  # the limits are final: points and label sizes in pixels
    texts = [ax.text(0, 0, label, fontsize=fontsize) for label in labels]
    sizes = np.array([[b.width, b.height] for b in (t.get_window_extent() for t in texts)])
    for t in texts:
        t.remove()
    pixels = ax.transData.transform
    offsets, rings = place_labels(pixels(xy), sizes, marks=pixels(marks), bounds=ax.get_window_extent().get_points())
    for label, p, offset, ring in zip(labels, xy, offsets * 72 / fig.dpi, rings):  # pixels to points
        ax.annotate(label, p, xytext=offset, textcoords="offset points", fontsize=fontsize, ha="left", va="bottom",
                    arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6, "shrinkB": 4} if ring > 1 else None)
