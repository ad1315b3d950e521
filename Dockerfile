# The one image of every recsite process (docker-compose.yml picks the command). docs/operations.md.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY manage.py ./
COPY recsite recsite
COPY experiments experiments
COPY models models
COPY templates templates
COPY static static
# Static files are collected at build time; the web processes serve them (RECSITE_SERVE_STATIC, the default).
# /metrics is where docker-compose.yml mounts the shared Prometheus volume: a new volume takes this owner.
RUN RECSITE_DEV=1 python manage.py collectstatic --noinput -v 0 && useradd --uid 10001 recsite \
    && mkdir -p var/metrics /metrics && chown -R recsite var /metrics
USER recsite
EXPOSE 8000
CMD ["gunicorn", "-c", "recsite/gunicorn_conf.py", "recsite.asgi:application"]
