from django.urls import path

from experiments import consumers

websocket_urlpatterns = [
    path("ws/experiments/<slug:slug>/", consumers.ExperimentConsumer.as_asgi()),
]
