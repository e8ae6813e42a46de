# syntax=docker/dockerfile:1
# Every Relay image, one per service, from this one file and the repository root
# (the context holds the workspace lock file and every libs/* package):
#   docker build --build-arg SERVICE=gateway -t relay-gateway:dev .
# SERVICE is one of gateway, events, state, runner, modelsim (services/<SERVICE>);
# the image runs that service's console script, relay-<SERVICE>. `make images`
# builds all five (relay_devstack.images).
#
# Why this shape:
# - One base image, pinned by version tag AND by the digest of its
#   multi-architecture index (python:3.11.14-slim-bookworm). The venv's interpreter
#   symlink points at the builder's python3.11, so builder and runtime must have it
#   at the same path. Any Debian bookworm image with python3.11 on PATH works as
#   PYTHON_IMAGE: `make images` builds one with mmdebstrap when no registry can be
#   reached.
# - The builder stage starts from BUILDER_IMAGE (by default PYTHON_IMAGE): the
#   base plus binutils, for `strip`. Wheels ship their native extensions with
#   symbols and debug information (uvloop's is 13.6 MB, 1.6 MB stripped);
#   stripping the venv's *.so files takes 24-34 MB off each image (measured on
#   the Debian base; modelsim's one extension, pydantic_core, comes stripped).
#   The runtime stage copies only the venv, so binutils never reaches it. Why a
#   second image rather than apt here: the Debian base has no apt and `make
#   images` builds offline, so it builds that image too, from the base's
#   mmdebstrap recipe plus binutils (same python3.11, same path). A builder
#   without strip gets binutils from apt where it can (a plain build from the
#   upstream base); else the strip step says so and the build goes on unstripped.
# - Third-party dependencies are installed in their own layer from the manifests
#   only: `uv export --frozen` turns uv.lock into the service's requirements with
#   every hash, and `uv pip install --require-hashes` installs exactly those, so
#   editing source code does not invalidate the layer.
# - Where the wheels come from: a plain build downloads them from PyPI (the index
#   uv.lock was made against). `make images` instead builds a wheelhouse on the
#   host with the machine's own package-index configuration and passes it as the
#   `wheelhouse` build context (--build-context wheelhouse=DIR); the build then
#   uses no index at all. Nothing here names an index.
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
ARG BUILDER_IMAGE=${PYTHON_IMAGE}

# --- wheelhouse: empty unless given with --build-context wheelhouse=DIR -------------
FROM scratch AS wheelhouse

# --- manifests: every pyproject.toml and the lock file, nothing else -------------
FROM ${PYTHON_IMAGE} AS manifests
COPY . /src
RUN find /src -type f ! -name pyproject.toml ! -name uv.lock -delete \
 && find /src -type d -empty -delete

# --- builder: uv, then the locked dependencies, then the workspace packages -------
FROM ${BUILDER_IMAGE} AS builder
# No strip: binutils from apt where there are apt and a network. make images
# builds offline and passes BINUTILS_FROM_APT=no, a cache key of its own, so a
# plain build never reuses that binutils-less layer. Before ARG SERVICE: one
# layer serves every service.
ARG BINUTILS_FROM_APT=yes
RUN if [ "${BINUTILS_FROM_APT}" = yes ] && ! command -v strip >/dev/null \
      && command -v apt-get >/dev/null; then \
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends binutils \
        && rm -rf /var/lib/apt/lists/*; } >/dev/null 2>&1 \
      || echo "strip: apt-get could not install binutils (no network?)"; \
    fi
ARG SERVICE
ARG UV_VERSION=0.13.8
RUN test -n "${SERVICE}" \
 || { echo "build with --build-arg SERVICE=<gateway|events|state|runner|modelsim>" >&2; exit 1; }
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# uv from the wheelhouse's uv wheel, unpacked with the standard library (a
# Debian base has no pip), or else from the index with pip.
RUN --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    wheel="$(find /wheelhouse -maxdepth 1 -name "uv-${UV_VERSION}-*.whl" | head -n 1)"; \
    if [ -n "${wheel}" ]; then \
      python3.11 -m zipfile -e "${wheel}" /tmp/uv-wheel \
      && install -m 0755 "/tmp/uv-wheel/uv-${UV_VERSION}.data/scripts/uv" /usr/local/bin/uv \
      && rm -rf /tmp/uv-wheel; \
    else pip install --no-cache-dir "uv==${UV_VERSION}"; fi \
 && uv --version
WORKDIR /build
COPY --from=manifests /src/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    if [ -e /wheelhouse/requirements.txt ]; then from="--no-index --find-links /wheelhouse"; fi; \
    uv export --quiet --frozen --no-dev --no-emit-workspace --package relay-${SERVICE} \
      --output-file /tmp/requirements.txt \
 && uv venv --quiet /app/.venv \
 && uv pip install --python /app/.venv/bin/python --require-hashes ${from:-} \
      --requirement /tmp/requirements.txt
COPY libs libs
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=wheelhouse,target=/wheelhouse \
    if [ -e /wheelhouse/requirements.txt ]; then from="--offline --find-links /wheelhouse"; fi; \
    uv sync --frozen --no-dev --no-editable --package relay-${SERVICE} ${from:-}
RUN test -x "/app/.venv/bin/relay-${SERVICE}" \
 && ln -s "relay-${SERVICE}" /app/.venv/bin/relay-service
# Strip the native extensions once the venv is complete. --strip-unneeded keeps
# the dynamic symbols they are loaded by (PyInit_*) and drops the static symbol
# table and debug information: Python tracebacks are unchanged, a native
# backtrace (gdb, perf) of these modules shows fewer names.
RUN before="$(du -sm --apparent-size /app/.venv | cut -f1)"; \
    if command -v strip >/dev/null; then \
      find /app/.venv -type f \( -name '*.so' -o -name '*.so.*' \) \
        -exec strip --strip-unneeded {} + \
      && echo "strip: native extensions stripped, venv ${before} MB -> $(du -sm --apparent-size /app/.venv | cut -f1) MB"; \
    else \
      echo "strip: NOTE: no strip (binutils) in the builder image: native extensions left unstripped (venv ${before} MB)"; \
    fi

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
