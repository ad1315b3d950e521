"""``python manage.py simulate``: shoppers with hidden preferences drive the public HTTP API.

Example: ``simulate --base-url http://127.0.0.1:8000 --users 500 --rate 50 --duration 0 --seed 1``
(``--duration 0`` runs until Ctrl-C or SIGTERM, then prints the report). The
shoppers and, unless ``--items 0``, a simulated catalogue are first upserted
through ``POST /api/v1/users`` and ``/api/v1/items``; items already in the
catalogue are served too and get hidden preferences from their ids.
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments.simulation.runner import Simulation, SimulationConfig, SimulationError, SimulationReport
from experiments.simulation.world import WORLDS


class Command(BaseCommand):
    help = ("Simulated shoppers over HTTP; reports per-arm impressions, clicks, CTR, oracle CTR, regret, purchases "
            "and revenue.")

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--users", type=int, default=200, help="number of simulated shoppers")
        parser.add_argument("--rate", type=float, default=20.0, help="recommendation requests per second (0 = max)")
        parser.add_argument("--duration", type=float, default=30.0, help="seconds; 0 = until Ctrl-C")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--drift-at", type=float, default=None, help="seconds after start when tastes change")
        parser.add_argument("--json", dest="json_path", default=None, help="write the report as JSON here")
        parser.add_argument("--items", type=int, default=200, help="simulated items to upsert (0 = use the catalogue)")
        parser.add_argument("--k", type=int, default=10)
        parser.add_argument("--concurrency", type=int, default=16, help="parallel keep-alive clients")
        parser.add_argument("--experiment", default=None, help="experiment slug (default: the running one)")
        parser.add_argument("--prefix", default="sim-", help="prefix of the simulated user and item ids")
        parser.add_argument("--api-key", default=None, help="defaults to RECSITE_API_KEY")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--world", choices=sorted(WORLDS), default="latent",
                            help="latent: features are noisy views of the tastes; ids: features are noise, "
                                 "only user and item ids tell shoppers apart")
        parser.add_argument("--affinity", type=float, default=None,
                            help="weight of each shopper's own taste in a click's log-odds (default 3.2); the "
                                 "higher, the more a personal ranking can beat the best single slate")

    def handle(self, *args, **opts):
        if opts["users"] < 1:
            raise CommandError("--users must be at least 1")
        if opts["affinity"] is not None and not (math.isfinite(opts["affinity"]) and opts["affinity"] >= 0):
            raise CommandError(f"--affinity must be a finite number >= 0, not {opts['affinity']}")
        config = SimulationConfig(
            base_url=opts["base_url"], users=opts["users"], rate=opts["rate"], duration=opts["duration"],
            seed=opts["seed"], drift_at=opts["drift_at"], k=opts["k"], items=opts["items"],
            concurrency=max(1, opts["concurrency"]), experiment=opts["experiment"],
            api_key=opts["api_key"] if opts["api_key"] is not None else settings.RECSITE.get("API_KEY", ""),
            prefix=opts["prefix"], world=opts["world"], affinity=opts["affinity"],
        )
        simulation = Simulation(config)
        previous = signal.signal(signal.SIGTERM, lambda *_: simulation.stop.set())
        try:
            simulation.sync()
            total = int(config.duration * config.rate) if config.duration > 0 and config.rate > 0 else None
            with tqdm(total=total, unit="req", disable=opts["no_progress"], mininterval=1.0,
                      dynamic_ncols=True) as bar:

                def tick(report: SimulationReport) -> None:
                    bar.update(report.requests - bar.n)
                    bar.set_postfix_str(" ".join(f"{n}:{t.clicks / max(t.impressions, 1):.3f}/${t.revenue:.0f}"
                                                 for n, t in sorted(report.arms.items())), refresh=False)

                report = simulation.run(on_tick=tick)
                tick(report)
        except SimulationError as exc:
            raise CommandError(str(exc)) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(report.table())
        if opts["json_path"]:
            Path(opts["json_path"]).write_text(json.dumps(report.as_dict(), indent=2))
