# Semantic Continuity Lab dashboard: docker build -t scl . && docker run -p 8501:8501 scl
# (add --gpus all on a machine with NVIDIA GPUs and the container toolkit: the app then uses CUDA).
# Your own zoo: docker run -p 8501:8501 -v /path/to/zoo:/zoo:ro -e SCL_ZOO=/zoo scl
#
# The base image is pinned by digest (a tag moves; a digest does not). The digest below is the one
# docker.io/library/debian:bookworm-slim resolved to in a public BuildKit build log found with a code search
# ("FROM docker.io/library/debian:bookworm-slim@sha256:3783cc01..."); it could not be checked against Docker Hub
# from where this was written: check it, or bump it, with
#     docker buildx imagetools inspect debian:bookworm-slim    (or: skopeo inspect docker://debian:bookworm-slim)
# Without Docker Hub, scripts/podman.sh bootstraps bookworm with mmdebstrap and builds with
#     --build-arg BASE_IMAGE=localhost/scl-debian:bookworm-slim
# That is how this image was built and tested (podman 4.3.1, 2026-11-29 and 2026-12-02, both roles and compose;
# figures in the README's Docker section):
# never from this digest, which is therefore still unverified.
ARG BASE_IMAGE=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SCL_CACHE_DIR=/home/scl/.cache/semantic-continuity-lab

# Python 3.11 (bookworm's), venv support, and the Fashion-MNIST package the default data set is built from.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 scl
WORKDIR /app
RUN chown scl:scl /app
USER scl

# The runtime requirements only (requirements.txt, and torchattacks without its dependencies), in a layer of their
# own that a code change does not invalidate. The test and lint tools (requirements-dev.txt) stay out of the image.
COPY --chown=scl:scl requirements.txt requirements-nodeps.txt ./
RUN python3 -m venv .venv && .venv/bin/python -m pip install -q --upgrade pip \
    && .venv/bin/python -m pip install -q -r requirements.txt \
    && .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt

# The code, then the README's set-up command: it finds the requirements installed and installs this package
# (pip install -e ., which needs pyproject.toml and the package folders).
COPY --chown=scl:scl lab pyproject.toml README.md ./
COPY --chown=scl:scl models ./models
COPY --chown=scl:scl analysis ./analysis
COPY --chown=scl:scl app ./app
RUN ./lab setup

# The Streamlit settings, the shipped zoo and its precomputed results.
COPY --chown=scl:scl .streamlit ./.streamlit
COPY --chown=scl:scl backend.yaml ./
COPY --chown=scl:scl docker ./docker
COPY --chown=scl:scl assets ./assets

# Build the default data set once at image build time, so the first page load is fast.
RUN .venv/bin/python -c "from models.data import load_dataset; load_dataset('fashion-mnist-m', 'test')"

# Public mode by default (README "Deploying for others"): visitors pick listed zoos, never type server paths.
ENV SCL_ADDRESS=0.0.0.0 SCL_PORT=8501 SCL_BACKEND_PORT=8000 SCL_PUBLIC=1
EXPOSE 8501
EXPOSE 8000
# Either role's health: the dashboard's /_stcore/health, else the backend's GET /zoos, which answers only once every
# zoo is deployed (docker/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD .venv/bin/python docker/healthcheck.py
# One image, two roles: `docker run scl` (or `scl dashboard`) and `docker run --gpus all scl backend`; the default
# command runs as a command through the entry point.
ENTRYPOINT ["docker/entrypoint.sh"]
CMD ["./lab", "dashboard"]
