#!/usr/bin/env bash
# `make bench`: engine micro-benchmarks, an HTTPS load test of `applyguard serve` against a
# do-nothing baseline webhook on the same TLS stack, serve's memory with 10k Secrets + 10k
# ConfigMaps, and `applyguard scan` over 10k manifests. Writes target/bench/report.md and the raw
# numbers under target/bench/raw/. Targets are reported, never asserted: the exit code is 0
# whenever every measurement ran.
#
# Tools it installs when missing: oha (crates.io, `cargo install --locked` into target/tools; the
# first install compiles for 10-20 minutes on 2 cores), hyperfine, jq, curl and GNU time (Debian
# packages, when apt-get can run; without hyperfine the scan is timed with repeated GNU time).
#
# Knobs (environment):
#   BENCH_OUT=target/bench   where the report and raw numbers go
#   BENCH_DURATION=10s       length of each load run
#   BENCH_LEVELS="1 8 32 64" concurrency levels (keep-alive HTTP/1.1 connections)
#   BENCH_ROUNDS=2           passes over the levels; applyguard and baseline alternate
#   BENCH_SCAN_RUNS=10       timed scans
#   BENCH_PROFILE=0          1: perf-record serve under load at concurrency 8, and one scan
#   BENCH_SKIP_CRITERION=0   1: skip the engine micro-benchmarks
#   BENCH_REPORT_ONLY=0      1: only write report.md again from the last run's raw numbers
#   BENCH_INSTRUCTION_REPEATS=10  answers per callgrind run beyond the first (instruction counts)
#   BENCH_PORT_A=18443, BENCH_PORT_B=18444, BENCH_PORT_METRICS=18445
#                            loopback ports: applyguard, the baseline, applyguard's /metrics
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CARGO=${CARGO:-cargo}
OUT=${BENCH_OUT:-target/bench}
DURATION=${BENCH_DURATION:-10s}
LEVELS=${BENCH_LEVELS:-1 8 32 64}
ROUNDS=${BENCH_ROUNDS:-2}
SCAN_RUNS=${BENCH_SCAN_RUNS:-10}
PROFILE=${BENCH_PROFILE:-0}
SKIP_CRITERION=${BENCH_SKIP_CRITERION:-0}
PORT_A=${BENCH_PORT_A:-18443}
PORT_B=${BENCH_PORT_B:-18444}
PORT_M=${BENCH_PORT_METRICS:-18445}
OHA_VERSION=1.16.0
TOOLS=$ROOT/target/tools
OHA=$TOOLS/bin/oha
BIN=$ROOT/target/release/applyguard
BASELINE=$ROOT/target/release/examples/bench_baseline
FIXTURES=$ROOT/tests/fixtures/admission
LOAD_BODY=$FIXTURES/deployment-secrets-allowed.json
MIX_FIXTURES="pod-create-allowed deployment-create-allowed deployment-secrets-allowed
deployment-secrets-denied deployment-create-denied cronjob-create-dryrun-denied
statefulset-kafka-plaintext-denied configmap-create deployment-update-scale-only"

RAW=$OUT/raw
DATA=$OUT/data
CERTS=$OUT/certs
REPORT=$OUT/report.md

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# Tools

apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing Debian packages: $*"
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || return 1
    else
        return 1
    fi
}

install_tools() {
    local missing=()
    command -v jq >/dev/null || missing+=(jq)
    command -v curl >/dev/null || missing+=(curl)
    [[ -x /usr/bin/time ]] || missing+=(time)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}" || die "missing ${missing[*]} and cannot install them"
    fi
    command -v hyperfine >/dev/null || apt_install hyperfine ||
        log "hyperfine unavailable: timing the scan with repeated GNU time runs"
    if [[ ! -x $OHA ]] || [[ $("$OHA" --version) != *"$OHA_VERSION"* ]]; then
        log "installing oha $OHA_VERSION into $TOOLS (cargo install --locked; slow the first time)"
        "$CARGO" install oha --version "$OHA_VERSION" --locked --root "$TOOLS" >"$RAW/oha-install.log" 2>&1 ||
            die "cargo install oha failed: see $RAW/oha-install.log"
    fi
}

# ---------------------------------------------------------------------------------------------
# Servers

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT

now() { date +%s.%N; }

# wait_ready PORT PID NAME: polls /readyz until 200; prints seconds waited.
wait_ready() {
    local port=$1 pid=$2 name=$3 start
    start=$(now)
    for _ in $(seq 1 1200); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during start-up (see $RAW/$name.log)"
        if curl -fsS --cacert "$CERTS/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f\n", b - a }'
            return 0
        fi
        sleep 0.1
    done
    die "$name not ready on port $port after 120 s"
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# status_kb PID FIELD: a /proc/PID/status field in kB.
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# cpu_ticks PID: user + system clock ticks of the whole process.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# ---------------------------------------------------------------------------------------------
# Load runs

# run_load NAME PORT PID CONC LABEL [oha options...]: one oha run; writes $RAW/load/LABEL.json and
# appends a TSV row to $RAW/load.tsv.
run_load() {
    local name=$1 port=$2 pid=$3 conc=$4 label=$5
    shift 5
    local out=$RAW/load/$label.json t0 t1 load
    load=$(load_avg)
    t0=$(cpu_ticks "$pid")
    : >"$RAW/$name.log"
    # LOAD_CPU pins oha to one CPU (the one-core runs); unset, it runs anywhere.
    ${LOAD_CPU:+taskset -c "$LOAD_CPU"} "$OHA" -z "$DURATION" -c "$conc" --no-tui --output-format json --cacert "$CERTS/ca.crt" \
        -m POST -H 'Content-Type: application/json' "$@" \
        "https://127.0.0.1:$port/validate" >"$out"
    t1=$(cpu_ticks "$pid")
    local logged
    logged=$(wc -l <"$RAW/$name.log")
    jq -r --arg name "$name" --arg lbl "$label" --arg conc "$conc" --arg load "$load" \
        --arg ticks "$((t1 - t0))" --arg hz "$(getconf CLK_TCK)" --arg logged "$logged" '
        (.statusCodeDistribution["200"] // 0) as $ok
        | [$lbl, $name, $conc, .summary.requestsPerSec, .latencyPercentiles.p50 * 1000,
           .latencyPercentiles.p99 * 1000, $ok,
           ([.statusCodeDistribution | to_entries[] | select(.key != "200") | .value] | add // 0),
           ([.errorDistribution | to_entries[] | select(.key | test("deadline") | not) | .value]
            | add // 0),
           (if $ok > 0 then ($ticks | tonumber) / ($hz | tonumber) * 1e6 / $ok else 0 end),
           $logged, $load]
        | @tsv' "$out" >>"$RAW/load.tsv"
    tail -n 1 "$RAW/load.tsv" | awk -F'\t' '{ printf "  %-28s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %.0f us/req  load %s\n", $1, $4, $5, $6, $10, $12 }' >&2
}

# ---------------------------------------------------------------------------------------------
# Report helpers

# crit GROUP/NAME: "mean (median) in us" from criterion's estimates.
crit_row() {
    local id=$1 file=target/criterion/$1/new/estimates.json
    if [[ -f $file ]]; then
        jq -r --arg id "$id" '"| `\($id)` | \(.mean.point_estimate / 1000 | . * 100 | round / 100) | \(.median.point_estimate / 1000 | . * 100 | round / 100) | \(.mean.confidence_interval.lower_bound / 1000 | . * 100 | round / 100) - \(.mean.confidence_interval.upper_bound / 1000 | . * 100 | round / 100) |"' "$file"
    else
        echo "| \`$id\` | (not run) | | |"
    fi
}

# perf_summary DATA: inclusive (children) and self percentages of the top user-space symbols.
perf_summary() {
    perf report -i "$1" --children --sort symbol --stdio -g none 2>/dev/null |
        grep -E '^ +[0-9]' | grep -v '\[k\]' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' |
        cut -c1-220 | head -n 150 || true
}

met() { if awk -v v="$1" -v t="$3" "BEGIN { exit !(v $2 t) }"; then echo "met"; else echo "**missed**"; fi; }

# ---------------------------------------------------------------------------------------------

main() {
    mkdir -p "$RAW/load"
    rm -f "$RAW/load.tsv" "$RAW/load"/*.json
    local load_start started
    load_start=$(load_avg)
    started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    log "load average at start: $load_start"

    install_tools

    log "building (release): applyguard and the bench baseline"
    "$CARGO" build --release --locked --bin applyguard --example bench_baseline --example respond_instructions

    log "generating 10k Secrets + 10k ConfigMaps and 10k scan manifests in $DATA"
    scripts/bench/generate.sh "$DATA" >&2
    "$BIN" certs --out "$CERTS" >"$RAW/certs.txt"
    local mix=$RAW/mix.jsonl
    : >"$mix"
    local f
    for f in $MIX_FIXTURES; do
        jq -c . "$FIXTURES/$f.json" >>"$mix"
    done

    # 1. Engine micro-benchmarks.
    if [[ $SKIP_CRITERION != 1 ]]; then
        log "criterion: engine micro-benchmarks"
        "$CARGO" bench --locked --bench engine 2>&1 | tee "$RAW/criterion.txt" >&2
    fi

    # 2. Load test.
    port_free "$PORT_A" || die "port $PORT_A is in use (set BENCH_PORT_A)"
    port_free "$PORT_B" || die "port $PORT_B is in use (set BENCH_PORT_B)"
    port_free "$PORT_M" || die "port $PORT_M is in use (set BENCH_PORT_METRICS)"
    log "starting applyguard serve (10k Secrets + 10k ConfigMaps) and the baseline"
    # As deployed: text logs (one line per decision, to a file), metrics on (here on loopback),
    # the allocator settings of deploy/Dockerfile.
    MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0 "$BIN" serve --listen "127.0.0.1:$PORT_A" --metrics-listen "127.0.0.1:$PORT_M" \
        --tls-cert "$CERTS/tls.crt" --tls-key "$CERTS/tls.key" \
        --config scripts/bench/policy.yaml --inventory "$DATA/inventory" >>"$RAW/applyguard.log" 2>&1 &
    local pid_a=$!
    PIDS+=("$pid_a")
    "$BASELINE" --listen "127.0.0.1:$PORT_B" --tls-cert "$CERTS/tls.crt" --tls-key "$CERTS/tls.key" \
        >>"$RAW/baseline.log" 2>&1 &
    local pid_b=$!
    PIDS+=("$pid_b")
    local ready_a ready_b
    ready_a=$(wait_ready "$PORT_A" "$pid_a" applyguard)
    ready_b=$(wait_ready "$PORT_B" "$pid_b" baseline)
    log "ready: applyguard after ${ready_a}s, baseline after ${ready_b}s"
    local rss_idle hwm_idle rss_b_idle
    rss_idle=$(status_kb "$pid_a" VmRSS)
    hwm_idle=$(status_kb "$pid_a" VmHWM)
    rss_b_idle=$(status_kb "$pid_b" VmRSS)

    # Both must answer the load body, and applyguard must allow it (the inventory resolves it).
    curl -fsS --cacert "$CERTS/ca.crt" -H 'Content-Type: application/json' --data-binary "@$LOAD_BODY" \
        "https://127.0.0.1:$PORT_A/validate" >"$RAW/answer-applyguard.json"
    curl -fsS --cacert "$CERTS/ca.crt" -H 'Content-Type: application/json' --data-binary "@$LOAD_BODY" \
        "https://127.0.0.1:$PORT_B/validate" >"$RAW/answer-baseline.json"
    [[ $(jq -r .response.allowed "$RAW/answer-applyguard.json") == true ]] ||
        die "applyguard did not allow the load body: $(cat "$RAW/answer-applyguard.json")"
    [[ $(jq -r .response.allowed "$RAW/answer-baseline.json") == true ]] ||
        die "the baseline did not answer the load body"

    log "warm-up (2 s each)"
    "$OHA" -z 2s -c 8 --no-tui --output-format quiet --cacert "$CERTS/ca.crt" -m POST \
        -H 'Content-Type: application/json' -D "$LOAD_BODY" "https://127.0.0.1:$PORT_A/validate"
    "$OHA" -z 2s -c 8 --no-tui --output-format quiet --cacert "$CERTS/ca.crt" -m POST \
        -H 'Content-Type: application/json' -D "$LOAD_BODY" "https://127.0.0.1:$PORT_B/validate"

    printf 'label\tserver\tconcurrency\trps\tp50_ms\tp99_ms\tok\tnon_200\terrors\tserver_cpu_us_per_req\tlog_lines\tloadavg\n' \
        >"$RAW/load.tsv.header"
    local round c
    for round in $(seq 1 "$ROUNDS"); do
        for c in $LEVELS; do
            log "round $round, concurrency $c ($DURATION each)"
            # Alternate which server goes first so a burst of outside load hurts both alike.
            if ((round % 2)); then
                run_load applyguard "$PORT_A" "$pid_a" "$c" "r$round-c$c-applyguard" -D "$LOAD_BODY"
                run_load baseline "$PORT_B" "$pid_b" "$c" "r$round-c$c-baseline" -D "$LOAD_BODY"
            else
                run_load baseline "$PORT_B" "$pid_b" "$c" "r$round-c$c-baseline" -D "$LOAD_BODY"
                run_load applyguard "$PORT_A" "$pid_a" "$c" "r$round-c$c-applyguard" -D "$LOAD_BODY"
            fi
        done
    done
    log "extra runs at concurrency 8: a mix of $(wc -l <"$mix") fixtures; HTTP/2 (1 connection, 8 streams)"
    run_load applyguard "$PORT_A" "$pid_a" 8 "mix-c8-applyguard" -Z "$mix"
    run_load baseline "$PORT_B" "$pid_b" 8 "mix-c8-baseline" -Z "$mix"
    run_load applyguard "$PORT_A" "$pid_a" 1 "h2-p8-applyguard" --http2 -p 8 -D "$LOAD_BODY"
    run_load baseline "$PORT_B" "$pid_b" 1 "h2-p8-baseline" --http2 -p 8 -D "$LOAD_BODY"
    # One core: every thread of each server on CPU 0, oha on CPU 1, so neither server can
    # borrow the second core and the load generator does not compete with them.
    if command -v taskset >/dev/null && (($(nproc) >= 2)); then
        log "one core: servers pinned to CPU 0, oha to CPU 1, concurrency 8"
        taskset -a -p -c 0 "$pid_a" >/dev/null
        taskset -a -p -c 0 "$pid_b" >/dev/null
        LOAD_CPU=1 run_load applyguard "$PORT_A" "$pid_a" 8 "core1-c8-applyguard" -D "$LOAD_BODY"
        LOAD_CPU=1 run_load baseline "$PORT_B" "$pid_b" 8 "core1-c8-baseline" -D "$LOAD_BODY"
        taskset -a -p -c "0-$(($(nproc) - 1))" "$pid_a" >/dev/null
        taskset -a -p -c "0-$(($(nproc) - 1))" "$pid_b" >/dev/null
    fi
    # Open loop: a fixed arrival rate, latencies measured from when each request was due
    # (--latency-correction), so a slow answer delays the clock, not the next request.
    log "open loop at 1,000 requests/s: the allowed and the denied fixture"
    local open_body
    for open_body in allowed:"$LOAD_BODY" denied:"$FIXTURES/deployment-secrets-denied.json"; do
        run_load applyguard "$PORT_A" "$pid_a" 8 "open-${open_body%%:*}-applyguard" -q 1000 --latency-correction -D "${open_body#*:}"
        run_load baseline "$PORT_B" "$pid_b" 8 "open-${open_body%%:*}-baseline" -q 1000 --latency-correction -D "${open_body#*:}"
    done

    if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
        log "perf: serve under load at concurrency 8"
        perf record -F 499 --call-graph dwarf,16384 -p "$pid_a" -o "$RAW/perf-serve.data" -- sleep 8 \
            >/dev/null 2>&1 &
        local perf_pid=$!
        "$OHA" -z 8s -c 8 --no-tui --output-format quiet --cacert "$CERTS/ca.crt" -m POST \
            -H 'Content-Type: application/json' -D "$LOAD_BODY" "https://127.0.0.1:$PORT_A/validate"
        wait "$perf_pid" || true
        perf_summary "$RAW/perf-serve.data" >"$RAW/perf-serve.txt"
    fi

    # 3. Memory, after the load test.
    local rss hwm rss_b hwm_b
    rss=$(status_kb "$pid_a" VmRSS)
    hwm=$(status_kb "$pid_a" VmHWM)
    rss_b=$(status_kb "$pid_b" VmRSS)
    hwm_b=$(status_kb "$pid_b" VmHWM)
    grep -E '^(VmRSS|VmHWM|RssAnon|RssFile|Threads)' "/proc/$pid_a/status" >"$RAW/serve-status.txt"
    cleanup

    # 4. Scan speed.
    log "scan: $SCAN_RUNS timed runs over $DATA/scan"
    local scan_exit=0
    "$BIN" scan --format json "$DATA/scan" >"$RAW/scan-report.json" || scan_exit=$?
    /usr/bin/time -f '%e %U %S %M' -o "$RAW/scan-time-once.txt" "$BIN" scan "$DATA/scan" >/dev/null || true
    local scan_wall scan_user scan_sys scan_sd scan_tool
    if command -v hyperfine >/dev/null; then
        scan_tool="hyperfine $(hyperfine --version | cut -d' ' -f2)"
        hyperfine --warmup 1 --runs "$SCAN_RUNS" -i --export-json "$RAW/scan-hyperfine.json" \
            "$BIN scan $DATA/scan" >&2
        read -r scan_wall scan_sd scan_user scan_sys < <(jq -r '.results[0] | "\(.mean) \(.stddev) \(.user) \(.system)"' "$RAW/scan-hyperfine.json")
    else
        scan_tool="GNU time, $SCAN_RUNS runs"
        : >"$RAW/scan-times.txt"
        for _ in $(seq 1 "$SCAN_RUNS"); do
            /usr/bin/time -f '%e %U %S' -a -o "$RAW/scan-times.txt" "$BIN" scan "$DATA/scan" >/dev/null || true
        done
        read -r scan_wall scan_sd scan_user scan_sys < <(awk '{ n++; w += $1; ww += $1 * $1; u += $2; s += $3 }
            END { m = w / n; v = ww / n - m * m; if (v < 0) v = 0; printf "%f %f %f %f\n", m, sqrt(v), u / n, s / n }' "$RAW/scan-times.txt")
    fi
    if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
        log "perf: one scan"
        perf record -F 999 --call-graph dwarf,16384 -o "$RAW/perf-scan.data" -- "$BIN" scan "$DATA/scan" \
            >/dev/null 2>&1 || true
        perf_summary "$RAW/perf-scan.data" >"$RAW/perf-scan.txt"
    fi

    # 3b. Memory and start-up at 100k Secrets + 100k ConfigMaps.
    scale

    # 5. Instructions per request (callgrind counts them exactly, whatever else the machine runs).
    instructions

    local load_end
    load_end=$(load_avg)
    cat "$RAW/load.tsv.header" "$RAW/load.tsv" >"$RAW/load-results.tsv"
    rm -f "$RAW/load.tsv.header"
    # The scalar results, so that the report can be written again (BENCH_REPORT_ONLY=1).
    {
        local var
        for var in started load_start load_end ready_a ready_b rss_idle hwm_idle rss_b_idle rss hwm \
            rss_b hwm_b scan_exit scan_tool scan_wall scan_sd scan_user scan_sys; do
            printf '%s=%q\n' "$var" "${!var}"
        done
    } >"$RAW/results.env"
    write_report
    log "report: $REPORT"
}

# Start-up and memory at scale, into $RAW/scale.tsv (set, objects, seconds to ready, VmRSS, VmHWM):
# serve on BENCH_SCALE_NAMESPACES (500) namespaces of 200 Secrets + 200 ConfigMaps, then on their
# Secrets only, their ConfigMaps only, on shop.yaml only, and on shop.yaml plus 10k Deployments and
# 20k bare Pods (the deletion guard's references index), so that the bytes each cached Secret and
# ConfigMap costs, and what the index costs, are the differences, not guesses.
SCALE_NAMESPACES=${BENCH_SCALE_NAMESPACES:-500}
scale() {
    local big=$DATA/scale f d
    rm -rf "$big"
    mkdir -p "$big/inventory" "$big/secrets" "$big/configmaps" "$big/empty" "$big/readers"
    log "scale: generating $((SCALE_NAMESPACES * 200)) Secrets + $((SCALE_NAMESPACES * 200)) ConfigMaps"
    awk -v out="$big" -v namespaces="$SCALE_NAMESPACES" -v inventory_only=1 -f scripts/bench/generate.awk
    for f in "$big"/inventory/team-*.yaml; do
        # The same documents split by kind (Namespaces in both).
        awk -v s="$big/secrets/${f##*/}" -v c="$big/configmaps/${f##*/}" '
            function flush() {
                if (doc != "") {
                    if (kind != "ConfigMap") printf "%s", doc > s
                    if (kind != "Secret") printf "%s", doc > c
                }
                doc = ""
                kind = ""
            }
            /^---$/ { flush() }
            /^kind: / { kind = $2 }
            { doc = doc $0 "\n" }
            END { flush() }' "$f"
    done
    awk -v out="$big/readers" -v namespaces="$SCALE_NAMESPACES" -f scripts/bench/readers.awk
    for d in inventory secrets configmaps empty readers; do
        cp tests/fixtures/inventory/shop.yaml "$big/$d/"
    done
    : >"$RAW/scale.tsv"
    local start pid ready objects
    for d in inventory secrets configmaps empty readers; do
        # The readers set counts its workloads; the others their Secrets and ConfigMaps.
        if [[ $d == readers ]]; then
            objects=$(cat "$big/$d"/readers-*.yaml | grep -cE '^kind: (Deployment|Pod)$' || true)
        else
            objects=$(cat "$big/$d"/*.yaml | grep -cE '^kind: (Secret|ConfigMap)$' || true)
        fi
        start=$(now)
        MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0 "$BIN" serve --listen "127.0.0.1:$PORT_A" \
            --metrics-listen off --tls-cert "$CERTS/tls.crt" --tls-key "$CERTS/tls.key" \
            --config scripts/bench/policy.yaml --inventory "$big/$d" >>"$RAW/applyguard-scale.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_ready "$PORT_A" "$pid" applyguard-scale >/dev/null
        ready=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
        printf '%s\t%s\t%s\t%s\t%s\n' "$d" "$objects" "$ready" "$(status_kb "$pid" VmRSS)" \
            "$(status_kb "$pid" VmHWM)" >>"$RAW/scale.tsv"
        log "scale: $d ($objects objects): ready in ${ready} s, RSS $(status_kb "$pid" VmRSS) kB"
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset 'PIDS[-1]'
    done
}

# Instructions of one admission::respond per fixture, into $RAW/instructions.tsv: callgrind runs
# examples/respond_instructions with 1 and with 1 + N answers of the same body, and the difference
# divided by N is one request without the start-up (policy, inventory, engine). The inventory is
# tests/fixtures/inventory (the 20k-object one takes minutes to load under valgrind; lookups are
# hash lookups, so the count per request does not depend on its size).
INSTRUCTION_REPEATS=${BENCH_INSTRUCTION_REPEATS:-10}
instructions() {
    local tsv=$RAW/instructions.tsv
    : >"$tsv"
    if ! command -v valgrind >/dev/null && ! apt_install valgrind; then
        log "valgrind not available: instruction counts skipped"
        return 0
    fi
    if ((INSTRUCTION_REPEATS < 1)); then
        log "BENCH_INSTRUCTION_REPEATS < 1: instruction counts skipped"
        return 0
    fi
    log "callgrind: instructions per admission::respond, ${INSTRUCTION_REPEATS} repeats per fixture"
    local f one many
    for f in $MIX_FIXTURES; do
        one=$(callgrind_total "$FIXTURES/$f.json" 1 || true)
        many=$(callgrind_total "$FIXTURES/$f.json" $((INSTRUCTION_REPEATS + 1)) || true)
        if [[ -z $one || -z $many ]]; then
            log "callgrind: no count for $f (see valgrind's output by running callgrind_total by hand)"
            continue
        fi
        printf '%s\t%s\n' "$f" $(((many - one) / INSTRUCTION_REPEATS)) >>"$tsv"
    done
}
callgrind_total() { # REVIEW TIMES -> total instructions of the run
    # One rayon thread: idle workers spinning after the inventory load would add to the count.
    RAYON_NUM_THREADS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        "$ROOT/target/release/examples/respond_instructions" scripts/bench/policy.yaml \
        tests/fixtures/inventory "$1" "$2" 2>&1 >/dev/null | awk '/Collected :/ { print $NF }'
}

# Writes the report again from the raw numbers of the last run (after editing findings.md).
report_only() {
    [[ -f $RAW/results.env ]] || die "no $RAW/results.env: run the benchmarks first"
    local started load_start load_end ready_a ready_b rss_idle hwm_idle rss_b_idle rss hwm rss_b hwm_b \
        scan_exit scan_tool scan_wall scan_sd scan_user scan_sys
    # shellcheck source=/dev/null
    source "$RAW/results.env"
    write_report
    log "report: $REPORT"
}

write_report() {
    local tsv=$RAW/load.tsv
    {
        echo "# applyguard benchmarks"
        echo
        echo "Run $started on $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(rustc --version), oha $("$OHA" --version | cut -d' ' -f2)."
        echo "Commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')."
        echo "Load averages (1, 5, 15 min): at start $load_start; at the end $load_end; each load run's own is in the raw table."
        echo "The machine is shared: other compiles inflate latencies and lower throughput, for both servers alike."
        echo
        echo "## Targets"
        echo
        echo "| target | measured | |"
        echo "| --- | --- | --- |"
        local c ratio
        for c in $LEVELS; do
            ratio=$(awk -F'\t' -v c="$c" '$3 == c && $1 ~ /^r[0-9]/ { if ($2 == "applyguard") a += $4; else b += $4 }
                END { if (b > 0) printf "%.2f", a / b; else print "0" }' "$tsv")
            echo "| throughput ratio applyguard / baseline, concurrency $c: >= 0.9 | $ratio | $(met "$ratio" '>=' 0.9) |"
        done
        local extra
        for extra in h2-p8:"HTTP/2, 8 streams" core1-c8:"servers on one core, concurrency 8"; do
            ratio=$(awk -F'\t' -v l="${extra%%:*}" '$1 == l "-applyguard" { a = $4 } $1 == l "-baseline" { b = $4 }
                END { if (b > 0) printf "%.2f", a / b }' "$tsv")
            [[ -n $ratio ]] || continue
            echo "| throughput ratio applyguard / baseline, ${extra#*:}: >= 0.9 | $ratio | $(met "$ratio" '>=' 0.9) |"
        done
        local open q a b r
        for open in allowed denied; do
            for q in p50:5 p99:6; do
                a=$(awk -F'\t' -v l="open-$open-applyguard" -v f="${q#*:}" '$1 == l { print $f }' "$tsv")
                b=$(awk -F'\t' -v l="open-$open-baseline" -v f="${q#*:}" '$1 == l { print $f }' "$tsv")
                [[ -n $a && -n $b ]] || continue
                r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
                echo "| open loop 1,000 req/s, $open body: ${q%%:*} <= 1.1 x the baseline's | $(printf '%.3f' "$a") ms vs $(printf '%.3f' "$b") ms ($r x) | $(met "$r" '<=' 1.1) |"
            done
        done
        local cpu
        cpu=$(awk -F'\t' '$3 == 8 && $1 ~ /^r[0-9]/ { if ($2 == "applyguard") { a += $10; na++ } else { b += $10; nb++ } }
            END { if (na && nb) printf "%.0f us (baseline %.0f us; baseline / applyguard %.2f)", a / na, b / nb, (b / nb) / (a / na) }' "$tsv")
        echo "| (informative) server CPU per request at concurrency 8, least disturbed by other load | $cpu | |"
        local p99 p99_b
        p99=$(awk -F'\t' '$3 == 8 && $2 == "applyguard" && $1 ~ /^r[0-9]/ { if ($6 > m) m = $6 } END { printf "%.3f", m }' "$tsv")
        p99_b=$(awk -F'\t' '$3 == 8 && $2 == "baseline" && $1 ~ /^r[0-9]/ { if ($6 > m) m = $6 } END { printf "%.3f", m }' "$tsv")
        echo "| p99 latency at concurrency 8 (worst round): < 1 ms | $p99 ms (baseline $p99_b ms) | $(met "$p99" '<' 1) |"
        local rss_mb
        rss_mb=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
        echo "| RSS of serve with 10k Secrets + 10k ConfigMaps, after the load test: < 40 MB | $rss_mb MiB (peak $(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }') MiB) | $(met "$rss_mb" '<' 40) |"
        echo "| scan of 10,000 manifests: < 1 s | $(printf '%.3f' "$scan_wall") s wall | $(met "$scan_wall" '<' 1) |"
        if [[ -s $RAW/scale.tsv ]]; then
            local big_rss big_ready
            big_rss=$(awk -F'\t' '$1 == "inventory" { printf "%.1f", $4 / 1024 }' "$RAW/scale.tsv")
            big_ready=$(awk -F'\t' '$1 == "inventory" { print $3 }' "$RAW/scale.tsv")
            echo "| RSS of serve with 100k Secrets + 100k ConfigMaps, once ready: < 150 MiB | $big_rss MiB | $(met "$big_rss" '<' 150) |"
            echo "| ready from those manifests: < 3 s | $big_ready s | $(met "$big_ready" '<' 3) |"
            local readers_extra
            readers_extra=$(awk -F'\t' '{ rss[$1] = $4 } END { printf "%.1f", (rss["readers"] - rss["empty"]) / 1024 }' "$RAW/scale.tsv")
            echo "| references index of 10k Deployments + 20k bare Pods: < 30 MiB more RSS | $readers_extra MiB | $(met "$readers_extra" '<' 30) |"
        fi
        echo
        echo "## 1. Engine (criterion, in-process, one thread)"
        echo
        echo "All rules on (\`scripts/bench/policy.yaml\`), inventory of 10,000 Secrets + 10,000 ConfigMaps in 50 namespaces."
        echo "\`decide/*\` is \`Engine::decide\` on a parsed object; \`respond/*\` is \`admission::respond\` on AdmissionReview bytes"
        echo "(parse, decide, encode) for fixtures in \`tests/fixtures/admission/\`; \`parse/*\` is what the baseline does."
        echo
        echo "| benchmark | mean (us) | median (us) | 95% CI of mean (us) |"
        echo "| --- | ---: | ---: | --- |"
        local id
        for id in decide/pod decide/deployment-10-containers decide/cronjob decide/deployment-10-containers-missing-secret \
            respond/pod-create-allowed respond/deployment-secrets-allowed respond/deployment-secrets-denied \
            respond/deployment-create-denied respond/cronjob-create-dryrun-denied \
            respond/statefulset-kafka-plaintext-denied parse/deployment-secrets-allowed; do
            crit_row "$id"
        done
        echo
        echo "## 2. HTTPS load: applyguard serve vs the baseline"
        echo
        echo "oha over keep-alive HTTP/1.1 connections (\`-c\` = connections = requests in flight), $DURATION per run,"
        echo "POST \`tests/fixtures/admission/deployment-secrets-allowed.json\` (three Secret references, one produced by an"
        echo "ExternalSecret; answer: allowed). oha trusts the run's own CA (\`--cacert\`). The load generator runs on the"
        echo "same 2 cores as the server, so absolute req/s are a floor; the ratio and the server CPU per request"
        echo "(\`/proc/PID/stat\` utime+stime over the run / requests) are the comparable numbers. applyguard logs one"
        echo "line per decision to a file, as it would in production; the baseline logs nothing."
        echo
        echo "| c | round | applyguard req/s | p50 ms | p99 ms | CPU us/req | baseline req/s | p50 ms | p99 ms | CPU us/req | ratio | load avg |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
        awk -F'\t' '$1 ~ /^r[0-9]/ { split($1, p, "-"); key = p[2] "\t" substr(p[1], 2)
                if ($2 == "applyguard") { a[key] = $0 } else { b[key] = $0 }; keys[key] = 1 }
            END { for (k in keys) print k }' "$tsv" | sort -t$'\t' -k1.2,1n -k2,2n |
            while IFS=$'\t' read -r cl r; do
                local ra rb
                ra=$(awk -F'\t' -v l="r$r-$cl-applyguard" '$1 == l' "$tsv")
                rb=$(awk -F'\t' -v l="r$r-$cl-baseline" '$1 == l' "$tsv")
                paste <(echo "$ra") <(echo "$rb") | awk -F'\t' -v r="$r" '{
                    printf "| %d | %d | %.0f | %.3f | %.3f | %.0f | %.0f | %.3f | %.3f | %.0f | %.2f | %s |\n",
                        $3, r, $4, $5, $6, $10, $16, $17, $18, $22, ($16 > 0 ? $4 / $16 : 0), $12 }'
            done
        echo
        echo "Extra runs at 8 in flight:"
        echo
        echo "| run | applyguard req/s | p50 ms | p99 ms | CPU us/req | baseline req/s | p50 ms | p99 ms | CPU us/req | ratio |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        local run desc
        for run in mix-c8 h2-p8 core1-c8 open-allowed open-denied; do
            case $run in
            core1-c8) desc="one core: each server pinned to CPU 0 (taskset), oha on CPU 1, 8 connections" ;;
            mix-c8) desc="mix of $(wc -l <"$RAW/mix.jsonl") fixtures (allowed, denied, ConfigMap, scale-only update), 8 HTTP/1.1 connections" ;;
            h2-p8) desc="HTTP/2, 1 connection, 8 concurrent streams" ;;
            open-allowed) desc="open loop, 1,000 req/s (oha -q 1000 --latency-correction), the allowed body" ;;
            open-denied) desc="open loop, 1,000 req/s, deployment-secrets-denied (the baseline allows it)" ;;
            esac
            paste <(awk -F'\t' -v l="$run-applyguard" '$1 == l' "$tsv") <(awk -F'\t' -v l="$run-baseline" '$1 == l' "$tsv") |
                awk -F'\t' -v d="$desc" '{ printf "| %s | %.0f | %.3f | %.3f | %.0f | %.0f | %.3f | %.3f | %.0f | %.2f |\n",
                    d, $4, $5, $6, $10, $16, $17, $18, $22, ($16 > 0 ? $4 / $16 : 0) }'
        done
        local bad
        bad=$(awk -F'\t' '{ n += $8 + $9 } END { print n + 0 }' "$tsv")
        echo
        echo "Non-200 answers and transport errors over all runs: $bad (requests cut by the end of a run are not counted)."
        echo
        echo "## 3. Memory"
        echo
        echo "| process | VmRSS after start | VmRSS after the load test | VmHWM (peak) |"
        echo "| --- | ---: | ---: | ---: |"
        awk -v a="$rss_idle" -v b="$rss" -v c="$hwm" 'BEGIN { printf "| applyguard serve, 10k Secrets + 10k ConfigMaps | %.1f MiB | %.1f MiB | %.1f MiB |\n", a / 1024, b / 1024, c / 1024 }'
        awk -v a="$rss_b_idle" -v b="$rss_b" -v c="$hwm_b" 'BEGIN { printf "| baseline (no inventory) | %.1f MiB | %.1f MiB | %.1f MiB |\n", a / 1024, b / 1024, c / 1024 }'
        echo
        echo "Start-up to ready (loading and indexing the 20k-object inventory from $(find "$DATA/inventory" -name '*.yaml' | wc -l) files): ${ready_a} s (baseline ${ready_b} s)."
        echo "Idle peak before the load test: $(awk -v k="$hwm_idle" 'BEGIN { printf "%.1f", k / 1024 }') MiB."
        echo
        echo "### At scale"
        echo
        if [[ -s $RAW/scale.tsv ]]; then
            echo "serve on $SCALE_NAMESPACES namespaces of 200 Secrets + 200 ConfigMaps (\`scripts/bench/generate.awk\`), on their Secrets only,"
            echo "their ConfigMaps only, \`shop.yaml\` only, and \`shop.yaml\` with 10k Deployments + 20k bare Pods (\`scripts/bench/readers.awk\`, 70k Secret"
            echo "references: the deletion guard's index); start-up to ready from launch, memory once ready."
            echo
            echo "| inventory | Secrets + ConfigMaps (readers: Deployments + Pods) | ready (s) | VmRSS | VmHWM |"
            echo "| --- | ---: | ---: | ---: | ---: |"
            awk -F'\t' '{ printf "| %s | %d | %s | %.1f MiB | %.1f MiB |\n", $1, $2, $3, $4 / 1024, $5 / 1024 }' "$RAW/scale.tsv"
            echo
            awk -F'\t' '{ rss[$1] = $4; n[$1] = $2 }
                END {
                    printf "Bytes per cached Secret: %.0f; per ConfigMap (four keys, ~300 bytes of values): %.0f", \
                        (rss["secrets"] - rss["empty"]) * 1024 / (n["secrets"] - n["empty"]), \
                        (rss["configmaps"] - rss["empty"]) * 1024 / (n["configmaps"] - n["empty"])
                    print " (RSS differences from the shop.yaml-only start, so allocator overhead included)."
                }' "$RAW/scale.tsv"
        else
            echo "Not measured."
        fi
        echo
        echo "## 4. Scan"
        echo
        local objects findings
        objects=$(jq -r '.summary.objects' "$RAW/scan-report.json" 2>/dev/null || echo "?")
        findings=$(jq -r '.findings | length' "$RAW/scan-report.json" 2>/dev/null || echo "?")
        echo "\`applyguard scan $DATA/scan\`: $(find "$DATA/scan" -name '*.yaml' | wc -l) files, $objects objects, $findings findings (exit $scan_exit, as expected with findings)."
        echo "Timed with $scan_tool (output discarded)."
        echo
        echo "| wall mean (s) | wall stddev (s) | user CPU (s) | system CPU (s) | peak RSS of one run |"
        echo "| ---: | ---: | ---: | ---: | ---: |"
        awk -v w="$scan_wall" -v sd="$scan_sd" -v u="$scan_user" -v s="$scan_sys" -v m="$(tail -n 1 "$RAW/scan-time-once.txt" | cut -d' ' -f4)" \
            'BEGIN { printf "| %.3f | %.3f | %.3f | %.3f | %.1f MiB |\n", w, sd, u, s, m / 1024 }'
        echo
        echo "## 5. Instructions per request (callgrind)"
        echo
        if [[ -s $RAW/instructions.tsv ]]; then
            echo "\`admission::respond\` (parse, decide, encode) on each fixture, all rules on, inventory \`tests/fixtures/inventory\`:"
            echo "the difference of $((INSTRUCTION_REPEATS + 1)) and 1 answers, divided by $INSTRUCTION_REPEATS (\`examples/respond_instructions.rs\`)."
            echo "Exact for a given build and input: compare two builds by these, not by times."
            echo
            echo "| fixture | instructions per request |"
            echo "| --- | ---: |"
            awk -F'\t' '{ printf "| %s | %d |\n", $1, $2 }' "$RAW/instructions.tsv"
        else
            echo "Not measured (valgrind not available)."
        fi
        echo
        if [[ -f scripts/bench/findings.md ]]; then
            cat scripts/bench/findings.md
            echo
        fi
        echo "## Raw numbers"
        echo
        echo "\`$RAW/\`: \`load-results.tsv\` (one row per load run), \`load/*.json\` (oha), \`criterion.txt\` and"
        local bt='`' extra=""
        [[ $PROFILE == 1 ]] && extra=", ${bt}perf-*.txt${bt} (perf report of serve under load and of one scan)"
        echo "\`target/criterion/*/*/new/estimates.json\`, \`scan-*.json|txt\`, \`serve-status.txt\`$extra."
    } >"$REPORT"
}

if [[ ${BENCH_REPORT_ONLY:-0} == 1 ]]; then
    report_only
else
    main "$@"
fi
