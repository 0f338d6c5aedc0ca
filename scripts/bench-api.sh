#!/usr/bin/env bash
# What the lookup API costs the pipeline: event throughput of `churnguard run` over the same
# topic without the API, with the API under a steady lookup load, and without again (fresh group
# each time), on a private Tansu broker. The lookup load is examples/api_load (open loop, random
# loadgen users), running on the same machine.
#
#   bash scripts/bench-api.sh                       # 1M events of 100k users, 1,000 lookups/s
#   bash scripts/bench-api.sh --events N --users U --rate R --broker-engine memory --out FILE
#
# Figures in target/bench/api.json (and printed); logs in target/bench/api-run/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EVENTS=1000000 USERS=100000 RATE=1000 PARTITIONS=6 ENGINE=sqlite OUT=target/bench/api.json
FETCH_WAIT_MS=10
die() { echo "bench-api.sh: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --events) EVENTS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --partitions) PARTITIONS=$2; shift 2 ;;
        --broker-engine) ENGINE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
WORK=$ROOT/target/bench/api-run
BROKER_DIR=$WORK/broker
BIN=$ROOT/target/release/churnguard
LOAD=$ROOT/target/release/examples/api_load
PIDS=()
log() { echo "[bench-api $(date +%H:%M:%S)] $*" >&2; }
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{split($0, a, ") "); split(a[2], f, " "); printf "%.2f\n", (f[12] + f[13]) / hz}' "/proc/$1/stat"; }
handled() {
    curl -s --max-time 2 "http://$1/metrics" | awk '
        /^churnguard_events_(consumed|rejected)_total/ || /^churnguard_events_duplicate_total/ {s += $2}
        END {printf "%d\n", s}'
}
cleanup() {
    for pid in "${PIDS[@]:-}"; do [[ -n $pid ]] && kill "$pid" 2>/dev/null || true; done
    bash "$ROOT/scripts/broker.sh" stop --dir "$BROKER_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK" && mkdir -p "$WORK" "$(dirname "$OUT")"
log "building (release)"
nice -n 10 cargo build --release --quiet --bin churnguard --example api_load
PORT=$(free_port)
BROKERS=127.0.0.1:$PORT
bash "$ROOT/scripts/broker.sh" start --port "$PORT" --dir "$BROKER_DIR" --storage "$ENGINE" >/dev/null
TANSU=${TANSU_BIN:-$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")}
for t in "activity:$PARTITIONS" alerts:1 dlq:1; do
    "$TANSU" topic create "${t%%:*}" --partitions "${t##*:}" --config retention.ms=-1 --broker "tcp://$BROKERS" >/dev/null
done
log "loadgen: $EVENTS events of $USERS users"
"$BIN" loadgen --brokers "$BROKERS" --topic activity --users "$USERS" --events "$EVENTS" --days 120 \
    >"$WORK/loadgen.json" 2>"$WORK/loadgen.log"
echo "bench $(head -c 24 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')" >"$WORK/tokens"

# One pass over the topic with a fresh group; with `api`, the API on and the lookup load running.
run() { # name api|plain
    local metrics=127.0.0.1:$(free_port) api_port=$(free_port) extra=() pid load_pid=0 t_first=0 n=0
    [[ $2 == api ]] && extra=(--api-addr "127.0.0.1:$api_port" --api-token-file "$WORK/tokens")
    "$BIN" run --brokers "$BROKERS" --group "g-$1-$(now_ms)" --input-topic activity --alert-topic alerts \
        --dlq-topic dlq --metrics-addr "$metrics" --model "$ROOT/models/churn-lr.json" \
        --fetch-wait-ms "$FETCH_WAIT_MS" --model-poll-secs 0 --changelog-topic off "${extra[@]}" >"$WORK/$1.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if [[ $2 == api ]]; then
        until curl -s -o /dev/null "http://127.0.0.1:$api_port/"; do sleep 0.1; done
        "$LOAD" --api-url "http://127.0.0.1:$api_port" --token-file "$WORK/tokens" --rate "$RATE" \
            --users "$USERS" --seconds 3600 >"$WORK/$1-load.json" 2>"$WORK/$1-load.log" &
        load_pid=$!
        PIDS+=("$load_pid")
    fi
    local t_start=$(now_ms)
    while :; do
        kill -0 "$pid" 2>/dev/null || die "churnguard exited early; see $WORK/$1.log"
        n=$(handled "$metrics" 2>/dev/null || echo 0)
        ((t_first == 0 && ${n:-0} > 0)) && t_first=$(now_ms)
        ((${n:-0} >= EVENTS)) && break
        (($(now_ms) - t_start < 1800000)) || die "$1: handled only $n of $EVENTS in 30 min"
        sleep 0.1
    done
    local t_end=$(now_ms) cpu=$(cpu_secs "$pid")
    local lookups
    lookups=$(curl -s "http://$metrics/metrics" | awk '/^churnguard_api_requests_total/ {s += $2} END {printf "%d", s}')
    ((load_pid)) && { kill -INT "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; }
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "{\"name\": \"$1\", \"events\": $n, \"seconds\": $(((t_end - t_first)))e-3, \"cpu_seconds\": $cpu, \"api_requests\": $lookups}" >"$WORK/$1.json"
    cat "$WORK/$1.json" >&2
}
log "pass 1: no API"; run plain1 plain
log "pass 2: API under $RATE lookups/s"; run api api
log "pass 3: no API"; run plain2 plain

python3 - "$WORK" "$OUT" "$RATE" "$ENGINE" <<'PY'
import json, sys, time
work, out, rate, engine = sys.argv[1:5]
ld = lambda n: json.load(open(f"{work}/{n}.json"))
p1, api, p2 = ld("plain1"), ld("api"), ld("plain2")
for r in (p1, api, p2):
    r["events_per_s"] = r["events"] / r["seconds"]
    r["lookups_per_s"] = r["api_requests"] / r["seconds"]
plain = (p1["events_per_s"] + p2["events_per_s"]) / 2
result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "broker": f"tansu 0.6.0, {engine} engine", "target_lookups_per_s": int(rate),
          "without_api": [p1, p2], "with_api": api,
          "with_over_without": api["events_per_s"] / plain}
json.dump(result, open(out, "w"), indent=2)
print(f"events/s without the API: {p1['events_per_s']:,.0f} and {p2['events_per_s']:,.0f}; "
      f"with {api['lookups_per_s']:,.0f} lookups/s answered: {api['events_per_s']:,.0f} "
      f"({result['with_over_without']:.2f} of without)")
print(f"written to {out}")
PY
