#!/usr/bin/env bash
# Manage the test broker: Tansu 0.6.0 (Apache-Kafka-compatible, written in Rust) on SQLite storage.
#
#   scripts/broker.sh install                              # cargo install tansu 0.6.0 (cached; ~8 min first time)
#   scripts/broker.sh start [--port P] [--dir D] [--storage sqlite|memory]   # start in background, wait for Kafka metadata, print bootstrap
#   scripts/broker.sh stop  [--dir D]                      # stop the broker started with the same --dir
#   scripts/broker.sh status [--port P] [--dir D]          # is it up?
#   scripts/broker.sh create-topic NAME PARTITIONS [--port P]   # via `tansu topic create`
#
# Defaults: --port 9092, --dir ${CHURNGUARD_BROKER_DIR:-/tmp/churnguard-broker}.
#
# Notes (see tests/util/mod.rs for the harness used by `cargo test`, which starts its own private broker):
#   * Storage is sqlite:// for everything that checks correctness. The in-memory engine loses
#     fetches that start inside a multi-record batch and misreports the high watermark;
#     `--storage memory` exists only for throughput benchmarks that read a topic from the start
#     with a fresh group (scripts/bench.sh --broker-engine memory). It needs a tansu built with
#     the dynostore feature: `cargo install tansu --version 0.6.0 --locked --no-default-features
#     --features libsql,dynostore --root DIR`, then TANSU_BIN=DIR/bin/tansu.
#     A sqlite:// path resolves against the cwd, so the broker is started from inside its data dir.
#   * Tansu does not auto-create topics: create them (here, or with the rdkafka AdminClient).
#   * Do not use Debian's librdkafka/kcat against Tansu: they fail the ApiVersions handshake.
set -euo pipefail

TANSU_VERSION=0.6.0
PORT=9092
DIR="${CHURNGUARD_BROKER_DIR:-/tmp/churnguard-broker}"
STORAGE_URL=sqlite://tansu.db
START_TIMEOUT_S=${BROKER_START_TIMEOUT_S:-60}
INSTALL_WAIT_S=${TANSU_INSTALL_WAIT_S:-1800}

die() { echo "broker.sh: $*" >&2; exit 1; }

find_tansu() {
    if [[ -n ${TANSU_BIN:-} ]]; then
        [[ -x $TANSU_BIN ]] || die "TANSU_BIN=$TANSU_BIN is not executable"
        echo "$TANSU_BIN"
    elif command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]]; then
        echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
    else
        return 1
    fi
}

tansu_bin() { find_tansu || die "tansu not installed: run \`bash scripts/broker.sh install\`"; }

# True while some other `cargo install tansu` is running (e.g. started by a provisioning step).
# Scans /proc directly: procps (pgrep) is not in minimal Debian images.
other_install_running() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        [[ -r $f ]] || continue
        if tr '\0' ' ' <"$f" 2>/dev/null | grep -q '^[c]argo install tansu\|/[c]argo install tansu'; then
            return 0
        fi
    done
    return 1
}

cmd_install() {
    local bin
    if bin=$(find_tansu); then
        echo "tansu already installed: $bin ($("$bin" --version 2>/dev/null || echo '?'))"
        return 0
    fi
    if other_install_running; then
        echo "another 'cargo install tansu' is running; waiting for it (up to ${INSTALL_WAIT_S}s)..."
        local waited=0
        while other_install_running && ((waited < INSTALL_WAIT_S)); do
            sleep 5; waited=$((waited + 5))
        done
        if bin=$(find_tansu); then
            echo "tansu installed by the other process: $bin"
            return 0
        fi
        other_install_running && die "timed out waiting for the other tansu install"
        echo "the other install finished without producing tansu; installing myself"
    fi
    echo "installing tansu $TANSU_VERSION (sqlite engine only; takes several minutes)..."
    cargo install tansu --version "$TANSU_VERSION" --locked --no-default-features --features libsql
    bin=$(find_tansu) || die "cargo install finished but tansu is not on PATH nor in ~/.cargo/bin"
    echo "installed: $bin"
}

# Pure-bash TCP probe (no nc needed).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Kafka metadata check: `tansu topic list` speaks the Kafka protocol (Metadata request).
metadata_ok() {
    local bin; bin=$(tansu_bin)
    timeout 10 "$bin" topic list --broker "tcp://127.0.0.1:$1" >/dev/null 2>&1
}

# Test-broker workaround: Tansu 0.6's SQLite engine looks up each fetched record's headers with a
# scan of its `header` table, so once alerts and dead letters (which carry headers) accumulate,
# fetches of the header-less input slow to a stop and the group coordinator stops answering
# (seen: sessions timing out after ~190k events with a few thousand alerts published). An index
# on the lookup's columns removes the scan. Needs the sqlite3 CLI; without it, a warning.
index_headers() {
    [[ $STORAGE_URL == sqlite://* ]] || return 0
    if ! command -v sqlite3 >/dev/null; then
        echo "warning: sqlite3 not found; Tansu's header table stays unindexed (long runs slow down)" >&2
        return 0
    fi
    sqlite3 "$DIR/${STORAGE_URL#sqlite://}" \
        "CREATE INDEX IF NOT EXISTS churnguard_header_record ON header (topition, offset_id);" \
        || echo "warning: could not index Tansu's header table" >&2
}

cmd_start() {
    local bin pid start=$SECONDS
    bin=$(tansu_bin)
    mkdir -p "$DIR"
    if [[ -f "$DIR/tansu.pid" ]] && kill -0 "$(cat "$DIR/tansu.pid")" 2>/dev/null; then
        die "a broker is already running from $DIR (pid $(cat "$DIR/tansu.pid")); run: $0 stop --dir $DIR"
    fi
    if port_open "$PORT"; then
        die "port $PORT is already in use"
    fi
    (
        cd "$DIR"
        # setsid: own session, so the broker survives this shell and `stop` can kill the group.
        # Explicit flags override tansu's env config (CLUSTER_ID, LISTENER_URL, ...); tansu also reads
        # a .env from its cwd, which is the data dir here.
        exec setsid "$bin" broker \
            --cluster-id churnguard-test \
            --storage-engine "$STORAGE_URL" \
            --listener-url "tcp://127.0.0.1:$PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$PORT" \
            </dev/null >>"$DIR/tansu.log" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$DIR/tansu.pid"
    echo "$PORT" >"$DIR/tansu.port"
    while :; do
        kill -0 "$pid" 2>/dev/null || { tail -20 "$DIR/tansu.log" >&2; die "tansu exited during startup (log: $DIR/tansu.log)"; }
        if port_open "$PORT" && metadata_ok "$PORT"; then break; fi
        ((SECONDS - start < START_TIMEOUT_S)) || { tail -20 "$DIR/tansu.log" >&2; die "tansu did not answer metadata within ${START_TIMEOUT_S}s"; }
        sleep 0.2
    done
    index_headers
    echo "tansu up (pid $pid, dir $DIR, $((SECONDS - start))s)" >&2
    echo "127.0.0.1:$PORT"
}

cmd_stop() {
    local pid
    [[ -f "$DIR/tansu.pid" ]] || { echo "no broker pid file in $DIR"; return 0; }
    pid=$(cat "$DIR/tansu.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "stopped tansu (pid $pid)"
    else
        echo "tansu (pid $pid) was not running"
    fi
    rm -f "$DIR/tansu.pid"
}

cmd_status() {
    if [[ -f "$DIR/tansu.port" ]]; then PORT=$(cat "$DIR/tansu.port"); fi
    if port_open "$PORT" && metadata_ok "$PORT"; then echo "up: 127.0.0.1:$PORT"; else echo "down"; return 1; fi
}

cmd_create_topic() {
    local name=$1 partitions=$2 bin
    bin=$(tansu_bin)
    # Tansu has no auto-create; `tansu topic create` sends a CreateTopics request.
    "$bin" topic create "$name" --partitions "$partitions" --broker "tcp://127.0.0.1:$PORT"
    echo "created topic $name ($partitions partitions) on 127.0.0.1:$PORT"
}

[[ $# -ge 1 ]] || die "usage: $0 {install|start|stop|status|create-topic NAME PARTITIONS} [--port P] [--dir D]"
sub=$1; shift
args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) PORT=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --storage)
            case $2 in
                sqlite) STORAGE_URL=sqlite://tansu.db ;;
                memory) STORAGE_URL=memory://tansu/ ;;
                *) die "--storage takes sqlite or memory, not $2" ;;
            esac
            shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
case $sub in start | stop | status) DIR=$(mkdir -p "$DIR" && cd "$DIR" && pwd) ;; esac

case $sub in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    create-topic)
        [[ ${#args[@]} -eq 2 ]] || die "usage: $0 create-topic NAME PARTITIONS [--port P]"
        cmd_create_topic "${args[0]}" "${args[1]}" ;;
    *) die "unknown subcommand: $sub" ;;
esac
