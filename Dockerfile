# syntax=docker/dockerfile:1
# kb in a container: the same `make install` a developer and CI run, then `kb init` / `kb api` /
# `kb serve` / `kb worker` as in development. CPU image by default:
#   docker build -t kb .
# CUDA (faiss-gpu, llama.cpp built with CUDA; the base must carry nvcc, and Python 3.11 is added if missing):
#   docker build -t kb:cuda --build-arg GPU=1 \
#     --build-arg BUILD_IMAGE=nvidia/cuda:12.4.1-devel-ubuntu22.04 --build-arg RUN_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 .
# MODELS=small|default|none chooses the generator baked into the image (run time has no network):
# small = SmolLM2-135M (100 MB), default = Qwen2.5-Coder-1.5B Q4_K_M (1.1 GB). `kb init` in the init
# service/Job copies it into the data volume.
ARG BUILD_IMAGE=python:3.11-slim-bookworm
ARG RUN_IMAGE=python:3.11-slim-bookworm

# --- build -------------------------------------------------------------------------------------
FROM ${BUILD_IMAGE} AS build
ARG GPU=
ARG MODELS=small
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake make git ca-certificates \
    && if ! command -v python3.11 >/dev/null; then \
         apt-get install -y --no-install-recommends software-properties-common \
         && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
         && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev; fi \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/kb/src
COPY pyproject.toml Makefile README.md ./
COPY app ./app
COPY ingest ./ingest
COPY retrieval ./retrieval
COPY llm ./llm
COPY migrations ./migrations
COPY ui ./ui
# GPU= (empty) forces the CPU extra even on a build host with a GPU; GPU=1 the CUDA one.
RUN make install PY=python3.11 GPU=${GPU}
RUN case "${MODELS}" in \
      none) mkdir -p /opt/kb/seed/models ;; \
      small) KB_DATA_DIR=/opt/kb/seed .venv/bin/kb models pull --small ;; \
      *) KB_DATA_DIR=/opt/kb/seed .venv/bin/kb models pull ;; \
    esac && rm -rf /opt/kb/seed/models/wheels

# --- run ---------------------------------------------------------------------------------------
FROM ${RUN_IMAGE} AS run
ENV DEBIAN_FRONTEND=noninteractive
# pg_dump / pg_restore for `kb backup` on PostgreSQL (Debian bookworm: 15; keep it >= the server's major)
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client libgomp1 ca-certificates \
    && if ! command -v python3.11 >/dev/null; then \
         apt-get install -y --no-install-recommends software-properties-common \
         && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
         && apt-get install -y --no-install-recommends python3.11 python3.11-venv; fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kb && useradd --system --uid 10001 --gid kb --create-home kb \
    && mkdir -p /data && chown kb:kb /data && chmod 700 /data
# Code and venv stay owned by root: the kb account can run them, not change them.
COPY --from=build /opt/kb /opt/kb
ARG API_PORT=8000
ENV PATH=/opt/kb/src/.venv/bin:${PATH} \
    KB_DATA_DIR=/data \
    KB_API__HOST=0.0.0.0 KB_API__PORT=${API_PORT} KB_UI__HOST=0.0.0.0 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
VOLUME ["/data"]
USER 10001:10001
WORKDIR /home/kb
EXPOSE ${API_PORT} 8501
# The API's liveness endpoint (app/api: /healthz; /readyz also checks database, key, model and index).
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python3.11", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('KB_API__PORT', '8000'), timeout=4)"]
CMD ["kb", "api"]
