# syntax=docker/dockerfile:1
# One image for the three authgate processes; docker-compose.yml picks the command:
#   python -m auth_svc | python -m profile_svc |
#   gunicorn --config python:gateway.gunicorn_conf 'gateway.wsgi:create_app_from_env()'
# No secrets in here: database URLs, passwords and keys come at run time.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv

# Only what the install needs; every dependency is pinned by constraints.txt.
COPY pyproject.toml constraints.txt README.md ./
COPY generated ./generated
COPY authgate_common ./authgate_common
COPY auth_svc ./auth_svc
COPY profile_svc ./profile_svc
COPY gateway ./gateway
# A regular (not editable) install: generated/ becomes the installed `authgate` package.
RUN /opt/venv/bin/pip install -c constraints.txt .


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    AUTH_KEYS_DIR=/var/lib/authgate/keys \
    GATEWAY_HOST=0.0.0.0

# A fixed non-root uid/gid, so volume ownership and runAsNonRoot checks are predictable.
# The keys directory exists in the image so that a named volume mounted there
# starts out owned by this user with mode 0700.
RUN groupadd --system --gid 10001 authgate \
    && useradd --system --uid 10001 --gid authgate --home-dir /var/lib/authgate \
        --no-create-home --shell /usr/sbin/nologin authgate \
    && install -d -o authgate -g authgate -m 0750 /var/lib/authgate \
    && install -d -o authgate -g authgate -m 0700 /var/lib/authgate/keys

COPY --from=build /opt/venv /opt/venv

# Relative defaults (sqlite:///var/auth.db) land under this writable directory.
WORKDIR /var/lib/authgate
USER 10001:10001

EXPOSE 8080 50051 50052 9101 9102

# gateway/gunicorn_conf.py reads GATEWAY_HOST, GATEWAY_PORT, GATEWAY_WORKERS, GATEWAY_THREADS, ...
CMD ["gunicorn", "--config", "python:gateway.gunicorn_conf", "gateway.wsgi:create_app_from_env()"]
