"""Runs every benchmark in bench/ one after another (`make bench`).

Each script writes its own section of docs/benchmarks.md. The 10-minute soak and the
long fuzz run only run with --long, since they need a quiet machine for that long.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LONG = {"soak.py", "fuzz_long.py", "learning_e2e.py"}
HELPERS = {"run_all.py", "serving_common.py", "stats_db_data.py"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--long", action="store_true", help="also run the soak, the long fuzz and the 5-minute learning run")
    parser.add_argument("--only", nargs="*", default=None, help="script names to run (e.g. bench_arms.py)")
    args = parser.parse_args()
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name not in HELPERS)
    if args.only:
        scripts = [p for p in scripts if p.name in set(args.only)]
    elif not args.long:
        scripts = [p for p in scripts if p.name not in LONG]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"== {script.name}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
