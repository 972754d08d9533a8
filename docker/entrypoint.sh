#!/usr/bin/env bash
# The image's entry point: one image, two roles.
#
#   docker run -p 8501:8501 scl                                 # the dashboard (the default role)
#   docker run --gpus all -p 8000:8000 -e SCL_TOKEN=... scl backend   # the compute backend (Ray Serve)
#   docker run ... scl backend --zoo mine=/zoo                   # arguments after the role go to its command
#
# Anything else runs as a command (docker run -it scl bash).
set -euo pipefail
cd /app
role=${1:-dashboard}
[ $# -gt 0 ] && shift
case "$role" in
    dashboard)
        exec ./lab dashboard "$@" ;;
    backend)
        # Inside a container the backend must listen beyond loopback; the published port decides who reaches it.
        # It shuts Ray down on SIGINT (Ctrl+C), but `docker stop` sends SIGTERM, which a Python PID 1 without a
        # handler ignores (then SIGKILL after 10 s, Ray never shut down): this shell stays PID 1 and passes
        # SIGTERM on as SIGINT. Job control (set -m) keeps SIGINT un-ignored in the background child.
        set -m
        ./lab backend --host 0.0.0.0 --port "${SCL_BACKEND_PORT:-8000}" "$@" &
        child=$!
        trap 'kill -INT "$child" 2>/dev/null || true' TERM INT
        status=0
        wait "$child" || status=$?
        while kill -0 "$child" 2>/dev/null; do  # a trapped signal ended the first wait: wait for the shutdown
            status=0
            wait "$child" || status=$?
        done
        exit "$status" ;;
    *)
        exec "$role" "$@" ;;
esac
