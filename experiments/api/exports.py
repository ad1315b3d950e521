"""The per-user export for notebooks: ``GET /api/v1/experiments/<slug>/export/users.csv`` and ``users.parquet``.

Readable by whoever reads the results, like ``GET …/stats`` and the dashboard's CSV/JSON exports: any login
(session) or a staff token; anonymous is 401, an unknown experiment 404, both the API's JSON error. The rows and
the covariate are :mod:`experiments.selectors.exports`'; this module only encodes them, one chunk at a time, and
streams the file (docs/statistics.md §17 says how to load it and recompute the dashboard's numbers).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Generator
from contextlib import closing
from datetime import UTC

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from experiments.api.auth import operator_view
from experiments.api.experiments import _experiment
from experiments.csv_cells import csv_cell
from experiments.selectors import exports as export_selectors
from experiments.selectors.exports import USER_EXPORT_COLUMNS, USER_EXPORT_FIELDS, UserRow

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"


def _csv_row(row: UserRow) -> tuple:
    arm, user_id, epoch, n, c, tick_n, tick_c, first_at, pre_n, pre_c = row
    first = "" if first_at is None else first_at.astimezone(UTC).isoformat()
    return (csv_cell(arm), csv_cell(user_id), epoch, n, c, tick_n, tick_c, first, pre_n, pre_c)


def csv_chunks(chunks: Generator[list[UserRow]]) -> Generator[bytes]:
    """The header, then one block of lines per chunk of rows (text that looks like a formula gets an apostrophe).

    Closing this closes ``chunks`` too (and so ends the rows' transaction at once)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(USER_EXPORT_FIELDS)
    with closing(chunks):
        for chunk in chunks:
            writer.writerows(_csv_row(row) for row in chunk)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def arrow_schema(metadata: dict[str, str] | None = None):
    """The export's Arrow schema (pyarrow is imported here, not when the web process starts)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
             "timestamp": pa.timestamp("us", tz="UTC")}
    fields = [pa.field(name, types[kind], nullable=name == "first_exposure_at") for name, kind in USER_EXPORT_COLUMNS]
    return pa.schema(fields, metadata=metadata)


class _ChunkSink:
    """A write-only file for ``pyarrow.parquet.ParquetWriter`` whose bytes are taken out after each row group."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        self.closed = False

    def write(self, data) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


def parquet_chunks(chunks: Generator[list[UserRow]], *, metadata: dict[str, str]) -> Generator[bytes]:
    """One Parquet row group per chunk of rows, written as it comes; the footer last (an empty file is valid).

    Closing this closes ``chunks`` too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(metadata)
    sink = _ChunkSink()
    with closing(chunks), pq.ParquetWriter(sink, schema) as writer:
        for chunk in chunks:
            columns = zip(*chunk, strict=True)
            arrays = [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            yield sink.take()
    yield sink.take()


async def _on_request_thread(chunks: Generator[bytes]) -> AsyncIterator[bytes]:
    """Under ASGI: each chunk is made on the request's own thread (its database connection and transaction), so
    the file streams instead of being collected first; the connection is closed at the end as
    ``recsite.middleware.CloseConnectionsUnderASGI`` does for every other sync view."""
    step = sync_to_async(next, thread_sensitive=True)
    try:
        while (chunk := await step(chunks, None)) is not None:
            if chunk:
                yield chunk
    finally:
        await sync_to_async(_finish, thread_sensitive=True)(chunks)


def _finish(chunks: Generator[bytes]) -> None:
    chunks.close()  # ends the export's transaction if the client went away half-way
    for connection in connections.all(initialized_only=True):
        connection.close()


def streaming_file(request: HttpRequest, chunks: Generator[bytes], *, content_type: str,
                   filename: str) -> StreamingHttpResponse:
    content = _on_request_thread(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@operator_view(methods=["GET"], staff=False)
def experiment_users_csv(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    chunks = export_selectors.experiment_user_row_chunks(experiment=experiment)
    return streaming_file(request, csv_chunks(chunks), content_type=CSV_CONTENT_TYPE,
                          filename=f"{experiment.slug}-users.csv")


@operator_view(methods=["GET"], staff=False)
def experiment_users_parquet(request: HttpRequest, user, body: dict, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    chunks = export_selectors.experiment_user_row_chunks(experiment=experiment)
    metadata = {"recsite.experiment": experiment.slug, "recsite.exported_at": timezone.now().isoformat(),
                "recsite.docs": "docs/statistics.md section 17"}
    return streaming_file(request, parquet_chunks(chunks, metadata=metadata), content_type=PARQUET_CONTENT_TYPE,
                          filename=f"{experiment.slug}-users.parquet")
