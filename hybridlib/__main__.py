"""Command line: ``python -m hybridlib {run,train,verify,strategies}``; ``--help`` on each says more."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv=None) -> int:
    from hybridlib.paths import builtin_profiles
    parser = argparse.ArgumentParser(prog="hybridlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute a profile's notebooks with papermill (resumable)")
    r.add_argument("--profile", default="cpu", help=f"{' | '.join(builtin_profiles())}, or a YAML file (default: cpu)")
    r.add_argument("--runs-dir", default=None, help="results directory (default: runs/ of the checkout; for an installed package, of the current directory)")
    r.add_argument("--data-dir", default="", help="benchmark data directory (default: see README, Data)")
    r.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override profile fields (YAML values)")
    r.add_argument("--dry-run", action="store_true", help="list what would run and why, run nothing")
    r.add_argument("--until", default=None, metavar="NOTEBOOK",
                   help="run the notebooks up to this one only, e.g. 03_evaluate (a slice of a long study)")
    r.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="only the runs of these seeds (a slice of a long study; analysis notebooks wait)")
    r.add_argument("--strategies", nargs="+", default=None, metavar="STRATEGY",
                   help="only the runs of these strategies (a slice of a long study; analysis notebooks wait)")
    r.add_argument("--interim", action="store_true",
                   help="only the analysis notebooks, over the runs finished so far (a long study's answer as it stands)")
    r.add_argument("--jobs", default="1", metavar="K",
                   help="run K tasks at once (trainings, then the evaluations they feed), on one GPU or on the CPU "
                        "cores shared out between them; 'auto' picks K from the device's memory and cores (default: 1)")
    r.add_argument("--adopt", action="store_true",
                   help="record runs whose outputs exist but that have no manifest (written before manifests "
                        "were kept) as done with the current settings, instead of running them again")
    t = sub.add_parser("train", help="train one run (works under torchrun --nproc_per_node=N)")
    t.add_argument("--profile", default="cpu")
    t.add_argument("--strategy", required=True, help="a trained strategy name, e.g. hybrid(0.5) or pcgrad "
                                                     "(python -m hybridlib strategies lists them)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data", required=True, help="notebook 01's output directory (train_pairs.parquet)")
    t.add_argument("--run-dir", required=True)
    t.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override profile fields (YAML values)")
    v = sub.add_parser("verify", help="compare the results of two profile directories (reproduction check)")
    v.add_argument("a", help="e.g. runs/cpu (the committed run)")
    v.add_argument("b", help="e.g. /tmp/fresh/runs/cpu (a re-run)")
    v.add_argument("--tolerance", type=float, default=1e-6, help="largest difference, relative to max(1, |value|)")
    sub.add_parser("strategies", help="every strategy name, the numbers it takes and their ranges")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .errors import HybridError
    try:
        return command(args)
    except (HybridError, OSError) as e:  # expected: the message names the file, field and value
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def command(args) -> int:
    from .config import load_profile, override, parse_overrides
    if args.command == "strategies":
        from .strategy import reference
        rows = reference()
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
        for r in [{k: k for k in widths}, *rows]:
            print("  ".join(r[k].ljust(widths[k]) for k in widths).rstrip())
        return 0
    if args.command == "verify":
        from .compare import reproduction
        table, problems = reproduction(args.a, args.b, args.tolerance)
        print(table.to_string(index=False))
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"{len(table)} run(s) compared; {'reproduced' if not problems else f'{len(problems)} problem(s)'} "
              f"(tolerance {args.tolerance:g})")
        return 1 if problems else 0
    profile = load_profile(args.profile)
    if args.set:
        profile = override(profile, **parse_overrides(args.set))
    if args.command == "train":
        from .config import check_parameters
        from .strategy import Strategy
        from .trainer import train_run
        strategy = Strategy.parse(args.strategy)
        check_parameters(SEED=args.seed, DATA_OUT=args.data, RUN_DIR=args.run_dir)
        summary = train_run(profile, strategy, args.seed, args.data, args.run_dir)
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary: the run's, written by rank 0
            print({k: v for k, v in summary.items() if k not in ("config", "profile", "data_sha256")})
        return 0
    from .pipeline import IF_INPUTS_CHANGE, estimate, parse_jobs, run
    status = run(profile, args.runs_dir, args.dry_run, args.adopt, args.data_dir, until=args.until, seeds=args.seeds,
                 strategies=args.strategies, interim=args.interim, jobs=parse_jobs(args.jobs))
    width = max(map(len, status))
    for name, s in status.items():
        print(f"{name:<{width}}  {s}")
    if args.dry_run:
        from .pipeline import progress
        grid = progress(profile, args.runs_dir)
        print(f"\n{grid.to_string()}\n{(grid == 'done').to_numpy().sum()} of {(grid != '').to_numpy().sum()} "
              "runs done (trained and evaluated)")
        maybe = [n for n, s in status.items() if s == IF_INPUTS_CHANGE]
        sure = [n for n, s in status.items() if s.startswith("would run") and n not in maybe]
        print(estimate(profile, args.runs_dir, sure) + (
            f"; {len(maybe)} more, done now, run again only if what they read changes" if maybe else ""))
    failed = [n for n, s in status.items() if s.startswith("failed")]
    if failed:
        print(f"{len(failed)} task(s) failed: {', '.join(failed)}", file=sys.stderr)
    elif not args.dry_run:
        print(f"results in {profile.name}: every task done")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
