"""Beat's schedule and Celery's routing put training on its queue and the light ticks on ``default``."""

from __future__ import annotations

from django.conf import settings

from recsite.celery import app


def _queue(name: str, options: dict | None = None) -> str:
    return app.amqp.router.route(dict(options or {}), name)["queue"].name


def test_beat_dispatches_training_every_two_seconds_and_ticks_stats_every_second_on_default():
    schedule = settings.CELERY_BEAT_SCHEDULE

    assert schedule["training-dispatch"]["task"] == "recsite.training.dispatch"
    assert schedule["training-dispatch"]["schedule"] == 2.0
    assert schedule["stats-tick"]["task"] == "recsite.stats.tick"
    assert schedule["stats-tick"]["schedule"] == 1.0
    assert schedule["checkpoint-retention"]["task"] == "recsite.training.retention"
    assert (schedule["policy-tick"]["task"], schedule["policy-tick"]["schedule"]) == ("recsite.policy.tick", 30.0)
    assert schedule["guardrails-check"]["task"] == "recsite.guardrails.check"
    assert {entry["options"]["queue"] for entry in schedule.values()} == {"default"}


def test_train_arm_is_routed_to_the_training_queue_and_the_light_tasks_to_default():
    import experiments.tasks as tasks

    assert _queue("recsite.training.train_arm") == "training"
    assert _queue("recsite.training.dispatch", tasks.training_dispatch._get_exec_options()) == "default"
    assert _queue("recsite.training.retention", tasks.checkpoint_retention._get_exec_options()) == "default"
    assert _queue("recsite.policy.tick", tasks.policy_tick._get_exec_options()) == "default"
    assert _queue("recsite.guardrails.check", tasks.guardrails_check._get_exec_options()) == "default"
