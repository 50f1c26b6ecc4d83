import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from hybridlib.errors import ConfigError
from hybridlib.samplers import SamplerError, make_sampler
from hybridlib.strategy import Strategy

from .conftest import needs_data


def draw(spec, pairs, batch_size, **kw):
    """A registered sampler by name ("paired"), or the one a strategy trains with ("hybrid(0.25)")."""
    return make_sampler(spec, pairs, batch_size, **kw) if spec == "paired" else \
        Strategy.parse(spec).sampler(pairs, batch_size, **kw)

LANGS = ["ar", "de", "en", "es", "hi"]


def parallel_pairs(n_ids: int, seed: int, shared_passages: int = 3) -> pd.DataFrame:
    """MLQA-like pairs: each id exists in 2-5 languages; a few ids share a passage (same answer sentence)."""
    import random
    rng = random.Random(seed)
    rows = []
    for q in range(n_ids):
        langs = rng.sample(LANGS, rng.randint(2, 5))
        for x in langs:
            for y in langs:
                passage = f"s{q % (n_ids - shared_passages) if q >= shared_passages else q}-{y}"
                rows.append((f"q{q}", x, y, f"question {q} {x}", passage, "", q // 3, "mono" if x == y else "cross"))
    return pd.DataFrame(rows, columns=["qid", "qlang", "plang", "question", "passage", "negative", "group", "kind"])


def check_batch(spec, pairs, rows, batch_size):
    b = pairs.loc[rows]
    halves = [b.iloc[:batch_size], b.iloc[batch_size:]] if spec == "paired" else [b]
    for part in halves:
        assert len(part) == batch_size
        assert part["qid"].is_unique, "two pairs of one question id in a batch"
        assert not part.duplicated(["plang", "passage"]).any(), "one passage twice in a batch"
    mono = b["qlang"] == b["plang"]
    if spec == "xx" or (spec.startswith("hybrid") and mono.iloc[0]):
        assert mono.all() and b["qlang"].nunique() == 1
    if spec == "xy" or (spec.startswith("hybrid") and not mono.iloc[0]):
        assert not mono.any()
    if spec == "paired":
        assert mono.iloc[:batch_size].all() and halves[0]["qlang"].nunique() == 1 and not mono.iloc[batch_size:].any()


SPECS = ["xx", "xy", "ml", "hybrid(0.5)", "hybrid(0)", "hybrid(1)", "paired"]


@settings(max_examples=25, deadline=None)
@given(spec=st.sampled_from(SPECS), seed=st.integers(0, 2**31 - 1), n_ids=st.integers(60, 200),
       batch_size=st.sampled_from([4, 8, 16]))
def test_invariants_hold_for_every_batch(spec, seed, n_ids, batch_size):
    pairs = parallel_pairs(n_ids, seed)
    sampler = draw(spec, pairs, batch_size, seed=seed)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for rows in batches:
            check_batch(spec, pairs, rows, batch_size)


@needs_data
@pytest.mark.parametrize("spec", SPECS)
def test_invariants_on_real_mlqa_pairs(spec):
    from hybridlib.pairs import mlqa_split
    train, _, _ = mlqa_split()
    sampler = draw(spec, train, 32, seed=1)
    for rows in sampler:
        check_batch(spec, train, rows, 32)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75])
def test_hybrid_share_of_monolingual_batches(alpha):
    pairs = parallel_pairs(150, 0)
    sampler = draw(f"hybrid({alpha})", pairs, 8, seed=3)
    mono, n, epoch = 0, 10_000, 0
    qlang, plang = pairs["qlang"].to_numpy(), pairs["plang"].to_numpy()
    seen = 0
    while seen < n:
        sampler.set_epoch(epoch)
        for rows in sampler:
            if seen == n:
                break
            mono += bool(qlang[rows[0]] == plang[rows[0]])
            seen += 1
        epoch += 1
    lo, hi = binom.interval(0.999, n, alpha)
    assert lo <= mono <= hi, (mono, lo, hi)


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_batches_and_set_epoch_changes_them(spec):
    pairs = parallel_pairs(120, 1)
    a, b = (draw(spec, pairs, 8, seed=7) for _ in range(2))
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    c = draw(spec, pairs, 8, seed=8)
    assert list(c) != first


@pytest.mark.parametrize("world_size", [2, 4])
@pytest.mark.parametrize("spec", SPECS)
def test_union_of_rank_slices_is_the_global_batch(spec, world_size):
    pairs = parallel_pairs(120, 2)
    single = list(draw(spec, pairs, 16, seed=5))
    ranks = [list(draw(spec, pairs, 16, seed=5, rank=r, world_size=world_size)) for r in range(world_size)]
    parts = 2 if spec == "paired" else 1
    for step, batch in enumerate(single):
        per = 16 // world_size
        for p in range(parts):
            union = [i for r in range(world_size) for i in ranks[r][step][p * per:(p + 1) * per]]
            assert union == batch[p * 16:(p + 1) * 16]


def test_resume_mid_epoch_continues_the_same_stream():
    pairs = parallel_pairs(120, 3)
    s = draw("hybrid(0.5)", pairs, 8, seed=2)
    full = list(s)
    it = iter(s)
    head = [next(it) for _ in range(5)]
    state = s.state_dict()
    t = draw("hybrid(0.5)", pairs, 8, seed=2)
    t.load_state_dict(state)
    assert head + list(t) == full


def test_bad_parameters():
    pairs = parallel_pairs(80, 4)
    with pytest.raises(ConfigError, match=r"alpha=1.5 is outside \[0, 1\]"):
        Strategy.parse("hybrid(1.5)")
    with pytest.raises(ConfigError, match=r"hybrid: alpha=-0.1 is outside \[0, 1\]"):
        make_sampler("hybrid", pairs, 8, alpha=-0.1)
    with pytest.raises(SamplerError, match="unknown sampler 'xz'; registered: xx, xy, ml, hybrid, paired"):
        make_sampler("xz", pairs, 8)
    with pytest.raises(ConfigError, match="strategy bm25 does not train"):
        Strategy.parse("bm25").sampler(pairs, 8)
    few = pairs[(pairs["qlang"] != "hi") | (pairs["qid"].isin(["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9"]))]
    few = few[~((few["qlang"] == "hi") & (few["plang"] == "hi") & ~few["qid"].isin(["q1", "q2", "q3"]))]
    with pytest.raises(SamplerError, match=r"batch_size 8 is larger than the \d distinct questions/passages of language 'hi'"):
        make_sampler("xx", few, 8)
    with pytest.raises(SamplerError, match=r"no training pairs for language\(s\) \['sw'\]"):
        make_sampler("ml", pairs, 8, languages=["en", "sw"])
    with pytest.raises(SamplerError, match="split evenly over world_size 3"):
        make_sampler("ml", pairs, 8, world_size=3)
