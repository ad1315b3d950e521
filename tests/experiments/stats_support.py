"""Builders for the live-stats tests: an experiment with arms, users and rollup rows."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from experiments.models import Arm, ArmUserStat, Experiment, ShopUser

PASSWORD = "pw-Tr0ub4dor-3"


def make_experiment(*, slug: str = "exp", arms: tuple[str, ...] = ("control", "treat")) -> tuple[Experiment, list[Arm]]:
    experiment = Experiment.objects.create(
        slug=slug, name=slug.title(), salt="salt-" + slug, status=Experiment.Status.RUNNING, started_at=timezone.now()
    )
    made = [Arm.objects.create(experiment=experiment, name=name, kind="popularity", weight=1.0) for name in arms]
    experiment.control_arm = made[0]
    experiment.save(update_fields=["control_arm"])
    return experiment, made


def add_rollup(*, arm: Arm, impressions, clicks, epoch: int = 0, prefix: str = "u") -> list[ShopUser]:
    """One ShopUser and one ArmUserStat row per (impressions, clicks) pair."""
    users = ShopUser.objects.bulk_create(
        [ShopUser(external_id=f"{prefix}-{arm.id}-{epoch}-{i}") for i in range(len(impressions))]
    )
    ArmUserStat.objects.bulk_create(
        [
            ArmUserStat(arm=arm, user=u, epoch=epoch, impressions=int(n), clicks=int(c))
            for u, n, c in zip(users, impressions, clicks, strict=True)
        ]
    )
    return users


def random_counts(*, seed: int, users: int, ctr: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 30, size=users)
    c = rng.binomial(n, ctr)
    return n, c


def make_login(*, username: str, promoter: bool):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=promoter)
    if promoter:
        user.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    return get_user_model().objects.get(pk=user.pk)  # fresh: permission cache empty


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """In-process tests hash with MD5 (PBKDF2 costs ~1 s a login on this machine). Not for live servers."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
