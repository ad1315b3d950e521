"""ASGI entry points: HTTP goes to Django, WebSockets to the Channels router.

``application`` is what servers run; ``fast_application`` always has the fast event path
(``experiments.api.asgi``) in front and ``django_application`` never, for side-by-side benchmarks.
"""

import os

# One BLAS thread per serving process: its NumPy products are small (a user against the catalogue, bench/
# profile_serving.py), and OpenBLAS's own thread pool in each of several processes on the same cores made the
# ranking's tail 4x slower under load (neural_bandit p99 7.8 ms → 1.8 ms). Before anything imports NumPy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from django.core.asgi import get_asgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
# Django must be set up before the routing module imports consumers and models.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from experiments.api.asgi import api_fast_path  # noqa: E402
from experiments.routing import websocket_urlpatterns  # noqa: E402
from experiments.serving.startup import warm_on_start  # noqa: E402

# Daphne serves static/ itself unless a proxy or CDN in front does (RECSITE_SERVE_STATIC=0).
http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.RECSITE_SERVE_STATIC else django_asgi_app

django_application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
# The hot event endpoints skip Django's middleware stack (docs/serving.md); RECSITE_API_FAST_PATH=0 turns it off.
# Both start warming every arm when the server starts; /healthz says "warming" until it is done.
fast_application = warm_on_start(api_fast_path(django_application))
django_application = warm_on_start(django_application)
application = fast_application if settings.RECSITE_API_FAST_PATH else django_application
