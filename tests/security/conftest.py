"""Roles of the permission matrix: anonymous, analyst (a login, nothing more), staff without the
permission, and admin (staff with ``experiments.promote_arm``, deliberately not a superuser)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from experiments.models import Arm, Experiment
from experiments.services import decisions

ROLES = ("anonymous", "analyst", "staff_no_perm", "admin")


def user_make(role: str):
    if role == "anonymous":
        return None
    # No password: hashing one costs ~0.3 s per user, and the login form is not what is under test here.
    user = get_user_model().objects.create_user(username=role, password=None, is_staff=role != "analyst")
    if role == "admin":
        user.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    return get_user_model().objects.get(pk=user.pk)  # fresh: no permission cache


def client_for(role: str, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if role != "anonymous":
        client.force_login(user_make(role))
    return client


@pytest.fixture
def arena():
    """A running experiment: control, treat, and extra (paused by an earlier decision, to resume or roll back)."""
    experiment = Experiment.objects.create(slug="sec", name="Sec", salt="salt-sec", status="running",
                                           started_at=timezone.now())
    control = Arm.objects.create(experiment=experiment, name="control", kind="popularity", weight=1.0)
    treat = Arm.objects.create(experiment=experiment, name="treat", kind="popularity", weight=1.0)
    extra = Arm.objects.create(experiment=experiment, name="extra", kind="popularity", weight=1.0)
    experiment.control_arm = control
    experiment.save(update_fields=["control_arm"])
    seeder = get_user_model().objects.create_user(username="seeder", is_staff=True)
    seeder.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    seeder = get_user_model().objects.get(pk=seeder.pk)
    decision = decisions.arm_pause(arm=extra, user=seeder, reason="seed: paused before the test")
    return experiment, control, treat, extra, decision
