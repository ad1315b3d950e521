"""Soak: mixed recommend + click traffic at a fixed rate for minutes, with the trainer running.

Starts its own private Postgres cluster and Redis (nothing shared is touched),
migrates and seeds them (one running experiment, ``--arms``, ``--items`` items),
then the product: Daphne, the trainer (``-Q training -P solo``), the light worker
(``-Q default -P solo``: training dispatch, stats ticks) and beat. A bounded
open-loop load generator on loopback sends ``--rate`` requests/s for
``--duration`` seconds: each shopper visit is a recommendation (k=10) followed,
with probability ``--click-p``, by a click on one shown item (5% of clicks are
repeated, exercising the idempotent 200). The request count is fixed up front:
rate × duration.

Every ``--window`` seconds it records, per window: requests, 5xx, p50/p99 latency
(all, recommend, click), and the RSS of each process (Daphne, trainer, light
worker, beat, Redis; Postgres as the PSS summed over its processes, so shared
buffers count once). At the end it
checks that every click answered 201 is in Postgres, computes RSS growth after
warm-up (``--warmup`` seconds) and writes a JSON report to ``var/``; with
``--write-doc`` it also rewrites the "## Soak" section of docs/benchmarks.md.

    .venv/bin/python bench/soak.py --duration 600 --rate 150 --write-doc
    .venv/bin/python bench/soak.py --duration 60 --rate 50            # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from tests.reliability.stack import clicks_missing, stack_make  # noqa: E402
from tests.support import live  # noqa: E402


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages split among the processes sharing them (Postgres' shared buffers)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (Postgres forks a backend per connection)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


@dataclass
class Sample:
    at: float
    kind: str
    status: int
    seconds: float


@dataclass
class Load:
    base_url: str
    rate: float
    duration: float
    click_p: float
    threads: int
    seed: int
    samples: list[Sample] = field(default_factory=list)
    clicked: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        """Open loop: request i is due at start + i / rate; late requests go at once (never more than planned)."""
        total = int(self.rate * self.duration)
        start = time.monotonic() + 0.5
        next_index = iter(range(total))
        index_lock = threading.Lock()

        def worker(n: int) -> None:
            rng = random.Random(self.seed * 1000 + n)
            session = requests.Session()
            pending_click: list[int] = []
            while True:
                with index_lock:
                    i = next(next_index, None)
                if i is None:
                    return
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if pending_click:
                    impression_id = pending_click.pop()
                    self._click(session, impression_id)
                    if rng.random() < 0.05:
                        pending_click.append(impression_id)  # a repeated click: idempotent 200
                    continue
                items = self._recommend(session, f"soak-{rng.randrange(5000)}")
                if items and rng.random() < self.click_p:
                    pending_click.append(rng.choice(items)["impression_id"])

        pool = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(self.threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    def _post(self, session: requests.Session, kind: str, path: str, body: dict) -> tuple[int, dict]:
        t0 = time.monotonic()
        try:
            response = session.post(f"{self.base_url}{path}", json=body, timeout=30)
            status, payload = response.status_code, response.json()
        except (requests.RequestException, ValueError):
            status, payload = 0, {}
        with self.lock:
            self.samples.append(Sample(time.time(), kind, status, time.monotonic() - t0))
        return status, payload

    def _recommend(self, session: requests.Session, user: str) -> list[dict]:
        status, payload = self._post(session, "recommend", "/api/v1/recommendations", {"user_id": user, "k": 10})
        return payload.get("items", []) if status == 200 else []

    def _click(self, session: requests.Session, impression_id: str) -> None:
        status, _ = self._post(session, "click", "/api/v1/clicks", {"impression_id": impression_id})
        if status == 201:
            with self.lock:
                self.clicked.append(impression_id)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=150.0, help="requests/s, recommendations and clicks together")
    parser.add_argument("--click-p", type=float, default=0.6, help="probability that a visit clicks one shown item")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--arms", default="popularity:popularity,ftrl:ftrl_logreg",
                        help="name:kind,... (deep_ctr works too; it loads TensorFlow in the trainer)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--markdown", metavar="REPORT_JSON", help="only print the docs section of a saved report")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0

    arms = tuple(tuple(part.split(":", 1)) for part in args.arms.split(","))
    print(f"soak: starting private Postgres + Redis, migrating, seeding {args.items} items, arms {arms}", flush=True)
    stack = stack_make(arms=arms, items=args.items)
    env = {**stack.env, "RECSITE_TRAIN_INTERVAL_S": "2", "RECSITE_STATS_INTERVAL_S": "1", "LOG_LEVEL": "WARNING"}
    tmp = Path(stack.pg.dir)
    procs: dict[str, live.LiveProcess] = {}
    report: dict = {}
    try:
        daphne, url = live.start_daphne(env=env)
        procs["daphne"] = daphne
        procs["trainer"] = live.start_worker(queues="training", pool="solo", env=env, name="soak-trainer@%h")
        procs["worker"] = live.start_worker(queues="default", pool="solo", env=env, name="soak-default@%h")
        procs["beat"] = live.LiveProcess("celery-beat", [str(live.VENV_BIN / "celery"), "-A", "recsite", "beat",
                                                         "-l", "WARNING", "-s", str(tmp / "beat-schedule")], env)
        live.wait_until(lambda: "ready" in procs["trainer"].output(), timeout=120, what="the trainer")
        requests.post(f"{url}/api/v1/recommendations", json={"user_id": "warm", "k": 10}, timeout=60)

        load = Load(url, args.rate, args.duration, args.click_p, args.threads, args.seed)
        runner = threading.Thread(target=load.run, daemon=True)
        started = time.time()
        runner.start()
        windows = []
        seen = 0
        while True:
            finished = not runner.is_alive()
            now = time.time()
            if finished or now - started >= (len(windows) + 1) * args.window:
                with load.lock:
                    batch = load.samples[seen:]
                    seen = len(load.samples)
                rss = {name: rss_kb(p.pid) for name, p in procs.items()}
                rss["postgres"] = sum(pss_kb(pid) for pid in tree_pids(postmaster_pid(stack.pg.data)))
                rss["redis"] = rss_kb(stack.redis.proc.pid)
                latencies = [s.seconds for s in batch]
                window = {
                    "t": round(now - started, 1),
                    "requests": len(batch),
                    "rps": round(len(batch) / max(1e-9, now - started - (windows[-1]["t"] if windows else 0)), 1),
                    "statuses": dict(Counter(s.status for s in batch)),
                    "p50_ms": round(1e3 * (pct(latencies, 50) or 0), 1),
                    "p99_ms": round(1e3 * (pct(latencies, 99) or 0), 1),
                    "p99_recommend_ms": round(1e3 * (pct([s.seconds for s in batch if s.kind == "recommend"], 99) or 0), 1),
                    "p99_click_ms": round(1e3 * (pct([s.seconds for s in batch if s.kind == "click"], 99) or 0), 1),
                    "rss_mb": {k: round(v / 1024, 1) for k, v in rss.items()},
                }
                windows.append(window)
                print("window " + json.dumps(window), flush=True)
                if finished:
                    break
            time.sleep(0.5)

        for name, proc in procs.items():
            if not proc.alive():
                print(f"soak: {name} died:\n{proc.output()[-3000:]}", flush=True)
        statuses = Counter(s.status for s in load.samples)
        missing = clicks_missing(stack, load.clicked) if load.clicked else []
        conn = stack.db()
        with conn.cursor() as cur:
            cur.execute("SELECT a.name, max(c.version) FROM experiments_arm a "
                        "LEFT JOIN experiments_modelcheckpoint c ON c.arm_id = a.id GROUP BY a.name ORDER BY a.name")
            versions = dict(cur.fetchall())
        conn.close()
        after = [w for w in windows if w["t"] >= args.warmup]
        base = after[0]["rss_mb"] if after else windows[0]["rss_mb"]
        last = windows[-1]["rss_mb"]
        growth = {k: round(100.0 * (last[k] - base[k]) / base[k], 1) if base[k] else None for k in base}
        peak_growth = {k: round(100.0 * (max(w["rss_mb"][k] for w in after) - base[k]) / base[k], 1) if base[k] and after
                       else None for k in base}
        report = {
            "args": vars(args),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_end": os.getloadavg()},
            "requests": len(load.samples),
            "achieved_rps": round(len(load.samples) / max(1e-9, windows[-1]["t"]), 1),
            "statuses": dict(statuses),
            "server_errors": sum(n for s, n in statuses.items() if s >= 500),
            "no_answer": statuses.get(0, 0),
            "clicks_201": len(load.clicked),
            "clicks_lost": len(missing),
            "checkpoint_versions": versions,
            "p99_ms_overall": round(1e3 * (pct([s.seconds for s in load.samples], 99) or 0), 1),
            "p50_ms_overall": round(1e3 * (pct([s.seconds for s in load.samples], 50) or 0), 1),
            "rss_growth_after_warmup_pct": growth,
            "rss_peak_growth_after_warmup_pct": peak_growth,
            "windows": windows,
        }
        out = ROOT / "var" / f"soak-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        print("soak: report " + str(out), flush=True)
        print(json.dumps({k: v for k, v in report.items() if k != "windows"}, indent=1), flush=True)
        if args.write_doc:
            from bench.serving_common import doc_section_write

            doc_section_write("Soak", markdown(report))
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
        stack.destroy()
    ok = report.get("server_errors", 1) == 0 and report.get("clicks_lost", 1) == 0
    return 0 if ok else 1


def markdown(report: dict) -> str:
    a = report["args"]
    names = list(report["windows"][0]["rss_mb"])
    lines = [
        f"`bench/soak.py --duration {a['duration']:g} --rate {a['rate']:g}`, run on "
        f"{time.strftime('%Y-%m-%d')} on the shared 2-core machine (load average at the end "
        f"{report['machine']['load_avg_end'][0]:.1f}, other engineers' test runs included). Private Postgres and Redis; "
        f"Daphne, trainer (`-Q training -P solo`), light worker, beat; arms `{a['arms']}`, {a['items']} items; "
        f"each visit is a recommendation (k=10) then, with p={a['click_p']}, a click (5% repeated). "
        "Memory is RSS per process (Postgres: PSS summed over its processes).",
        "",
        f"- requests: {report['requests']} ({report['achieved_rps']} req/s achieved of {a['rate']:g} planned); "
        f"statuses {report['statuses']}",
        f"- **5xx: {report['server_errors']}**, no answer: {report['no_answer']}",
        f"- **clicks answered 201: {report['clicks_201']}, missing from Postgres: {report['clicks_lost']}**",
        f"- latency overall p50 {report['p50_ms_overall']} ms, p99 {report['p99_ms_overall']} ms",
        f"- trainer kept up: newest checkpoint version per arm {report['checkpoint_versions']}",
        f"- RSS growth after the {a['warmup']:g} s warm-up (last window vs first window after warm-up): "
        + ", ".join(f"{k} {v:+.1f}%" for k, v in report["rss_growth_after_warmup_pct"].items() if v is not None)
        + "; peak: "
        + ", ".join(f"{k} {v:+.1f}%" for k, v in report["rss_peak_growth_after_warmup_pct"].items() if v is not None),
        "",
        "| t (s) | req | req/s | 5xx | p50 ms | p99 ms | p99 rec ms | p99 click ms | "
        + " | ".join(f"{n} MB" for n in names) + " |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    for w in report["windows"]:
        errors = sum(n for s, n in w["statuses"].items() if int(s) >= 500)
        lines.append(
            f"| {w['t']:.0f} | {w['requests']} | {w['rps']} | {errors} | {w['p50_ms']} | {w['p99_ms']} | "
            f"{w['p99_recommend_ms']} | {w['p99_click_ms']} | " + " | ".join(str(w["rss_mb"][n]) for n in names) + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
