"""Import the Open Bandit Dataset sample as users, items and impressions of a draft experiment.

Called by ``python manage.py import_obd``. The CSVs are read by the Django-free
``experiments.offline.obd``; this module only maps them onto the data model.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from django.db import connection, transaction

from experiments.models import AllocationEpoch, Arm, Click, Experiment, Impression, Item, ShopUser
from experiments.offline.obd import POLICIES, OBDLog, load_item_context, load_obd_log

log = logging.getLogger(__name__)

# Arms that only hold imported logs: no model can be built from this kind.
LOGGED_KIND_PREFIX = "logged:"
_REQUEST_NAMESPACE = uuid.UUID("6f0d7c8e-5b0a-4c53-9f38-0b5d0a0f0b6d")
_BATCH = 2000


def obd_item_external_id(*, campaign: str, item_id: int) -> str:
    return f"obd:{campaign}:item:{item_id}"


def obd_user_external_id(*, user_features: Sequence[str]) -> str:
    """OBD has no user ids: the four hashed user features together stand for a user (a cohort)."""
    digest = hashlib.blake2b("|".join(user_features).encode(), digest_size=8).hexdigest()
    return f"obd:user:{digest}"


def obd_request_id(*, campaign: str, policy: str, row_id: int) -> uuid.UUID:
    """Deterministic, so re-importing finds the rows it already wrote."""
    return uuid.uuid5(_REQUEST_NAMESPACE, f"{campaign}/{policy}/{row_id}")


@dataclass(frozen=True)
class ObdImportSummary:
    experiment: str
    items: int
    users: int
    impressions_created: dict[str, int]
    clicks_created: dict[str, int]


_ROLLUP_REBUILD_SQL = """
INSERT INTO experiments_armuserstat (arm_id, user_id, epoch, impressions, clicks)
SELECT i.arm_id, i.user_id, i.epoch, count(*), count(c.impression_id) FILTER (WHERE NOT c.late)
  FROM experiments_impression i
  LEFT JOIN experiments_click c ON c.impression_id = i.id
 WHERE i.arm_id = ANY(%s)
 GROUP BY i.arm_id, i.user_id, i.epoch
"""


def obd_import(
    *,
    campaign: str = "all",
    policies: Sequence[str] = POLICIES,
    slug: str | None = None,
    data_dir: Path | None = None,
) -> ObdImportSummary:
    """Map the Open Bandit Dataset onto users, items and impressions of a draft experiment (idempotent).

    One arm per logging policy (kind ``logged:<policy>``, paused: it can never
    serve). Every OBD row becomes one impression of its own request, keeping the
    logged position (1-based) and propensity; a click becomes a Click at the same
    instant. OBD items are imported inactive, so live serving never shows them.
    The arms' ``ArmUserStat`` rollup is rebuilt from the impressions in the same
    transaction.
    """
    logs = {policy: load_obd_log(policy, campaign, data_dir=data_dir) for policy in policies}
    catalogue = load_item_context(policies[0], campaign, data_dir=data_dir)
    slug = slug or f"obd-{campaign}"

    with transaction.atomic():
        Item.objects.bulk_create(
            [
                Item(
                    external_id=obd_item_external_id(campaign=campaign, item_id=int(item_id)),
                    title=f"OBD {campaign} item {int(item_id)}",
                    category=str(category[0])[:100],
                    features={
                        "obd_item_feature_0": float(numeric),
                        "obd_item_feature_2": str(category[1]),
                        "obd_item_feature_3": str(category[2]),
                    },
                    active=False,
                )
                for item_id, numeric, category in zip(
                    catalogue.item_id, catalogue.numeric, catalogue.categorical, strict=True
                )
            ],
            ignore_conflicts=True,
        )
        item_pk = dict(
            Item.objects.filter(external_id__startswith=f"obd:{campaign}:item:").values_list("external_id", "pk")
        )

        user_rows: dict[str, dict[str, str]] = {}
        for obd_log in logs.values():
            for row in obd_log.user_features:
                user_rows.setdefault(
                    obd_user_external_id(user_features=row),
                    {f"obd_user_feature_{j}": str(value) for j, value in enumerate(row)},
                )
        ShopUser.objects.bulk_create(
            [ShopUser(external_id=external_id, attributes=attrs) for external_id, attrs in user_rows.items()],
            ignore_conflicts=True,
        )
        user_pk = dict(ShopUser.objects.filter(external_id__in=list(user_rows)).values_list("external_id", "pk"))

        experiment, _ = Experiment.objects.get_or_create(
            slug=slug,
            defaults={"name": f"Open Bandit Dataset (ZOZOTOWN), campaign {campaign}", "salt": f"obd-{campaign}"},
        )
        arms = {
            policy: Arm.objects.get_or_create(
                experiment=experiment,
                name=policy,
                defaults={"kind": f"{LOGGED_KIND_PREFIX}{policy}", "status": Arm.Status.PAUSED, "weight": 0.0},
            )[0]
            for policy in policies
        }
        created, clicked = {}, {}
        for policy, obd_log in logs.items():
            created[policy], clicked[policy] = _impressions_import(
                obd_log=obd_log, experiment=experiment, arm=arms[policy], item_pk=item_pk, user_pk=user_pk
            )
        arm_ids = [arm.pk for arm in arms.values()]
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM experiments_armuserstat WHERE arm_id = ANY(%s)", [arm_ids])
            cursor.execute(_ROLLUP_REBUILD_SQL, [arm_ids])
        first = min(obd_log.timestamp.min() for obd_log in logs.values())
        AllocationEpoch.objects.get_or_create(
            experiment=experiment,
            epoch=0,
            defaults={
                "weights": {policy: 1.0 / len(policies) for policy in policies},
                "started_at": first.astype("datetime64[us]").item().replace(tzinfo=UTC),
            },
        )
    log.info("obd_import campaign=%s experiment=%s impressions=%s clicks=%s", campaign, slug, created, clicked)
    return ObdImportSummary(
        experiment=slug, items=len(item_pk), users=len(user_pk), impressions_created=created, clicks_created=clicked
    )


def _impressions_import(
    *, obd_log: OBDLog, experiment: Experiment, arm: Arm, item_pk: dict[str, int], user_pk: dict[str, int]
) -> tuple[int, int]:
    campaign, policy = obd_log.campaign, obd_log.policy
    request_ids = [obd_request_id(campaign=campaign, policy=policy, row_id=int(r)) for r in obd_log.row_id]
    existing = set(Impression.objects.filter(arm=arm).values_list("request_id", flat=True))
    new_rows = [i for i, request_id in enumerate(request_ids) if request_id not in existing]
    impressions, clicks = [], []
    for i in new_rows:
        served_at = obd_log.timestamp[i].astype("datetime64[us]").item().replace(tzinfo=UTC)
        impressions.append(
            Impression(
                request_id=request_ids[i],
                user_id=user_pk[obd_user_external_id(user_features=obd_log.user_features[i])],
                item_id=item_pk[obd_item_external_id(campaign=campaign, item_id=int(obd_log.item_id[i]))],
                experiment=experiment,
                arm=arm,
                position=int(obd_log.position[i]),
                score=0.0,
                propensity=float(obd_log.propensity[i]),
                model_version=0,
                served_at=served_at,
                epoch=0,
            )
        )
    Impression.objects.bulk_create(impressions, batch_size=_BATCH)
    for impression, i in zip(impressions, new_rows, strict=True):
        if obd_log.click[i]:
            clicks.append(Click.of(impression, clicked_at=impression.served_at))
    Click.objects.bulk_create(clicks, batch_size=_BATCH)
    return len(impressions), len(clicks)
