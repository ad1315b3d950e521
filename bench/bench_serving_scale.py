"""Serving at scale, old code against new in one run: latency at 8 keep-alive clients and the highest rate
that holds p99 ≤ 100 ms, for new and returning shoppers separately (issue 15).

Each ``--code`` path is a checkout of the project (``git worktree add /tmp/recsite-old <commit>`` for an old
commit; its ``.venv`` is used when it has one, else this one). For each, the script makes a scratch database,
migrates it with that checkout's migrations, seeds the demo (``seed_demo --items 1000``: the demo's arms,
1,000 items) and starts that checkout's web server: gunicorn with one worker per core when the checkout has
``recsite/gunicorn_conf.py``, else one Daphne (``--server`` forces one). The servers run side by side and the
measurements alternate between them, so machine noise hits both alike.

Per server and kind of shopper:

* **closed loop, 8 keep-alive clients** (``--clients``): p50/p99 and req/s of ``POST /api/v1/recommendations``
  (k=10) for ``--seconds``. *Returning* shoppers are a pool of ``--returning`` ids each served once before the
  measurement (their assignment exists and is cached); *new* shoppers are a fresh id per request.
* **open loop** (``--rates``): requests are scheduled at a fixed rate and each latency is measured from its
  scheduled time (so a stalled server is charged for the queue it causes); the highest rate whose p99 stays
  ≤ 100 ms and that the server keeps up with (≥ 95 % of the scheduled requests done) is reported.

Targets checked: p99 ≤ 30 ms at 8 clients on the new code (returning and new users); the highest req/s at
p99 ≤ 100 ms, old vs new. Clients are threads of this process on the same machine as the servers.

Run (quiet machine): ``.venv/bin/python bench/bench_serving_scale.py --code /tmp/recsite-old .``
Check end to end quickly: ``.venv/bin/python bench/bench_serving_scale.py --code . --seconds 2 --rates 20 40``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import live  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _python(code: Path) -> str:
    own = code / ".venv" / "bin" / "python"
    return str(own if own.exists() else Path(sys.executable))


def _database(i: int) -> str:
    name = f"recsite_bench_scale_{i}"
    admin = ["psql", "-h", "127.0.0.1", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
    subprocess.run([*admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)
    subprocess.run([*admin, "-c", f'CREATE DATABASE "{name}"'], check=True)
    return f"postgres://{os.environ.get('PGUSER', 'root')}@127.0.0.1:5432/{name}"


def server_start(code: Path, i: int, server: str) -> tuple[live.LiveProcess, str, str]:
    env = {**os.environ, "DATABASE_URL": _database(i), "DJANGO_SETTINGS_MODULE": "recsite.settings",
           "RECSITE_DEV": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "LOG_LEVEL": "WARNING", "CHANNELS_PREFIX": f"bench-{i}"}
    env.pop("PYTHONPATH", None)
    python = _python(code)
    for argv in (["migrate", "-v", "0"], ["seed_demo", "--items", "1000", "--users", "50"]):
        subprocess.run([python, str(code / "manage.py"), *argv], env=env, cwd=code, check=True, capture_output=True)
    if server == "auto":
        server = "gunicorn" if (code / "recsite" / "gunicorn_conf.py").exists() else "daphne"
    port = live.free_port()
    bin_dir = Path(python).parent
    if server == "gunicorn":
        argv = [str(bin_dir / "gunicorn"), "-c", str(code / "recsite" / "gunicorn_conf.py"), "recsite.asgi:application"]
        env.update({"WEB_BIND": f"127.0.0.1:{port}"})
    else:
        argv = [str(bin_dir / "daphne"), "-b", "127.0.0.1", "-p", str(port), "recsite.asgi:application"]
    proc = live.LiveProcess(f"bench-{server}-{i}", argv, env, cwd=code)
    url = f"http://127.0.0.1:{port}"
    live.wait_until(lambda: _status(url) == 200, timeout=300, interval=0.5, what=f"{code} to answer /healthz 200")
    return proc, url, server


def _status(url: str) -> int:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, url: str):
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def recommend(self, user_id: str) -> bool:
        try:
            self.conn.request("POST", "/api/v1/recommendations", body=json.dumps({"user_id": user_id, "k": 10}),
                              headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            return False


def _user(kind: str, pool: list[str], rng_state: list[int]) -> str:
    if kind == "new":
        return f"new-{uuid.uuid4().hex}"
    rng_state[0] = (rng_state[0] * 6364136223846793005 + 1442695040888963407) % 2**64  # seeded, per thread
    return pool[(rng_state[0] >> 33) % len(pool)]


def _summary(latencies: list[float], errors: int, wall: float, scheduled: int | None = None) -> dict:
    merged = sorted(latencies)
    n = len(merged)
    out = {"n": n, "errors": errors, "rps": n / wall,
           "p50": merged[n // 2] if n else float("nan"), "p99": merged[min(n - 1, int(0.99 * n))] if n else float("nan")}
    if scheduled is not None:
        out["done"] = n / scheduled if scheduled else 0.0
    return out


def closed_loop(url: str, *, clients: int, seconds: float, kind: str, pool: list[str], seed: int) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def worker(i: int) -> None:
        client, state, mine = Client(url), [seed * 1000 + i], []
        while not stop.is_set():
            t0 = time.perf_counter()
            ok = client.recommend(_user(kind, pool, state))
            if ok:
                mine.append((time.perf_counter() - t0) * 1000)
            else:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    return _summary(latencies, errors[0], time.perf_counter() - started)


def open_loop(url: str, *, rate: float, seconds: float, kind: str, pool: list[str], seed: int,
              connections: int = 32) -> dict:
    """Requests scheduled every 1/rate s over ``connections`` keep-alive clients; latency from the schedule."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    next_index = [0]

    def worker(i: int) -> None:
        client, state, mine = Client(url), [seed * 1000 + i], []
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= total:
                break
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if time.perf_counter() > start + seconds + 5:  # hopelessly behind: stop, the rate is not held
                break
            ok = client.recommend(_user(kind, pool, state))
            if ok:
                mine.append((time.perf_counter() - due) * 1000)
            else:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return _summary(latencies, errors[0], max(seconds, time.perf_counter() - start), scheduled=total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", nargs="+", type=Path, default=[ROOT], help="checkouts to measure, old first")
    parser.add_argument("--server", choices=["auto", "daphne", "gunicorn"], default="auto")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--returning", type=int, default=2000)
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 150, 200, 300, 400, 500, 650, 800])
    args = parser.parse_args()
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())

    servers = []
    try:
        for i, code in enumerate(args.code):
            proc, url, kind = server_start(code.resolve(), i, args.server)
            label = f"{code} ({kind})"
            servers.append((label, proc, url))
            print(f"{label}: {url}", flush=True)
        pool = [f"returning-{u:05d}" for u in range(args.returning)]
        for _label, _proc, url in servers:  # every returning shopper seen once; models warm (the old code's too)
            client = Client(url)
            for user in pool:
                client.recommend(user)
            closed_loop(url, clients=4, seconds=3, kind="new", pool=pool, seed=99)
        rows = []
        for kind in ("returning", "new"):
            for label, _proc, url in servers:
                row = closed_loop(url, clients=args.clients, seconds=args.seconds, kind=kind, pool=pool, seed=1)
                rows.append((label, kind, row))
                print(json.dumps({"code": label, "users": kind, "clients": args.clients, **row}), flush=True)
        best: dict[tuple[str, str], float] = {}
        for kind in ("returning", "new"):
            alive = {label for label, _p, _u in servers}
            for rate in args.rates:
                for label, _proc, url in servers:
                    if label not in alive:
                        continue
                    row = open_loop(url, rate=rate, seconds=args.seconds, kind=kind, pool=pool, seed=2)
                    held = row["p99"] <= 100 and row["done"] >= 0.95 and row["errors"] == 0
                    print(json.dumps({"code": label, "users": kind, "rate": rate, "held": held, **row}), flush=True)
                    if held:
                        best[(label, kind)] = rate
                    else:
                        alive.discard(label)
    finally:
        for _label, proc, _url in servers:
            proc.stop()

    print(f"\nload average at the start: {load_before}")
    print(f"| code | users | p50 ms at {args.clients} clients | p99 ms | req/s | highest req/s with p99 ≤ 100 ms |")
    print("|---|---|---|---|---|---|")
    for label, kind, row in rows:
        print(f"| {label} | {kind} | {row['p50']:.1f} | {row['p99']:.1f} | {row['rps']:.0f} | "
              f"{best.get((label, kind), 0):.0f} |")
    for label, kind, row in rows:
        print(f"target p99 ≤ 30 ms at {args.clients} clients, {kind} users, {label}: {row['p99']:.1f} ms → "
              f"{'met' if row['p99'] <= 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
