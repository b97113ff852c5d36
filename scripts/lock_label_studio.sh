#!/usr/bin/env bash
# Write hitl/review/label_studio_constraints.txt: the versions `hitl studio` installs Label Studio's
# dependencies at. Label Studio leaves most of them open (sentry-sdk>=2.16.0, say), so a new major
# release on PyPI can break a fresh install that worked yesterday; installing at the versions the
# suite ran against does not. Run it after changing LABEL_STUDIO_VERSION (hitl/review/studio.py) or
# to move to newer dependencies, then scripts/test.sh, which reinstalls .venv-studio at them.
#
#   scripts/lock_label_studio.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements.txt
cd "$REPO"
PY="$VENV/bin/python"
OUT="hitl/review/label_studio_constraints.txt"
VERSION="$("$PY" -c 'from hitl.review.studio import LABEL_STUDIO_VERSION as v; print(v)')"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# Known breakages, applied on every Python. sentry-sdk 3.0.0 refuses the option send_default_pii,
# which Label Studio 1.23.2 passes at start ("TypeError: Unknown option"): it never starts.
CAPS=("sentry-sdk<3")

WORK="$(mktemp -d)"
PINS=""
trap 'rm -rf "$WORK" ${PINS:+"$PINS"}' EXIT
printf '%s\n' "${CAPS[@]}" > "$WORK/caps.txt"
# without pip: uv installs, and the pins are Label Studio's set alone (ensurepip would add pip, and compile it)
"$PY" -m venv --without-pip "$WORK/venv"
"$VENV/bin/uv" pip install --quiet --python "$WORK/venv/bin/python" -c "$WORK/caps.txt" "label-studio==$VERSION"
PINS="$(mktemp "$OUT.XXXXXX")"  # beside it, made exclusively, then moved over it whole
{
  echo "# Label Studio $VERSION's dependencies as hero-hitl installs them (pip's or uv's -c):"
  echo "# written by scripts/lock_label_studio.sh; the pins are the set the suite ran against, on"
  echo "# the Python it ran on, and the caps below hold everywhere."
  printf '%s\n' "${CAPS[@]}"
  "$VENV/bin/uv" pip freeze --python "$WORK/venv/bin/python" | sed -E "s/\$/ ; python_version == \"$PYVER\"/"
} > "$PINS"
chmod 644 "$PINS"
mv "$PINS" "$OUT"
echo "Wrote $OUT ($(grep -c '==' "$OUT") pins for Python $PYVER)"
