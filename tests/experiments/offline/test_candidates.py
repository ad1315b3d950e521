"""Candidates before traffic: the offline evaluation job, its progress events, clipping and the overlap threshold."""

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from experiments import realtime
from experiments.errors import ApplicationError
from experiments.models import Experiment, OfflineEstimate
from experiments.offline.candidates import candidate_evaluation_request, candidate_evaluation_run
from experiments.offline.estimators import PolicyEstimate
from experiments.offline.obd_import import obd_import
from experiments.offline.services import MIN_EFFECTIVE_SAMPLE_SIZE, estimate_clip
from experiments.services import lifecycle
from tests.experiments.stats_support import fast_passwords, make_login  # noqa: F401  (autouse)

pytestmark = pytest.mark.django_db


@pytest.fixture
def women():
    """The Open Bandit `women` sample (both logs, 20,000 impressions) and a candidate arm at weight 0."""
    obd_import(campaign="women")
    boss = make_login(username="boss", promoter=True)
    experiment = Experiment.objects.get(slug="obd-women")
    # Uniform-slate mixing 1: every item in every slot with probability 1/46 (the campaign's items), the uniform policy.
    arm = lifecycle.arm_create(experiment=experiment, user=boss,
                               spec=lifecycle.ArmSpec("uniform", "popularity", {"epsilon": 1.0}, weight=0))
    return experiment, arm, boss


def test_the_uniform_policy_from_the_bts_log_has_insufficient_overlap_and_no_number(women, login):
    experiment, arm, boss = women

    estimate = candidate_evaluation_run(arm_id=arm.id, job="j1", n_bootstrap=20, logging_arms=["bts"])

    assert estimate.rows == 10_000
    assert estimate.effective_sample_size < MIN_EFFECTIVE_SAMPLE_SIZE
    assert estimate.result["insufficient_overlap"] is True
    assert round(estimate.effective_sample_size) == 2  # the numbers: ESS 2 of 10,000, max weight 21,739
    assert estimate.result["max_weight"] == pytest.approx(21_739.13, rel=1e-4)
    assert estimate.result["offline_estimate"]["dr"]["raw"]["value"] < 0  # DR's raw −0.15 %: clipped, with the reason
    assert estimate.result["offline_estimate"]["dr"]["clip_reason"].startswith("clipped to [0, 1]: DR gave value -")
    assert 0.0 <= estimate.value <= 1.0 and 0.0 <= estimate.ci_low <= estimate.ci_high <= 1.0
    for shown in estimate.result["offline_estimate"].values():
        assert 0.0 <= shown["value"] <= 1.0
        assert shown["clipped"] == (shown["raw"]["value"] < 0 or shown["raw"]["ci_low"] < 0
                                    or shown["raw"]["ci_high"] > 1)
    page = login("admin2", promoter=True).get("/dashboard/obd-women/")
    html = page.content.decode()
    ess = round(estimate.effective_sample_size)
    assert f"insufficient overlap: {ess} effective sample{'s' if ess != 1 else ''}" in html


def test_the_uniform_policy_from_the_random_log_has_a_number(women):
    experiment, arm, boss = women

    estimate = candidate_evaluation_run(arm_id=arm.id, job="j2", n_bootstrap=20, logging_arms=["random"])

    assert estimate.effective_sample_size == pytest.approx(10_000, rel=1e-6)  # the same policy: every weight is 1
    assert estimate.result["max_weight"] == pytest.approx(1.0)
    assert estimate.result["insufficient_overlap"] is False
    assert set(estimate.result["offline_estimate"]) == {"ips", "snips", "dm", "dr"}


def test_a_negative_estimate_is_clipped_to_zero_with_the_reason():
    shown = estimate_clip(PolicyEstimate(estimator="dr", value=-0.00147, ci_low=-0.004, ci_high=0.002,
                                         std_error=0.001, n=10_000, level=0.95))

    assert (shown["value"], shown["ci_low"], shown["ci_high"]) == (0.0, 0.0, 0.002)
    assert shown["raw"]["value"] == -0.00147 and shown["clipped"] is True
    assert shown["clip_reason"].startswith("clipped to [0, 1]: DR gave value -0.147%, ci_low -0.400%")


def test_the_job_reports_progress_to_the_experiment_group(women):
    experiment, arm, boss = women
    layer = get_channel_layer()

    async def subscribe():
        channel = await layer.new_channel()
        await layer.group_add(realtime.group_name(experiment.slug), channel)
        return channel

    async def collect(channel):
        events = []
        while not events or events[-1]["state"] not in ("done", "failed"):
            events.append((await asyncio.wait_for(layer.receive(channel), timeout=10))["payload"])
        return events

    channel = async_to_sync(subscribe)()
    candidate_evaluation_run(arm_id=arm.id, job="j3", n_bootstrap=20, logging_arms=["random"])
    events = async_to_sync(collect)(channel)

    fractions = [e["fraction"] for e in events]
    assert {e["type"] for e in events} == {"offline_progress"} and {e["job"] for e in events} == {"j3"}
    assert events[-1]["state"] == "done" and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(events) >= 10
    assert any(e["stage"].startswith("bootstrap ") for e in events)


def test_requests_need_permission_logs_and_a_policy(women):
    experiment, arm, boss = women
    analyst = make_login(username="analyst", promoter=False)
    logged = experiment.arms.get(name="bts")

    with pytest.raises(ApplicationError) as forbidden:
        candidate_evaluation_request(experiment=experiment, arm=arm, user=analyst)
    with pytest.raises(ApplicationError) as not_policy:
        candidate_evaluation_request(experiment=experiment, arm=logged, user=boss)

    assert forbidden.value.status == 403
    assert (not_policy.value.code, not_policy.value.status) == ("not_a_policy", 409)


def test_a_candidate_with_nothing_to_learn_from_is_refused(login):
    boss = make_login(username="boss", promoter=True)
    experiment = lifecycle.experiment_create(slug="empty", arms=[lifecycle.ArmSpec("control", "popularity")],
                                             user=boss)
    arm = lifecycle.arm_create(experiment=experiment, spec=lifecycle.ArmSpec("cand", "popularity", weight=0),
                               user=boss)

    with pytest.raises(ApplicationError) as refused:
        candidate_evaluation_request(experiment=experiment, arm=arm, user=boss)

    assert (refused.value.code, refused.value.status) == ("no_logs", 409)
    assert not OfflineEstimate.objects.exists()
