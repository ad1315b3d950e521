"""WebSocket interface of the live dashboard: one Channels group per experiment.

Only ``experiments.realtime`` sends to these groups; this consumer relays what it gets.
On connect it sends the full dashboard state (latest stats + chart history), then
every event; a client that folds the events into the snapshot holds what a fresh
snapshot would give (``selectors.dashboard.dashboard_state_apply``).
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from experiments import realtime
from experiments.models import Experiment
from experiments.selectors import dashboard as dashboard_selectors


@database_sync_to_async
def _snapshot(slug: str) -> dict | None:
    experiment = Experiment.objects.filter(slug=slug).first()
    if experiment is None:
        return None
    return dashboard_selectors.dashboard_state(experiment=experiment)


class ExperimentConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.group = realtime.group_name(self.slug)
        # Join before reading the snapshot: an event published in between is then
        # delivered after the snapshot instead of being lost.
        await self.channel_layer.group_add(self.group, self.channel_name)
        snapshot = await _snapshot(self.slug)
        if snapshot is None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close(code=4404)
            return
        await self.accept()
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def experiment_event(self, event: dict) -> None:
        await self.send_json(event["payload"])
