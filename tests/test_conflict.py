"""Gradient conflict against its same-kind floor, from hand-made training logs."""
import numpy as np
import pandas as pd
import pytest

from hybridlib import analysis, conflict


def test_table_counts_negative_cosines_after_warm_up_beside_the_floor():
    logs = pd.DataFrame({"strategy": ["sum"] * 5 + ["xx"] * 4, "run": ["sum-s0"] * 5 + ["xx-s0"] * 4,
                         "step": [1, 2, 3, 4, 10, 1, 2, 3, 10],  # step 1 of each run is warm-up (<= 10% of 10)
                         "cosine": [0.9, 0.1, -0.2, -0.1, np.nan, 0.9, 0.3, 0.2, -0.5],
                         "cosine_mono_mono": [0.8, np.nan, np.nan, 0.2, -0.1, 0.8, np.nan, -0.3, 0.1]})
    t = conflict.table(logs)
    assert t.loc["xx"].tolist() == pytest.approx([3, 0.0, 1 / 3, -0.1, 0.5])
    assert t.loc["sum"].tolist() == pytest.approx([3, -0.2 / 3, 2 / 3, 0.05, 0.5])
    assert t.index.tolist() == ["xx", "sum"]  # display order: samplers before mixing


def probe_logs():
    """Two runs of 10 steps, probes at steps 1 (warm-up), 4 (second third), 7 and 10 (last third)."""
    rows = []
    for run, shift in (("sum-s0", 0.0), ("sum-s1", 0.02)):
        for step, cross, mm, cc in ((1, 0.8, 0.9, 0.9), (4, 0.10, 0.20, 0.10), (7, 0.05, 0.10, 0.06),
                                    (10, 0.03, 0.08, 0.06)):
            rows.append({"strategy": "sum", "run": run, "step": step, "pairs_seen": 64 * step, "cosine": cross + shift,
                         "probe_cosine": cross + shift, "cosine_mono_mono": mm, "cosine_cross_cross": cc})
        rows.append({"strategy": "sum", "run": run, "step": 5, "pairs_seen": 320, "cosine": -0.2})  # no probe
    return pd.DataFrame(rows)


def test_the_gap_is_the_mean_floor_less_the_mono_cross_cosine_by_third_of_training():
    logs = probe_logs()
    p = conflict.probes(logs)
    assert len(p) == 8 and p.loc[p.step == 4, "gap"].tolist() == pytest.approx([0.05, 0.03])  # .15 - .10, .15 - .12
    t = conflict.by_third(logs)
    assert t.index.tolist() == [("sum", "first third"), ("sum", "second third"), ("sum", "last third")]
    assert t.loc[("sum", "second third")].tolist() == pytest.approx([0.11, 0.20, 0.10, 0.04, 2])
    # last third: steps 7 and 10 of both runs; floors .08 and .07, mono/cross .05, .07, .03, .05
    assert t.loc[("sum", "last third"), "gap"] == pytest.approx((0.03 + 0.01 + 0.04 + 0.02) / 4)
    wide = conflict.long(logs)
    assert sorted(wide.pair.unique()) == ["cross vs cross", "mono vs cross", "mono vs mono"] and len(wide) == 24


def test_a_log_without_probes_gives_empty_tables_not_an_error():
    logs = probe_logs()[["strategy", "run", "step", "pairs_seen", "cosine"]]  # as logged before the floor was probed
    assert conflict.probes(logs).empty and conflict.by_third(logs).empty and conflict.by_regime(logs).empty
    assert conflict.sentence(logs) == "not measured" and conflict.above_floor(logs) is None
    assert conflict.long(logs).pair.unique().tolist() == ["mono vs cross"] and len(conflict.long(logs)) == 10


def test_the_gap_decides_above_the_floor_only_beyond_its_margin():
    logs = probe_logs()
    gaps = conflict.after_warmup(conflict.probes(logs)).gap  # steps 4, 7, 10 of both runs
    mean, lo, hi, n = conflict.gap(logs)
    assert n == 6 and mean == pytest.approx(gaps.mean())
    assert hi - mean == pytest.approx(1.96 * gaps.std(ddof=1) / np.sqrt(6))
    assert conflict.above_floor(logs) is True  # gap .030 [.019, .041], above the margin .01
    assert conflict.above_floor(logs, margin=0.05) is False  # within +-.05: no more than batch noise
    assert conflict.above_floor(logs, margin=0.035) is None  # above zero, but its mean within the margin
    lift = np.where(logs.run == "sum-s1", 0.01, 0.0)  # seed 1's cosines all .01 higher: distinct probes
    level = logs.assign(cosine_mono_mono=logs.cosine_mono_mono + lift, cosine_cross_cross=logs.cosine_cross_cross + lift)
    level = level.assign(probe_cosine=(level.cosine_mono_mono + level.cosine_cross_cross) / 2)
    assert conflict.above_floor(level) is False and conflict.gap(level)[0] == pytest.approx(0)
    assert conflict.above_floor(logs.drop(columns=["cosine_mono_mono"])) is None
    assert conflict.sentence(level).endswith("; the floor less the mono/cross cosine .000 [.000, .000] over 6 probes")


def test_the_sentence_and_the_answer_follow_the_gap():
    from hybridlib.config import Profile
    logs = probe_logs()
    assert conflict.sentence(logs).startswith(
        "after warm-up the monolingual and the cross-lingual gradient meet at a cosine of .070 (0% below zero); "
        "two monolingual batches at .127 (0% below zero), two cross-lingual at .073 (0% below zero); the floor "
        "less the mono/cross cosine +.030 [+.019, +.041] over 6 probes")  # gaps .05 .03 .03 .01 .04 .02
    profile = Profile("t", batch_size=32, budget_pairs=3072, strategies=("sum",))
    text, _ = analysis.answer(profile, pd.DataFrame(), logs)
    assert "gradient agree less than two batches of one kind do" in text and "PCGrad" not in text
    pcgrad = pd.concat([logs, logs.assign(strategy="pcgrad", run=logs.run.str.replace("sum", "pcgrad"))])
    assert conflict.gap(pcgrad) == conflict.gap(logs)  # a run repeated bit for bit counts once
    assert "PCGrad, which projects only where the cosine is negative, never projected" not in analysis.answer(
        profile, pd.DataFrame(), pcgrad)[0]  # one step at -.2: it did
    positive = pcgrad.assign(cosine=pcgrad.cosine.abs())
    assert analysis.answer(profile, pd.DataFrame(), positive)[0].endswith(
        "PCGrad, which projects only where the cosine is negative, never projected: its updates were the plain sum's.")
    level = logs.assign(probe_cosine=(logs.cosine_mono_mono + logs.cosine_cross_cross) / 2)
    assert "conflict no more than two batches of one kind do" in analysis.answer(profile, pd.DataFrame(), level)[0]


def test_agreement_ranges_over_the_mixing_methods_only():
    logs = pd.DataFrame({"strategy": ["sum"] * 4 + ["pcgrad"] * 4 + ["xx"] * 2,  # xx: probes only, not counted
                         "cosine": [0.1, 0.2, 0.3, -0.1, 0.1, -0.2, 0.3, -0.1, -0.5, -0.5]})
    logs = logs.assign(run=logs.strategy + "-s0", step=[2, 3, 4, 5, 2, 3, 4, 5, 2, 3])  # all past the warm-up
    assert conflict.agreement(logs) == "50-75%"
    assert conflict.agreement(logs[logs.strategy != "pcgrad"]) == "75%"


def test_by_regime_splits_the_gap_by_the_strategies_run_options():
    logs = probe_logs()
    longer = logs.assign(strategy="sum(budget=4.1)", run=logs.run.str.replace("sum", "sum-budget4.1"),
                         probe_cosine=logs.probe_cosine - 0.01)  # .01 lower: the gap .01 wider
    t = conflict.by_regime(pd.concat([longer, logs])).set_index("regime")  # the profile's own first
    assert t.index.tolist() == ["own", "budget=4.1"] and t.probes.tolist() == [6, 6]
    assert t.loc["own", "gap"] == pytest.approx(conflict.gap(logs)[0]) == pytest.approx(0.03)
    assert t.loc["budget=4.1", "gap"] == pytest.approx(0.04)
    assert t.loc["own", ["gap lo", "gap hi"]].tolist() == pytest.approx(list(conflict.gap(logs)[1:3]))
    assert t.loc["own", "mono vs mono"] == pytest.approx((0.20 + 0.10 + 0.08) / 3)
