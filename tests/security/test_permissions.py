"""The permission matrix: anonymous, analyst, staff without the permission, admin — on every page and action.

Reads (dashboard, audit, exports) need a login. Traffic decisions (promote,
pause, resume, re-weight, roll back) need staff with ``experiments.promote_arm``;
the services check it again, so no interface can skip it.
"""

import pytest

from experiments.errors import ApplicationError
from experiments.models import Arm, Decision, Experiment
from experiments.services import decisions
from tests.security.conftest import ROLES, client_for, user_make

pytestmark = pytest.mark.django_db

READ_PATHS = [
    "/dashboard/",
    "/dashboard/sec/",
    "/dashboard/sec/audit/",
    "/dashboard/sec/export.csv",
    "/dashboard/sec/export.json",
]


def action_path(action: str, arena) -> tuple[str, dict]:
    """The URL and form of each decision; each one is valid for an admin on the arena fixture."""
    _, control, treat, extra, decision = arena
    return {
        "promote": (f"/dashboard/sec/arms/{control.id}/promote/", {"reason": "wins"}),
        "pause": (f"/dashboard/sec/arms/{treat.id}/pause/", {"reason": "looks broken"}),
        "resume": (f"/dashboard/sec/arms/{extra.id}/resume/", {"reason": "fixed"}),
        "reweight": (f"/dashboard/sec/arms/{control.id}/reweight/", {"reason": "more", "weight": "3"}),
        "rollback": (f"/dashboard/sec/decisions/{decision.id}/rollback/", {"reason": "undo the pause"}),
    }[action]


def traffic_state(experiment: Experiment) -> tuple:
    experiment.refresh_from_db()
    arms = tuple(Arm.objects.filter(experiment=experiment).order_by("id").values_list("status", "weight"))
    return experiment.status, experiment.winner_id, arms, Decision.objects.count()


@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize("role", ROLES)
def test_dashboard_and_exports_need_a_login(arena, role, path):
    response = client_for(role).get(path, follow=False)

    if role == "anonymous":
        assert (response.status_code, response["Location"].split("?")[0]) == (302, "/accounts/login/")
    else:
        assert response.status_code in (200, 302)
        assert "/accounts/login/" not in response.get("Location", "")


@pytest.mark.parametrize("action", ["promote", "pause", "resume", "reweight", "rollback"])
@pytest.mark.parametrize("role", ROLES)
def test_only_admins_change_traffic(arena, role, action):
    experiment = arena[0]
    path, form = action_path(action, arena)
    before = traffic_state(experiment)
    client = client_for(role)

    page = client.get(path)
    response = client.post(path, form)

    if role == "anonymous":
        assert (page.status_code, response.status_code) == (302, 302)
        assert response["Location"].startswith("/accounts/login/")
        assert traffic_state(experiment) == before
    elif role in ("analyst", "staff_no_perm"):
        assert (page.status_code, response.status_code) == (403, 403)
        assert traffic_state(experiment) == before
    else:
        assert (page.status_code, response.status_code) == (200, 302)
        assert Decision.objects.count() == before[3] + 1
        assert Decision.objects.order_by("-id").first().user.username == "admin"


@pytest.mark.parametrize("role", ["analyst", "staff_no_perm"])
def test_services_refuse_without_the_permission_whatever_the_interface(arena, role):
    experiment, control, treat, extra, decision = arena
    user = user_make(role)
    before = traffic_state(experiment)
    calls = [
        lambda: decisions.arm_promote(experiment=experiment, arm=control, user=user, reason="r"),
        lambda: decisions.arm_pause(arm=treat, user=user, reason="r"),
        lambda: decisions.arm_resume(arm=extra, user=user, reason="r"),
        lambda: decisions.arm_reweight(arm=control, weight=2.0, user=user, reason="r"),
        lambda: decisions.decision_rollback(decision=decision, user=user, reason="r"),
    ]

    statuses = []
    for call in calls:
        with pytest.raises(ApplicationError) as refused:
            call()
        statuses.append(refused.value.status)

    assert statuses == [403] * len(calls)
    assert traffic_state(experiment) == before


def test_checkpoint_rollback_needs_the_permission(arena):
    control = arena[1]

    with pytest.raises(ApplicationError) as refused:
        decisions.arm_rollback_to_checkpoint(arm_id=control.id, version=0, user=user_make("analyst"), reason="r")

    assert refused.value.status == 403


@pytest.mark.parametrize("role", ROLES)
def test_django_admin_is_for_staff_only(arena, role):
    response = client_for(role).get("/admin/experiments/experiment/")

    if role in ("anonymous", "analyst"):
        assert (response.status_code, response["Location"].split("?")[0]) == (302, "/admin/login/")
    elif role == "staff_no_perm":
        assert response.status_code == 403
    else:
        assert response.status_code in (200, 403)


@pytest.mark.parametrize("role", ROLES)
def test_json_stats_and_promote_follow_the_same_matrix(arena, role):
    experiment = arena[0]
    before = traffic_state(experiment)
    client = client_for(role)

    stats = client.get("/api/v1/experiments/sec/stats")
    promote = client.post("/api/v1/experiments/sec/promote", {"arm": "control", "reason": "wins"},
                          content_type="application/json")

    expected = {"anonymous": (401, 401), "analyst": (200, 403), "staff_no_perm": (200, 403), "admin": (200, 201)}
    assert (stats.status_code, promote.status_code) == expected[role]
    assert traffic_state(experiment)[3] == before[3] + (role == "admin")


@pytest.mark.parametrize("path", ["/api/v1/experiments/sec/export/users.csv",
                                  "/api/v1/experiments/sec/export/users.parquet"])
@pytest.mark.parametrize("role", ROLES)
def test_the_per_user_export_is_read_like_the_stats(arena, role, path):
    response = client_for(role).get(path)

    expected = {"anonymous": 401, "analyst": 200, "staff_no_perm": 200, "admin": 200}
    assert response.status_code == expected[role]
