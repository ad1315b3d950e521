"""``python manage.py import_events FILE``: bulk-load impressions and clicks, or business events, from CSV with COPY.

The header says which file it is: one with a ``type`` column holds business events (views, add-to-carts,
purchases; :mod:`experiments.services.bulk_events`), any other impressions and their clicks
(:mod:`experiments.services.bulk`). ``-`` reads stdin. A progress bar counts the bytes COPY has read
(``--no-progress`` turns it off); either import is all or nothing.
"""

from __future__ import annotations

import csv
import os
import sys
from typing import IO

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments.services.bulk import EventImportError, events_import
from experiments.services.bulk_events import business_events_import


class _Progress:
    """A binary stream that moves a tqdm bar by the bytes read through it (COPY reads with ``read(size)``)."""

    def __init__(self, stream: IO[bytes], bar: tqdm) -> None:
        self._stream = stream
        self._bar = bar

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._bar.update(len(chunk))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        line = self._stream.readline(size)
        self._bar.update(len(line))
        return line


def is_business_events(header: str) -> bool:
    return "type" in {c.strip() for c in next(csv.reader([header]), [])}


class Command(BaseCommand):
    help = ("Import historical or replayed impressions (and clicks), or business events (a header with a 'type' "
            "column), from a CSV file, all or nothing.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV with a header row; '-' for stdin")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, file: str, no_progress: bool = False, **options):
        try:
            if file == "-":
                return self._import(sys.stdin.buffer, None, no_progress)
            with open(file, "rb") as stream:
                return self._import(stream, os.fstat(stream.fileno()).st_size, no_progress)
        except FileNotFoundError:
            raise CommandError(f"no such file: {file}") from None
        except EventImportError as exc:
            raise CommandError(f"import failed, nothing written: {exc}") from None

    def _import(self, raw: IO[bytes], size: int | None, no_progress: bool) -> None:
        with tqdm(total=size, unit="B", unit_scale=True, disable=no_progress, mininterval=1.0, dynamic_ncols=True,
                  file=sys.stderr) as bar:
            stream = _Progress(raw, bar)
            header = stream.readline().decode("utf-8-sig")
            if is_business_events(header):
                events = business_events_import(stream=stream, header=header)
            else:
                result = events_import(stream=stream, header=header)
        if is_business_events(header):
            self.stdout.write(
                f"imported {events.events} business events ({events.skipped} skipped: event_id already stored), "
                f"{events.attributions} attributions ({events.late} late), {events.new_users} new users, "
                f"{events.new_items} new items in {events.seconds:.2f}s"
            )
            return
        self.stdout.write(
            f"imported {result.impressions} impressions, {result.clicks} clicks ({result.late_clicks} late), "
            f"{result.new_users} new users, {result.new_items} new items in {result.seconds:.2f}s "
            f"({result.impressions_per_s:,.0f} impressions/s)"
        )
