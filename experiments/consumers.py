"""WebSocket interface of the live dashboard: one Channels group per experiment.

Only ``experiments.realtime`` sends to these groups; this consumer relays what it gets.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from experiments import realtime


class ExperimentConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.group = realtime.group_name(self.slug)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def experiment_event(self, event: dict) -> None:
        await self.send_json(event["payload"])
