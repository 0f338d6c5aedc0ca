#!/usr/bin/env bash
# Fetches the CDNOW purchase history (Fader & Hardie's 1/10th sample: 23,570 customers,
# 1997-01-01..1998-06-30) and converts it to churnguard events in data/cdnow/events.jsonl.
#
# Source: the file ships inside the PyPI wheel lifetimes==0.11.3 at
# lifetimes/datasets/CDNOW_master.txt; `pip download --no-deps` fetches just that wheel.
# If pip cannot (offline), ../shared/data/cdnow/CDNOW_master.txt is used when present.
# data/ is gitignored: the raw file and the events are never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/cdnow
mkdir -p "$out"
raw="$out/CDNOW_master.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ ! -s "$raw" ]]; then
  pip=""
  for p in pip3 pip; do command -v "$p" >/dev/null && { pip=$p; break; }; done
  if [[ -n "$pip" ]] && "$pip" download --no-deps --quiet --dest "$tmp" lifetimes==0.11.3; then
    wheel=$(ls "$tmp"/*.whl | head -n1)
    python3 - "$wheel" "$raw" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("lifetimes/datasets/CDNOW_master.txt"))
PY
    echo "extracted CDNOW_master.txt from $(basename "$wheel")" >&2
  elif [[ -s ../shared/data/cdnow/CDNOW_master.txt ]]; then
    echo "pip download failed; using ../shared/data/cdnow/CDNOW_master.txt" >&2
    cp ../shared/data/cdnow/CDNOW_master.txt "$raw"
  else
    echo "cannot fetch CDNOW: pip download lifetimes==0.11.3 failed and" \
         "../shared/data/cdnow/CDNOW_master.txt does not exist" >&2
    exit 1
  fi
fi

lines=$(wc -l < "$raw")  # a header line + 69,659 purchase rows
if [[ "$lines" -ne 69660 ]]; then
  echo "warning: $raw has $lines lines, expected 69660 (header + 69659 rows)" >&2
fi
python3 scripts/cdnow_to_events.py "$raw" "$out/events.jsonl"
