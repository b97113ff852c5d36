#!/usr/bin/env bash
# The main job on the bundled sample collection: set up, select candidates, score them.
# Usage: scripts/demo.sh            (writes demo/hitl.db and demo/candidates.csv)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt
cd "$REPO"
OUT="${HITL_DEMO_DIR:-$REPO/demo}"
mkdir -p "$OUT"
export HITL_DB="$OUT/hitl.db"
"$VENV/bin/python" -m hitl select \
  --md sample_data/md_results.json \
  --speciesnet sample_data/speciesnet_predictions.json \
  --cct sample_data/cct.json \
  --images sample_data/images \
  -n 12 --out "$OUT/candidates.csv"
echo
"$VENV/bin/python" -m hitl score --model baseline
if [ -n "${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}" ]; then
  "$VENV/bin/python" -m hitl score --model "${HITL_GEMINI_MODEL:-gemini-2.5-flash}" --max-cost "${HITL_DEMO_MAX_COST:-1}"
fi
if [ -n "${HITL_OPENAI_BASE_URL:-}" ]; then
  "$VENV/bin/python" -m hitl score --model "openai:${HITL_OPENAI_MODEL:-Qwen/Qwen2.5-VL-7B-Instruct}"
fi
echo
echo "Candidates: $OUT/candidates.csv   Database: $HITL_DB"
