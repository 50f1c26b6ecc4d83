"""Does every strategy run on this device? Trains each strategy a few steps, resumes one from a checkpoint,
evaluates the zero-shot model on XQuAD-R; one line per check (PASS / FAIL and its figures).

Run by hand where a GPU is at hand (CI has none) and commit its output with the date:

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.txt

``--device cpu`` runs the same checks on a CPU (``--layers 1 --queries 3`` keeps them short there).
Exit status 1 when a check failed.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRATEGIES = ["xx", "xy", "ml", "hybrid(0.5)", "sum", "pcgrad", "gradvac", "cagrad", "mgda"]


def trainer(profile, pairs, strategy: str, steps: int, run_dir: Path, device: str, **fields):
    from hybridlib.config import override
    from hybridlib.encoders import load_encoder
    from hybridlib.strategy import Strategy
    from hybridlib.trainer import Trainer
    budget = steps * Strategy.parse(strategy).pairs_per_step(profile.batch_size)
    profile = override(profile, budget_pairs=budget, **fields)
    encoder = load_encoder(profile.model, num_layers=profile.num_layers, device=device)
    return Trainer(encoder, pairs, profile, Strategy.parse(strategy), 0, run_dir, progress=False)


def check_train(profile, pairs, strategy, steps, device) -> str:
    t = trainer(profile, pairs, strategy, steps, Path(tempfile.mkdtemp()), device)
    start = time.perf_counter()
    t.train()
    seconds = (time.perf_counter() - start) / steps
    from hybridlib.trainer import read_log
    loss = read_log(t.run.path)["loss"]
    where = {str(p.device) for p in t.params}
    assert where == {str(torch.device(device, 0) if device == "cuda" else torch.device(device))}, where
    assert loss.notna().all() and len(loss) == steps, loss.tolist()
    return (f"{steps} steps on {where.pop()} ({t.encoder.precision}), loss {loss.iloc[0]:.3f} -> "
            f"{loss.iloc[-1]:.3f}, {seconds:.2f} s/step")


def check_resume(profile, pairs, steps, device) -> str:
    """Stopped halfway and resumed from its checkpoint = trained without a stop (to the device's determinism)."""
    strategy, full_dir, cut_dir = "pcgrad", Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    full = trainer(profile, pairs, strategy, steps, full_dir, device, checkpoint_every=1)
    full.train()
    cut = trainer(profile, pairs, strategy, steps, cut_dir, device, checkpoint_every=1)
    cut.steps = steps // 2  # stop halfway (the schedule still spans the whole budget)
    cut.train()
    resumed = trainer(profile, pairs, strategy, steps, cut_dir, device, checkpoint_every=1)
    summary = resumed.train()
    diff = max(float((a - b).detach().abs().max()) for a, b in zip(full.params, resumed.params))
    assert summary["resumed"] and resumed.step == steps, summary
    assert diff < 1e-3, f"weights differ by {diff:.2e} after resuming"
    return f"{strategy} stopped at step {steps // 2} of {steps}, resumed: largest weight difference {diff:.1e}"


def check_evaluate(profile, device, queries) -> str:
    from hybridlib.encoders import load_encoder
    from hybridlib.evalsets import xquad_r
    from hybridlib.evaluate import evaluate, subset
    encoder = load_encoder(profile.model, num_layers=profile.num_layers, device=device)
    encoder.bf16 = profile.bf16
    coll = subset(xquad_r(), queries)
    start = time.perf_counter()
    per_query, _, timing = evaluate(encoder, coll, max_query_length=profile.max_query_length,
                                    max_passage_length=profile.max_passage_length,
                                    batch_size=profile.encode_batch_size, cache=False, progress=False)
    seconds = time.perf_counter() - start
    m = per_query.groupby("setting")["map"].mean()
    texts = timing["pool"] + timing["queries"]
    return (f"zero-shot XQuAD-R{'' if queries is None else f' ({queries} queries/language)'} mAP mono "
            f"{m['mono']:.3f} cross {m['cross']:.3f} multi {m['multi']:.3f} ({timing['precision']}; "
            f"{texts / (timing['encode_pool_s'] + timing['encode_queries_s']):,.0f} texts/s, {seconds:.0f} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--queries", type=int, default=None, help="queries per language in the evaluation (all)")
    ap.add_argument("--layers", type=int, default=None, help="keep only the first k transformer layers (a quick run)")
    ap.add_argument("--out", type=Path, default=None, help="also write the lines to this file")
    ap.add_argument("--only", default=None, help="run only the checks whose name starts with this")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; --device cpu runs the checks on the CPU", file=sys.stderr)
        return 2
    from hybridlib.config import load_profile
    from hybridlib.pairs import mlqa_split
    profile = load_profile(args.profile)
    if args.layers:
        from hybridlib.config import override
        profile = override(profile, num_layers=args.layers)
    pairs = mlqa_split()[0]
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    lines = [f"# gpu_check {datetime.date.today()} on {name}, torch {torch.__version__}, profile {profile.name}"]
    print(lines[0], flush=True)
    checks = [(f"train {s}", lambda s=s: check_train(profile, pairs, s, args.steps, args.device)) for s in STRATEGIES]
    checks += [("resume", lambda: check_resume(profile, pairs, args.steps, args.device)),
               ("evaluate", lambda: check_evaluate(profile, args.device, args.queries))]
    checks = [(what, fn) for what, fn in checks if not args.only or what.startswith(args.only)]
    failed = 0
    for what, fn in checks:
        try:
            line = f"PASS {what}: {fn()}"
        except Exception as e:  # one line per check; the traceback on stderr
            failed += 1
            line = f"FAIL {what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            traceback.print_exc()
        print(line, flush=True)
        lines.append(line)
    lines.append(f"# {len(checks) - failed} of {len(checks)} checks passed")
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
