from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/dashboard/", permanent=False)),
    path("", include("experiments.dashboard.urls")),
    path("", include("experiments.shop.urls")),
    # Last: its catch-all answers JSON 404s for any other /api/ path.
    path("", include("experiments.api.urls")),
]
