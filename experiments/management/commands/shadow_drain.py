"""``manage.py shadow_drain``: rank the shadow arms' queue (experiments/services/shadow.py) at the lowest CPU priority.

The light worker starts it as its child (``--parent``: it exits when that process is gone); it can also run on
its own, on machines of its own, as many as needed (each request is popped once).
"""

from __future__ import annotations

import os
import signal
import threading

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Rank the shadow arms' queue of served requests, at the lowest CPU priority, until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--parent", type=int, default=None, help="exit when this process id is gone")

    def handle(self, *args, **opts):
        from experiments.services.shadow import drain_loop, lowest_priority

        lowest_priority()
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        parent = opts["parent"]
        drain_loop(stop, alive=(lambda: os.getppid() == parent) if parent else None)
