from django.urls import path

from experiments.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("dashboard/", views.experiment_list, name="list"),
    path("dashboard/<slug:slug>/", views.experiment_detail, name="detail"),
    path("dashboard/<slug:slug>/audit/", views.audit, name="audit"),
    path("dashboard/<slug:slug>/export.csv", views.export_csv, name="export_csv"),
    path("dashboard/<slug:slug>/export.json", views.export_json, name="export_json"),
    path("dashboard/<slug:slug>/policy/", views.policy, name="policy"),
    path("dashboard/<slug:slug>/arms/<int:arm_id>/model/", views.arm_model, name="arm_model"),
    path("dashboard/<slug:slug>/arms/<int:arm_id>/<str:action>/", views.arm_decide, name="arm_decide"),
    path("dashboard/<slug:slug>/decisions/<int:decision_id>/rollback/", views.decision_rollback, name="rollback"),
]
