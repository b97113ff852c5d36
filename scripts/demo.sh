#!/usr/bin/env bash
# The main job on the bundled sample collection: set up, then select candidates.
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
echo "Candidates: $OUT/candidates.csv   Database: $HITL_DB"
