"""Routes of ``/api/v1/``. Add new endpoints above the catch-all, which answers JSON 404s."""

from django.urls import path, re_path

from experiments.api import experiments, views

app_name = "api"

urlpatterns = [
    path("api/v1/recommendations", views.recommendations, name="recommendations"),
    path("api/v1/clicks", views.clicks, name="clicks"),
    path("api/v1/items", views.items, name="items"),
    path("api/v1/users", views.users, name="users"),
    path("api/v1/schema", views.schema, name="schema"),
    path("api/v1/ping", views.ping, name="ping"),
    path("api/v1/experiments/<slug:slug>/stats", experiments.experiment_stats, name="experiment-stats"),
    path("api/v1/experiments/<slug:slug>/promote", experiments.experiment_promote, name="experiment-promote"),
    # Keep last: any other path under /api/ is a JSON 404, never Django's HTML page.
    re_path(r"^api/", views.not_found, name="not-found"),
]
