"""A small seeded shop for training tests: items with a per-item click rate, users, and logged traffic.

Traffic is written the way serving writes it (impressions with positions and the
serving model version, clicks with their own ids), straight through the ORM so
tests control exactly which rows exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from experiments.models import Arm, Click, Experiment, Impression, Item, ShopUser


@dataclass
class World:
    experiment: Experiment
    arms: list[Arm]
    users: list[ShopUser]
    items: list[Item]
    ctr: np.ndarray  # true click rate per item (index into items)

    @property
    def arm(self) -> Arm:
        return self.arms[0]


def world_make(*, seed: int = 0, n_users: int = 40, n_items: int = 30, kinds: tuple[str, ...] = ("popularity",)) -> World:
    rng = np.random.default_rng(seed)
    experiment = Experiment.objects.create(slug=f"train-{seed}-{rng.integers(1 << 30)}", salt="s", status="running")
    arms = [
        Arm.objects.create(experiment=experiment, name=f"{kind}-{i}", kind=kind, params={})
        for i, kind in enumerate(kinds)
    ]
    users = ShopUser.objects.bulk_create(
        [ShopUser(external_id=f"u{seed}-{u}", attributes={"region": ["n", "s"][u % 2]}) for u in range(n_users)]
    )
    items = Item.objects.bulk_create(
        [
            Item(external_id=f"i{seed}-{i}", category=["a", "b", "c"][i % 3], features={"v": float(i % 5)})
            for i in range(n_items)
        ]
    )
    # Strongly item-dependent click rates, so that even the non-personalised arm has something to learn.
    ctr = 1.0 / (1.0 + np.exp(-(-2.2 + 1.8 * rng.normal(size=n_items))))
    return World(experiment, arms, users, items, ctr)


def traffic_log(
    world: World,
    *,
    arm: Arm | None = None,
    requests: int,
    k: int = 5,
    seed: int = 1,
    flip: bool = False,
    click: bool = True,
    model_version: int = 0,
) -> tuple[list[int], list[int]]:
    """``requests`` slates of ``k`` random items for random users; clicks drawn from the item CTRs.

    ``flip`` clicks exactly the impressions the world says are not clicked (poison labels).
    Returns (impression ids, click ids).
    """
    arm = arm or world.arm
    rng = np.random.default_rng(seed)
    now = timezone.now()
    rows = []
    for _ in range(requests):
        user = world.users[int(rng.integers(len(world.users)))]
        slate = rng.choice(len(world.items), size=k, replace=False)
        rid = uuid.UUID(int=int(rng.integers(1 << 62)))
        for pos, idx in enumerate(slate, start=1):
            rows.append(
                (
                    Impression(
                        request_id=rid,
                        user=user,
                        item=world.items[int(idx)],
                        experiment=world.experiment,
                        arm=arm,
                        position=pos,
                        score=0.0,
                        propensity=1.0 / len(world.items),
                        model_version=model_version,
                        served_at=now,
                    ),
                    float(world.ctr[int(idx)]),
                )
            )
    imps = Impression.objects.bulk_create([r[0] for r in rows])
    clicked = []
    if click:
        u = rng.random(len(rows))
        for (imp, p), ui in zip(rows, u, strict=True):
            hit = ui < p
            if hit != flip:
                clicked.append(imp)
    clicks = Click.objects.bulk_create([Click.of(imp, clicked_at=now) for imp in clicked])
    return [i.id for i in imps], [c.id for c in clicks]


def clicks_add(impression_ids: list[int], *, late: bool = False) -> list[int]:
    now = timezone.now()
    by_id = Impression.objects.in_bulk(impression_ids)
    return [c.id for c in Click.objects.bulk_create([Click.of(by_id[i], clicked_at=now, late=late) for i in impression_ids])]


def click_create(impression: Impression, **fields) -> Click:
    """One click on ``impression`` through the ORM, with the columns it copies (``Click.of``)."""
    click = Click.of(impression, **fields)
    click.save()
    return click
