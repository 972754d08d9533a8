#!/usr/bin/env bash
# Continue building the shipped zoo's full report in staging/ for at most MINUTES (default 120), then stop it the
# way Ctrl-C does (every finished experiment kept, exit 130), so that what finished can be committed and the next
# session goes on from there. Extra arguments go to the report (e.g. --zoo-seeds 0 1 2, --only fairness).
#
#   staging/continue.sh 150                      # the primary seed's report, 150 minutes
#   SCL_THREADS=2 staging/continue.sh 150 --zoo-seeds 0 1 2
#   git add staging && git commit -m "staged report: ..."
set -u
cd "$(dirname "$0")/.."
minutes="${1:-120}"
shift || true
case "$minutes" in '' | *[!0-9]*) echo "usage: staging/continue.sh [MINUTES] [report arguments]" >&2; exit 2 ;; esac
timeout -s INT -k 300 "$((minutes * 60))" .venv/bin/python -m analysis.report --zoo assets/zoo/default \
  --out staging/report --work-dir staging/report-work --resume --num-threads "${SCL_THREADS:-1}" --no-progress "$@"
code=$?
missing=$(.venv/bin/python -c 'from analysis.seed_report import unfinished; print(" ".join(unfinished("staging/report")))' \
  2>/dev/null || echo "?")
case "$code" in
  0) if [ -z "$missing" ]; then
       echo "[staging] the report is complete: review staging/report/REPORT.md, then replace assets/results/default with it"
     else
       echo "[staging] still to run: $missing; commit staging/ and rerun this script to go on"
     fi ;;
  124) echo "[staging] stopped after $minutes min; commit staging/ and rerun this script to go on" ;;
  130) echo "[staging] interrupted before $minutes min; commit staging/ and rerun this script to go on" ;;
  *) echo "[staging] the report exited $code (see above)" ;;
esac
exit "$code"
