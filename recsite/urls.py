from django.contrib import admin
from django.urls import include, path

from experiments import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("", include("experiments.urls")),
]
