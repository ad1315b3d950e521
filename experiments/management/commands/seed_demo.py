import os

from django.conf import settings
from django.core.management.base import BaseCommand

from experiments.services.demo import demo_seed


class Command(BaseCommand):
    help = ("Creates the demo catalogue, shoppers, a running four-arm experiment and the admin/analyst logins "
            "(idempotent). Outside development (RECSITE_DEV=0) existing logins keep their passwords and new ones get "
            "random passwords unless RECSITE_ADMIN_PASSWORD / RECSITE_ANALYST_PASSWORD are set.")

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=600)
        parser.add_argument("--users", type=int, default=300)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, **opts):
        if opts["items"] < 1 or opts["users"] < 1:
            self.stderr.write("--items and --users must be positive")
            raise SystemExit(2)
        dev = bool(settings.RECSITE_DEV)
        summary = demo_seed(
            n_items=opts["items"],
            n_users=opts["users"],
            seed=opts["seed"],
            admin_password=os.environ.get("RECSITE_ADMIN_PASSWORD") or ("recsite-admin" if dev else None),
            analyst_password=os.environ.get("RECSITE_ANALYST_PASSWORD") or ("recsite-analyst" if dev else None),
            reset_passwords=dev,
        )
        self.stdout.write(
            f"items created: {summary.items_created}, users created: {summary.users_created}, "
            f"experiment created: {summary.experiment_created}, arms created: {summary.arms_created}"
        )
        for login in summary.logins:
            shown = login.password if login.password is not None else "(existing account: password unchanged)"
            self.stdout.write(f"login ({login.role}): {login.username} / {shown}")
