"""The smoke profile's whole pipeline (all notebooks) inside the test command, and its resumability."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from hybridlib.pipeline import PipelineLocked, run

from .conftest import needs_data

pytestmark = needs_data


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    status = run("smoke", root)
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
    status = run("smoke", runs)
    assert set(status.values()) == {"skipped"}
    assert before == {p: p.stat().st_mtime for p in (runs / "smoke").glob("*/results.parquet")}
    assert all(v.startswith("skipped") for v in run("smoke", runs, dry_run=True).values())


def test_second_pipeline_on_the_same_directory_is_refused(runs):
    with open(runs / "smoke" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(PipelineLocked, match="another pipeline is running on this results directory"):
            run("smoke", runs)


def start_pipeline(runs):
    return subprocess.Popen([sys.executable, "-m", "hybridlib", "run", "--profile", "smoke", "--runs-dir", str(runs)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def kill_when(proc, ready, timeout=300):
    """SIGKILL the pipeline and its notebook kernels as soon as ``ready()`` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.1)
    assert ready(), "the pipeline never reached the point to interrupt"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def evaluating(notebook):
    """True while papermill executes the evaluation cell of an executed 03 notebook."""
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
    kill_when(start_pipeline(runs), lambda: evaluating(prof / "pcgrad-s0" / "03_evaluate.ipynb"))
    assert (prof / "pcgrad-s0" / "train_summary.json").is_file()  # training finished, evaluation was cut
    assert not (prof / "pcgrad-s0" / "results.parquet").exists()
    status = run("smoke", runs)
    assert status["02_train.ipynb -> pcgrad-s0"] == "skipped"
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
