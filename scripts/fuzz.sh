#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted bytes (libFuzzer via cargo-fuzz; the
# targets are in fuzz/fuzz_targets, one per parser: see README "Fuzzing").
#
#   scripts/fuzz.sh list                      # the targets
#   scripts/fuzz.sh seed                      # (re)write fuzz/corpus/*/seed-* from the repository's test inputs
#   scripts/fuzz.sh build                     # build every target (nightly toolchain, cargo-fuzz)
#   scripts/fuzz.sh run TARGET SECONDS [ARGS] # fuzz one target; new inputs go to fuzz/corpus/TARGET
#   scripts/fuzz.sh ci SECONDS                # every target for SECONDS each, on a copy of the corpus
#
# Needs: `rustup toolchain install nightly` and `cargo install cargo-fuzz --locked` (.ci/run does
# both). Sanitizer: none. The crate forbids unsafe code of its own, so AddressSanitizer would
# only watch the C of librdkafka, which no target reaches; without it builds and runs are
# several times faster. Debug assertions stay on (overflow checks included).
# A crash is written to fuzz/artifacts/TARGET/; reproduce it with
#   cargo +nightly fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-…
# then turn it into a regression test of the module it hit.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(event_decode mapping_decode avro_decode changelog_record model_artifact policy_parse api_request)
FUZZ=(cargo +nightly fuzz)
COMMON=(-s none)

die() { echo "fuzz.sh: $*" >&2; exit 1; }

is_target() { local t; for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }

cmd_seed() {
    python3 - <<'PY'
import base64, os, re, subprocess, sys

root = "fuzz/corpus"
def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

def raw_strings(path, must):
    text = open(path, encoding="utf-8").read()
    return [s for s in re.findall(r'b?r#"(.*?)"#', text, re.S) if must in s]

# Native events: the payloads of the event tests, and what the engine writes.
for i, s in enumerate(raw_strings("src/event.rs", "event_id")):
    put("event_decode", f"event-test-{i}", s)
put("event_decode", "purchase", '{"event_id":"e1","user_id":"u1","type":"purchase","ts":"2026-05-01T10:00:00.000Z","amount":12.5}')
put("event_decode", "login", '{"event_id":"e2","user_id":"u1","type":"login","ts":"2026-05-01T10:00:00Z"}')

# Mappings: selector byte i = the i-th shipped mapping (see mapping_decode.rs), 4 = a mapping file.
maps = ["segment", "snowplow", "custom-example", "avro-example"]
for i, m in enumerate(maps):
    sample = f"deploy/mappings/samples/{m}.jsonl"
    if os.path.exists(sample):
        for j, line in enumerate(open(sample, encoding="utf-8").read().splitlines()[:12]):
            put("mapping_decode", f"{m}-{j}", bytes([i]) + line.encode())
    put("mapping_decode", f"file-{m}", bytes([4]) + open(f"deploy/mappings/{m}.toml", "rb").read())
for i, s in enumerate(raw_strings("src/mapping/tests.rs", "")):
    put("mapping_decode", f"mapping-test-{i}", bytes([4 if "=" in s and "{" not in s[:1] else 0]) + s.encode())

# Avro: the payloads tests/avro_input.rs sends (written by fastavro), if it is installed.
try:
    out = subprocess.run([sys.executable, "tests/avro_writer.py", "deploy/mappings/avro"],
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, payload = line.split(" ", 1)
        put("avro_decode", name, base64.b64decode(payload))
except Exception as e:  # noqa: BLE001 - the other corpora are still worth writing
    print(f"warning: no Avro seeds ({e}); install fastavro (pip) to write them", file=sys.stderr)

# Changelog: odd first byte = an event script (4 bytes per event, see fuzz/src/lib.rs).
put("changelog_record", "script-buyer", bytes([1, 0, 0, 0, 0, 0, 6, 5, 80, 0, 0, 24, 0, 0, 9, 48, 0, 0, 6, 30, 255]))
put("changelog_record", "script-two-users", bytes([1, 0, 0, 0, 0, 1, 2, 1, 0, 0, 7, 200, 40, 1, 13, 2, 0, 1, 14, 1, 0]))
put("changelog_record", "raw-empty-state", bytes([0, 1, 0, 0, 0, 0, 0]))

# Models: every shipped artifact.
for f in sorted(os.listdir("models")):
    if f.endswith(".json"):
        put("model_artifact", f, open(os.path.join("models", f), "rb").read())

# Policies: the embedded default, and the catch-all rule the policy tests build on.
default = open("deploy/policy/default.toml", encoding="utf-8").read()
put("policy_parse", "default.toml", default)
put("policy_parse", "catch-all", '[[rules]]\nname = "all"\naction = "member_perk"\nchannel = "push"\n')
put("policy_parse", "caps", '[caps]\ncooldown_days = 7\n[[rules]]\nname = "all"\naction = "member_perk"\nchannel = "push"\n')

# Lookup API: the requests tests/lookup_api.rs makes, as bytes on the wire.
tok = "fuzz-token-0123456789abcdef"
for name, req in {
    "user": f"GET /v1/users/u0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n",
    "export": f"GET /v1/users/u0/export HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n",
    "unknown": f"GET /v1/users/nobody HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n",
    "no-token": "GET /v1/users/u0 HTTP/1.1\r\nHost: x\r\n\r\n",
    "wrong-token": "GET /v1/users/u0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n\r\n",
    "long-id": f"GET /v1/users/{'a' * 300} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n",
    "encoded-id": f"GET /v1/users/a%0Ab HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n",
    "body": f"GET /v1/users/u0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nContent-Length: 3\r\n\r\nabc",
    "pipelined": f"GET /v1/users/u0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\nGET /v1/users/u1 HTTP/1.1\r\nHost: x\r\n\r\n",
}.items():
    put("api_request", name, req)
print("seeds written under fuzz/corpus/")
PY
}

cmd_build() {
    (cd fuzz && nice -n 19 "${FUZZ[@]}" build "${COMMON[@]}")
}

cmd_run() {
    local target=${1:?target} seconds=${2:?seconds}
    shift 2
    is_target "$target" || die "unknown target $target (targets: ${TARGETS[*]})"
    mkdir -p "fuzz/corpus/$target"
    (cd fuzz && "${FUZZ[@]}" run "${COMMON[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048 "$@")
}

cmd_ci() {
    local seconds=${1:?seconds} t scratch
    cmd_build
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for t in "${TARGETS[@]}"; do
        echo "--- fuzz $t for ${seconds}s"
        # A scratch copy: CI checks the committed corpus plus what it finds, and changes nothing.
        mkdir -p "$scratch/$t"
        cp -r "fuzz/corpus/$t/." "$scratch/$t/"
        local status=0
        (cd fuzz && "${FUZZ[@]}" run "${COMMON[@]}" "$t" "$scratch/$t" -- \
            -max_total_time="$seconds" -print_final_stats=1 -timeout=30 -rss_limit_mb=2048) \
            >"$scratch/$t.log" 2>&1 || status=$?
        grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$scratch/$t.log" || true
        if ((status != 0)); then
            tail -n 40 "$scratch/$t.log" >&2
            die "$t failed (exit $status): the input is under fuzz/artifacts/$t/"
        fi
    done
}

case "${1:-}" in
    list) printf '%s\n' "${TARGETS[@]}" ;;
    seed) cmd_seed ;;
    build) cmd_build ;;
    run) shift; cmd_run "$@" ;;
    ci) shift; cmd_ci "$@" ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
esac
