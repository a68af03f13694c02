#!/usr/bin/env bash
# bench/writemode.sh: the broker's commitlog write modes side by side (commitLogWriteMode:
# mmap, writev, auto), ASYNC_FLUSH, a standalone broker per mode started fresh each round.
# Per round and mode, in turn (drift hits every mode alike): 1 KiB sends 1 in flight
# (p50/p99/p99.9), then pipelined 1 KiB and 128 B sends (INFLIGHT in flight, msgs/s and
# the broker's CPU per message). Prints the medians of RUNS rounds. Nothing is written.
#
#   bench/writemode.sh          (RUNS=3 LAT_COUNT=20000 COUNT=200000 INFLIGHT=256)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
LAT_COUNT=${LAT_COUNT:-20000}
COUNT=${COUNT:-200000}
INFLIGHT=${INFLIGHT:-256}
RB=build/bin/rmq-bench
MODES=(mmap writev auto)
source bench/common.sh writemode-bench
[ -x "$RB" ] && [ -x build/bin/rmq-broker ] || ninja >/dev/null

declare -A V
one_round() { # one_round MODE ROUND
    local mode=$1 dir="$work/$1-$2" ns pid out
    standalone_broker "$dir" --commitLogWriteMode="$mode"
    pid=$broker_pid ns=$broker_ns
    local common="--namesrv=$ns --topic=WriteMode --json"
    $RB produce $common --queues=8 --count=1000 --mode=sync >/dev/null
    out=$($RB produce $common --count="$LAT_COUNT" --mode=sync --size=1024)
    V[$mode,p50]+=" $(echo "$out" | num p50)"
    V[$mode,p99]+=" $(echo "$out" | num p99)"
    V[$mode,p999]+=" $(echo "$out" | num p99.9)"
    out=$($RB produce $common --count="$COUNT" --mode=async --inflight="$INFLIGHT" --size=1024)
    V[$mode,k1]+=" $(echo "$out" | num msgs_per_s)"
    V[$mode,k1cpu]+=" $(echo "$out" | num cpu_us_per_msg)"
    out=$($RB produce $common --count="$COUNT" --mode=async --inflight="$INFLIGHT" --size=128)
    V[$mode,b128]+=" $(echo "$out" | num msgs_per_s)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

for r in $(seq "$RUNS"); do
    for m in "${MODES[@]}"; do
        one_round "$m" "$r"
        echo "round $r $m: p50 $(echo "${V[$m,p50]}" | awk '{print $NF}') us," \
             "1 KiB pipelined $(echo "${V[$m,k1]}" | awk '{print $NF}') msgs/s" >&2
    done
done

printf '%-44s' "ASYNC_FLUSH, medians of $RUNS rounds"
printf '%12s' "${MODES[@]}"; printf '\n'
row() { # row LABEL KEY
    printf '%-44s' "$1"
    for m in "${MODES[@]}"; do
        # shellcheck disable=SC2086
        printf '%12s' "$(median ${V[$m,$2]})"
    done
    printf '\n'
}
row "1 KiB, 1 in flight, p50 us" p50
row "1 KiB, 1 in flight, p99 us" p99
row "1 KiB, 1 in flight, p99.9 us" p999
row "1 KiB, $INFLIGHT in flight, msgs/s" k1
row "1 KiB, $INFLIGHT in flight, broker CPU us/msg" k1cpu
row "128 B, $INFLIGHT in flight, msgs/s" b128
