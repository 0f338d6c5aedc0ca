#!/usr/bin/env bash
# Re-creates models/churn-lr.json and models/churn-gbm.json (and their cards) exactly: a synthetic year of activity from the
# project's own generator, then `churnguard train` with a 60-day horizon and time-split
# validation. Deterministic: same seed, same events, same artifact version.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data
cargo build --release --locked
./target/release/churnguard synth --users 5000 --days 365 --end 2026-01-01T00:00:00Z --seed 42 --out data/synth.jsonl
./target/release/churnguard train --events data/synth.jsonl --horizon-days 60 --out models/churn-lr.json
./target/release/churnguard train --events data/synth.jsonl --horizon-days 60 --kind gbm --out models/churn-gbm.json
