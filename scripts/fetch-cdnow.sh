#!/usr/bin/env bash
# Fetches the CDNOW purchase history (Fader & Hardie's 1/10th sample: 23,570 customers,
# 1997-01-01..1998-06-30) and converts it to churnguard events in data/cdnow/events.jsonl.
#
# Source: the file ships inside the PyPI wheel lifetimes==0.11.3 at
# lifetimes/datasets/CDNOW_master.txt; `pip download --no-deps` fetches just that wheel. The
# wheel's cdnow_customers_summary.csv (the 2,357-customer calibration summary of Fader, Hardie &
# Lee 2005) is extracted too: tests/cdnow.rs checks the BG/NBD fit against the published one;
# so is cdnow_customers_summary_with_transactions.csv (the same summary plus each customer's mean
# repeat-order value), for the Gamma-Gamma spend model's published fit.
# If pip cannot (offline), ../shared/data/cdnow/CDNOW_master.txt is used when present.
# data/ is gitignored: the raw file and the events are never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/cdnow
mkdir -p "$out"
raw="$out/CDNOW_master.txt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

summary="$out/cdnow_customers_summary.csv"
spend="$out/cdnow_customers_summary_with_transactions.csv"
if [[ ! -s "$raw" || ! -s "$summary" || ! -s "$spend" ]]; then
  pip=""
  for p in pip3 pip; do command -v "$p" >/dev/null && { pip=$p; break; }; done
  if [[ -n "$pip" ]] && "$pip" download --no-deps --quiet --dest "$tmp" lifetimes==0.11.3; then
    wheel=$(ls "$tmp"/*.whl | head -n1)
    python3 - "$wheel" "$raw" "$summary" "$spend" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name, dst in [("CDNOW_master.txt", sys.argv[2]), ("cdnow_customers_summary.csv", sys.argv[3]),
                      ("cdnow_customers_summary_with_transactions.csv", sys.argv[4])]:
        with open(dst, "wb") as f:
            f.write(z.read("lifetimes/datasets/" + name))
PY
    echo "extracted CDNOW_master.txt and the two customer summaries from $(basename "$wheel")" >&2
  elif [[ -s "$raw" ]]; then
    echo "pip download failed; the BG/NBD reference summary is not available" >&2
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
