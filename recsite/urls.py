from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from experiments import health

# Only the auth views we use: no password-reset pages, which would e-mail through an SMTP server nobody configured
# (a public form that fails with a 500, and a way to send mail to our users).
auth_urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include(auth_urlpatterns)),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
    path("", include("experiments.urls")),
]
