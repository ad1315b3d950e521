"""Demo data: a seeded catalogue, shoppers, one running experiment with four arms, and two logins.

Idempotent: rows are keyed by external id / slug / username and only created when missing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from experiments.models import Arm, Experiment, Item, ShopUser

log = logging.getLogger(__name__)

CATEGORIES = ["shoes", "bags", "jackets", "shirts", "dresses", "watches", "hats", "jeans", "scarves", "sneakers"]
SINGULAR = {
    "shoes": "shoe", "bags": "bag", "jackets": "jacket", "shirts": "shirt", "dresses": "dress",
    "watches": "watch", "hats": "hat", "jeans": "jeans", "scarves": "scarf", "sneakers": "sneaker",
}
ADJECTIVES = ["Classic", "Urban", "Vintage", "Sport", "Linen", "Leather", "Canvas", "Wool", "Silk", "Denim", "Summer"]
REGIONS = ["north", "south", "east", "west", "centre"]
DEVICES = ["mobile", "desktop", "tablet"]
FEATURE_DIM = 8

DEMO_EXPERIMENT = "homepage-recs"
# The control arm first: the non-personalised baseline every learner must beat.
# The deep arms' embedding tables are sized for the demo's few thousand ids: the default 32k rows
# would make every checkpoint version ~4 MB and cut their training rate about 3x (docs/scaling.md).
_DEMO_TABLES = {"user_buckets": 4096, "item_buckets": 4096}
DEMO_ARMS = [
    ("popularity", "popularity", {}),
    ("ftrl", "ftrl_logreg", {}),
    ("deep", "deep_ctr", _DEMO_TABLES),
    ("bandit", "neural_bandit", _DEMO_TABLES),
    # Ranks on each shopper's session (recent clicks and impressions) and plans for the session's later clicks.
    ("session", "q_learning", _DEMO_TABLES),
]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str | None  # None: the account existed and kept its password
    role: str


@dataclass(frozen=True)
class DemoSummary:
    items_created: int
    users_created: int
    experiment_created: bool
    arms_created: int
    logins: list[DemoLogin]


def demo_items(*, n_items: int, seed: int) -> list[dict]:
    """The catalogue as plain dicts: each item's numeric features come from a seeded latent position."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_items, FEATURE_DIM))
    cats = rng.integers(0, len(CATEGORIES), size=n_items)
    prices = np.round(np.exp(rng.normal(3.5, 0.6, size=n_items)), 2)
    rows = []
    for i in range(n_items):
        category = CATEGORIES[cats[i]]
        rows.append(
            {
                "external_id": f"sku-{i:05d}",
                "title": f"{ADJECTIVES[i % len(ADJECTIVES)]} {SINGULAR[category]} {i}",
                "category": category,
                "price": float(prices[i]),
                "features": {"vec": [round(float(v), 4) for v in latent[i]]},
            }
        )
    return rows


def demo_users(*, n_users: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed + 1)
    return [
        {
            "external_id": f"shopper-{u:04d}",
            "attributes": {
                "age": int(rng.integers(18, 75)),
                "region": REGIONS[int(rng.integers(0, len(REGIONS)))],
                "device": DEVICES[int(rng.integers(0, len(DEVICES)))],
                "loyalty": round(float(rng.beta(2, 5)), 3),
            },
        }
        for u in range(n_users)
    ]


def _ensure_login(*, username: str, password: str | None, role: str, reset_password: bool) -> DemoLogin:
    """Creates the login when missing. An existing account is left exactly as it is unless ``reset_password``
    (development only): seeding must never become a way to take over a production account."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
    if not created and not reset_password:
        return DemoLogin(username=username, password=None, role=role)
    password = password or secrets.token_urlsafe(9)
    user.set_password(password)
    if role == "admin":
        user.is_staff = True
        user.is_superuser = True
        user.save()
        user.user_permissions.add(Permission.objects.get(codename="promote_arm"))
    else:
        user.is_staff = False
        user.is_superuser = False
        user.save()
    return DemoLogin(username=username, password=password, role=role)


@transaction.atomic
def demo_seed(
    *, n_items: int = 600, n_users: int = 300, seed: int = 7, admin_password: str | None, analyst_password: str | None,
    reset_passwords: bool = False,
) -> DemoSummary:
    existing_items = set(Item.objects.values_list("external_id", flat=True))
    new_items = [Item(**row) for row in demo_items(n_items=n_items, seed=seed) if row["external_id"] not in existing_items]
    Item.objects.bulk_create(new_items, batch_size=1000)

    existing_users = set(ShopUser.objects.values_list("external_id", flat=True))
    new_users = [ShopUser(**row) for row in demo_users(n_users=n_users, seed=seed) if row["external_id"] not in existing_users]
    ShopUser.objects.bulk_create(new_users, batch_size=1000)

    experiment, experiment_created = Experiment.objects.get_or_create(
        slug=DEMO_EXPERIMENT,
        defaults={
            "name": "Homepage recommendations",
            "salt": secrets.token_hex(8),
            "status": Experiment.Status.RUNNING,
            "started_at": timezone.now(),
        },
    )
    arms_created = 0
    for name, kind, params in DEMO_ARMS:
        arm, created = Arm.objects.get_or_create(
            experiment=experiment, name=name, defaults={"kind": kind, "params": dict(params), "weight": 1.0}
        )
        arms_created += int(created)
        if name == DEMO_ARMS[0][0] and experiment.control_arm_id is None:
            experiment.control_arm = arm
            experiment.save(update_fields=["control_arm"])

    logins = [
        _ensure_login(username="admin", password=admin_password, role="admin", reset_password=reset_passwords),
        _ensure_login(username="analyst", password=analyst_password, role="analyst", reset_password=reset_passwords),
    ]
    log.info(
        "demo_seeded items_created=%d users_created=%d experiment_created=%s arms_created=%d",
        len(new_items), len(new_users), experiment_created, arms_created,
    )
    return DemoSummary(
        items_created=len(new_items),
        users_created=len(new_users),
        experiment_created=experiment_created,
        arms_created=arms_created,
        logins=logins,
    )
