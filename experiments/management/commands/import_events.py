"""``python manage.py import_events FILE``: bulk-load impressions and clicks from CSV with COPY.

The format is documented in :mod:`experiments.services.bulk`; ``-`` reads stdin.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from experiments.services.bulk import EventImportError, events_import


class Command(BaseCommand):
    help = "Import historical or replayed impressions (and clicks) from a CSV file, all or nothing."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV with a header row; '-' for stdin")

    def handle(self, *args, file: str, **options):
        try:
            if file == "-":
                result = events_import(stream=sys.stdin.buffer)
            else:
                with open(file, "rb") as stream:
                    result = events_import(stream=stream)
        except FileNotFoundError:
            raise CommandError(f"no such file: {file}") from None
        except EventImportError as exc:
            raise CommandError(f"import failed, nothing written: {exc}") from None
        self.stdout.write(
            f"imported {result.impressions} impressions, {result.clicks} clicks ({result.late_clicks} late), "
            f"{result.new_users} new users, {result.new_items} new items in {result.seconds:.2f}s "
            f"({result.impressions_per_s:,.0f} impressions/s)"
        )
