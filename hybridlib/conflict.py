"""Gradient conflict against batch noise, from the training logs' probes (``hybridlib.probes``).

At a probe step the trainer logs three cosines between gradients of independent batches of the training
size: monolingual vs cross-lingual (``probe_cosine``), and two batches of one kind (``cosine_mono_mono``,
``cosine_cross_cross``): the floor, what two batches agree on when nothing but the draw differs. A
monolingual/cross-lingual cosine is evidence of conflict only below that floor; the *gap* is the floor (the
mean of the two) less the mono/cross cosine, at the same probe. Mixing methods also log the mono/cross
cosine of every step (``cosine``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .compare import number
from .strategy import Strategy, sort

PAIRS = {"probe_cosine": "mono vs cross", "cosine_mono_mono": "mono vs mono", "cosine_cross_cross": "cross vs cross"}
THIRDS = ("first third", "second third", "last third")
MARGIN = 0.01  # a gap within +-.01 is no conflict beyond batch noise (the study measured floors of .022-.023 at batch 32)


def after_warmup(logs: pd.DataFrame, warmup: float = 0.1) -> pd.DataFrame:
    """The log rows past the first ``warmup`` share of each run's steps."""
    if logs.empty:
        return logs
    return logs[logs.step > warmup * logs.groupby("run").step.transform("max")]


def probes(logs: pd.DataFrame) -> pd.DataFrame:
    """The probe rows, with ``share`` (the step over the run's last step), ``third`` of training, ``floor`` (the
    mean of the two same-kind cosines) and ``gap`` (floor less the mono/cross cosine); empty where no floor
    was probed."""
    if "cosine_mono_mono" not in logs:  # a log from before the floor was probed: no probe columns at all
        return logs.iloc[:0].assign(**{c: [] for c in PAIRS}, share=[], third=[], floor=[], gap=[])
    share = logs.step / logs.groupby("run").step.transform("max")
    p = logs.assign(share=share, third=[THIRDS[min(int(3 * (s - 1e-9)), 2)] for s in share])
    p = p.dropna(subset=list(PAIRS))
    floor = (p.cosine_mono_mono + p.cosine_cross_cross) / 2
    return p.assign(floor=floor, gap=floor - p.probe_cosine)


def long(logs: pd.DataFrame) -> pd.DataFrame:
    """The probes' three cosines in long form for a plot: strategy, run, pairs_seen, pair, cosine; where no
    floor was probed, the mono/cross cosine wherever it was logged."""
    p = probes(logs)
    if p.empty:
        return logs.dropna(subset=["cosine"]).assign(pair=PAIRS["probe_cosine"])[
            ["strategy", "run", "pairs_seen", "pair", "cosine"]]
    out = p[["strategy", "run", "pairs_seen", *PAIRS]].melt(id_vars=["strategy", "run", "pairs_seen"], var_name="pair",
                                                            value_name="cosine")
    return out.assign(pair=out.pair.map(PAIRS))


def table(logs: pd.DataFrame, warmup: float = 0.1) -> pd.DataFrame:
    """Per strategy, after the warm-up (the first ``warmup`` share of each run's steps, the first probe
    included, where the gradients of a fresh model still agree): measurements of the mono/cross gradient
    cosine, their mean, and the share below zero (the two objectives pulling the weights apart); beside them,
    where the log has the probes, the floor: the cosine between two independent monolingual batches and
    between two cross-lingual ones, mean and share below zero."""
    logs = after_warmup(logs, warmup)
    c = logs.dropna(subset=["cosine"])
    out = c.groupby("strategy")["cosine"].agg(measurements="size", mean="mean",
                                              conflict_share=lambda x: float((x < 0).mean()))
    for floor in ("cosine_mono_mono", "cosine_cross_cross"):
        if floor in logs:
            f = logs.dropna(subset=[floor]).groupby("strategy")[floor]
            out[f"{floor} (floor)"] = f.mean()
            out[f"{floor} < 0"] = f.agg(lambda x: float((x < 0).mean()))
    return out.reindex(sort(out.index))


def by_third(logs: pd.DataFrame) -> pd.DataFrame:
    """Per strategy and third of training: the mean of each probed cosine and of the gap over the probes of
    every run, the probes counted; a positive gap is conflict above the floor."""
    p = probes(logs)
    out = p.groupby(["strategy", "third"])[[*PAIRS, "gap"]].mean().rename(columns=PAIRS)
    out["probes"] = p.groupby(["strategy", "third"]).size()
    return out.reindex(pd.MultiIndex.from_product([sort(p.strategy.unique()), THIRDS])).dropna(how="all")


def gap(logs: pd.DataFrame) -> tuple[float, float, float, int]:
    """The mean gap over the distinct probes after warm-up and its 95% interval (:func:`mean_interval`), and
    the probes counted."""
    return mean_interval(distinct(after_warmup(probes(logs))).gap.to_numpy())


def distinct(p: pd.DataFrame) -> pd.DataFrame:
    """The probes, each measurement once: a run that repeats another bit for bit (PCGrad that never
    projected repeats the plain sum's run of its seed) adds no evidence."""
    return p.drop_duplicates(subset=["step", *PAIRS])


def mean_interval(g: np.ndarray) -> tuple[float, float, float, int]:
    """Mean, 95% interval (normal, the probes taken as independent: each draws fresh batches, and batch noise
    is what the floor measures) and count of the gaps ``g``."""
    if len(g) < 2:
        return float(np.mean(g)) if len(g) else np.nan, np.nan, np.nan, len(g)
    half = 1.96 * g.std(ddof=1) / np.sqrt(len(g))
    return float(g.mean()), float(g.mean() - half), float(g.mean() + half), len(g)


def by_regime(logs: pd.DataFrame) -> pd.DataFrame:
    """The probes after warm-up in each regime the runs trained in (their strategies' run options, e.g.
    'budget=4.1'; 'own' for the profile's own): the mean of each cosine, the gap with its 95% interval
    (:func:`gap`) and the probes counted."""
    label = lambda s: ", ".join(f"{k}={v:g}" for k, v in Strategy.parse(s).run_options.items()) or "own"  # noqa: E731
    p = distinct(after_warmup(probes(logs)))
    rows = []
    for regime, d in p.groupby(p.strategy.map(label), sort=False):
        mean, lo, hi, n = mean_interval(d.gap.to_numpy())
        rows.append({"regime": regime, **{PAIRS[c]: d[c].mean() for c in PAIRS}, "gap": mean, "gap lo": lo,
                     "gap hi": hi, "probes": n})
    out = pd.DataFrame(rows, columns=["regime", *PAIRS.values(), "gap", "gap lo", "gap hi", "probes"])
    return out.sort_values("regime", key=lambda r: r != "own", kind="stable").reset_index(drop=True)


def sentence(logs: pd.DataFrame) -> str:
    """Every strategy's probes after warm-up in one sentence, with the gap, e.g. 'after warm-up the monolingual
    and the cross-lingual gradient meet at a cosine of .021 (35% below zero); two monolingual batches at .023
    (34% below zero), two cross-lingual at .022 (33% below zero); the floor less the mono/cross cosine +.001
    [-.001, +.004] over 1235 probes'."""
    p = distinct(after_warmup(probes(logs)))
    if p.empty:
        return "not measured"
    part = lambda col: f"{number('', p[col].mean())} ({(p[col] < 0).mean():.0%} below zero)"  # noqa: E731
    mean, lo, hi, n = gap(logs)
    return (f"after warm-up the monolingual and the cross-lingual gradient meet at a cosine of {part('probe_cosine')}; "
            f"two monolingual batches at {part('cosine_mono_mono')}, two cross-lingual at {part('cosine_cross_cross')}; "
            f"the floor less the mono/cross cosine {number('', mean, True)} [{number('', lo, True)}, "
            f"{number('', hi, True)}] over {n} probes")


def above_floor(logs: pd.DataFrame, margin: float = MARGIN) -> bool | None:
    """Whether the mono/cross cosine sits below the floor after warm-up: False where the gap's interval lies
    within +-``margin`` (no more conflict than batch noise, as far as the margin goes), True where it lies
    above zero and its mean above the margin, None where neither or no floor was probed."""
    mean, lo, hi, n = gap(logs)
    if n < 2:
        return None
    return False if -margin <= lo and hi <= margin else True if lo > 0 and mean > margin else None


def agreement(logs: pd.DataFrame) -> str:
    """The share of steps at which the monolingual and the cross-lingual gradient agree (positive cosine), as a
    range over the mixing methods, which measure it at every step (:func:`table`), e.g. '69-75%'."""
    shares = 1 - table(logs).conflict_share
    shares = shares[[Strategy.parse(s).mixing for s in shares.index]]
    if shares.empty:
        return "not measured"
    lo, hi = f"{shares.min():.0%}", f"{shares.max():.0%}"
    return lo if lo == hi else f"{lo[:-1]}-{hi}"
