"""The smoke profile's whole pipeline (all notebooks) inside the test command, its resumability and its run
layer (what counts as done)."""
import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from hybridlib.pipeline import IF_INPUTS_CHANGE, PipelineLocked, run

from .conftest import needs_data

pytestmark = [needs_data, pytest.mark.slow]  # real training and notebooks


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke grid, run from a profile file of one's own (a copy of the built-in smoke profile)."""
    from hybridlib.paths import PROFILE_DIR
    root = tmp_path_factory.mktemp("runs")
    mine = tmp_path_factory.mktemp("profiles") / "smoke.yaml"
    mine.write_text((PROFILE_DIR / "smoke.yaml").read_text())
    status = run(str(mine), root, progress=False)
    failed = {k: v for k, v in status.items() if not v.startswith("done")}
    assert not failed, failed
    return root


def test_every_notebook_ran_and_wrote_its_results(runs):
    prof = runs / "smoke"
    for nb in ("data/01_data.ipynb", "04_language_bias.ipynb", "05_compare.ipynb", "06_performance.ipynb"):
        assert (prof / nb).is_file()
    for strategy in ("zero-shot-s0", "bm25-s0", "xx-s0", "hybrid-0.5-s0", "pcgrad-s0"):
        results = pd.read_parquet(prof / strategy / "results.parquet")
        assert {"xquad-r", "mlqa-r", "tydi"} == set(results["collection"])
        assert results["value"].notna().all()
    assert set(pd.read_parquet(prof / "bm25-s0" / "results.parquet")["setting"]) == {"mono"}
    assert (prof / "pcgrad-s0" / "02_train.ipynb").is_file() and (prof / "pcgrad-s0" / "train_summary.json").is_file()


def test_rerun_skips_finished_runs(runs):
    before = {p: p.stat().st_mtime for p in (runs / "smoke").glob("*/results.parquet")}
    status = run("smoke", runs, progress=False)
    assert set(status.values()) == {"skipped (done)"}
    assert before == {p: p.stat().st_mtime for p in (runs / "smoke").glob("*/results.parquet")}
    assert all(v.startswith("skipped") for v in run("smoke", runs, dry_run=True).values())


def test_second_pipeline_on_the_same_directory_is_refused(runs):
    with open(runs / "smoke" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PipelineLocked, match="another pipeline is running on this results directory"):
            run("smoke", runs)


def start_pipeline(runs, stderr=subprocess.DEVNULL):
    # SIGINT as a terminal leaves it: a test worker (make, xdist) may ignore it, and children inherit that
    return subprocess.Popen([sys.executable, "-m", "hybridlib", "run", "--profile", "smoke", "--runs-dir", str(runs)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def kill_when(proc, ready, timeout=300, sig=signal.SIGKILL):
    """Send ``sig`` to the pipeline's process group (SIGINT: what Ctrl-C does) as soon as ``ready()`` holds;
    what it printed on stderr, when captured."""
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.1)
    assert ready(), "the pipeline never reached the point to interrupt"
    os.killpg(proc.pid, sig)
    return proc.communicate()[1]


def evaluating(notebook):
    """True while papermill executes the evaluation cell of a 03 notebook (written as .03_evaluate.running.ipynb
    until it finishes)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError):
        return False
    return any("evaluate_strategy" in "".join(c["source"]) and c["metadata"].get("papermill", {}).get("status") == "running"
               for c in cells)


def test_sigkill_during_training_and_during_evaluation_loses_nothing_and_finishes_identically(runs):
    prof = runs / "smoke"
    reference = pd.read_parquet(prof / "pcgrad-s0" / "results.parquet")
    shutil.rmtree(prof / "pcgrad-s0")
    kept = {p: p.stat().st_mtime for p in prof.glob("*/results.parquet")}
    log = prof / "pcgrad-s0" / "train_log.jsonl"
    kill_when(start_pipeline(runs), lambda: log.is_file() and log.read_text().count("\n") >= 2)
    assert not (prof / "pcgrad-s0" / "model").exists()
    kill_when(start_pipeline(runs), lambda: evaluating(prof / "pcgrad-s0" / ".03_evaluate.running.ipynb"))
    assert (prof / "pcgrad-s0" / "train_summary.json").is_file()  # training finished, evaluation was cut
    assert not (prof / "pcgrad-s0" / "results.parquet").exists()
    assert not (prof / "pcgrad-s0" / "03_evaluate.ipynb").exists()  # no half-executed notebook under its name
    # the killed evaluation's notebook is still there, marked running: gone, so that the wait below sees the
    # new pipeline's evaluation, not the old one (a SIGINT during Python's start-up is not a Ctrl-C of a run)
    (prof / "pcgrad-s0" / ".03_evaluate.running.ipynb").unlink(missing_ok=True)
    proc = start_pipeline(runs, stderr=subprocess.PIPE)
    printed = kill_when(proc, lambda: evaluating(prof / "pcgrad-s0" / ".03_evaluate.running.ipynb"), sig=signal.SIGINT)
    status = run("smoke", runs, progress=False)  # first finish the run, so a failure below leaves the fixture whole
    # Ctrl-C: the pipeline stops (a shell sees 130 either way: exit code 130, or death by SIGINT) without the
    # kernel's own traceback of a closed socket; when it exits itself, with the one line saying what to do
    assert proc.returncode in (130, -signal.SIGINT), printed
    assert "ZMQError" not in printed and "IPKernelApp" not in printed, printed
    assert proc.returncode != 130 or "interrupted; run the same command again to resume" in printed
    assert status["02_train.ipynb -> pcgrad-s0"] == "skipped (done)"
    assert status["03_evaluate.ipynb -> pcgrad-s0"].startswith("done")
    assert kept == {p: p.stat().st_mtime for p in prof.glob("*/results.parquet") if p in kept}
    again = pd.read_parquet(prof / "pcgrad-s0" / "results.parquet")
    pd.testing.assert_frame_equal(again, reference, check_exact=True)  # bit-identical to the uninterrupted run
    assert not [p for p in prof.rglob("*") if ".tmp" in p.name]


def test_every_results_file_records_its_provenance(runs):
    from hybridlib.store import read_meta
    prof = runs / "smoke"
    summary = json.loads((prof / "pcgrad-s0" / "train_summary.json").read_text())
    for path in sorted(prof.glob("*/*.parquet")):
        meta = read_meta(path)
        assert meta["code_version"] and meta["profile"]["name"] == "smoke" and meta["seed"] == 0, path
        assert len(meta["data_sha256"]) >= 11 and all(len(h) == 16 for h in meta["data_sha256"].values()), path
        if path.parent.name != "data":
            assert meta["model"] == "embedded:multilingual-e5-small@2L" and len(meta["weights_sha256"]) == 16, path
    evaluated = read_meta(prof / "pcgrad-s0" / "results.parquet")
    assert summary["weights_sha256"] == evaluated["weights_sha256"]  # the evaluated model is the trained one
    assert summary["data_sha256"]["mlqa/dev/dev-context-de-question-de.json"] == read_meta(
        prof / "data" / "train_pairs.parquet")["data_sha256"]["mlqa/dev/dev-context-de-question-de.json"]
    assert {"code_version", "model", "profile", "seed"} <= set(summary)


# ---- the run layer: a task is done only when its outputs exist, parse and carry the key that made them ----

def plan_of(runs, **overrides):
    from hybridlib.config import load_profile, override
    profile = override(load_profile("smoke"), **overrides) if overrides else "smoke"
    return run(profile, runs, dry_run=True)


@contextlib.contextmanager
def altered(path, change):
    """Apply ``change`` to a file (or remove it with change=None), restore it afterwards."""
    saved = path.read_bytes()
    try:
        path.unlink() if change is None else path.write_bytes(change(saved))
        yield
    finally:
        path.write_bytes(saved)


EVAL, TRAIN = "03_evaluate.ipynb -> xx-s0", "02_train.ipynb -> xx-s0"
OUTPUT_FAULTS = {  # case -> (file under the profile directory, change, task, expected reason)
    "emptied executed notebook (kill while papermill saved)": ("xx-s0/03_evaluate.ipynb", lambda b: b"", EVAL,
                                                                "output 03_evaluate.ipynb changed since it was written"),
    "truncated results table": ("xx-s0/results.parquet", lambda b: b[:len(b) // 2], EVAL, "output unreadable: .*results.parquet"),
    "missing results table": ("xx-s0/results.parquet", None, EVAL, "output results.parquet missing"),
    "edited per-query table": ("xx-s0/per_query.parquet", lambda b: pd.read_parquet(io.BytesIO(b)).assign(
        map=0.0).to_parquet(), EVAL, "output per_query.parquet changed since it was written"),
    "results written, manifest not (kill before recording)": ("xx-s0/.03_evaluate.json", None, EVAL, "never finished"),
    "garbled manifest": ("xx-s0/.03_evaluate.json", lambda b: b"{", EVAL, ".03_evaluate.json unreadable"),
    "torn training log": ("xx-s0/train_log.jsonl", lambda b: b[:-20], TRAIN, "output train_log.jsonl changed"),
    "notebook 01 wrote its pairs, then died": ("data/.01_data.json", None, "01_data.ipynb -> data", "never finished"),
    "held-out pairs missing": ("data/heldout_pairs.parquet", None, "01_data.ipynb -> data", "output heldout_pairs.parquet missing"),
}


@pytest.mark.parametrize("case", list(OUTPUT_FAULTS))
def test_a_damaged_output_is_not_done(runs, case):
    rel, change, task, reason = OUTPUT_FAULTS[case]
    with altered(runs / "smoke" / rel, change):
        plan = plan_of(runs)
        assert re.search(f"would run: {reason}", plan[task]), plan[task]
        downstream = [n for n, s in plan.items() if n.startswith(("04", "05", "06"))]
        assert all(plan[n].startswith("would run") for n in downstream)  # after the damaged task
    assert set(plan_of(runs).values()) == {"skipped (done)"}  # restored: done again


def test_a_changed_setting_reruns_its_stage_and_what_follows_only(runs):
    plan = plan_of(runs, encode_batch_size=32)
    assert plan[EVAL] == "would run: settings changed (encode_batch_size)" and plan[TRAIN] == "skipped (done)"
    assert plan["01_data.ipynb -> data"] == "skipped (done)"
    plan = plan_of(runs, lr=1e-4)
    assert plan[TRAIN] == "would run: settings changed (lr)" and plan["03_evaluate.ipynb -> bm25-s0"] == "skipped (done)"
    assert plan[EVAL] == f"would run: after {TRAIN}"  # a model trained otherwise: surely evaluated again
    assert plan["05_compare.ipynb -> smoke"] == f"would run: after {EVAL}"
    plan = plan_of(runs, heldout_fraction=0.3)
    assert plan["01_data.ipynb -> data"] == "would run: settings changed (heldout_fraction)"


def test_the_dry_run_estimate_leaves_out_tasks_that_run_only_if_their_inputs_change(runs, capsys):
    """A fresh clone writes notebook 01's pairs again; the runs after it stay done if they come out the same."""
    from hybridlib.__main__ import main
    with altered(runs / "smoke" / "data" / "train_pairs.parquet", None):
        maybe = sum(s == IF_INPUTS_CHANGE for s in plan_of(runs).values())
        assert main(["run", "--profile", "smoke", "--runs-dir", str(runs), "--dry-run"]) == 0
    assert maybe > 10
    assert re.search(rf"\n1 task\(s\) would run, 0 of them training; about [\d.]+ hours .*; {maybe} more, done now, "
                     "run again only if what they read changes", capsys.readouterr().out)


def test_the_estimate_counts_this_machines_times_where_there_are_some(runs):
    """A study may run on machines 3x apart: the trainings recorded on this machine set the speed alone."""
    from hybridlib.analysis import notebook_durations
    from hybridlib.estimates import estimate_seconds, measured_times
    prof = runs / "smoke"
    todo = [SimpleNamespace(notebook="02_train.ipynb", config={"budget_pairs": 1000})]
    times = notebook_durations(prof).set_index(["notebook", "run"])["seconds"]
    trained = sorted(p.parent.name for p in prof.glob("*/train_summary.json"))
    per_pair = {r: times["02 train", r] / json.loads((prof / r / "train_summary.json").read_text())["pairs_seen"]
                for r in trained}
    measured = len(times.loc[["02 train", "03 evaluate"]])
    assert len(trained) >= 3 and estimate_seconds(todo, measured_times(prof)) == (
        pytest.approx(sorted(per_pair.values())[len(trained) // 2] * 1000), measured)

    def elsewhere(b):
        return json.dumps({**json.loads(b), "machine": {"cpu": "another", "cpu_capability": "AVX512"}}).encode()
    with contextlib.ExitStack() as stack:
        for r in trained[1:]:
            stack.enter_context(altered(prof / r / "train_summary.json", elsewhere))
        assert estimate_seconds(todo, measured_times(prof)) == (
            pytest.approx(per_pair[trained[0]] * 1000), measured - len(trained) + 1)
        stack.enter_context(altered(prof / trained[0] / "train_summary.json", elsewhere))
        seconds, here = estimate_seconds(todo, measured_times(prof))  # none here: every training counts again
    assert (seconds, here) == (pytest.approx(sorted(per_pair.values())[len(trained) // 2] * 1000), measured - len(trained))


def test_the_estimate_times_a_training_by_runs_that_froze_the_embeddings_as_it_does(runs):
    """Training the word embeddings too (frozen=0) halves the speed: its runs set the speed of such a training,
    and the dry run shows the range of each kind of time it scales from."""
    from hybridlib.analysis import notebook_durations
    from hybridlib.estimates import estimate_seconds, measured_ranges, measured_times
    prof = runs / "smoke"
    times = notebook_durations(prof).set_index(["notebook", "run"])["seconds"]
    trained = sorted(p.parent.name for p in prof.glob("*/train_summary.json"))
    per_pair = {r: times["02 train", r] / json.loads((prof / r / "train_summary.json").read_text())["pairs_seen"]
                for r in trained}

    def unfrozen(b):
        s = json.loads(b)
        return json.dumps({**s, "config": {**s["config"], "freeze_embeddings": False}}).encode()

    def todo(frozen):
        return [SimpleNamespace(notebook="02_train.ipynb", config={"budget_pairs": 1000, "freeze_embeddings": frozen})]
    with altered(prof / trained[0] / "train_summary.json", unfrozen):
        seconds, _ = estimate_seconds(todo(False), measured_times(prof))
        assert seconds == pytest.approx(per_pair[trained[0]] * 1000)
        rest = sorted(per_pair[r] for r in trained[1:])
        assert estimate_seconds(todo(True), measured_times(prof))[0] == pytest.approx(rest[len(rest) // 2] * 1000)
        minutes, pairs = times["02 train", trained[0]] / 60, round(times["02 train", trained[0]] / per_pair[trained[0]])
        ranges = measured_ranges(measured_times(prof)).split("; ")
    assert f"02 train, {pairs:,} pairs, frozen=0 {minutes:.1f}-{minutes:.1f} min (1)" in ranges
    evaluate = times["03 evaluate"] / 60
    assert f"03 evaluate {evaluate.min():.1f}-{evaluate.max():.1f} min ({len(evaluate)})" in ranges


def test_a_changed_input_reruns_the_tasks_that_read_it(runs):
    summary = runs / "smoke" / "bm25-s0" / ".03_evaluate.json"

    def other_results(b):
        m = json.loads(b)
        m["products"]["results.parquet"] = "0" * 64  # as if bm25 had been evaluated again with other results
        return json.dumps(m).encode()

    with altered(summary, other_results):
        plan = plan_of(runs)
        assert plan["04_language_bias.ipynb -> smoke"] == "would run: an input changed"
        assert plan["03_evaluate.ipynb -> bm25-s0"] == "skipped (done)" and plan[EVAL] == "skipped (done)"


def test_an_evaluation_whose_model_is_gone_trains_it_again_first(runs):
    model = runs / "smoke" / "xx-s0" / "model"
    hidden = model.with_name("model.hidden")
    model.rename(hidden)
    try:
        with altered(runs / "smoke" / "xx-s0" / "results.parquet", None):
            plan = plan_of(runs)
        assert plan[TRAIN] == "would run: model needed by 03_evaluate.ipynb is missing"
        assert plan_of(runs)[TRAIN] == "skipped (done)"  # evaluated already: the model is not needed
    finally:
        hidden.rename(model)


def test_a_summary_rerun_that_reproduces_its_inputs_is_skipped_and_a_lost_task_reruns(runs):
    prof = runs / "smoke"
    (prof / ".04_language_bias.json").unlink()
    status = run("smoke", runs, progress=False)
    assert status["04_language_bias.ipynb -> smoke"].startswith("done")
    assert {s for n, s in status.items() if not n.startswith("04")} == {"skipped (done)"}
    assert not [p for p in prof.rglob("*") if ".running" in p.name or p.name.endswith(".failed.ipynb")]


def test_a_failed_notebook_is_reported_with_its_own_error_and_its_dependents_wait(runs, tmp_path):
    from hybridlib.paths import PROFILE_DIR
    mine = tmp_path / "broken.yaml"
    text = (PROFILE_DIR / "smoke.yaml").read_text().replace("strategies: [zero-shot, bm25, xx, \"hybrid(0.5)\", pcgrad]",
                                                            "strategies: [bm25]")
    mine.write_text(text)
    (tmp_path / "empty-data").mkdir()  # a data directory without the benchmark files
    status = run(str(mine), tmp_path / "runs", data_dir=str(tmp_path / "empty-data"), progress=False)
    assert re.fullmatch(r"failed: DataError: \S*empty-data/\S+\.json: missing; the data directory .*"
                        r"\(see .*01_data.failed.ipynb\)", status["01_data.ipynb -> data"]), status
    assert status["03_evaluate.ipynb -> bm25-s0"] == "not run: 01_data.ipynb -> data failed"
    assert not (tmp_path / "runs" / "broken" / "data" / "01_data.ipynb").exists()


def test_the_notebooks_read_the_resolved_profile_the_pipeline_wrote(runs):
    from hybridlib.config import load_profile
    resolved = runs / "smoke" / "profile.yaml"
    assert load_profile(str(resolved)) == load_profile("smoke")
    nb = json.loads((runs / "smoke" / "xx-s0" / "02_train.ipynb").read_text())
    injected = next("".join(c["source"]) for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert 'PROFILE = "../' in injected and 'PROFILE = "/' not in injected  # relative: no machine path


def test_a_regenerated_input_that_comes_out_the_same_reruns_nothing_downstream(runs):
    """A fresh clone has no notebook-01 pairs (they are not committed): 01 runs again, reproduces them, and
    neither its committed notebook nor any later task changes."""
    prof = runs / "smoke" / "data"
    notebook = (prof / "01_data.ipynb").read_bytes()
    (prof / "train_pairs.parquet").unlink()
    status = run("smoke", runs, progress=False)
    assert status["01_data.ipynb -> data"].startswith("done")
    assert {s for n, s in status.items() if not n.startswith("01")} == {"skipped (done)"}
    assert (prof / "01_data.ipynb").read_bytes() == notebook


def test_outputs_written_before_manifests_were_kept_can_be_adopted(runs):
    prof = runs / "smoke"
    kept = (prof / ".05_compare.json").read_text()
    (prof / ".05_compare.json").unlink()
    assert run("smoke", runs, dry_run=True, adopt_existing=True)["05_compare.ipynb -> smoke"] == \
        "would adopt (outputs there, no manifest)"
    assert run("smoke", runs, adopt_existing=True, progress=False)["05_compare.ipynb -> smoke"] == "adopted"
    assert json.loads((prof / ".05_compare.json").read_text())["key"] == json.loads(kept)["key"]
    manifest = prof / "xx-s0" / ".03_evaluate.json"
    kept = manifest.read_text()
    try:  # an executed notebook emptied or cut short is not adopted as done
        manifest.unlink()
        for change in (lambda b: b"", lambda b: b[: len(b) // 2]):
            with altered(prof / "xx-s0" / "03_evaluate.ipynb", change):
                status = run("smoke", runs, dry_run=True, adopt_existing=True)
                assert status["03_evaluate.ipynb -> xx-s0"] == "would run: never finished", status
    finally:
        manifest.write_text(kept)


def test_a_finished_run_whose_log_lost_lines_is_refused_not_recorded_as_done(runs):
    from hybridlib.runs import TrainingError
    from hybridlib.runs import trained as finished
    run_dir = runs / "smoke" / "xx-s0"
    config = json.loads((run_dir / "train_summary.json").read_text())["config"]
    assert finished(run_dir, config)["steps"] == 6
    saved = shutil.copytree(run_dir, runs.parent / "xx-s0.saved", symlinks=True)
    try:
        log = run_dir / "train_log.jsonl"
        log.write_bytes(b"".join(log.read_bytes().splitlines(keepends=True)[:4]))
        with pytest.raises(TrainingError, match=r"train_log.jsonl: holds 4 of the finished run's 6 steps \(last 4\): "
                                                r"lost or damaged; .* delete the run directory"):
            finished(run_dir, config)
        status = run("smoke", runs, progress=False, strategies=["xx"], until="02_train")
        assert status[TRAIN].startswith("failed") and "holds 4 of the finished run's 6 steps" in status[TRAIN]
    finally:
        shutil.rmtree(run_dir)
        saved.rename(run_dir)


def test_committed_notebooks_show_no_warnings_debug_lines_or_machine_paths():
    from hybridlib.paths import REPO_ROOT
    bad = re.compile(r"Warning|DEBUG:|/work/|/tmp/|/root/|/home/|site-packages|\.\./\.\./")
    found = []
    for nb in sorted((REPO_ROOT / "runs").glob("*/**/[0-9]*.ipynb")):
        if nb.name.endswith(".failed.ipynb"):  # a failed task's notebook: kept for its error, never committed
            continue
        doc = json.loads(nb.read_text())
        texts = [json.dumps(o) for c in doc["cells"] for o in c.get("outputs", [])]
        # the benchmark data's default place, ../shared/data beside the repository, may be passed explicitly
        texts.append(json.dumps(doc["metadata"].get("papermill", {})).replace('"../../shared/data"', '""'))
        output_path = doc["metadata"].get("papermill", {}).get("output_path")  # parameters: '../../' above
        if output_path != str(nb.relative_to(REPO_ROOT)):
            found.append(f"{nb.relative_to(REPO_ROOT)}: output_path {output_path}")
        found += [f"{nb.relative_to(REPO_ROOT)}: {m.group(0)}" for t in texts for m in [bad.search(t)] if m]
        for c in doc["cells"]:  # the book leaves out parameters and Colab setup; the badge opens this notebook
            tags, source = c.get("metadata", {}).get("tags", []), "".join(c["source"])
            if {"parameters", "injected-parameters"} & set(tags) or "google.colab" in source:
                found += [f"{nb.relative_to(REPO_ROOT)}: shown {tags}"] * ("remove-cell" not in tags)
            if "colab.research.google.com/github" in source and f"blob/main/{nb.relative_to(REPO_ROOT)})" not in source:
                found.append(f"{nb.relative_to(REPO_ROOT)}: badge opens another notebook")
    assert not found, found[:5]


def test_until_leaves_out_the_notebooks_after_it(tmp_path):
    from hybridlib.config import ConfigError
    status = run("smoke", tmp_path, dry_run=True, until="03_evaluate")
    assert {n.split(" ->")[0] for n in status} == {"01_data.ipynb", "02_train.ipynb", "03_evaluate.ipynb"}
    with pytest.raises(ConfigError, match="until='evaluate': not a notebook; one of 01_data, 02_train"):
        run("smoke", tmp_path, dry_run=True, until="evaluate")


def test_an_installed_package_runs_the_smoke_pipeline_outside_the_repository(tmp_path):
    """pip install (not editable) into a directory of its own, then the smoke pipeline from elsewhere: the
    notebooks come from the package, the results land in ./runs, nothing is written into the package."""
    from hybridlib.paths import REPO_ROOT, find_data_dir
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    src = tmp_path / "src"  # the package's sources (pip builds in the tree it is given)
    shutil.copytree(REPO_ROOT / "hybridlib", src / "hybridlib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "notebooks", src / "notebooks", ignore=shutil.ignore_patterns(".*"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "HYBRIDLIB_DATA_DIR": str(find_data_dir())}
    where = subprocess.run([sys.executable, "-c", "import hybridlib; print(hybridlib.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where == str(site / "hybridlib" / "__init__.py")
    done = subprocess.run([sys.executable, "-m", "hybridlib", "run", "--profile", "smoke", "--set",
                           "strategies=[zero-shot]"], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "results in smoke: every task done" in done.stdout
    assert (work / "runs/smoke/05_compare.ipynb").is_file()
    assert (work / "runs/smoke/zero-shot-s0/results.parquet").is_file()
    assert sorted(p.name for p in (site / "hybridlib" / "notebooks").iterdir()) == \
        sorted(p.name for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))


def test_a_slice_selects_runs_by_seed_and_strategy_and_keeps_the_profile_whole(tmp_path):
    from hybridlib.config import ConfigError
    status = run("smoke", tmp_path, dry_run=True, seeds=[0], strategies=["hybrid(0.50)", "xx"])
    assert list(status) == ["01_data.ipynb -> data", "02_train.ipynb -> xx-s0", "03_evaluate.ipynb -> xx-s0",
                            "02_train.ipynb -> hybrid-0.5-s0", "03_evaluate.ipynb -> hybrid-0.5-s0"]
    with pytest.raises(ConfigError, match=r"--seeds/--strategies: mgda\(budget=2\), 7 not in profile smoke"):
        run("smoke", tmp_path, dry_run=True, seeds=[7], strategies=["mgda(budget=2)"])


def test_progress_shows_each_run_as_done_trained_or_to_run(runs):
    from hybridlib.pipeline import progress
    grid = progress("smoke", runs)
    assert list(grid.columns) == ["seed 0"] and (grid["seed 0"] == "done").all()
    manifest = runs / "smoke" / "xx-s0" / ".03_evaluate.json"
    os.replace(manifest, manifest.with_suffix(".bak"))
    try:
        assert progress("smoke", runs).loc["xx", "seed 0"] == "trained"
    finally:
        os.replace(manifest.with_suffix(".bak"), manifest)


def test_progress_of_a_study_not_started(tmp_path):
    from hybridlib.pipeline import progress
    empty = progress("study", tmp_path)  # nothing run; the untrained baselines are evaluated under seed 0 only
    assert list(empty.columns) == [f"seed {s}" for s in range(10)] and len(empty) == 30
    assert empty.loc["zero-shot"].tolist() == ["-"] + [""] * 9
    assert empty.loc["pcgrad(budget=2)"].tolist() == ["-"] * 5 + [""] * 5  # 5 seeds
    assert (empty.loc["mgda"] == "-").all()  # one of the arms with seeds 5-9


def two_seeds(profile_dir, out):
    """A copy of a profile's results in which every trained run has a second seed: seed 0 with noise."""
    import numpy as np
    out.mkdir()
    shutil.copy(profile_dir / "profile.yaml", out)
    rng = np.random.default_rng(0)
    for one in sorted(p.parent for p in profile_dir.glob("*/results.parquet")):
        shutil.copytree(one, out / one.name, ignore=shutil.ignore_patterns("model", "checkpoint", "*.ipynb", ".*"))
        if (one / "train_summary.json").exists():
            again = out / one.name.replace("-s0", "-s1")
            again.mkdir()
            for name in ("results.parquet", "per_query.parquet", "preference.parquet"):
                t = pd.read_parquet(one / name).assign(seed=1, run=again.name)
                for column in {"value", "map", "mrr@10", "rank_distance"} & set(t.columns):
                    t[column] += rng.normal(0, 0.003, len(t))
                t.to_parquet(again / name)
            summary = json.loads((one / "train_summary.json").read_text())
            (again / "train_summary.json").write_text(json.dumps({**summary, "seed": 1}))
            shutil.copy(one / "train_log.jsonl", again)
    return out


def test_the_analysis_notebooks_read_several_seeds(runs, tmp_path):
    """04 and 05 on two seeds per trained run (the study's shape): per-seed rows are averaged, not mixed up."""
    from hybridlib.paths import NOTEBOOKS
    from hybridlib.pipeline import _run_notebook
    two = two_seeds(runs / "smoke", tmp_path / "two")
    for nb in ("04_language_bias.ipynb", "05_compare.ipynb"):
        _run_notebook(NOTEBOOKS / nb, tmp_path / nb, {"PROFILE_DIR": str(two)}, NOTEBOOKS)
    answer = (tmp_path / "05_compare.ipynb").read_text()
    assert "Seeds per comparison: 2; margins" in answer and "sd over seeds" in answer
    assert "hybrid(0.5) vs pcgrad" in answer and "hybrid(0.5) vs xx" in answer


def test_keep_models_false_deletes_evaluated_models_and_nothing_else(runs, tmp_path):
    from hybridlib.config import load_profile, override
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    models = sorted(p.parent.name for p in (copy / "smoke").glob("*/model"))
    assert models == ["hybrid-0.5-s0", "pcgrad-s0", "xx-s0"]
    results = {p: p.read_bytes() for p in (copy / "smoke").glob("*/*.parquet")}
    status = run(override(load_profile("smoke"), keep_models=False), copy, progress=False)
    assert set(status.values()) == {"skipped (done)"}  # not a setting of any task: nothing re-runs
    assert not list((copy / "smoke").glob("*/model"))
    assert results == {p: p.read_bytes() for p in (copy / "smoke").glob("*/*.parquet")}
    assert set(run("smoke", copy, dry_run=True).values()) == {"skipped (done)"}  # done without its model


def test_interim_analysis_reads_the_finished_runs_only(runs, tmp_path):
    from hybridlib.config import ConfigError
    assert set(run("smoke", runs, interim=True, progress=False).values()) == {"skipped (done)"}  # all finished: the analysis as it is
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, ignore=shutil.ignore_patterns("model"))
    for name in ("per_query.parquet", "preference.parquet", ".03_evaluate.json"):
        (copy / "smoke" / "xx-s0" / name).unlink()  # xx trained, its evaluation cut off after its first file
    status = run("smoke", copy, interim=True, progress=False)
    assert list(status) == ["04_language_bias.ipynb -> smoke", "05_compare.ipynb -> smoke", "06_performance.ipynb -> smoke"]
    assert all(s.startswith("done") for s in status.values()), status
    answer = json.loads((copy / "smoke" / "05_compare.ipynb").read_text())
    text = json.dumps(answer)
    assert "**As it stands, 4 of 5 runs committed (seed 0: 2 of 3 trained runs)" in text  # xx's stray results left out
    assert answer["metadata"]["papermill"]["parameters"]["RUNS"] == ["zero-shot-s0", "bm25-s0", "hybrid-0.5-s0", "pcgrad-s0"]
    assert "hybrid(0.5) vs xx: not run in this profile" in text  # the claims against xx wait for it
    assert answer["cells"][0]["source"][0].endswith("(smoke)\n")  # an analysis notebook's title names its profile
    assert run("smoke", copy, dry_run=True)["05_compare.ipynb -> smoke"].startswith("would run")  # the full one waits
    with pytest.raises(ConfigError, match="no --until, --seeds or --strategies"):
        run("smoke", copy, interim=True, seeds=[0])


def subset_profile(tmp_path, strategies: str):
    """The smoke profile with fewer strategies, as a file named smoke.yaml (same profile name, same run keys)."""
    from hybridlib.paths import PROFILE_DIR
    mine = tmp_path / "profiles" / "smoke.yaml"
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text((PROFILE_DIR / "smoke.yaml").read_text().replace(
        'strategies: [zero-shot, bm25, xx, "hybrid(0.5)", pcgrad]', f"strategies: [{strategies}]"))
    return mine


def test_two_jobs_write_what_one_job_writes_and_a_kill_resumes_each_task(runs, tmp_path):
    """Two tasks at once (the threads of each as one job had them): SIGKILLed while both trainings run, then
    re-run; every run ends bit-identical to the one-job pipeline's."""
    import torch
    mine, out = subset_profile(tmp_path, "xx, pcgrad"), tmp_path / "jobs"
    threads = torch.get_num_threads()  # what the one-job kernels used: a CPU's results depend on it
    code = f"from hybridlib.pipeline import run; run({str(mine)!r}, {str(out)!r}, jobs=2, threads={threads})"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    logs = [out / "smoke" / r / "train_log.jsonl" for r in ("xx-s0", "pcgrad-s0")]
    kill_when(proc, lambda: all(p.is_file() and p.read_text().count("\n") >= 1 for p in logs))
    status = run(str(mine), out, progress=False, jobs=2, threads=threads)
    assert all(s.startswith(("done", "skipped")) for s in status.values()), status
    assert status["02_train.ipynb -> pcgrad-s0"].startswith("done")  # it was cut, and finished now
    for r in ("xx-s0", "pcgrad-s0"):
        for table in ("results.parquet", "per_query.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(out / "smoke" / r / table),
                                          pd.read_parquet(runs / "smoke" / r / table), check_exact=True)
    assert not [p for p in (out / "smoke").rglob("*") if ".tmp" in p.name or ".running." in p.name]


def test_with_two_jobs_a_failing_task_leaves_the_others_running(tmp_path):
    mine, out = subset_profile(tmp_path, "bm25, xx"), tmp_path / "runs"
    (out / "smoke" / "xx-s0").mkdir(parents=True)  # a run finished with other settings: its training fails
    (out / "smoke" / "xx-s0" / "train_summary.json").write_text(json.dumps({"config": {"lr": 1.0}}))
    status = run(str(mine), out, progress=False, jobs=2)
    assert status["02_train.ipynb -> xx-s0"].startswith("failed: ConfigError"), status
    assert status["03_evaluate.ipynb -> xx-s0"] == "not run: 02_train.ipynb -> xx-s0 failed"
    assert status["03_evaluate.ipynb -> bm25-s0"].startswith("done")
    assert (out / "smoke" / "bm25-s0" / "results.parquet").is_file()
    assert all(s.startswith("not run") for k, s in status.items() if k.startswith(("04", "05", "06"))), status


def test_jobs_is_a_positive_count_or_auto(monkeypatch):
    from hybridlib.config import ConfigError
    from hybridlib.pipeline import auto_jobs, parse_jobs
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert parse_jobs("3") == 3 and parse_jobs("auto") == auto_jobs() == 4  # a CPU: one job per 4 cores
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigError, match=f"--jobs '{bad}': a positive number"):
            parse_jobs(bad)


def test_the_analysis_notebooks_run_on_a_profile_evaluated_on_tydi_alone(runs, tmp_path):
    """A profile may name any subset of the collections: the smoke runs cut to TyDi stand for one that named
    ``eval_collections: [tydi]``; notebooks 04 and 05 say what they cannot show instead of failing."""
    import yaml

    from hybridlib.pipeline import NOTEBOOKS, _run_notebook
    prof = tmp_path / "tydi"
    shutil.copytree(runs / "smoke", prof, ignore=shutil.ignore_patterns("*.ipynb", ".*.json", "model", "data"))
    for table in prof.glob("*/*.parquet"):
        t = pd.read_parquet(table)
        t[t.collection == "tydi"].to_parquet(table)
    settings = yaml.safe_load((prof / "profile.yaml").read_text()) | {"name": "tydi", "eval_collections": ["tydi"]}
    (prof / "profile.yaml").write_text(yaml.safe_dump(settings))
    for notebook in ("04_language_bias.ipynb", "05_compare.ipynb"):
        _run_notebook(NOTEBOOKS / notebook, prof / notebook, {"PROFILE_DIR": str(prof), "RUNS": None}, NOTEBOOKS)
    outputs = json.dumps(json.loads((prof / "04_language_bias.ipynb").read_text())["cells"])
    assert "this profile does not evaluate on XQuAD-R" in outputs
    outputs = json.dumps(json.loads((prof / "05_compare.ipynb").read_text())["cells"])
    assert "no trade-off plane to draw" in outputs and "TyDi multi" in outputs
