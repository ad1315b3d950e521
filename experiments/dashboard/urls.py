from django.urls import path

from experiments.dashboard import traffic_design, views, workbench

app_name = "dashboard"

urlpatterns = [
    path("dashboard/", views.experiment_list, name="list"),
    path("dashboard/new/", workbench.experiment_new, name="new"),
    path("dashboard/layers/", traffic_design.layer_list, name="layers"),
    path("dashboard/<slug:slug>/", views.experiment_detail, name="detail"),
    path("dashboard/<slug:slug>/arms/new/", workbench.arm_new, name="arm_new"),
    path("dashboard/<slug:slug>/holdout/", traffic_design.experiment_holdout, name="holdout"),
    path("dashboard/<slug:slug>/webhook/", workbench.experiment_webhook, name="webhook"),
    path("dashboard/<slug:slug>/schedule/", workbench.experiment_schedule, name="schedule"),
    path("dashboard/<slug:slug>/segments/", workbench.segments, name="segments"),
    path("dashboard/<slug:slug>/candidates/", workbench.candidates, name="candidates"),
    path("dashboard/<slug:slug>/arms/<int:arm_id>/evaluate/", workbench.arm_evaluate, name="arm_evaluate"),
    path("dashboard/<slug:slug>/weights/", workbench.experiment_weights, name="weights"),
    path("dashboard/<slug:slug>/conclude/", workbench.experiment_conclude, name="conclude"),
    path("dashboard/<slug:slug>/start/", workbench.experiment_action, {"action": "start"}, name="start"),
    path("dashboard/<slug:slug>/stop/", workbench.experiment_action, {"action": "stop"}, name="stop"),
    path("dashboard/<slug:slug>/audit/", views.audit, name="audit"),
    path("dashboard/<slug:slug>/export.csv", views.export_csv, name="export_csv"),
    path("dashboard/<slug:slug>/export.json", views.export_json, name="export_json"),
    path("dashboard/<slug:slug>/policy/", views.policy, name="policy"),
    path("dashboard/<slug:slug>/arms/<int:arm_id>/model/", views.arm_model, name="arm_model"),
    path("dashboard/<slug:slug>/arms/<int:arm_id>/<str:action>/", views.arm_decide, name="arm_decide"),
    path("dashboard/<slug:slug>/decisions/<int:decision_id>/rollback/", views.decision_rollback, name="rollback"),
]
