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
    with pytest.raises(ConfigError, match=r"strategies: unknown strategy 'adam'"):
        run(path, tmp_path / "runs", dry_run=True)


@pytest.mark.parametrize("params, message", [
    ({"SEED": "0"}, r"parameter SEED='0': expected an integer >= 0"),
    ({"SEED": -1}, r"parameter SEED=-1: expected an integer >= 0"),
    ({"SEED": True}, r"parameter SEED=True: expected an integer >= 0"),
    ({"SEED": 1.5}, r"parameter SEED=1.5: expected an integer >= 0"),
    ({"STRATEGY": "adam"}, r"parameter STRATEGY: unknown strategy 'adam'; allowed: zero-shot, bm25, xx, xy, ml, hybrid"),
    ({"STRATEGY": "hybrid(1.5)"}, r"parameter STRATEGY: unknown strategy 'hybrid\(1.5\)'.*alpha in \[0, 1\]"),
    ({"STRATEGY": 3}, r"parameter STRATEGY=3: expected a strategy name"),
    ({"HYBRID": "pcgrad"}, r"parameter HYBRID='pcgrad': expected hybrid\(alpha\)"),
    ({"DATA_DIR": "/no/such/dir"}, r"parameter DATA_DIR='/no/such/dir': no such directory"),
    ({"DATA_DIR": None}, r"parameter DATA_DIR=None: expected a path, or '' for the default"),
    ({"DATA_OUT": "EMPTY"}, r"parameter DATA_OUT='.*': no train_pairs.parquet there \(run notebook 01 first\)"),
    ({"PROFILE_DIR": "/no/such/dir"}, r"parameter PROFILE_DIR='/no/such/dir': no such directory"),
    ({"RUN_DIR": ""}, r"parameter RUN_DIR='': expected a directory path"),
    ({"RUN_DIR": "FILE"}, r"parameter RUN_DIR='.*': expected a directory path"),
    ({"PROFILE": 3}, r"parameter PROFILE=3: expected a profile name"),
    ({"PROFILE": "gpu"}, r"unknown profile 'gpu'; valid: cpu, paper, smoke"),
    ({"STRATEGIE": "xx"}, r"unknown parameter\(s\) \['STRATEGIE'\]; allowed: \['BENCHMARKS', 'DATA_DIR'"),
])
def test_bad_notebook_parameters_are_refused_before_work(tmp_path, params, message):
    from hybridlib.config import check_parameters
    (tmp_path / "file").write_text("")
    params = {k: {"EMPTY": str(tmp_path), "FILE": str(tmp_path / "file")}.get(v, v) if isinstance(v, str) else v
              for k, v in params.items()}
    with pytest.raises(ConfigError, match=message):
        check_parameters(**params)


def test_good_notebook_parameters_return_the_profile(tmp_path):
    from hybridlib.config import check_parameters
    (tmp_path / "train_pairs.parquet").write_bytes(b"")
    p = check_parameters(PROFILE="smoke", STRATEGY="hybrid(0.25)", SEED=3, DATA_OUT=str(tmp_path),
                         RUN_DIR=str(tmp_path / "run"), DATA_DIR="", HYBRID="hybrid(0.5)", PROFILE_DIR=str(tmp_path))
    assert p.name == "smoke" and check_parameters(SEED=0) is None


def test_a_notebook_with_a_bad_parameter_stops_before_any_work(tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from hybridlib.paths import REPO_ROOT
    run = tmp_path / "run"
    with pytest.raises(PapermillExecutionError, match=r"parameter SEED='zero': expected an integer >= 0"):
        papermill.execute_notebook(REPO_ROOT / "notebooks" / "02_train.ipynb", tmp_path / "out.ipynb",
                                   parameters={"SEED": "zero", "RUN_DIR": str(run), "DATA_OUT": str(tmp_path)},
                                   cwd=REPO_ROOT / "notebooks", progress_bar=False, kernel_name="python3")
    assert not run.exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--strategy", "adam", "--data", "{tmp}", "--run-dir", "{tmp}/r"], "parameter STRATEGY: unknown strategy 'adam'"),
    (["train", "--strategy", "xx", "--data", "{tmp}", "--run-dir", "{tmp}/r"], "parameter DATA_OUT=.*no train_pairs.parquet"),
    (["run", "--profile", "gpu", "--dry-run"], "unknown profile 'gpu'"),
])
def test_command_line_reports_bad_parameters_without_a_traceback(tmp_path, capsys, argv, message):
    import re

    from hybridlib.__main__ import main
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert re.search("error: .*" + message, err) and "Traceback" not in err
