"""The performance appendix's tables, from hand-made records."""
import json

import pandas as pd
import pytest

from hybridlib import performance


def test_notebook_time_sums_each_kind_and_its_share():
    times = pd.DataFrame({"notebook": ["02 train", "02 train", "03 evaluate"], "seconds": [60.0, 180.0, 60.0]})
    t = performance.notebook_time(times)
    assert t.loc["02 train"].tolist() == [2, 4.0, 0.8] and t.loc["03 evaluate"].tolist() == [1, 1.0, 0.2]


def test_encoding_takes_the_median_over_runs_and_leaves_bm25_out(tmp_path):
    for run, seconds in (("a-s0", 10.0), ("b-s0", 30.0), ("c-s0", 1.0)):  # c: embeddings cached
        (tmp_path / run).mkdir()
        timing = {"xquad-r": {"pool": 900, "queries": 100, "encode_pool_s": seconds, "encode_queries_s": 0.0,
                              "score_s": 2.0, "precision": "bf16"}}
        (tmp_path / run / "eval_meta.json").write_text(json.dumps({"timing": timing}))
    (tmp_path / "bm25-s0").mkdir()
    (tmp_path / "bm25-s0" / "eval_meta.json").write_text(json.dumps({"timing": {"xquad-r": {
        "pool": 900, "queries": 100, "encode_pool_s": 0.0, "encode_queries_s": 0.0, "score_s": 1.0, "precision": "bm25"}}}))
    t = performance.encoding(tmp_path)
    assert t.index.tolist() == [("xquad-r", "bf16")]
    assert t.iloc[0].tolist() == [1000, 10.0, 2.0, 100.0]  # 1000 texts / 10 s


def test_training_is_one_row_per_strategy_however_many_seeds():
    trained = pd.DataFrame({"strategy": ["xx", "xx", "xx", "pcgrad"], "steps": [96, 96, 96, 48],
                            "pairs_seen": [3072] * 4, "pairs_per_s": [5.0, 6.0, 9.0, 16.0],
                            "seconds_this_session": [600.0, 540.0, 300.0, 180.0], "peak_rss_gb": [5.6, 5.7, 5.5, 5.8]})
    t = performance.training(trained)
    assert t.index.tolist() == ["xx", "pcgrad"]
    assert t.loc["xx"].tolist() == [3, 96, 3072, 6.0, 9.0, 5.6] and t.loc["pcgrad", "runs"] == 1


def bench(**changes):
    train = {"speedup_over_sentence_transformers": 1.35, "max_loss_difference_fp32": 2e-7,
             "fraction_of_matmul_peak_fp32": 0.41, "batch_size": 32, "machine": {"cpu": "Xeon"},
             "mixing_step_vs_two_plain_steps": {"pcgrad": {"ratio": 1.02}, "mgda": {"ratio": 1.2}}}
    encode = {"speedup_over_sentence_transformers": 1.6, "cosine_min_vs_sentence_transformers": 0.99995,
              "fraction_of_matmul_peak_fp32": 0.55}
    return {"train": {**train, **changes}, "encode": encode}


def test_targets_say_which_are_met():
    t = performance.targets(bench()).set_index("measure")["met"]
    assert t.tolist() == ["yes", "yes", "yes", "yes", "no", "no", "yes"]
    assert t.index[4] == "gradient-mixing step / two plain steps (worst: mgda)"  # the worst method is named


def test_side_by_side_has_a_row_per_machine_and_nan_where_a_figure_was_not_measured():
    gpu = bench(machine={"cpu": "EPYC", "cuda": "NVIDIA H200"}, batch_size=128)
    t = performance.side_by_side({**bench(), "train_cuda": gpu["train"], "encode_cuda": gpu["encode"]})
    assert t.index.tolist() == ["CPU: Xeon", "GPU: NVIDIA H200"]
    assert t["training batch"].tolist() == [32, 128] and t["training bf16"].isna().all()


def test_the_gpu_check_shows_each_checks_latest_result_and_the_run_and_commit_it_ran_at(tmp_path):
    path = tmp_path / "gpu_check.txt"
    path.write_text("# gpu_check 2026-11-27 on NVIDIA H200, torch 2.11\n"
                    "# run 1, code ed0e303: every strategy trains\n"
                    "PASS train xx: 4 steps on cuda:0 (bf16)\n"
                    "FAIL evaluate: ValueError: Must produce aggregated value\n"
                    "# run 2, code e840ec4 (--only evaluate)\n"
                    "PASS evaluate: zero-shot XQuAD-R mAP mono 0.799\n")
    table, heading = performance.gpu_check(path)
    assert heading == "gpu_check 2026-11-27 on NVIDIA H200, torch 2.11"
    assert table.values.tolist() == [["train xx", "PASS", "4 steps on cuda:0 (bf16)", "run 1 (ed0e303)"],
                                     ["evaluate", "PASS", "zero-shot XQuAD-R mAP mono 0.799", "run 2 (e840ec4)"]]


@pytest.mark.parametrize("name", ["benchmarks", "gpu_check"])
def test_the_committed_benchmark_records_read(name):
    from hybridlib.paths import REPO_ROOT
    results = REPO_ROOT / "benchmarks" / "results"
    if name == "gpu_check":
        table, _ = performance.gpu_check(results / "gpu_check.txt")
        assert (table.result == "PASS").all() and len(table) == 11
    else:
        records = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
        assert len(performance.targets(records)) == 7 and len(performance.side_by_side(records)) == 2
