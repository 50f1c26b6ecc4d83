import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from hybridlib.config import ConfigError, Profile, load_profile, override
from hybridlib.strategy import Strategy
from hybridlib.trainer import (
    CollapseError,
    NonFiniteError,
    Trainer,
    TrainingError,
    read_log,
    train_run,
)

from .conftest import needs_data

pytestmark = [needs_data, pytest.mark.slow]  # real training and notebooks
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def data_out(tmp_path_factory):
    from hybridlib import pairs, store
    out = tmp_path_factory.mktemp("data")
    train, _, _ = pairs.mlqa_split()
    store.write_table(train, out / "train_pairs.parquet")
    return out


def cli(data_out, run_dir, strategy="hybrid(0.5)", *sets, launcher=(sys.executable,)):
    return [*launcher, "-m", "hybridlib", "train", "--profile", "smoke", "--strategy", strategy, "--data",
            str(data_out), "--run-dir", str(run_dir), "--set", "probe_every=3", *sets]


def params(run_dir):
    from safetensors.torch import load_file
    return load_file(str(run_dir / "model" / "model.safetensors"))


def max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_resume_after_sigkill_equals_uninterrupted_run(data_out, tmp_path):
    sets = ("budget_pairs=80", "checkpoint_every=2")
    subprocess.run(cli(data_out, tmp_path / "full", "pcgrad", *sets), env=ENV, check=True, capture_output=True)
    killed = subprocess.Popen(cli(data_out, tmp_path / "cut", "pcgrad", *sets), env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "cut" / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "cut" / "model").exists()
    subprocess.run(cli(data_out, tmp_path / "cut", "pcgrad", *sets), env=ENV, check=True, capture_output=True)
    summary = json.loads((tmp_path / "cut" / "train_summary.json").read_text())
    assert summary["resumed"] and summary["steps"] == 5
    assert max_diff(params(tmp_path / "full"), params(tmp_path / "cut")) < 1e-6
    full, cut = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert cut["step"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(cut["loss"], full["loss"], atol=1e-6)


def test_two_gloo_processes_equal_one_process(data_out, tmp_path):
    sets = ("budget_pairs=48", "dropout=0.0", "bf16=false")  # bf16 blocks depend on the batch shape
    subprocess.run(cli(data_out, tmp_path / "one", "hybrid(0.5)", *sets), env=ENV, check=True, capture_output=True)
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533")
    r = subprocess.run(cli(data_out, tmp_path / "two", "hybrid(0.5)", *sets, launcher=torchrun), env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "train_summary.json").read_text())["world_size"] == 2
    assert r.stdout.count("'world_size': 2") == 1 and "FutureWarning" not in r.stderr  # one summary, no deprecation
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    np.testing.assert_allclose(two["loss"], one["loss"], atol=1e-5)
    np.testing.assert_allclose(two["cosine"].dropna(), one["cosine"].dropna(), atol=1e-4)
    assert max_diff(params(tmp_path / "one"), params(tmp_path / "two")) < 1e-5


def test_trained_model_loads_in_sentence_transformers(data_out, tmp_path):
    from sentence_transformers import SentenceTransformer

    from hybridlib.encoders import load_encoder
    profile = override(load_profile("smoke"), budget_pairs=16)
    train_run(profile, "mgda", 0, data_out, tmp_path, progress=False)
    texts = ["Wer schrieb Faust?", "Goethe schrieb Faust.", "ゲーテはファウストを書いた。"]
    ours = load_encoder(str(tmp_path / "model")).encode(texts, "passage")
    theirs = SentenceTransformer(str(tmp_path / "model"), device="cpu").encode(texts, prompt_name="passage")
    assert ((ours * theirs).sum(1) / np.linalg.norm(theirs, axis=1)).min() > 0.9999
    log = read_log(tmp_path)
    assert {"loss_mono", "loss_cross", "weight_mono", "weight_cross", "cosine"} <= set(log.columns)
    assert (log["weight_mono"] + log["weight_cross"]).round(6).eq(1).all()  # MGDA: convex weights


@pytest.mark.parametrize("strategy, poison, message", [
    ("xx", "loss", r"step 3: non-finite mono loss \(nan\)"),
    ("xx", "gradient", r"step 3: non-finite mono gradient \(norm nan\)"),
    ("pcgrad", "gradient", r"step 2: non-finite cross gradient \(norm nan\)"),  # 4th objective: step 2's cross
])
def test_non_finite_loss_or_gradient_stops_and_keeps_the_last_good_checkpoint(data_out, tmp_path, small_encoder,
                                                                              monkeypatch, strategy, poison, message):
    from hybridlib import store
    pairs = store.read_table(data_out / "train_pairs.parquet")
    profile = Profile("t", batch_size=8, budget_pairs=64, checkpoint_every=1, probe_every=0, max_query_length=32,
                      max_passage_length=32)
    trainer = Trainer(small_encoder, pairs, profile, Strategy.parse(strategy), 0, tmp_path, progress=False)
    real, bad_call = trainer.objective.loss, 3 if strategy == "xx" else 4
    calls = {"n": 0}

    def poisoned(rows):  # a NaN loss, or a finite loss whose gradient is NaN (d sqrt(x)/dx at 0)
        calls["n"] += 1
        loss, tokens = real(rows)
        if calls["n"] == bad_call:
            loss = loss * float("nan") if poison == "loss" else loss + torch.sqrt(0 * list(trainer.params.values())[-1].sum())
        return loss, tokens

    monkeypatch.setattr(trainer.objective, "loss", poisoned)
    last = 2 if strategy == "xx" else 1
    with pytest.raises(NonFiniteError, match=message + rf".*checkpoint.*\(step {last}\)"):
        trainer.train()
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == last


def test_mismatched_and_unreadable_checkpoints(data_out, tmp_path, small_encoder):
    from hybridlib import store
    pairs = store.read_table(data_out / "train_pairs.parquet")
    base = Profile("t", batch_size=8, budget_pairs=16, probe_every=0, max_query_length=16, max_passage_length=16)
    Trainer(small_encoder, pairs, base, Strategy.parse("xy"), 0, tmp_path, progress=False).train()
    with pytest.raises(TrainingError, match="does not match this run.*strategy: checkpoint 'xy', now 'ml'"):
        Trainer(small_encoder, pairs, base, Strategy.parse("ml"), 0, tmp_path, progress=False).train()
    with pytest.raises(TrainingError, match="does not match this run.*lr: checkpoint 3e-05, now 0.001"):
        Trainer(small_encoder, pairs, override(base, lr=1e-3), Strategy.parse("xy"), 0, tmp_path, progress=False).train()
    (tmp_path / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="state.pt: unreadable checkpoint"):
        Trainer(small_encoder, pairs, base, Strategy.parse("xy"), 0, tmp_path, progress=False).train()


def test_bad_training_parameters(small_encoder):
    with pytest.raises(ConfigError, match=r"unknown strategy 'adam'; allowed: zero-shot, bm25, xx, xy, ml, hybrid\(alpha\)"):
        Trainer(small_encoder, pd.DataFrame(), Profile("t"), Strategy.parse("adam"), 0, "unused")
    with pytest.raises(ConfigError, match=r"strategy zero-shot does not train"):
        Trainer(small_encoder, pd.DataFrame(), Profile("t"), Strategy.parse("zero-shot"), 0, "unused")
    with pytest.raises(ConfigError, match=r"field budget_pairs=40 is smaller than one step of pcgrad \(64 pairs"):
        Profile("t", strategies=("pcgrad",), batch_size=32, budget_pairs=40)


def test_a_collapsed_run_stops_with_a_clear_error(data_out, tmp_path, small_encoder, monkeypatch):
    """What a far too high learning rate does to the model (every passage scored alike: loss ln(batch),
    gradient 0), simulated from step 3 on; the run stops after collapse_steps such steps."""
    from hybridlib import store
    pairs = store.read_table(data_out / "train_pairs.parquet")
    profile = Profile("t", batch_size=8, budget_pairs=8 * 20, probe_every=0, max_query_length=16,
                      max_passage_length=16, collapse_steps=5, checkpoint_every=1)
    trainer = Trainer(small_encoder, pairs, profile, Strategy.parse("xx"), 0, tmp_path, progress=False)
    real = trainer.objective.loss

    def collapsed(rows):
        loss, tokens = real(rows)
        return (loss * 0 + math.log(8), tokens) if trainer.step >= 2 else (loss, tokens)

    monkeypatch.setattr(trainer.objective, "loss", collapsed)
    with pytest.raises(CollapseError, match=r"step 6: training collapsed: the loss sat within 1% of chance "
                                            r"\(ln\(8\) = 2.0794\) on 4 of the last 5 steps, the largest gradient "
                                            r"norm was .*; lower lr"):
        trainer.train()


def test_clip_ratio_and_mono_share_are_logged(data_out, tmp_path):
    profile = override(load_profile("smoke"), budget_pairs=64)
    summary = train_run(profile, "hybrid(0.25)", 1, data_out, tmp_path / "h", progress=False)
    log = read_log(tmp_path / "h")
    assert (log["clip_ratio"] == log["grad_norm"] / profile.max_grad_norm).all()
    assert summary["mono_share"] == pytest.approx((log["batch_kind"] == "mono").mean())
    assert summary["clipped_share"] == pytest.approx((log["clip_ratio"] > 1).mean())


def test_same_profile_and_seed_give_bit_identical_weights_and_results(data_out, tmp_path):
    """Same machine, same torch build, same thread count (torch.get_num_threads()); CPU kernels here are
    deterministic at a fixed thread count, and every random draw comes from a seeded generator."""
    from hybridlib import evalsets
    from hybridlib.encoders import load_encoder
    from hybridlib.evaluate import evaluate, subset
    profile = override(load_profile("smoke"), budget_pairs=32)
    coll = subset(evalsets.xquad_r(), 3)
    runs = []
    for name in ("a", "b"):
        summary = train_run(profile, "pcgrad", 7, data_out, tmp_path / name, progress=False)
        per_query, _, _ = evaluate(load_encoder(str(tmp_path / name / "model")), coll, cache=False, progress=False)
        runs.append((summary, params(tmp_path / name), read_log(tmp_path / name), per_query))
    (sa, pa, la, qa), (sb, pb, lb, qb) = runs
    assert sa["weights_sha256"] == sb["weights_sha256"] and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert la.drop(columns=["seconds", "pairs_per_s"]).equals(lb.drop(columns=["seconds", "pairs_per_s"]))
    assert qa.equals(qb)
    for key in ("code_version", "model", "weights_sha256", "data_sha256", "profile", "seed", "machine"):
        assert key in sa, key
    assert sa["machine"]["threads"] == torch.get_num_threads() and sa["machine"]["cores"] == os.cpu_count()
    assert sa["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert sa["seed"] == 7 and sa["profile"]["name"] == "smoke" and sa["model"].startswith("embedded:")


def test_a_finished_run_is_reused_as_it_is_or_refused_with_other_settings(data_out, tmp_path, capsys):
    from hybridlib.__main__ import main
    profile = override(load_profile("smoke"), budget_pairs=16)
    first = train_run(profile, "xx", 0, data_out, tmp_path / "r", progress=False)
    assert train_run(profile, "xx", 0, data_out, tmp_path / "r", progress=False) == first  # nothing redone
    with pytest.raises(ConfigError, match=r"r: this run finished with other settings \(lr: finished with 3e-05, "
                                          r"now 0.001\); use another run directory"):
        train_run(override(profile, lr=1e-3), "xx", 0, data_out, tmp_path / "r", progress=False)
    assert main(["train", "--profile", "smoke", "--strategy", "xx", "--data", str(data_out), "--run-dir",
                 str(tmp_path / "r"), "--set", "budget_pairs=16", "seeds=[3]", "lr=0.001"]) == 2
    err = capsys.readouterr().err
    assert "finished with other settings" in err and "Traceback" not in err


def test_two_trainings_of_one_run_directory_are_refused(data_out, tmp_path):
    import fcntl

    from hybridlib.paths import Locked
    (tmp_path / "r").mkdir()
    with open(tmp_path / "r" / ".train.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(Locked, match=r"r/.train.lock: another process is training this run; wait for it"):
            train_run(load_profile("smoke"), "xx", 0, data_out, tmp_path / "r", progress=False)


def test_a_full_disk_while_saving_leaves_the_last_checkpoint_and_no_temporary_files(data_out, tmp_path,
                                                                                     small_encoder, monkeypatch):
    import errno

    from hybridlib import store
    pairs = store.read_table(data_out / "train_pairs.parquet")
    trainer = Trainer(small_encoder, pairs, Profile("t", batch_size=8, budget_pairs=16, probe_every=0,
                                                    max_query_length=16, max_passage_length=16), Strategy.parse("xx"), 0, tmp_path)
    trainer.save_checkpoint()
    before = (tmp_path / "checkpoint" / "state.pt").read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    trainer.step = 1
    with pytest.raises(OSError, match=r"could not write .*checkpoint/state.pt: No space left on device"):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoint" / "state.pt").read_bytes() == before
    monkeypatch.setattr(small_encoder.model, "save_pretrained", full)
    with pytest.raises(OSError, match=r"could not save the model to .*model: No space left on device"):
        small_encoder.save(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoint", "state.pt"]


def test_a_torn_last_log_line_is_dropped_and_a_bad_line_elsewhere_names_the_file(tmp_path, caplog):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n{"step": 3, "lo')
    assert read_log(tmp_path)["step"].tolist() == [1, 2] and "dropped a torn last line (line 3)" in caplog.text
    log.write_text('{"step": 1, "loss": 2.0}\nnot json\n{"step": 3, "loss": 1.8}\n')
    with pytest.raises(TrainingError, match=r"train_log.jsonl: line 2 is not JSON \('not json'\)"):
        read_log(tmp_path)


def test_probes_measure_the_noise_floor_without_changing_the_weights(data_out, tmp_path):
    base = override(load_profile("smoke"), budget_pairs=48)
    quiet = train_run(override(base, probe_every=0), "xx", 0, data_out, tmp_path / "quiet", progress=False)
    probed = train_run(override(base, probe_every=2), "xx", 0, data_out, tmp_path / "probed", progress=False)
    assert probed["weights_sha256"] == quiet["weights_sha256"]  # measurement only
    log = read_log(tmp_path / "probed")
    floors = log.dropna(subset=["cosine_mono_mono"])
    assert len(floors) == 4 and floors["cosine_mono_mono"].between(-1, 1).all()
    assert (floors["cosine"] == floors["probe_cosine"]).all() and floors["cosine_cross_cross"].notna().all()
    mixed = train_run(override(base, probe_every=2), "sum", 0, data_out, tmp_path / "sum", progress=False)
    log = read_log(tmp_path / "sum")
    assert mixed["steps"] == 3 and log["cosine"].notna().all() and log["cosine_mono_mono"].notna().sum() == 2  # steps 1, 2


@pytest.mark.parametrize("strategy", ["xx", "pcgrad"])
def test_fp16_scales_the_loss_and_skips_a_step_whose_gradient_overflows(data_out, tmp_path, small_encoder,
                                                                         monkeypatch, strategy):
    """A GPU without bfloat16 trains in fp16 with a loss scale (forced here on the CPU): an overflowing gradient
    skips its step and halves the scale instead of stopping the run; the other steps train."""
    from hybridlib import store
    from hybridlib.encoders import Encoder
    monkeypatch.setattr(Encoder, "precision", property(lambda self: "fp16"))
    pairs = store.read_table(data_out / "train_pairs.parquet")
    profile = Profile("t", batch_size=8, budget_pairs=8 * 4 * (2 if strategy == "pcgrad" else 1), probe_every=0,
                      max_query_length=32, max_passage_length=32, checkpoint_every=100)
    trainer = Trainer(small_encoder, pairs, profile, Strategy.parse(strategy), 0, tmp_path, progress=False)
    assert trainer.scaler is not None
    real, calls = trainer.objective.loss, {"n": 0}

    def overflow_at_step_2(rows):
        calls["n"] += 1
        loss, tokens = real(rows)
        if calls["n"] == (2 if strategy == "xx" else 3):  # step 2's (mono) objective: a non-finite gradient
            loss = loss + torch.sqrt(0 * list(trainer.params.values())[-1].sum())
        return loss, tokens

    monkeypatch.setattr(trainer.objective, "loss", overflow_at_step_2)
    before = {n: p.detach().clone() for n, p in trainer.params.items()}
    trainer.train()
    log = read_log(tmp_path)
    assert len(log) == 4 and log["loss"].map(math.isfinite).all()
    skipped, scale = log["skipped"].fillna(False).astype(bool), log["loss_scale"]
    assert skipped[1] and not skipped[2:].any()  # the poisoned step (fp16 may also overflow at the first scale)
    assert (scale.shift(-1)[:-1] == (scale / 2).where(skipped, scale)[:-1]).all()  # halved after each skipped step
    assert max(float((p.detach() - before[n]).abs().max()) for n, p in trainer.params.items()) > 0


def test_a_run_parses_its_strategy_name_once(data_out, tmp_path, monkeypatch):
    """Text becomes a Strategy at the edge: the profile file parses each name once, notebook 02's STRATEGY is
    looked up among them, and training receives the object."""
    from collections import Counter

    from hybridlib import stages
    profile_file = tmp_path / "profile.yaml"
    profile_file.write_text(override(load_profile("smoke"), budget_pairs=16, batch_size=8, probe_every=0).to_yaml())
    parsed, real = Counter(), Strategy.parse.__func__

    def counting(cls, text):
        parsed.update([text] if isinstance(text, str) else [])
        return real(cls, text)

    monkeypatch.setattr(Strategy, "parse", classmethod(counting))
    run = stages.TRAIN.check(PROFILE=str(profile_file), STRATEGY="hybrid(0.5)", SEED=0, DATA_OUT=str(data_out),
                             RUN_DIR=str(tmp_path / "run"))
    summary = train_run(run.profile, run.strategy, run.seed, run.data_out, run.run_dir, progress=False)
    assert summary["steps"] == 2 and parsed["hybrid(0.5)"] == 1
    assert set(parsed) == {str(s) for s in run.profile.strategies} and max(parsed.values()) == 1
