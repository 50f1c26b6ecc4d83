"""The smoke profile's whole pipeline (all notebooks) inside the test command, and its resumability."""
import fcntl
import os
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


def test_sigkill_mid_grid_loses_nothing_and_finishes_identically(runs):
    prof = runs / "smoke"
    reference = pd.read_parquet(prof / "pcgrad-s0" / "results.parquet")
    import shutil
    shutil.rmtree(prof / "pcgrad-s0")
    kept = {p: p.stat().st_mtime for p in prof.glob("*/results.parquet")}
    proc = subprocess.Popen([sys.executable, "-m", "hybridlib", "run", "--profile", "smoke", "--runs-dir", str(runs)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    log = prof / "pcgrad-s0" / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.is_file() and log.read_text().count("\n") >= 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its notebook kernels
    proc.wait()
    assert not (prof / "pcgrad-s0" / "results.parquet").exists()
    status = run("smoke", runs)
    assert status["02_train.ipynb -> pcgrad-s0"].startswith("done")
    assert status["03_evaluate.ipynb -> pcgrad-s0"].startswith("done")
    assert kept == {p: p.stat().st_mtime for p in prof.glob("*/results.parquet") if p in kept}
    again = pd.read_parquet(prof / "pcgrad-s0" / "results.parquet")
    pd.testing.assert_frame_equal(again.drop(columns=["run"]), reference.drop(columns=["run"]), atol=1e-6)
    assert not list(prof.rglob("*.tmp"))
