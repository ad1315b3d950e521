"""Candidates before traffic: evaluate a weight-0 arm offline as a Celery job, with progress on the dashboard.

``candidate_evaluation_request`` (the dashboard's "Evaluate offline" button and its JSON twin
``POST /api/v1/experiments/<slug>/arms/<arm>/evaluate``) checks the permission and the arm, then queues
``recsite.offline.evaluate`` on the ``default`` queue after commit. The job (:func:`candidate_evaluation_run`)
runs :func:`~experiments.offline.services.offline_evaluate` on the logs of the arms that served traffic, stores
the estimate (clipped to [0, 1], with its overlap diagnostics) and sends ``offline_progress`` events to the
experiment's dashboards as it goes. "Launch" is the weights page (``POST …/weights``), an audited re-weight.
"""

from __future__ import annotations

import logging
import uuid

from celery import current_app
from django.db import transaction

from experiments import realtime
from experiments.errors import ApplicationError
from experiments.models import Arm, Experiment, Impression, OfflineEstimate
from experiments.offline.obd_import import LOGGED_KIND_PREFIX
from experiments.offline.services import OfflineEvaluationError, offline_estimate_record, offline_evaluate
from experiments.services.decision_core import require_permission

log = logging.getLogger(__name__)

TASK = "recsite.offline.evaluate"
DEFAULT_BOOTSTRAP = 300


def _progress(experiment: str, arm: str, job: str, state: str, fraction: float, stage: str) -> None:
    realtime.publish(experiment, realtime.offline_progress_event(
        experiment=experiment, arm=arm, job=job, state=state, fraction=fraction, stage=stage))


def candidate_evaluation_request(*, experiment: Experiment, arm: Arm, user, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                                 logging_arms: list[str] | None = None) -> str:
    """Queues the offline evaluation of ``arm`` (after commit); returns the job id the progress events carry."""
    require_permission(user, "evaluate arms offline")
    if arm.experiment_id != experiment.id:
        raise ApplicationError("arm_not_found", "This arm is not part of the experiment.", status=404, field="arm")
    if arm.kind.startswith(LOGGED_KIND_PREFIX):
        raise ApplicationError("not_a_policy", f"Arm {arm.name!r} only holds imported logs; it has no policy to "
                               "evaluate.", status=409, field="arm")
    if not 2 <= n_bootstrap <= 5000:
        raise ApplicationError("invalid_n_bootstrap", "n_bootstrap is between 2 and 5000.", field="n_bootstrap")
    if not Impression.objects.filter(experiment=experiment).exclude(arm=arm).exists():
        raise ApplicationError("no_logs", "No other arm has served traffic yet: there is nothing to evaluate the "
                               "candidate on. Start the experiment and let it collect impressions first.", status=409)
    job = uuid.uuid4().hex
    slug, name = experiment.slug, arm.name
    kwargs = {"arm_id": arm.id, "job": job, "n_bootstrap": n_bootstrap, "logging_arms": logging_arms}
    transaction.on_commit(lambda: (
        current_app.send_task(TASK, kwargs=kwargs, queue="default"),
        _progress(slug, name, job, "queued", 0.0, "queued"),
    ))
    log.info("offline_evaluation_queued experiment=%s arm=%s job=%s user=%s", slug, name, job, user.pk)
    return job


def candidate_evaluation_run(*, arm_id: int, job: str, n_bootstrap: int = DEFAULT_BOOTSTRAP,
                             logging_arms: list[str] | None = None, seed: int = 0) -> OfflineEstimate | None:
    """The job: evaluate on the other arms' logs, store the estimate, report progress. None if the arm is gone."""
    arm = Arm.objects.select_related("experiment").filter(pk=arm_id).first()
    if arm is None:
        return None
    slug, name = arm.experiment.slug, arm.name
    _progress(slug, name, job, "running", 0.01, "starting")
    try:
        evaluation = offline_evaluate(
            experiment_slug=slug, target_arm=name, include_target_traffic=False, n_bootstrap=n_bootstrap, seed=seed,
            logging_arms=logging_arms,
            progress=lambda fraction, stage: _progress(slug, name, job, "running", fraction, stage),
        )
        estimate = offline_estimate_record(evaluation=evaluation)
    except OfflineEvaluationError as exc:
        _progress(slug, name, job, "failed", 1.0, str(exc))
        log.warning("offline_evaluation_failed experiment=%s arm=%s job=%s error=%s", slug, name, job, exc)
        return None
    _progress(slug, name, job, "done", 1.0, f"done: {evaluation.rows} logged impressions, effective sample size "
              f"{evaluation.effective_sample_size:.0f}")
    return estimate
