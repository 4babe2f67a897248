#!/usr/bin/env bash
# Serve flows.py with `pyworkflow dashboard`, then use the HTTP API with curl: start a run,
# list and read runs, start one that waits for a manager and cancel it. Needs curl and a
# Python with `pip install 'pyworkflow-engine[server]'` ($PYTHON, default python3).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
PORT="${PORT:-8080}"
BASE="http://127.0.0.1:$PORT"
# Runs go to a SQLite file beside this script unless PYWORKFLOW_STORAGE says otherwise.
export PYWORKFLOW_STORAGE="${PYWORKFLOW_STORAGE:-sqlite:///$PWD/.pyworkflow/dashboard.db}"
# The admin token: keep a real one in a secret store, never in a file.
export PYWORKFLOW_DASHBOARD_TOKEN="${PYWORKFLOW_DASHBOARD_TOKEN:-$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))')}"

"$PYTHON" -m pyworkflow --module flows dashboard --port "$PORT" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done

api() {  # api METHOD PATH [JSON BODY]
  curl -sf -X "$1" -H "Authorization: Bearer $PYWORKFLOW_DASHBOARD_TOKEN" \
    -H "Content-Type: application/json" ${3:+--data "$3"} "$BASE$2"
}
field() {  # field NAME < JSON
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

small=$(api POST /api/workflows/expense_report/runs '{"args": ["exp-1", 42.5]}' | field run_id)
echo "started $small (42.50: paid without a decision)"
big=$(api POST /api/workflows/expense_report/runs '{"args": ["exp-2", 980]}' | field run_id)
echo "started $big (980.00: waits for a manager's decision)"

until [ "$(api GET "/api/runs/$small" | field status)" = completed ]; do sleep 0.5; done
echo "$small: $(api GET "/api/runs/$small" | field result)"
waiting=$(api GET '/api/runs?status=suspended&workflow=expense_report' |
  "$PYTHON" -c 'import json, sys; print(*[r["run_id"] for r in json.load(sys.stdin)["runs"]])')
echo "suspended expense runs: $waiting"

api POST "/api/runs/$big/cancel" '{"reason": "submitted twice"}' >/dev/null
until [ "$(api GET "/api/runs/$big" | field status)" = cancelled ]; do sleep 0.2; done
echo "$big: cancelled"
echo "both runs stay in $PYWORKFLOW_STORAGE: serve them with 'pyworkflow --module flows dashboard'"
