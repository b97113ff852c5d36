#!/usr/bin/env bash
# From a fresh clone to a working review desk, on the bundled sample collection:
# set up, select and score candidates, start Label Studio and the webhook service, push the
# project with the webhook registered, and wait. Ctrl+C stops both servers.
#
#   scripts/demo.sh
#
# Settings (environment): HITL_DEMO_DIR (default ./demo), HITL_STUDIO_PORT (8080),
# HITL_SERVE_PORT (8765). A rerun reuses the database, the Label Studio data and the
# credentials in $HITL_DEMO_DIR and adds nothing twice. With GEMINI_API_KEY or
# HITL_OPENAI_BASE_URL set, the candidates are scored by Gemini or that server too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt
cd "$REPO"
PY="$VENV/bin/python"

OUT="$(mkdir -p "${HITL_DEMO_DIR:-$REPO/demo}" && cd "${HITL_DEMO_DIR:-$REPO/demo}" && pwd)"
STUDIO_PORT="${HITL_STUDIO_PORT:-8080}"
SERVE_PORT="${HITL_SERVE_PORT:-8765}"
STUDIO_URL="http://127.0.0.1:$STUDIO_PORT"
WEBHOOK_URL="http://127.0.0.1:$SERVE_PORT/webhooks/label-studio"
export HITL_DB="$OUT/hitl.db"

# Demo credentials, made once and kept with the demo's data (Label Studio takes its preset
# user and token on the first start of its data folder only, so a rerun must reuse them).
CREDENTIALS="$OUT/credentials.env"
if [ ! -f "$CREDENTIALS" ]; then
  umask 077
  "$PY" - > "$CREDENTIALS" <<'EOF'
import secrets
print(f"export LABEL_STUDIO_USERNAME=curator@example.org")
print(f"export LABEL_STUDIO_PASSWORD={secrets.token_urlsafe(12)}")
print(f"export LABEL_STUDIO_API_KEY={secrets.token_hex(20)}")
print(f"export HITL_WEBHOOK_SECRET={secrets.token_urlsafe(24)}")
EOF
fi
# shellcheck disable=SC1090
source "$CREDENTIALS"

port_taken() { ! "$PY" -c "import sys; from hitl.review.studio import port_is_free; sys.exit(0 if port_is_free('127.0.0.1', $1) else 1)"; }
for spec in "$STUDIO_PORT:Label Studio:HITL_STUDIO_PORT" "$SERVE_PORT:the webhook service:HITL_SERVE_PORT"; do
  IFS=: read -r port what variable <<< "$spec"
  if port_taken "$port"; then
    echo "Port $port is taken (needed for $what). Stop what uses it, or choose another: $variable=<port> scripts/demo.sh" >&2
    exit 1
  fi
done

echo "== 1. Select candidates from sample_data/"
"$PY" -m hitl select --md sample_data/md_results.json --speciesnet sample_data/speciesnet_predictions.json \
  --cct sample_data/cct.json --images sample_data/images -n 12 --out "$OUT/candidates.csv"
echo
echo "== 2. Score them"
"$PY" -m hitl score --model baseline
if [ -n "${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}" ]; then
  "$PY" -m hitl score --model "${HITL_GEMINI_MODEL:-gemini-2.5-flash}" --max-cost "${HITL_DEMO_MAX_COST:-1}"
fi
if [ -n "${HITL_OPENAI_BASE_URL:-}" ]; then
  "$PY" -m hitl score --model "openai:${HITL_OPENAI_MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"
fi

echo
echo "== 3. Start Label Studio and the webhook service"
PIDS=()
running() {  # are any of the servers' processes still there?
  local pid
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
cleanup() {  # $1: the exit status, a failure's or 128 + the signal's number
  # a second signal while stopping is ignored (and by the sleep below too): it must not cut the
  # stop short. The stop is bounded: `hitl studio` stops Label Studio within 8 s; whatever is
  # left after 10 s is killed, and Label Studio dies with `hitl studio` (the kernel signals it).
  trap '' INT TERM HUP
  trap - EXIT
  if [ ${#PIDS[@]} -gt 0 ]; then
    echo; echo "Stopping Label Studio and the webhook service"
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 1 40); do running || break; sleep 0.25; done
    if running; then
      echo "Still running after 10 s: killing them" >&2
      kill -KILL "${PIDS[@]}" 2>/dev/null || true
    fi
    wait "${PIDS[@]}" 2>/dev/null || true
  fi
  exit "$1"
}
trap 'cleanup $?' EXIT
trap 'cleanup 130' INT
trap 'cleanup 143' TERM
trap 'cleanup 129' HUP
# Emptied here, not by the background job's own `>`: that one is opened in the job's process, which
# may run after the wait below has read the last run's "is up" (a push then met a Label Studio not started).
: > "$OUT/studio.out"
"$PY" -m hitl studio --port "$STUDIO_PORT" --data-dir "$OUT/label-studio-data" \
  --document-root "$REPO/sample_data" --webhook-url "$WEBHOOK_URL" >> "$OUT/studio.out" 2>&1 &
PIDS+=($!)
"$PY" -m hitl serve --port "$SERVE_PORT" > "$OUT/serve.out" 2>&1 &
PIDS+=($!)
# Waited for as long as `hitl studio` works (its own limits end it): on first use it installs Label
# Studio (seconds with uv, minutes with pip), before a first start that migrates its database (a minute).
echo "Waiting for Label Studio (the first time, \`hitl studio\` installs it and sets up its database: a minute or two; see $OUT/studio.out)"
until grep -q "is up" "$OUT/studio.out" 2>/dev/null; do
  if ! kill -0 "${PIDS[0]}" 2>/dev/null; then cat "$OUT/studio.out" >&2; echo "Label Studio did not start" >&2; exit 1; fi
  sleep 0.5
done
for _ in $(seq 1 60); do
  "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$SERVE_PORT/healthz', timeout=1)" 2>/dev/null && break
  sleep 0.5
done

echo
echo "== 4. Push the candidates, with every model's opinion, and register the webhook"
"$PY" -m hitl push --url "$STUDIO_URL" --project "hero-hitl demo" --document-root "$REPO/sample_data" \
  --webhook-url "$WEBHOOK_URL"

cat <<EOT

Ready. Open $STUDIO_URL and log in:
    user      $LABEL_STUDIO_USERNAME
    password  $LABEL_STUDIO_PASSWORD
Open the project "hero-hitl demo", click "Label All Tasks", give each image 1-10 stars and
decide hero or not_hero, then Submit. Every decision lands in $HITL_DB at once.

Then, in another terminal (from $REPO):
    source .venv/bin/activate
    source $CREDENTIALS                      # LABEL_STUDIO_API_KEY, HITL_WEBHOOK_SECRET, the login
    export HITL_DB=$HITL_DB
    python -m hitl ratings                             # what the curators decided
    python -m hitl sync --url $STUDIO_URL              # fetch anything the webhook missed
    python -m hitl report --out $OUT/report            # agreement: curators vs models
    python -m hitl export --out $OUT/heroes            # the validated hero set
Ctrl+C stops both servers.
EOT
echo "hero-hitl demo is ready"
wait
