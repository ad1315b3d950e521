"""Builders and fixtures shared by the serving, API and event tests."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from experiments.models import Arm, Experiment, Item


@pytest.fixture
def serving_inline(settings):
    """The serving cache refreshes on every read: the test's transaction is invisible to a background thread."""
    settings.RECSITE = {**settings.RECSITE, "SERVING_REFRESH": "inline"}


def experiment_make(
    *, slug: str = "exp", salt: str = "salt-1", arms: tuple[tuple[str, str, float], ...] = (("a", "popularity", 1.0),
                                                                                          ("b", "popularity", 1.0)),
    status: str = "running",
) -> Experiment:
    experiment = Experiment.objects.create(slug=slug, salt=salt, status=status)
    for name, kind, weight in arms:
        Arm.objects.create(experiment=experiment, name=name, kind=kind, weight=weight)
    return experiment


def catalogue_make(*, n: int, prefix: str = "item") -> list[Item]:
    return Item.objects.bulk_create(
        [Item(external_id=f"{prefix}-{i:05d}", title=f"Item {i}", category=f"c{i % 5}", price=i % 50 + 1)
         for i in range(n)]
    )


def post_json(client, url: str, body: Any, **headers: str):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data, content_type="application/json", headers=headers)


def schema_check(document: dict, name: str, instance: Any) -> None:
    """Validates ``instance`` against components/schemas/``name`` of an OpenAPI 3.1 document."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "components": document["components"], "$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


@pytest.fixture
def serving_manual(settings):
    """Serving as one web process whose snapshot moves only on ``serving_cache.refresh()``; caches start empty.

    The user and assignment caches stay off unless a test sets ``RECSITE["USER_CACHE_TTL_S"]``, so every request
    reads the database as a process that has never seen the user would.
    """
    from experiments.services import shoppers
    from experiments.serving.assignments import assignment_cache
    from experiments.serving.cache import serving_cache

    settings.RECSITE = {**settings.RECSITE, "SERVING_REFRESH": "manual", "USER_CACHE_TTL_S": 0.0}

    def reset() -> None:
        serving_cache._state = None
        serving_cache.shadow_models = False  # a web process; the shadow drain turns it on
        shoppers._user_cache.clear()
        assignment_cache.clear()

    reset()
    yield serving_cache
    reset()
