"""Back-pressure: with the trainer stopped, beat keeps dispatching, yet the training queue stays at most one
run per arm deep; serving stays fast, and the dashboard shows the growing staleness.

Real processes on the private stack: Daphne, a Celery worker on ``default``
(which runs the dispatcher), and beat ticking the dispatcher every 0.2 s; no
worker consumes ``training``. The run lasts past the dispatcher's pending-key
expiry (10 s), the moment a de-duplication by expiring keys alone would start
queueing duplicates.
"""

import statistics
import time

import pytest

from experiments.serving.arms import arm_build
from tests.reliability.stack import Traffic, login
from tests.support import live

RUN_S = 16.0


def checkpoint_stale(stack, *, arm_id: int, age_s: float) -> None:
    """The last update the trainer made before it stalled, ``age_s`` ago."""
    state = arm_build(kind="popularity", params={}, arm_id=arm_id).to_bytes()
    conn = stack.db()
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO experiments_modelcheckpoint (arm_id, version, state, metrics, cursor, click_cursor, "
            "examples_seen, created_at) SELECT %s, COALESCE(max(version), 0) + 1, %s, '{\"accepted\": true}', 0, 0, 0, "
            "now() - make_interval(secs => %s) FROM experiments_modelcheckpoint WHERE arm_id = %s",
            [arm_id, state, age_s, arm_id],
        )
    conn.close()


def staleness(session, url: str) -> dict[str, float]:
    body = session.get(f"{url}/api/v1/experiments/faults/stats", timeout=15).json()
    return {row["arm"]: row["seconds_since_update"] for row in body["arms"]}


@pytest.mark.e2e
@pytest.mark.slow
def test_a_stalled_trainer_never_piles_up_tasks_and_serving_goes_on(private_stack, tmp_path):
    env = {**private_stack.env, "RECSITE_TRAIN_INTERVAL_S": "0.2", "RECSITE_STATS_INTERVAL_S": "5"}
    redis = private_stack.redis.client()
    redis.delete("training")
    for arm_id in private_stack.arms.values():
        checkpoint_stale(private_stack, arm_id=arm_id, age_s=5.0)
    daphne, url = live.start_daphne(env=env)
    worker = live.start_worker(queues="default", env=env)
    beat = live.LiveProcess("celery-beat", [str(live.VENV_BIN / "celery"), "-A", "recsite", "beat", "-l", "INFO",
                                            "-s", str(tmp_path / "beat-schedule")], env)
    traffic = None
    try:
        admin = login(url)
        before = staleness(admin, url)
        traffic = Traffic(url, rate=15).start()
        live.wait_until(lambda: redis.llen("training") > 0, timeout=60, what="the first dispatch")
        started = time.monotonic()
        depths = []
        while time.monotonic() - started < RUN_S:
            depths.append(redis.llen("training"))
            time.sleep(0.25)
        after = staleness(admin, url)
        dispatches = worker.output().count("recsite.training.dispatch")
    finally:
        if traffic is not None:
            traffic.stop()
        beat.stop()
        worker.stop()
        daphne.stop()
        redis.delete("training")

    latencies = sorted(a.seconds for a in traffic.answers if a.kind == "recommend")
    assert dispatches >= 30, "beat and the dispatcher ran many ticks"
    assert max(depths) <= len(private_stack.arms), f"training queue depth over time: {depths[::8]}"
    assert [s for s in traffic.statuses() if s >= 500 or s == 0] == []
    assert statistics.quantiles(latencies, n=20)[-1] < 0.5, "recommendations stay fast (p95 < 0.5 s)"
    assert all(after[arm] >= before[arm] + RUN_S for arm in private_stack.arms), (before, after)
