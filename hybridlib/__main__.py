"""Command line: ``python -m hybridlib run --profile cpu [--dry-run] [--runs-dir DIR]``."""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hybridlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="execute a profile's notebooks with papermill (resumable)")
    r.add_argument("--profile", default="cpu", help="smoke | cpu | paper, or a YAML file (default: cpu)")
    r.add_argument("--runs-dir", default=None, help="results directory (default: runs/ in the repository)")
    r.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    t = sub.add_parser("train", help="train one run (works under torchrun --nproc_per_node=N)")
    t.add_argument("--profile", default="cpu")
    t.add_argument("--strategy", required=True, help="xx | xy | ml | hybrid(alpha) | sum | pcgrad | gradvac | cagrad | mgda")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data", required=True, help="notebook 01's output directory (train_pairs.parquet)")
    t.add_argument("--run-dir", required=True)
    t.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override profile fields (YAML values)")
    v = sub.add_parser("verify", help="compare the results of two profile directories (reproduction check)")
    v.add_argument("a", help="e.g. runs/cpu (the committed run)")
    v.add_argument("b", help="e.g. /tmp/fresh/runs/cpu (a re-run)")
    v.add_argument("--tolerance", type=float, default=1e-6)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from .config import ConfigError
    try:
        return command(args)
    except ConfigError as e:  # a wrong profile field or parameter: the message says which and what is allowed
        print(f"error: {e}", file=sys.stderr)
        return 2


def command(args) -> int:
    if args.command == "verify":
        from .compare import reproduction
        table = reproduction(args.a, args.b)
        print(table.to_string(index=False))
        worst = table["max_abs_diff_headline"].max()
        print(f"largest headline difference {worst:.2e} (tolerance {args.tolerance:g})")
        return 0 if worst <= args.tolerance else 1
    if args.command == "train":
        import yaml

        from .config import ConfigError, check_parameters, override
        from .trainer import train_run
        bad = [kv for kv in args.set if "=" not in kv]
        if bad:
            raise ConfigError(f"--set {bad}: expected FIELD=VALUE")
        changes = dict(kv.split("=", 1) for kv in args.set)
        profile = check_parameters(PROFILE=args.profile, STRATEGY=args.strategy, SEED=args.seed, DATA_OUT=args.data,
                                   RUN_DIR=args.run_dir)
        profile = override(profile, **{k: yaml.safe_load(v) for k, v in changes.items()})
        summary = train_run(profile, args.strategy, args.seed, args.data, args.run_dir)
        print({k: v for k, v in summary.items() if k != "config"})
        return 0
    from .pipeline import run
    status = run(args.profile, args.runs_dir, args.dry_run)
    for name, s in status.items():
        print(f"{s:>24}  {name}" if len(s) < 24 else f"{name}: {s}")
    failed = [n for n, s in status.items() if s.startswith("failed")]
    if failed:
        print(f"{len(failed)} task(s) failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
