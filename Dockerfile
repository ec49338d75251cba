# syntax=docker/dockerfile:1
#
# gfe-proxy: a local Google Front End in front of an App Engine app directory.
#
#   docker build -t gfe-proxy .
#   docker run --rm -p 8080:8080 -p 8443:8443 -p 8000:8000 gfe-proxy            # the bundled demo
#   docker run --rm -p 8080:8080 -p 8443:8443 -p 8000:8000 \
#              -v "$PWD/myapp:/app:ro" gfe-proxy                                 # your app
#   docker run --rm -v "$PWD/myapp:/app:ro" gfe-proxy gfe-proxy check /app       # validate only
#
# Then: http://localhost:8080/ (app), https://localhost:8443/ (self-signed), and the admin
# page on http://localhost:8000/. Every `gfe-proxy serve` flag is also an env var GFE_<NAME>
# (e.g. -e GFE_COMPRESSION=br,gzip -e GFE_REQUEST_TIMEOUT=30).
#
# Apps with dependencies: extend the image and install them where gunicorn can import them:
#   FROM gfe-proxy
#   USER root
#   COPY requirements.txt /tmp/
#   RUN pip install -r /tmp/requirements.txt
#   USER gfe

ARG PYTHON_VERSION=3.11

# --- build: turn the source tree into a wheel (build tools stay in this stage) -------------
FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gfe_proxy ./gfe_proxy
RUN pip wheel --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: forwards SIGTERM to gfe-proxy and reaps the gunicorn workers it orphans.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*

# gfe-proxy and its dependencies (gunicorn, uvicorn, aiohttp, ...), non-editable.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels gfe-proxy

# A non-root user with a home: gfe-proxy keeps its self-signed certificate in its cache dir.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/gfe gfe

# The demo app is what runs when nothing is mounted on /app. It stays root-owned: the proxy
# and its instances only read the app directory.
COPY conf/demo /app
WORKDIR /app

USER gfe

# Listen on every interface inside the container (the CLI default is 127.0.0.1).
ENV GFE_HOST=0.0.0.0

# 8080 HTTP, 8443 HTTPS (self-signed unless --cert/--key), 8000 admin (/healthz, /metrics).
EXPOSE 8080 8443 8000

# SPEC §1: /healthz answers 200 once every listener is up and the minimum instances are ready.
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GFE_ADMIN_PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["gfe-proxy", "serve", "/app"]
