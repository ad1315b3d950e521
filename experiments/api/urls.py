"""Routes of ``/api/v1/``. Add new endpoints above the catch-all, which answers JSON 404s."""

from django.urls import path, re_path

from experiments.api import experiments, exports, views

app_name = "api"

urlpatterns = [
    path("api/v1/recommendations", views.recommendations, name="recommendations"),
    path("api/v1/clicks", views.clicks, name="clicks"),
    path("api/v1/events", views.events, name="events"),
    path("api/v1/items", views.items, name="items"),
    path("api/v1/users", views.users, name="users"),
    path("api/v1/schema", views.schema, name="schema"),
    path("api/v1/ping", views.ping, name="ping"),
    path("api/v1/experiments", experiments.experiments, name="experiments"),
    path("api/v1/layers", experiments.layers, name="layers"),
    path("api/v1/experiments/<slug:slug>/stats", experiments.experiment_stats, name="experiment-stats"),
    path("api/v1/experiments/<slug:slug>/export/users.csv", exports.experiment_users_csv,
         name="experiment-export-users-csv"),
    path("api/v1/experiments/<slug:slug>/export/users.parquet", exports.experiment_users_parquet,
         name="experiment-export-users-parquet"),
    path("api/v1/experiments/<slug:slug>/promote", experiments.experiment_promote, name="experiment-promote"),
    path("api/v1/experiments/<slug:slug>/arms", experiments.experiment_arms, name="experiment-arms"),
    path("api/v1/experiments/<slug:slug>/start", experiments.experiment_start, name="experiment-start"),
    path("api/v1/experiments/<slug:slug>/stop", experiments.experiment_stop, name="experiment-stop"),
    path("api/v1/experiments/<slug:slug>/webhook", experiments.experiment_webhook, name="experiment-webhook"),
    path("api/v1/experiments/<slug:slug>/conclude", experiments.experiment_conclude, name="experiment-conclude"),
    path("api/v1/experiments/<slug:slug>/holdout", experiments.experiment_holdout, name="experiment-holdout"),
    path("api/v1/experiments/<slug:slug>/holdout/end", experiments.experiment_holdout_end,
         name="experiment-holdout-end"),
    path("api/v1/experiments/<slug:slug>/weights", experiments.experiment_weights, name="experiment-weights"),
    path("api/v1/experiments/<slug:slug>/arms/<str:arm>/pause", experiments.arm_pause, name="arm-pause"),
    path("api/v1/experiments/<slug:slug>/arms/<str:arm>/evaluate", experiments.arm_evaluate, name="arm-evaluate"),
    path("api/v1/experiments/<slug:slug>/arms/<str:arm>/shadow", experiments.arm_shadow, name="arm-shadow"),
    path("api/v1/experiments/<slug:slug>/arms/<str:arm>/resume", experiments.arm_resume, name="arm-resume"),
    # Keep last: any other path under /api/ is a JSON 404, never Django's HTML page.
    re_path(r"^api/", views.not_found, name="not-found"),
]
