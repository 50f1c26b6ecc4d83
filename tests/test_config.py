import pytest

from hybridlib.config import ConfigError, load_profile, override


@pytest.mark.parametrize("name", ["smoke", "cpu", "paper"])
def test_shipped_profiles_are_valid(name):
    from hybridlib.trainer import TrainConfig
    p = load_profile(name)
    for strategy in p.strategies:
        if strategy not in ("zero-shot", "bm25"):
            TrainConfig(strategy, batch_size=p.batch_size, budget_pairs=p.budget_pairs)


def write(tmp_path, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ("batch_sise: 8\n", r"unknown field\(s\) \['batch_sise'\]; allowed: \[.*'batch_size'"),
    ("batch_size: eight\n", "field batch_size='eight' has type str; expected <class 'int'>"),
    ("batch_size: 0\n", r"field batch_size=0 outside \[1, inf\]"),
    ("heldout_fraction: 1.5\n", r"field heldout_fraction=1.5 outside \[0, 0.9\]"),
    ("seeds: [0, one]\n", "field seeds="),
    ("eval_collections: [xquad-r, squad]\n", r"eval_collections has unknown \['squad'\]; allowed: xquad-r, mlqa-r, tydi"),
    ("lr: [1]\n", "field lr="),
    ("- a\n- b\n", "expected a mapping of fields, got list"),
    ("batch_size: [\n", "not valid YAML"),
])
def test_bad_profile_fields(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_profile(write(tmp_path, text))


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown profile 'gpu'; valid: cpu, paper, smoke"):
        load_profile("gpu")


def test_override_validates_like_the_file():
    p = override(load_profile("smoke"), batch_size=4)
    assert p.batch_size == 4
    with pytest.raises(ConfigError, match="field num_layers=99 outside"):
        override(p, num_layers=99)


def test_unknown_strategy_in_a_profile_is_caught_before_work(tmp_path):
    from hybridlib.pipeline import run
    path = write(tmp_path, "strategies: [zero-shot, hybrid(0.5), adam]\n")
    with pytest.raises(ConfigError, match=r"strategies has unknown 'adam'"):
        run(path, tmp_path / "runs", dry_run=True)
