"""The per-user export (``/api/v1/experiments/<slug>/export/users.csv`` and ``.parquet``) through the URL stack:
the file, its access, and the dashboard's CTR and lift intervals recomputed from it with the pure stats code."""

import asyncio
import io
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.test import Client

from experiments.api.exports import arrow_schema, csv_chunks, parquet_chunks
from experiments.api.openapi import openapi_document
from experiments.models import Experiment
from experiments.selectors import exports as export_selectors
from experiments.selectors.exports import USER_EXPORT_FIELDS
from experiments.services import decisions
from experiments.services import stats_tick as tick_services
from experiments.services.clicks import click_record
from experiments.services.events import recommendation_serve
from experiments.services.tokens import api_token_issue
from experiments.stats import ClusteredRatioSummary, ctr_estimate, relative_lift, stratified_ctr
from tests.experiments.stats_support import add_rollup, fast_passwords, make_experiment, make_login  # noqa: F401
from tests.support.serving import catalogue_make, experiment_make, schema_check

CSV_PATH = "/api/v1/experiments/{slug}/export/users.csv"
PARQUET_PATH = "/api/v1/experiments/{slug}/export/users.parquet"
DOC = openapi_document()


def analyst() -> Client:
    client = Client()
    client.force_login(make_login(username="ana", promoter=False))
    return client


def csv_table(response) -> pa.Table:
    """The CSV read back with the export's own column types (ids stay text, the time is UTC)."""
    data = b"".join(response.streaming_content)
    schema = arrow_schema()
    return pa_csv.read_csv(io.BytesIO(data), convert_options=pa_csv.ConvertOptions(
        column_types={f.name: f.type for f in schema}, strings_can_be_null=False))


def parquet_table(response) -> pa.Table:
    return pq.read_table(io.BytesIO(b"".join(response.streaming_content)))


@pytest.fixture
def small(db):
    """control: 3 users (one in two periods); treat: 2 users."""
    experiment, (control, treat) = make_experiment(slug="small")
    add_rollup(arm=control, impressions=[10, 20, 30], clicks=[1, 2, 3])
    add_rollup(arm=control, impressions=[5], clicks=[4], epoch=1)
    add_rollup(arm=treat, impressions=[10, 10], clicks=[5, 4])
    tick_services.stats_tick(experiment_id=experiment.id)
    return experiment


def test_the_csv_has_a_row_per_arm_user_and_period_and_an_attachment_name(small):
    response = analyst().get(CSV_PATH.format(slug="small"))
    table = csv_table(response)

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="small-users.csv"'
    assert tuple(table.column_names) == USER_EXPORT_FIELDS
    assert table.column("arm").to_pylist() == ["control"] * 4 + ["treat"] * 2
    assert table.column("epoch").to_pylist() == [0, 0, 0, 1, 0, 0]
    assert table.column("impressions").to_pylist() == [10, 20, 30, 5, 10, 10]
    assert table.column("tick_clicks").to_pylist() == [1, 2, 3, 4, 5, 4]
    assert table.column("pre_impressions").to_pylist() == [0] * 6


def test_csv_and_parquet_read_back_to_the_same_table(small):
    client = analyst()

    from_csv = csv_table(client.get(CSV_PATH.format(slug="small")))
    response = client.get(PARQUET_PATH.format(slug="small"))
    from_parquet = parquet_table(response)

    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"] == 'attachment; filename="small-users.parquet"'
    assert from_parquet.schema.metadata[b"recsite.experiment"] == b"small"
    assert from_parquet.num_rows == 6
    assert from_parquet.equals(from_csv.cast(from_parquet.schema))


def test_an_experiment_without_rows_is_a_header_and_an_empty_parquet_file(db):
    Experiment.objects.create(slug="bare", salt="salt-bare")
    client = analyst()

    csv_file = client.get(CSV_PATH.format(slug="bare"))
    parquet = parquet_table(client.get(PARQUET_PATH.format(slug="bare")))

    assert b"".join(csv_file.streaming_content).decode() == ",".join(USER_EXPORT_FIELDS) + "\n"
    assert (parquet.num_rows, tuple(parquet.column_names)) == (0, USER_EXPORT_FIELDS)


def test_text_that_looks_like_a_formula_is_defused_in_the_csv_only(db):
    experiment, (control,) = make_experiment(slug="hostile", arms=("control",))
    add_rollup(arm=control, impressions=[3], clicks=[1], prefix="=HYPERLINK(1)")
    client = analyst()

    from_csv = csv_table(client.get(CSV_PATH.format(slug="hostile")))
    from_parquet = parquet_table(client.get(PARQUET_PATH.format(slug="hostile")))

    assert from_csv.column("user_id").to_pylist()[0].startswith("'=HYPERLINK(1)")
    assert from_parquet.column("user_id").to_pylist()[0].startswith("=HYPERLINK(1)")


@pytest.mark.parametrize("encode", [csv_chunks, lambda rows: parquet_chunks(rows, metadata={})])
def test_a_download_abandoned_half_way_ends_the_rows_transaction(small, encode):
    outside = len(connection.atomic_blocks)
    stream = encode(export_selectors.experiment_user_row_chunks(experiment=small, chunk_rows=2))

    next(stream)
    inside = len(connection.atomic_blocks)
    stream.close()

    assert (inside, len(connection.atomic_blocks)) == (outside + 1, outside)


@pytest.mark.parametrize("path", [CSV_PATH, PARQUET_PATH])
def test_an_unknown_experiment_is_a_json_404(db, path):
    response = analyst().get(path.format(slug="nope"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "experiment_not_found"
    schema_check(DOC, "Error", response.json())


@pytest.mark.parametrize("path", [CSV_PATH, PARQUET_PATH])
def test_anonymous_is_refused_as_by_the_stats_endpoint(small, path):
    anonymous = Client()

    export = anonymous.get(path.format(slug="small"))
    stats = anonymous.get("/api/v1/experiments/small/stats")

    assert (export.status_code, export.json()) == (stats.status_code, stats.json())
    assert export.status_code == 401


def test_other_methods_are_405(small):
    response = analyst().post(CSV_PATH.format(slug="small"))

    assert (response.status_code, response["Allow"]) == (405, "GET")


def test_the_schema_documents_both_files(db):
    for path, media in ((CSV_PATH, "text/csv"), (PARQUET_PATH, "application/vnd.apache.parquet")):
        operation = DOC["paths"][path]["get"]
        assert media in operation["responses"]["200"]["content"]
        assert {"401", "404"} <= set(operation["responses"])


# ------------------------------------------------------------------- the dashboard's numbers, from the file


def serve_and_click(users: list[str], slug: str, rng: np.random.Generator) -> None:
    """Every user asks 1–4 times for 3 items and clicks each with a probability of their own."""
    for user in users:
        propensity = rng.uniform(0.05, 0.6)
        for _ in range(int(rng.integers(1, 5))):
            served = recommendation_serve(user_id=user, k=3, experiment_slug=slug)
            for item in served.items:
                if rng.random() < propensity:
                    click_record(impression_id=item.impression_id)


def summary(rows: dict, arm: str, epoch: int | None = None) -> ClusteredRatioSummary:
    """The six sums of one arm (of one period) from the file: each row is one cluster, as on the dashboard."""
    mask = (rows["arm"] == arm) & (rows["tick_impressions"] > 0)
    if epoch is not None:
        mask &= rows["epoch"] == epoch
    return ClusteredRatioSummary.from_users(rows["tick_impressions"][mask], rows["tick_clicks"][mask])


def clipped(estimate, confidence: float) -> list[float]:
    lo, hi = estimate.interval(confidence)
    return [max(lo, 0.0), min(hi, 1.0)]


@pytest.mark.django_db(transaction=True)  # each statement commits, so each impression has its own served_at
def test_the_dashboards_intervals_are_recomputed_exactly_from_the_export(serving_manual):
    catalogue_make(n=8)
    experiment = experiment_make(slug="recompute", arms=(("a", "popularity", 1.0), ("b", "popularity", 1.0)))
    experiment_make(slug="warmup", arms=(("w", "popularity", 1.0),))
    a, b = experiment.arms.order_by("id")
    experiment.control_arm = a
    experiment.save(update_fields=["control_arm"])
    boss = make_login(username="boss", promoter=True)
    rng = np.random.default_rng(18)
    regulars = [f"r-{i}" for i in range(30)]
    serve_and_click(regulars[:12], "warmup", rng)  # history before they ever see the experiment
    serve_and_click(regulars, "recompute", rng)
    decisions.arm_reweight(arm=b, weight=3.0, user=boss, reason="ramp b")  # a second allocation period
    serving_manual.refresh()
    serve_and_click(regulars[::2] + [f"n-{i}" for i in range(20)], "recompute", rng)
    tick_services.stats_tick(experiment_id=experiment.id)
    client = analyst()

    stats = client.get("/api/v1/experiments/recompute/stats").json()
    table = parquet_table(client.get(PARQUET_PATH.format(slug="recompute")))
    rows = {name: np.asarray(table.column(name).to_pylist()) for name in ("arm", "epoch", "tick_impressions",
                                                                          "tick_clicks")}
    confidence = 1.0 - stats["alpha"]

    by_arm = {row["arm"]: row for row in stats["arms"]}
    for arm in ("a", "b"):
        pooled = ctr_estimate(summary(rows, arm))
        assert by_arm[arm]["users"] == summary(rows, arm).n_users
        assert by_arm[arm]["ctr"] == pytest.approx(pooled.value, abs=1e-12)
        assert [by_arm[arm]["ctr_ci_low"], by_arm[arm]["ctr_ci_high"]] == pytest.approx(
            clipped(pooled, confidence), abs=1e-9)
    # The lift is stratified by period: each period weighted by the impressions of every arm in it.
    epochs = sorted(set(rows["epoch"].tolist()))
    weights = [float(rows["tick_impressions"][rows["epoch"] == e].sum()) for e in epochs]
    stratified = {arm: stratified_ctr([summary(rows, arm, e) for e in epochs], weights) for arm in ("a", "b")}
    lift = relative_lift(stratified["b"], stratified["a"])
    assert epochs == [0, 1]
    assert [by_arm["b"]["lift_ci_low"], by_arm["b"]["lift_ci_high"]] == pytest.approx(
        list(lift.interval(confidence)), abs=1e-9)
    # The covariate of the warmed-up users is their traffic in the other experiment (3 items a request).
    pre = dict(zip(table.column("user_id").to_pylist(), table.column("pre_impressions").to_pylist(), strict=True))
    assert all(pre[u] > 0 and pre[u] % 3 == 0 for u in regulars[:12])
    assert all(pre[u] == 0 for u in regulars[12:])


@pytest.fixture
def committed(transactional_db):
    """A committed experiment of 450 rows and a staff token: the ASGI handler reads on a thread of its own."""
    experiment, (control, treat) = make_experiment(slug="live")
    add_rollup(arm=control, impressions=list(range(1, 401)), clicks=[0] * 400)
    add_rollup(arm=treat, impressions=[4] * 50, clicks=[1] * 50)
    return api_token_issue(user=make_login(username="reader", promoter=True), name="notebook")[1]


async def asgi_get(path: str, token: str) -> tuple[int, dict, list[bytes]]:
    """One GET through Django's ASGI handler, as Daphne or uvicorn would: (status, headers, body messages)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    sent: list[dict] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never goes away

    async def send(message):
        sent.append(message)

    await ASGIHandler()(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.lower(): v for k, v in start["headers"]}, [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]


@pytest.mark.asyncio
async def test_under_asgi_the_file_streams_chunk_by_chunk_from_the_request_thread(committed, monkeypatch):
    monkeypatch.setattr(export_selectors, "CHUNK_ROWS", 100)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, headers, bodies = await asgi_get(CSV_PATH.format(slug="live"), committed)
        _, _, parquet = await asgi_get(PARQUET_PATH.format(slug="live"), committed)

    lines = b"".join(bodies).decode().splitlines()
    assert (status, headers[b"content-type"]) == (200, b"text/csv; charset=utf-8")
    assert (len(lines), lines[0]) == (1 + 450, ",".join(USER_EXPORT_FIELDS))
    assert len([b for b in bodies if b]) >= 5  # the header with the first 100 rows, then 100 rows at a time
    assert [str(w.message) for w in caught if "iterators" in str(w.message)] == []  # not collected first
    assert pq.read_table(io.BytesIO(b"".join(parquet))).num_rows == 450
