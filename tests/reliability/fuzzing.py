"""Schemathesis driven by hand (its lazy pytest loader does not run under pytest 9): shared by the test and bench.

Every operation of the live OpenAPI document gets ``max_examples`` positive and
negative cases; each response goes through the checks below. Failures are
collected instead of raised, so one run reports every distinct problem (and
Hypothesis spends no time shrinking).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis import checks as core_checks
from schemathesis.specs.openapi import checks as openapi_checks

CHECKS = [
    core_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]

# How the API may refuse an invalid request: 413 (body over the limit) counts too; a 5xx never does.
REJECTION_STATUSES = ["400", "401", "403", "404", "405", "409", "413"]


@dataclass
class FuzzReport:
    calls: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)


def session_login(base_url: str, username: str, password: str) -> requests.Session:
    """A logged-in browser session (cookie + CSRF token), for the session endpoints."""
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=10)
    response = session.post(f"{base_url}/accounts/login/", timeout=10, allow_redirects=False,
                            data={"username": username, "password": password,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 302, response.text[:300]
    return session


def fuzz_api(base_url: str, *, max_examples: int, rng_seed: int = 0, timeout: float = 30.0,
             session: requests.Session | None = None, slug: str | None = None) -> FuzzReport:
    """Runs every operation of ``base_url``/api/v1/schema; returns the tally and the distinct failures.

    ``session``: send its cookies and CSRF token (a logged-in staff member); ``slug``: the experiment the
    ``{slug}`` path parameter names (else generated, so mostly unknown).
    """
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTION_STATUSES}}}
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/schema", config=config, timeout=10)
    report = FuzzReport()
    session = session or requests.Session()
    csrf = session.cookies.get("csrftoken")
    headers = {"X-CSRFToken": csrf} if csrf else None
    cookies = session.cookies.get_dict() or None
    seen: set[str] = set()

    def exercise(case, mode: GenerationMode) -> None:
        label = case.operation.label
        report.calls += 1
        # Explicit cookies: schemathesis would otherwise send a made-up ``sessionid`` for the session scheme.
        response = case.call(base_url=base_url, session=session, headers=headers, cookies=cookies, timeout=timeout)
        report.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis raises a group of check failures
            key = f"{label}:{response.status_code}:{type(exc).__name__}:{str(exc)[:120]}"
            if key not in seen:
                seen.add(key)
                report.failures.append(f"{label} [{mode.value}] {response.status_code}: {exc}"[:2000])

    for result in schema.get_all_operations():
        operation = result.ok()
        pinned = {"slug": slug} if slug and "{slug}" in operation.path else None
        # With the path pinned and the cookies sent as given, a body-less operation has nothing left to make invalid.
        nothing_to_negate = pinned is not None and "requestBody" not in operation.definition.raw
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[: 1 if nothing_to_negate else 2]:
            strategy = operation.as_strategy(mode, path_parameters=pinned) if pinned else operation.as_strategy(mode)
            _hypothesis_run(strategy, exercise, mode, max_examples, rng_seed)
    return report


def _hypothesis_run(strategy, exercise, mode: GenerationMode, max_examples: int, rng_seed: int) -> None:
    @seed(rng_seed)
    @settings(max_examples=max_examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        exercise(case, mode)

    try:
        run()
    except Unsatisfiable:
        # An operation with no inputs (GET schema, GET ping) has no invalid request to generate.
        if mode is not GenerationMode.NEGATIVE:
            raise
