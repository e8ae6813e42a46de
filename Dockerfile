# syntax=docker/dockerfile:1
# Every Relay image, one per service, from this one file and the repository root
# (the context holds the workspace lock file and every libs/* package):
#   docker build --build-arg SERVICE=gateway -t relay-gateway:dev .
# SERVICE is one of gateway, events, state, runner, modelsim (services/<SERVICE>);
# the image runs that service's console script, relay-<SERVICE>.
#
# Why this shape:
# - One base image for every stage, pinned by version tag AND by the digest of its
#   multi-architecture index (python:3.11.14-slim-bookworm). The venv's interpreter
#   symlink points at /usr/local/bin/python3.11, so builder and runtime must match.
# - Dependencies are installed in their own layer from the manifests only
#   (pyproject.toml files + uv.lock, exactly as locked: --frozen); editing source
#   code does not invalidate it.
# - Every libs/* package is copied (uv installs only those the service depends on),
#   and only the service's own folder, so one service's edit leaves the other
#   images' layers cached.
# - The entry point is a symlink made at build time, relay-service -> relay-<SERVICE>:
#   an exec-form ENTRYPOINT cannot expand a build argument, and a shell wrapper
#   would stand between the process and its signals. A SERVICE with no such
#   console script fails the build there, not the pod at start.
# - No EXPOSE: the port is a setting (RELAY_PORT, RELAY_MODELSIM_PORT), declared
#   by the chart's containerPort.
# - The runtime stage holds only the virtual environment (workspace members are
#   installed non-editable), owned by root and read-only to the numeric non-root
#   user, so the pod runs with readOnlyRootFilesystem and an emptyDir on /tmp.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# --- manifests: every pyproject.toml and the lock file, nothing else -------------
FROM ${PYTHON_IMAGE} AS manifests
COPY . /src
RUN find /src -type f ! -name pyproject.toml ! -name uv.lock -delete \
 && find /src -type d -empty -delete

# --- builder: uv from PyPI, then dependencies, then the workspace packages -------
FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
ARG UV_VERSION=0.13.8
RUN test -n "${SERVICE}" \
 || { echo "build with --build-arg SERVICE=<gateway|events|state|runner|modelsim>" >&2; exit 1; }
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /build
COPY --from=manifests /src/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package relay-${SERVICE}
COPY libs libs
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package relay-${SERVICE}
RUN test -x "/app/.venv/bin/relay-${SERVICE}" \
 && ln -s "relay-${SERVICE}" /app/.venv/bin/relay-service

# --- runtime -----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="relay-${SERVICE}"
RUN groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin relay
COPY --from=builder /app/.venv /app/.venv
# RELAY_MODELSIM_HOST: modelsim reads its own prefix (it stands alone).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    RELAY_HOST=0.0.0.0 \
    RELAY_MODELSIM_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["relay-service"]
