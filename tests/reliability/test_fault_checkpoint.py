"""A corrupt checkpoint row: serving keeps the version it has, logs the problem, and moves on when a good one lands.

Checkpoints are written straight into the private Postgres (as a buggy or
half-crashed writer would); a real Daphne polls for new versions. A process that
starts while the newest versions are corrupt falls back to the last good one.
"""

import json
import time

import pytest
import requests

from experiments.serving.arms import arm_build
from tests.reliability.stack import server_error_lines
from tests.support import live

USERS = [f"ckpt-user-{i}" for i in range(40)]


def checkpoint_insert(stack, *, arm_id: int, version: int, state: bytes) -> None:
    conn = stack.db()
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO experiments_modelcheckpoint (arm_id, version, state, metrics, cursor, click_cursor, "
            "examples_seen, created_at) VALUES (%s, %s, %s, %s, 0, 0, 0, now())",
            [arm_id, version, state, json.dumps({"accepted": True, "fault_test": True})],
        )
    conn.close()


def served_versions(url: str, arm: str) -> set[int]:
    """Model versions that served ``arm`` to a fixed panel of users."""
    seen = set()
    session = requests.Session()
    for user in USERS:
        body = session.post(f"{url}/api/v1/recommendations", json={"user_id": user, "k": 1}, timeout=10).json()
        if body["arm"] == arm:
            seen.add(body["model_version"])
    return seen


@pytest.mark.e2e
@pytest.mark.slow
def test_corrupt_checkpoints_keep_the_previous_version(private_stack):
    arm_id = private_stack.arms["a"]
    good = arm_build(kind="popularity", params={}, arm_id=arm_id).to_bytes()
    base = 100  # above anything another test of the session could have written
    daphne, url = live.start_daphne(env=private_stack.env)
    restarted = None
    try:
        checkpoint_insert(private_stack, arm_id=arm_id, version=base + 1, state=good)
        live.wait_until(lambda: served_versions(url, "a") == {base + 1}, timeout=20, what="version 1 to be served")

        checkpoint_insert(private_stack, arm_id=arm_id, version=base + 2, state=b"\x00not a checkpoint\xff" * 10)
        checkpoint_insert(private_stack, arm_id=arm_id, version=base + 3, state=good[: len(good) // 2])
        live.wait_until(lambda: f"checkpoint_load_failed arm={arm_id} version={base + 3}" in daphne.output(),
                        timeout=20, what="the corrupt checkpoint to be logged")
        time.sleep(1.0)  # four more polls of the serving cache: it must not give up the good version
        kept = served_versions(url, "a")

        restarted, restarted_url = live.start_daphne(env=private_stack.env)
        fallback = served_versions(restarted_url, "a")

        checkpoint_insert(private_stack, arm_id=arm_id, version=base + 4, state=good)
        live.wait_until(lambda: served_versions(url, "a") == {base + 4}, timeout=20, what="the next good version")
        log = daphne.output()
    finally:
        if restarted is not None:
            restarted.stop()
        daphne.stop()

    assert kept == {base + 1}
    assert fallback == {base + 1}
    assert f"checkpoint_load_failed arm={arm_id} version={base + 2}" in log
    assert f"checkpoint_load_failed arm={arm_id} version={base + 3}" in log
    assert server_error_lines(log) == []
