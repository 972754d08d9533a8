# Semantic Continuity Lab dashboard: docker build -t scl . && docker run -p 8501:8501 scl
# (add --gpus all on a machine with NVIDIA GPUs and the container toolkit: the app then uses CUDA).
FROM debian:bookworm-slim

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

# Dependencies first (cached layer), with the README's set-up command.
COPY --chown=scl:scl requirements.txt lab ./
RUN chown scl:scl /app
USER scl
RUN ./lab setup

# The code, the shipped zoo and its precomputed results.
COPY --chown=scl:scl pyproject.toml ./
COPY --chown=scl:scl .streamlit ./.streamlit
COPY --chown=scl:scl models ./models
COPY --chown=scl:scl analysis ./analysis
COPY --chown=scl:scl app ./app
COPY --chown=scl:scl assets ./assets

# Build the default data set once at image build time, so the first page load is fast.
RUN .venv/bin/python -c "from models.data import load_dataset; load_dataset('fashion-mnist-m', 'test')"

ENV SCL_ADDRESS=0.0.0.0 SCL_PORT=8501
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD .venv/bin/python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"
CMD ["./lab", "dashboard"]
