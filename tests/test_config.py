"""Profiles, strategies and notebook parameters: everything is checked once, before any work, with one
error type whose message names the file, the field and the value."""
import dataclasses
import re

import pytest

from hybridlib.config import ConfigError, Profile, load_profile, override
from hybridlib.stages import STAGES, TRAIN
from hybridlib.strategy import Strategy, StrategyError

from .test_samplers import parallel_pairs

PAIRS = parallel_pairs(40, 4)


@pytest.mark.parametrize("name", ["smoke", "cpu", "study", "paper"])
def test_shipped_profiles_are_valid_and_round_trip_through_their_resolved_file(name, tmp_path):
    p = load_profile(name)
    assert p.name == name and all(s.trains or s.name in ("zero-shot", "bm25") for s in p.strategies)
    path = tmp_path / "resolved.yaml"
    path.write_text(p.to_yaml())
    assert load_profile(str(path)) == p


def test_every_training_field_is_reachable_from_a_profile():
    p = override(load_profile("smoke"), max_grad_norm=5.0, warmup=0.2, weight_decay=0.0, cagrad_c=0.2,
                 gradvac_beta=0.05, symmetric=True, gradient_checkpointing=True)
    train = p.stage("train")
    assert (train["max_grad_norm"], train["warmup"], train["weight_decay"], train["cagrad_c"], train["gradvac_beta"],
            train["symmetric"], train["gradient_checkpointing"]) == (5.0, 0.2, 0.0, 0.2, 0.05, True, True)
    assert "encode_batch_size" not in train and "encode_batch_size" in p.stage("eval")
    assert "lr" not in p.stage("eval") and "heldout_fraction" in p.stage("data")


def write(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_FIELDS = {  # case -> (YAML, message)
    "misspelt field": ("batch_sise: 8\n", r"unknown field\(s\) \['batch_sise'\]; allowed: \[.*'batch_size'"),
    "wrong type": ("batch_size: eight\n", "field batch_size='eight' has type str; expected <class 'int'>"),
    "batch of one (no in-batch negative)": ("batch_size: 1\n", r"field batch_size=1 outside \[2, inf\]"),
    "held-out share too large": ("heldout_fraction: 1.5\n", r"field heldout_fraction=1.5 outside \[0, 0.9\]"),
    "seed not an integer": ("seeds: [0, one]\n", "field seeds="),
    "no seeds": ("seeds: []\n", r"field seeds=\[\] must be a non-empty list"),
    "negative seed": ("seeds: [0, -1]\n", r"field seeds=\[0, -1\]: seeds are integers >= 0"),
    "repeated seed": ("seeds: [1, 1]\n", r"field seeds=\[1, 1\] must be a non-empty list without repeats"),
    "no strategies": ("strategies: []\n", r"field strategies=\[\] must be a non-empty list"),
    "one strategy twice": ("strategies: [hybrid(0.5), hybrid(0.50)]\n",
                          r"field strategies=\['hybrid\(0.5\)', 'hybrid\(0.5\)'\] must be a non-empty list without repeats"),
    "unknown collection": ("eval_collections: [xquad-r, squad]\n", r"eval_collections has unknown \['squad'\]"),
    "no collections": ("eval_collections: []\n", r"field eval_collections=\[\] must be a non-empty list"),
    "lr of the wrong type": ("lr: [1]\n", "field lr="),
    "lr zero": ("lr: 0\n", r"field lr=0 is outside \(0, 1\]"),
    "lr absurd": ("lr: 1000\n", r"field lr=1000 is outside \(0, 1\]"),
    "temperature zero": ("temperature: 0\n", r"field temperature=0.0 must be > 0"),
    "temperature negative": ("temperature: -0.05\n", r"field temperature=-0.05 must be > 0"),
    "max_grad_norm zero": ("max_grad_norm: 0\n", r"field max_grad_norm=0.0 must be > 0"),
    "dropout above one": ("dropout: 1.5\n", r"field dropout=1.5 must be in \[0, 1\)"),
    "warmup of every step": ("warmup: 1.0\n", r"field warmup=1.0 outside \[0, 0.99\]"),
    "negative weight decay": ("weight_decay: -0.1\n", r"field weight_decay=-0.1 outside \[0, inf\]"),
    "gradvac beta above one": ("gradvac_beta: 2\n", r"field gradvac_beta=2 is outside \(0, 1\]"),
    "gradvac beta zero": ("gradvac_beta: 0\n", r"field gradvac_beta=0 is outside \(0, 1\]"),
    "cagrad c negative": ("cagrad_c: -0.5\n", r"field cagrad_c=-0.5 is outside \[0, inf\]"),
    "negative probe interval": ("probe_every: -1\n", r"field probe_every=-1 outside \[0, inf\]"),
    "negative collapse steps": ("collapse_steps: -1\n", r"field collapse_steps=-1 outside \[0, inf\]"),
    "budget below one batch": ("batch_size: 32\nbudget_pairs: 16\nstrategies: [xx]\n",
                               r"field budget_pairs=16 is smaller than one step of xx \(32 pairs"),
    "budget below one mixing step": ("batch_size: 32\nbudget_pairs: 48\nstrategies: [pcgrad]\n",
                                     r"field budget_pairs=48 is smaller than one step of pcgrad \(64 pairs"),
    "more layers than the model": ("num_layers: 13\n", r"field num_layers=13 outside \[1, 12\]"),
    "unknown embedded model": ("model: embedded:labse\n", r"field model='embedded:labse' is not an embedded model"),
    "unknown strategy": ("strategies: [zero-shot, adam]\n", r"unknown strategy 'adam'; allowed: zero-shot, bm25"),
    "hybrid alpha out of range": ("strategies: [hybrid(1.5)]\n", r"alpha=1.5 is outside \[0, 1\]"),
    "name leaving the runs directory": ("name: ../../elsewhere\n", r"field name='../../elsewhere' must be letters"),
    "absolute path as name": ("name: /tmp/x\n", r"field name='/tmp/x' must be letters"),
    "not a mapping": ("- a\n- b\n", "expected a mapping of fields, got list"),
    "not YAML": ("batch_size: [\n", "not valid YAML"),
    "extra seed among seeds": ("seeds: [0, 1]\nstrategies: [xx]\nextra_seeds: [1, 2]\nextra_seed_strategies: [xx]\n",
                               r"field extra_seeds=\[1, 2\] repeats some of seeds \[0, 1\]"),
    "extra seeds for an arm not run": ("strategies: [xx]\nextra_seeds: [5]\nextra_seed_strategies: [xy]\n",
                                       r"field extra_seed_strategies: \['xy'\] must be trained strategies"),
    "extra seeds for an untrained arm": ("strategies: [bm25, xx]\nextra_seeds: [5]\nextra_seed_strategies: [bm25]\n",
                                         r"field extra_seed_strategies: \['bm25'\] must be trained strategies"),
    "extra seeds for no arm": ("strategies: [xx]\nextra_seeds: [5]\n", "both or neither of extra_seeds and it"),
    "a field written twice": ("lr: 1e-4\nseeds: [0]\nlr: 2e-4\n", r"field lr is given twice \(lines 1 and 3\)"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_bad_profile_field_is_refused_naming_file_field_and_value(tmp_path, case):
    text, message = BAD_FIELDS[case]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_profile(path)
    assert path in str(err.value)


def test_extra_seeds_run_only_the_strategies_that_ask_for_them(tmp_path):
    from hybridlib.runs import evaluated_runs
    p = load_profile(write(tmp_path, "seeds: [0, 1]\nstrategies: [bm25, xx, xy]\nextra_seeds: [7]\n"
                                     "extra_seed_strategies: [xy]\nbatch_size: 4\nbudget_pairs: 8\n"))
    assert p.all_seeds == (0, 1, 7) and p.seeds_of(Strategy("xy")) == (0, 1, 7) and p.seeds_of(Strategy("xx")) == (0, 1)
    assert [(str(s), seed) for s, seed in evaluated_runs(p)] == [("bm25", 0), ("xx", 0), ("xy", 0), ("xx", 1),
                                                                  ("xy", 1), ("xy", 7)]
    assert load_profile(write(tmp_path, p.to_yaml())) == p  # the resolved file reads back


def test_a_yaml_file_named_like_a_builtin_profile_is_that_file(tmp_path, monkeypatch):
    path = write(tmp_path, "strategies: [xx]\nbatch_size: 4\nbudget_pairs: 8\n", "smoke.yaml")
    p = load_profile(path)
    assert p.strategies == (Strategy("xx"),) and p.batch_size == 4  # not the built-in smoke
    monkeypatch.chdir(tmp_path)
    assert load_profile("smoke.yaml").batch_size == 4 and load_profile("smoke").batch_size == 8


def test_a_file_name_that_cannot_name_a_profile_says_so_not_a_field_never_written(tmp_path):
    path = write(tmp_path, "lr: 1e-4\n", "prüf ung.yaml")
    with pytest.raises(ConfigError, match="prüf ung.yaml: the file name gives the profile name 'prüf ung', .* rename "
                                          "the file or give the profile a field name"):
        load_profile(path)
    assert load_profile(write(tmp_path, "name: pruefung\n", "prüf ung.yaml")).name == "pruefung"


def test_unknown_profile_lists_the_builtin_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'gpu'; built-in profiles: cpu, paper, pilot, smoke, study"):
        load_profile("gpu")
    with pytest.raises(ConfigError, match=f"profile file '{tmp_path}/none.yaml' does not exist"):
        load_profile(str(tmp_path / "none.yaml"))


def test_override_validates_like_the_file():
    p = override(load_profile("smoke"), batch_size=4)
    assert p.batch_size == 4
    with pytest.raises(ConfigError, match="field num_layers=99 outside"):
        override(p, num_layers=99)


@pytest.mark.parametrize("items, message", [
    (["lr"], r"--set 'lr': expected FIELD=VALUE"),
    (["=3"], r"--set '=3': expected FIELD=VALUE"),
    (["seeds=[0,"], r"--set 'seeds=\[0,': the value is not valid YAML"),
    (["lr=1e-4", "lr=2e-4"], r"--set 'lr=2e-4': field lr is set twice"),
])
def test_bad_overrides_on_the_command_line(items, message):
    from hybridlib.config import parse_overrides
    with pytest.raises(ConfigError, match=message):
        parse_overrides(items)


def test_strategies_parse_once_into_one_type():
    h = Strategy.parse(" hybrid( 0.50 ) ")
    assert (h.name, h.alpha, h.family, h.trains, h.mixing) == ("hybrid", 0.5, "sampled", True, False)
    assert str(h) == "hybrid(0.5)" and h.run_name(3) == "hybrid-0.5-s3"
    assert (type(h.sampler(PAIRS, 8)).name, h.sampler(PAIRS, 8).alpha) == ("hybrid", 0.5)
    assert type(Strategy.parse("pcgrad").sampler(PAIRS, 8)).name == "paired"
    p = load_profile("cpu")
    s = Strategy.parse("sum(0.25)")
    assert s.mixing and s.combiner(p).alpha == 0.25 and s.run_name(0) == "sum-0.25-s0"
    c = Strategy.parse("cagrad(c=0.2)")
    assert c.combiner(p).c == 0.2 and str(c) == "cagrad(c=0.2)"
    assert Strategy.parse("cagrad").combiner(override(p, cagrad_c=0.4)).c == 0.4
    assert Strategy.parse("gradvac").combiner(override(p, gradvac_beta=0.02)).beta == 0.02
    z = Strategy.parse("zero-shot")
    assert z.family == "untrained" and not z.trains and z.run_name(0) == "zero-shot-s0"
    assert Strategy.parse("pcgrad").pairs_per_step(32) == 64 and Strategy.parse("xx").pairs_per_step(32) == 32
    from hybridlib.strategy import sort
    assert sort(["mgda", "hybrid(0.75)", "xx", "zero-shot", "hybrid(0.25)", "bm25"]) == [
        "zero-shot", "bm25", "xx", "hybrid(0.25)", "hybrid(0.75)", "mgda"]


@pytest.mark.parametrize("text, message", [
    ("adam", "unknown strategy 'adam'"),
    ("hybrid", r"hybrid needs alpha"),
    ("hybrid(x)", r"'x' is not a number"),
    ("hybrid(nan)", r"alpha=nan is outside \[0, 1\]"),
    ("gradvac(beta=5)", r"beta=5 is outside \(0, 1\]"),
    ("gradvac(beta=0)", r"beta=0 is outside \(0, 1\]"),
    ("xx(0.5)", r"xx takes no argument '0.5'"),
    ("pcgrad(c=1)", r"pcgrad takes no argument 'c=1'"),
    ("cagrad(c=-1)", r"c=-1 is outside \[0, inf\]"),
    ("HYBRID(0.5)", "unknown strategy"),
    ("hybrid(0.5, 0.3)", r"alpha is given twice \('0.5' and '0.3'\)"),
    ("hybrid(0.5, alpha=0.3)", r"alpha is given twice"),
    ("hybrid(0.5, lr=1e-4, lr=2e-4)", r"lr is given twice \('lr=1e-4' and 'lr=2e-4'\)"),
    (3, "unknown strategy 3"),
])
def test_bad_strategy_names(text, message):
    with pytest.raises(StrategyError, match=message):
        Strategy.parse(text)
    assert issubclass(StrategyError, ConfigError)


@pytest.mark.parametrize("params, message", [
    ({"SEED": "0"}, r"parameter SEED='0': expected an integer >= 0"),
    ({"SEED": -1}, r"parameter SEED=-1: expected an integer >= 0"),
    ({"SEED": True}, r"parameter SEED=True: expected an integer >= 0"),
    ({"SEED": 1.5}, r"parameter SEED=1.5: expected an integer >= 0"),
    ({"STRATEGY": "adam"}, r"unknown strategy 'adam'; allowed: zero-shot, bm25, xx, xy, ml, hybrid"),
    ({"STRATEGY": "hybrid(1.5)"}, r"strategy 'hybrid\(1.5\)': alpha=1.5 is outside \[0, 1\]"),
    ({"STRATEGY": 3}, r"unknown strategy 3"),
    ({"DATA_DIR": "/no/such/dir"}, r"parameter DATA_DIR='/no/such/dir': no such directory"),
    ({"DATA_DIR": None}, r"parameter DATA_DIR=None: expected a path, or '' for the default"),
    ({"DATA_OUT": "EMPTY"}, r"parameter DATA_OUT='.*': no train_pairs.parquet there; notebook 01 writes it"),
    ({"DATA_OUT": "../runs/cpu/data", "PROFILE": "../runs/cpu/profile.yaml"},
     r"DATA_OUT='../runs/cpu/data': no such directory; notebook 01 writes it. Run it first, from this notebook's "
     r"folder: python -m hybridlib run --profile ../runs/cpu/profile.yaml --runs-dir ../runs --until 01_data"),
    ({"PROFILE_DIR": "/no/such/dir"}, r"parameter PROFILE_DIR='/no/such/dir': no such directory"),
    ({"RUN_DIR": ""}, r"parameter RUN_DIR='': expected a directory path"),
    ({"RUN_DIR": "FILE"}, r"parameter RUN_DIR='.*': expected a directory path"),
    ({"RUNS": "xx-s0"}, r"parameter RUNS='xx-s0': expected a list of run directory names, or None for all"),
    ({"RUNS": ["xx-s0", ""]}, r"parameter RUNS=\['xx-s0', ''\]: expected a list of run directory names"),
    ({"PROFILE": 3}, r"parameter PROFILE=3: expected a profile name"),
    ({"PROFILE": "gpu"}, r"unknown profile 'gpu'; built-in profiles: cpu, paper, pilot, smoke, study"),
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
                         RUN_DIR=str(tmp_path / "run"), DATA_DIR="", PROFILE_DIR=str(tmp_path), RUNS=["xx-s0"])
    assert p.name == "smoke" and check_parameters(SEED=0) is None


@pytest.mark.slow
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
    (["train", "--strategy", "adam", "--data", "{tmp}", "--run-dir", "{tmp}/r"], "unknown strategy 'adam'"),
    (["train", "--strategy", "xx", "--data", "{tmp}", "--run-dir", "{tmp}/r"], "parameter DATA_OUT=.*no train_pairs.parquet"),
    (["train", "--strategy", "xx", "--data", "{tmp}", "--run-dir", "{tmp}/r", "--set", "lr=[1"], "--set 'lr=\\[1'"),
    (["train", "--strategy", "xx", "--data", "{tmp}", "--run-dir", "{tmp}/r", "--set", "lr=0"], "field lr=0 is outside"),
    (["run", "--profile", "gpu", "--dry-run"], "unknown profile 'gpu'"),
    (["run", "--profile", "smoke", "--set", "batch_size=1", "--dry-run"], r"field batch_size=1 outside"),
    (["run", "--profile", "{tmp}/missing.yaml", "--dry-run"], "profile file .* does not exist"),
])
def test_command_line_reports_bad_input_in_one_line_without_a_traceback(tmp_path, capsys, argv, message):
    from hybridlib.__main__ import main
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert re.search("error: .*" + message, err) and "Traceback" not in err and err.count("\n") == 1


def test_profile_fields_have_one_home():
    """Every field the trainer reads comes from the profile; nothing copies fields into a second config."""
    import hybridlib.trainer as trainer
    assert not hasattr(trainer, "TrainConfig") and not hasattr(trainer, "TRAIN_FIELDS")
    names = {f.name for f in dataclasses.fields(Profile)}
    assert {"max_grad_norm", "warmup", "weight_decay", "cagrad_c", "gradvac_beta", "symmetric",
            "gradient_checkpointing", "collapse_steps"} <= names


def test_every_task_passes_only_parameters_its_notebook_declares_and_checks(tmp_path):
    """The pipeline's parameters and the notebooks' parameters cells cannot drift apart unnoticed."""
    import papermill

    from hybridlib.config import CHECKS
    from hybridlib.pipeline import NOTEBOOKS, prepare
    _, _, todo = prepare("cpu", tmp_path)
    declared = {nb.name: set(papermill.inspect_notebook(str(nb))) for nb in NOTEBOOKS.glob("*.ipynb")}
    for t in todo:
        assert set(t.parameters) <= declared[t.notebook], (t.notebook, set(t.parameters) - declared[t.notebook])
    assert set().union(*declared.values()) <= set(CHECKS)  # every notebook parameter has a check


def test_a_strategy_can_carry_its_run_budget_learning_rate_and_frozen_embeddings():
    p = load_profile("cpu")
    eq = Strategy.parse("pcgrad(budget=2)")
    assert p.trained_with(eq).budget_pairs == 6144 and p.steps(eq) == p.steps(Strategy.parse("xx")) == 96  # equal steps
    assert p.steps(Strategy.parse("pcgrad")) == 48 and eq.run_name(0) == "pcgrad-budget2-s0"
    h = Strategy.parse("hybrid(0.5, lr=1e-4, frozen=0)")
    assert (h.alpha, p.trained_with(h).lr, p.trained_with(h).freeze_embeddings) == (0.5, 1e-4, False)
    assert str(h) == "hybrid(0.5, frozen=0, lr=0.0001)" and Strategy.parse(str(h)) == h
    assert p.trained_with(Strategy.parse("xx")) is p  # no options: the profile as it is
    from hybridlib.trainer import run_config
    assert run_config(p, Strategy.parse("xx"), 0)["lr"] == 5e-5 and run_config(p, h, 0)["lr"] == 1e-4
    for bad, message in (("xx(frozen=2)", r"frozen=2 is outside \{0, 1\}"), ("xx(lr=0)", r"lr=0 is outside"),
                         ("zero-shot(lr=1e-4)", "zero-shot takes no argument"), ("xx(budget=0)", "budget=0 is outside")):
        with pytest.raises(StrategyError, match=message):
            Strategy.parse(bad)


def test_the_study_profile_holds_the_powered_design(tmp_path, capsys):
    from hybridlib.__main__ import main
    p = load_profile("study")
    assert len(p.seeds) >= 5
    names = {str(s) for s in p.strategies}
    core = {"xx", "xy", "hybrid(0.25)", "hybrid(0.5)", "hybrid(0.75)", "sum", "pcgrad", "gradvac", "cagrad", "mgda"}
    assert core | {"sum(0.25)", "sum(0.5)", "sum(0.75)"} <= names
    assert {f"{m}(budget=2)" for m in ("sum", "pcgrad", "gradvac", "cagrad", "mgda")} <= names  # equal steps
    rates = {p.trained_with(s).lr for s in p.strategies if s.name in ("hybrid", "pcgrad")}
    assert len(rates) == 3
    assert {p.trained_with(s).budget_pairs for s in p.strategies if s.trains} >= {3072, 6144, 12595}
    assert any(not p.trained_with(s).freeze_embeddings for s in p.strategies)
    assert main(["run", "--profile", "study", "--runs-dir", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "02_train.ipynb -> pcgrad-budget2-s4" in out and "03_evaluate.ipynb -> zero-shot-s1" not in out
    assert re.search(r"386 task\(s\) would run, 190 of them training; about [\d.]+ hours", out)
    assert "0 of 192 runs done (trained and evaluated)" in out
    assert "02_train.ipynb -> mgda-s9" in out and "02_train.ipynb -> pcgrad-s5" not in out  # 10 seeds for some arms


@pytest.mark.parametrize("name", ["cpu", "study", "pilot"])
def test_committed_resolved_profiles_are_what_the_pipeline_writes(name):
    """A field added to Profile changes the resolved file: left uncommitted, `make run` on a fresh clone
    would rewrite it and leave the checkout dirty."""
    from hybridlib.paths import REPO_ROOT
    assert (REPO_ROOT / "runs" / name / "profile.yaml").read_text() == load_profile(name).to_yaml()


@pytest.mark.parametrize("stage", list(STAGES.values()), ids=lambda s: s.notebook)
def test_each_notebook_declares_and_checks_exactly_its_stage_parameters(stage):
    """A notebook's parameters cell, the names its check passes, and its stage's dataclass agree (names, and
    the type of each default)."""
    import ast
    import json

    from hybridlib.paths import NOTEBOOKS
    cells = json.loads((NOTEBOOKS / stage.notebook).read_text(encoding="utf-8"))["cells"]
    source = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    cell = next(s for c, s in zip([c for c in cells if c["cell_type"] == "code"], source)
                if "parameters" in c["metadata"].get("tags", []))
    defaults = {t.id: ast.literal_eval(n.value) for n in ast.parse(cell).body if isinstance(n, ast.Assign)
                for t in n.targets}
    assert sorted(defaults) == sorted(stage.names)
    trees = [ast.parse(s) for s in source if "google.colab" not in s]  # the Colab setup cell holds shell lines
    calls = [n for t in trees for n in ast.walk(t) if isinstance(n, ast.Call)
             and ast.unparse(n.func).endswith(".check") and ast.unparse(n.func).startswith("stages.")]
    assert len(calls) == 1 and sorted(k.arg for k in calls[0].keywords) == sorted(stage.names)
    assert all(k.arg == ast.unparse(k.value) for k in calls[0].keywords)  # PROFILE=PROFILE, ...
    kinds = {"SEED": int, "RUNS": type(None)}
    assert all(isinstance(v, kinds.get(k, str)) for k, v in defaults.items()), defaults


def test_a_stage_refuses_missing_or_unknown_parameters_and_returns_objects(tmp_path):
    (tmp_path / "train_pairs.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"02_train.ipynb takes parameters \['PROFILE', 'STRATEGY', 'SEED', "
                                          r"'DATA_OUT', 'RUN_DIR'\], got \['PROFILE', 'SEED'\]"):
        TRAIN.check(PROFILE="smoke", SEED=0)
    run = TRAIN.check(PROFILE="smoke", STRATEGY="hybrid(0.50)", SEED=1, DATA_OUT=str(tmp_path), RUN_DIR=str(tmp_path / "r"))
    assert (run.strategy, run.seed, run.run_dir, run.profile.name) == (Strategy("hybrid", 0.5), 1, tmp_path / "r", "smoke")
    with pytest.raises(ValueError, match=r"02_train.ipynb: parameters \['seed'\] are not"):
        TRAIN.arguments(seed=0)


def test_the_strategy_reference_comes_from_the_registered_classes(capsys):
    from hybridlib.__main__ import main
    from hybridlib.strategy import names, reference
    rows = reference()
    assert [r["strategy"] for r in rows if r["strategy"] and r["strategy"] != "any trained"] == list(names())
    gradvac = next(i for i, r in enumerate(rows) if r["strategy"] == "gradvac")
    assert rows[gradvac]["meaning"] == "Gradient Vaccine (Wang et al. 2021)"
    assert rows[gradvac + 1] == {"strategy": "", "family": "", "number": "beta", "range": "(0, 1]",
                                      "default": "profile field gradvac_beta", "meaning": "EMA rate of the target cosine"}
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["strategy", "family", "number", "range", "default", "meaning"] and len(out) == len(rows) + 1
