"""Memory of a serving process under a stream of distinct users: the per-process caches stay within their budget.

1M distinct users with attributes (every 100th with ~16 KB of them, the largest the API stores) are
loaded into a scratch database; then each one goes through what serving does per request before
ranking — ``services.shoppers._user_lookup`` (the real query, the real user cache) and
``features.user_features`` (the feature-slot memo) — with a user-cache TTL of an hour, so that
nothing expires and only the byte budgets bound the caches. The process's RSS is sampled throughout.

Run: ``.venv/bin/python bench/bench_memory.py [--users 1000000] [--big-every 100] [--no-doc]``.
The same script runs against an older checkout (``cd <old worktree> && python <this file>``): it
only calls functions that exist there too, and reports cache sizes when the caches can tell them.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_common import bench_database_create, doc_section_write  # noqa: E402

DB = "recsite_bench_memory"
REGIONS = ("north", "south", "east", "west", "centre")
DEVICES = ("mobile", "desktop", "tablet")
COPY_CHUNK = 50_000

NOTES = """
The documented bound: RSS stays within **baseline + user-cache budget (`RECSITE_USER_CACHE_MB`, 32 MiB) +
slot-memo budget (16 MiB) + 50% headroom for the allocator** (freed entries leave pymalloc arenas that are
reused rather than returned to the OS), i.e. 72 MiB above the process's size before the first user, whatever
the number of users. The caches' own accounting (`bytes`) never passes their budgets and slightly overstates
what they hold (shared small ints and strings are counted every time); the table is what the operating system
sees. Memory figures do not depend on the machine's load, unlike its timings.

Before the bounds (main at 124c305, the same script and arguments, run on 2026-12-02): RSS went from 123.9 MiB
to a peak of 634.8 MiB (+510.9), swinging between 400 and 635 MiB as the 200,000-entry user cache filled and
cleared itself; at the end it held 200,000 users and the slot memo 65,536 tokens.
"""


def rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def attributes(i: int, big_every: int) -> dict:
    attrs = {
        "age": 18 + i % 60, "region": REGIONS[i % 5], "device": DEVICES[i % 3],
        "loyalty": round((i * 7919 % 1000) / 1000, 3), "campaign": f"cmp-{i % 20_000}",
        # One token per user: the worst case for the slot memo (every user brings new tokens).
        "session": f"s{i:07d}-{(i * 2654435761) % 2**32:08x}",
    }
    if big_every and i % big_every == 0:
        attrs["history"] = list(range(i % 1000, i % 1000 + 3000))
        attrs["tags"] = [f"t{j}" for j in range(400)]
    return attrs


def load_users(n: int, big_every: int) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for start in range(0, n, COPY_CHUNK):
            buf = io.StringIO()
            for i in range(start, min(n, start + COPY_CHUNK)):
                doc = json.dumps(attributes(i, big_every)).replace("\\", "\\\\")
                buf.write(f"u{i:07d}\t{doc}\t2026-01-01 00:00:00+00\n")
            buf.seek(0)
            cursor.cursor.copy_expert("COPY experiments_shopuser (external_id, attributes, created_at) FROM STDIN", buf)
        cursor.execute("ANALYZE experiments_shopuser")
    return time.perf_counter() - started


def cache_state() -> dict:
    from experiments import features
    from experiments.services import shoppers

    user_cache, slots = shoppers._user_cache, getattr(features, "_slots", None)
    return {
        "user_cache_entries": len(user_cache),
        "user_cache_mib": round(user_cache.bytes / 2**20, 1) if hasattr(user_cache, "bytes") else None,
        "slot_entries": len(slots) if slots is not None else features._slot.cache_info().currsize,
        "slot_mib": round(slots.bytes / 2**20, 1) if slots is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--big-every", type=int, default=100, help="every Nth user has ~16 KB of attributes (0: none)")
    parser.add_argument("--sample-every", type=int, default=25_000)
    parser.add_argument("--dim", type=int, default=64, help="user feature dimension (the arms' user_dim)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("RECSITE_DEV", "1")
    bench_database_create(DB)
    from django.conf import settings

    from experiments import features
    from experiments.services import shoppers

    load_s = load_users(args.users, args.big_every)
    settings.RECSITE["USER_CACHE_TTL_S"] = 3600.0  # nothing expires: only the byte budgets bound the caches
    settings.RECSITE["SERVING_REFRESH"] = "background"
    gc.collect()
    baseline, _ = rss_mib()
    samples = []
    started = time.perf_counter()
    for i in range(args.users):
        row = shoppers._user_lookup(f"u{i:07d}", experiment_id=0, epoch=0)
        features.user_features(row[1], dim=args.dim)
        if (i + 1) % args.sample_every == 0:
            samples.append((i + 1, rss_mib()[0]))
    seconds = time.perf_counter() - started
    final, peak = rss_mib()
    result = {
        "users": args.users, "big_every": args.big_every, "load_s": round(load_s, 1), "loop_s": round(seconds, 1),
        "rss_baseline_mib": round(baseline, 1), "rss_final_mib": round(final, 1), "rss_peak_mib": round(peak, 1),
        "rss_max_sampled_mib": round(max(s[1] for s in samples), 1), "growth_mib": round(final - baseline, 1),
        "rss_at": {str(n): round(r, 1) for n, r in samples[:: max(1, len(samples) // 8)]},
        **cache_state(),
    }
    print(json.dumps(result, indent=1))
    if not args.no_doc:
        head = (f"`.venv/bin/python bench/bench_memory.py --users {args.users} --big-every {args.big_every}` — "
                f"{args.users:,} distinct users through `_user_lookup` + `user_features` (dim {args.dim}), "
                f"user-cache TTL 1 h; loading took {load_s:.0f} s, the loop {seconds:.0f} s (under load).")
        table = "\n".join([
            "| | RSS (MiB) |", "|---|---:|",
            f"| before the first user | {baseline:.1f} |",
            *[f"| after {n:,} users | {r:.1f} |" for n, r in samples[:: max(1, len(samples) // 8)]],
            f"| after all {args.users:,} | {final:.1f} |",
            f"| peak (VmHWM, includes loading) | {peak:.1f} |",
        ])
        state = cache_state()
        caches = (f"At the end the user cache held {state['user_cache_entries']:,} users in "
                  f"{state['user_cache_mib']} MiB (budget 32) and the slot memo {state['slot_entries']:,} tokens in "
                  f"{state['slot_mib']} MiB (budget 16).")
        doc_section_write("Memory", f"{head}\n\n{table}\n\n{caches}\n{NOTES}")


if __name__ == "__main__":
    main()
