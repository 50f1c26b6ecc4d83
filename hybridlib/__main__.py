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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
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
