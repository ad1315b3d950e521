"""Celery interface. Tasks are thin: they take ids and call services."""

from __future__ import annotations

import os
import socket

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown


@shared_task(name="recsite.health.ping")
def health_ping() -> dict:
    """Proves a worker is alive and reachable through the broker."""
    return {"ok": True, "host": socket.gethostname(), "pid": os.getpid()}


@shared_task(name="recsite.stats.tick", ignore_result=True, expires=5)
def stats_tick(experiment_id: int | None = None) -> dict:
    """One live-stats tick for one experiment, or for every live one (beat, every second; queue ``default``).

    ``expires`` drops ticks that waited too long in the queue: the next one is fresher.
    """
    from experiments.services import stats_tick as tick

    if experiment_id is not None:
        return {"seq": tick.stats_tick(experiment_id=experiment_id)["stats"]["seq"]}
    return tick.stats_tick_running()


@shared_task(
    name="recsite.training.train_arm",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=3,
)
def train_arm(arm_id: int) -> dict:
    """Train one arm on what is new since its checkpoint (queue ``training``, ``-P solo``).

    Idempotent: the cursors live in the checkpoint, so a retry or a redelivery
    after a crash trains only on what no committed version has seen.
    """
    from experiments.services import training
    from experiments.services.training_dispatch import training_pending_clear

    training_pending_clear(arm_id=arm_id)
    return training.arm_train(arm_id=arm_id).as_dict()


@shared_task(name="recsite.training.dispatch", queue="default", ignore_result=True, expires=10)
def training_dispatch(queue: str | None = None) -> list[int]:
    """Beat, every RECSITE_TRAIN_INTERVAL_S: one queued ``train_arm`` per active arm (light; queue ``default``).

    The service plans (which arms, on which queue); this task only enqueues the plan. Returns the arm ids queued.
    """
    from experiments.services.training_dispatch import training_dispatch_plan

    plan = training_dispatch_plan(queue=queue)
    for arm_id, name in plan:
        train_arm.apply_async(args=[arm_id], queue=name)
    return [arm_id for arm_id, _ in plan]


@shared_task(name="recsite.training.retention", queue="default", ignore_result=True, expires=60)
def checkpoint_retention() -> int:
    """Beat, every minute: keep the last N checkpoint versions of each arm and every Kth."""
    from experiments.services.checkpoints import checkpoint_retention_apply

    return checkpoint_retention_apply()


@shared_task(name="recsite.impressions.partitions", queue="default", ignore_result=True, expires=3600)
def impression_partitions() -> dict:
    """Day partitions of the impression log: create ahead, drop past the retention (beat, hourly)."""
    from django.conf import settings

    from experiments.services.partitions import impression_partitions_maintain

    return impression_partitions_maintain(keep_days=int(settings.RECSITE["IMPRESSION_RETENTION_DAYS"]))


@shared_task(name="recsite.policy.tick", queue="default", ignore_result=True, expires=30)
def policy_tick() -> dict[str, str]:
    """Beat, every RECSITE_POLICY_TICK_S: re-evaluate the allocation policies that are due (queue ``default``)."""
    from experiments.services.allocation import policy_tick as tick

    return tick()


@shared_task(name="recsite.schedules.apply", queue="default", ignore_result=True, expires=30)
def schedules_apply() -> list[int]:
    """Beat, every RECSITE_SCHEDULE_TICK_S: start and stop the experiments whose schedule is due (queue ``default``)."""
    from experiments.services.schedules import schedules_apply as apply

    return [d.id for d in apply()]


@shared_task(name="recsite.guardrails.check", queue="default", ignore_result=True, expires=15)
def guardrails_check() -> list[int]:
    """Beat, every RECSITE_GUARDRAIL_INTERVAL_S: pause harmful or diverging arms, roll back collapsed models.

    Returns the ids of the decisions it made (usually none).
    """
    from experiments.services.guardrails import guardrails_check as check

    return [decision.id for decision in check()]


@shared_task(name="recsite.offline.evaluate", queue="default", ignore_result=True, acks_late=True)
def offline_evaluate(arm_id: int, job: str, n_bootstrap: int = 300, logging_arms: list[str] | None = None) -> int | None:
    """A candidate's offline evaluation (queue ``default``); progress goes to the dashboard over the WebSocket.

    Returns the id of the stored estimate. A redelivery stores one more estimate (the newest is shown): harmless.
    """
    from experiments.offline.candidates import candidate_evaluation_run

    estimate = candidate_evaluation_run(arm_id=arm_id, job=job, n_bootstrap=n_bootstrap, logging_arms=logging_arms)
    return estimate.id if estimate is not None else None


@shared_task(name="recsite.webhooks.deliver", queue="default", bind=True, ignore_result=True, max_retries=5,
             acks_late=True)
def webhook_deliver(self, delivery_id: int) -> bool:
    """Posts one webhook notification (queue ``default``); retried 2, 4, 8, 16, 32 s later until it is accepted.

    Idempotent: a delivered row is not sent again."""
    from experiments.services.webhooks import webhook_deliver as deliver

    if deliver(delivery_id=delivery_id):
        return True
    raise self.retry(countdown=2 ** (self.request.retries + 1))


@worker_ready.connect
def worker_checkin_start(sender=None, **_kwargs) -> None:
    """Before anything slow: a worker checks in as the parts its queues make it (experiments/heartbeats.py)."""
    from experiments.heartbeats import checkin_thread_start, worker_parts

    try:
        queues = [q.name for q in sender.task_consumer.queues]
    except AttributeError:
        return
    checkin_thread_start(parts=worker_parts(queues))


@worker_ready.connect
def shadow_thread(sender=None, **_kwargs) -> None:
    """A worker that consumes the default queue (the light worker) ranks the shadow arms' queue in a child process
    at the lowest CPU priority (experiments/services/shadow.py)."""
    try:
        queues = [q.name for q in sender.task_consumer.queues]
    except AttributeError:
        return
    if "default" in queues:
        from experiments.services.shadow import shadow_process_start

        shadow_process_start()


@worker_shutdown.connect
def shadow_process_stop(**_kwargs) -> None:
    from experiments.services.shadow import shadow_process_stop as stop

    stop()


@worker_ready.connect
def training_worker_warmup(sender=None, **_kwargs) -> None:
    """A worker that consumes a training queue loads its arms (and TensorFlow) before the first tick."""
    try:
        queues = [q.name for q in sender.task_consumer.queues]
    except AttributeError:
        return
    if any(name.startswith("training") for name in queues):
        from experiments.services import training

        training.training_warmup()
