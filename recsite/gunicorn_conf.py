"""Gunicorn for recsite: one uvicorn worker process per core, all on one port, for HTTP and WebSocket.

    gunicorn -c recsite/gunicorn_conf.py recsite.asgi:application

The master binds the port and forks the workers before any of them imports Django or TensorFlow (no
``preload_app``: TensorFlow must never run in a child forked after its parent ran a TF op). Each worker is
a full serving process: its own serving cache (it polls for new checkpoints and configuration), its own
database threads, and the Channels layer on Redis, so the dashboard's live stats reach a browser whichever
worker holds its WebSocket. A worker's ASGI lifespan start-up loads and warms every arm before it
accepts connections (experiments/serving/startup.py), so a warming worker takes no traffic from its warm
siblings, and ``kill -HUP <master>`` replaces the workers while the old ones finish their requests.

Environment: ``WEB_CONCURRENCY`` (workers; default: the cores this process may run on), ``WEB_BIND``
(default ``127.0.0.1:8000``), ``WEB_TIMEOUT_S`` (default 120: the warm-up, TensorFlow's import included,
must fit in it, since a worker only reports to the master once it serves).
"""

import os


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# The workers inherit this before they import NumPy (recsite/asgi.py says why: one BLAS thread per process).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or _cores())
worker_class = "uvicorn_worker.UvicornWorker"
timeout = int(os.environ.get("WEB_TIMEOUT_S", "120"))
graceful_timeout = 20
keepalive = 5
# One log line per request is the load balancer's job; errors and the start-up still log.
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("WEB_LOG_LEVEL", "info")
proc_name = "recsite-web"
# Gunicorn's control socket sits at one fixed path per user: two servers on one machine would share it.
control_socket_disable = True
