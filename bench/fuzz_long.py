"""Long schemathesis run against a live Daphne: the in-suite fuzz test, with many more examples.

Starts a private Postgres + Redis (migrated, seeded: a running experiment with
two arms and 40 items), a Daphne on them, and runs every operation of
``/api/v1/schema`` with ``--examples`` positive and as many negative cases per
operation, through the same checks as tests/reliability/test_fuzz_api.py (no 5xx,
status codes, content types and bodies as documented, invalid input refused):
once anonymous, once as a logged-in admin (session + CSRF token) aimed at the
seeded experiment, so the staff endpoints are exercised past their 401.
Prints the status tally and every distinct failure; exits 1 if there is any.

    .venv/bin/python bench/fuzz_long.py --examples 1000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.fuzzing import FuzzReport, fuzz_api, session_login  # noqa: E402
from tests.reliability.stack import ADMIN_PASSWORD, server_error_lines, stack_make  # noqa: E402
from tests.support import live  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    stack = stack_make()
    daphne = None
    try:
        daphne, url = live.start_daphne(env=stack.env)
        started = time.monotonic()
        anonymous = fuzz_api(url, max_examples=args.examples, rng_seed=args.seed)
        admin = fuzz_api(url, max_examples=args.examples, rng_seed=args.seed + 1, slug="faults",
                         session=session_login(url, "admin", ADMIN_PASSWORD))
        report = FuzzReport(anonymous.calls + admin.calls, anonymous.statuses + admin.statuses,
                            anonymous.failures + admin.failures)
        elapsed = time.monotonic() - started
        served_5xx = server_error_lines(daphne.output())
    finally:
        if daphne is not None:
            daphne.stop()
        stack.destroy()

    print(json.dumps({
        "examples_per_operation_and_mode": args.examples,
        "seed": args.seed,
        "calls": report.calls,
        "seconds": round(elapsed, 1),
        "server_errors": report.server_errors,
        "daphne_5xx_lines": served_5xx[:20],
        "statuses": {f"{label} {status}": n for (label, status), n in sorted(report.statuses.items())},
        "failures": len(report.failures),
    }, indent=1))
    for failure in report.failures:
        print("\n" + failure)
    return 1 if report.failures or report.server_errors or served_5xx else 0


if __name__ == "__main__":
    sys.exit(main())
