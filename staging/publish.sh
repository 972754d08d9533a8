#!/usr/bin/env bash
# Publish the finished staged report: replace assets/results/default (the dashboard's and the README's source)
# with staging/report, and write what moved between the two reports' verdicts to staging/verdict-changes.md
# (scl-claims-diff: each changed verdict with both sides' n and effect) for the README and the closing note.
# Refuses while anything is still to run or before the last step (`continue.sh MINUTES --zoo-seeds all --redraw`)
# wrote the pooled claims. The report it replaces stays in git history; nothing else is touched.
#
#   staging/publish.sh && git add -A assets/results/default staging && git commit -m "results: ..."
set -eu
cd "$(dirname "$0")/.."
staged="${SCL_STAGED:-staging/report}"
published="${SCL_PUBLISHED:-assets/results/default}"
changes="${SCL_CHANGES:-staging/verdict-changes}"
py="${SCL_PYTHON:-.venv/bin/python}"
missing=$("$py" -c 'import sys; from analysis.seed_report import unfinished; print(" ".join(unfinished(sys.argv[1])))' \
  "$staged")
if [ -n "$missing" ]; then
  echo "[publish] $staged is not finished; still to run: $missing" >&2
  exit 1
fi
for needed in REPORT.md claims.csv across_seeds/claims.csv; do
  if [ ! -f "$staged/$needed" ]; then
    echo "[publish] $staged has no $needed: run staging/continue.sh MINUTES --zoo-seeds all --redraw first" >&2
    exit 1
  fi
done
"$py" -m analysis.claims_diff "$published" "$staged" --csv "$changes.csv" > "$changes.md"
tmp="$(dirname "$published")/.$(basename "$published").tmp-$$"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp" && cp -r "$staged" "$tmp"
rm -rf "$published" && mv "$tmp" "$published"
echo "[publish] $published is now the staged report; what moved: $changes.md ($(($(wc -l < "$changes.csv") - 1)) change(s))"
echo "[publish] next: the README's claims table from $published/across_seeds/claims.csv (tests/test_readme_claims.py),"
echo "          pyproject's data-files for the new folders (tests/test_packaging.py), then the tests"
