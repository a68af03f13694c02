#!/usr/bin/env bash
# bench/ha.sh: replication on loopback. Two broker sets registered with one NameServer,
# each a master and its slave: set "as" (ASYNC_MASTER) and set "sy" (SYNC_MASTER).
#   1. 1 KiB sends, 1 in flight, against each master in turn (RUNS rounds): p50/p99 and
#      what SYNC_MASTER adds, beside the loopback ping-pong RTT measured in the same run.
#   2. Pipelined 1 KiB sends to the ASYNC master: the master's append rate and the
#      replication rate (bytes until the slave has all of them, per second).
#   3. Catch-up: the ASYNC set's slave stopped, CATCHUP_MIB written, the slave started
#      again: time until it has everything.
# Every server it starts is stopped at exit. Read bench/README.md before quoting.
#
#   bench/ha.sh                 (RUNS=3 LAT_COUNT=20000 COUNT=200000 CATCHUP_MIB=1024)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
LAT_COUNT=${LAT_COUNT:-20000}
COUNT=${COUNT:-200000}
CATCHUP_MIB=${CATCHUP_MIB:-1024}
RB=build/bin/rmq-bench
RMQ=build/bin/rmq
source bench/common.sh ha-bench
[ -x "$RB" ] && [ -x build/bin/rmq-broker ] || ninja >/dev/null

now_ms() { date +%s%3N; }

wait_log() { # wait_log FILE TEXT
    for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "ha.sh: '$2' not in $1" >&2; cat "$1" >&2; exit 1
}

build/bin/rmq-namesrv --listenPort=0 --bindAddress=127.0.0.1 \
    --kvConfigPath="$work/kv.json" 2>"$work/ns.log" & pids+=($!)
wait_log "$work/ns.log" "serving address="
ns="127.0.0.1:$(grep -o 'serving address=[0-9.]* port=[0-9]*' "$work/ns.log" | sed 's/.*port=//')"

declare -A PID PORT
broker() { # broker KEY NAME ROLE
    local key=$1 name=$2 role=$3 id=0
    [ "$role" = SLAVE ] && id=1
    mkdir -p "$work/$key"
    build/bin/rmq-broker --brokerName="$name" --brokerId=$id --brokerRole="$role" \
        --listenPort=0 --bindAddress=127.0.0.1 --brokerIP1=127.0.0.1 --namesrvAddr="$ns" \
        --registerBrokerInterval=1000 --slaveMetadataSyncInterval=1000 \
        --storePathRootDir="$work/$key/data" 2>"$work/$key.log" &
    PID[$key]=$!
    pids+=(${PID[$key]})
    wait_log "$work/$key.log" "ready port="
    PORT[$key]=$(grep -o 'ready port=[0-9]*' "$work/$key.log" | tail -1 | cut -d= -f2)
}
stat() { # stat KEY FIELD: one runtime figure
    $RMQ -n "$ns" --json broker stats -b "127.0.0.1:${PORT[$1]}" |
        sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"
}
caught_up() { # caught_up MASTER SLAVE: the slave's log end equals the master's
    [ "$(stat "$1" commitLogMaxOffset)" = "$(stat "$2" commitLogMaxOffset)" ]
}
wait_conn() { # wait_conn MASTER
    for _ in $(seq 400); do [ "$(stat "$1" haConnections)" = 1 ] && return 0; sleep 0.05; done
    echo "ha.sh: no slave connected to $1" >&2; exit 1
}

broker am as ASYNC_MASTER
broker sm sy SYNC_MASTER
broker as as SLAVE
broker ss sy SLAVE
$RMQ -n "$ns" topic create -t HaAsync -q 8 -b "127.0.0.1:${PORT[am]}" >/dev/null
$RMQ -n "$ns" topic create -t HaSync -q 8 -b "127.0.0.1:${PORT[sm]}" >/dev/null
wait_conn am
wait_conn sm

echo "== 1 in flight, 1 KiB, $RUNS rounds of $LAT_COUNT per master"
rtt=(); a50=(); a99=(); s50=(); s99=()
for r in $(seq "$RUNS"); do
    rtt+=("$($RB engine --runs=1 --requests="$LAT_COUNT" --size=1024 |
        awk '/^pingpong/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) {print $i; exit}}')")
    out=$($RB produce --namesrv="$ns" --topic=HaAsync --count="$LAT_COUNT" --size=1024 \
        --mode=sync --json)
    a50+=("$(echo "$out" | num p50)"); a99+=("$(echo "$out" | num p99)")
    out=$($RB produce --namesrv="$ns" --topic=HaSync --count="$LAT_COUNT" --size=1024 \
        --mode=sync --json)
    s50+=("$(echo "$out" | num p50)"); s99+=("$(echo "$out" | num p99)")
    echo "round $r: rtt ${rtt[-1]} us; ASYNC_MASTER p50 ${a50[-1]} p99 ${a99[-1]}; SYNC_MASTER p50 ${s50[-1]} p99 ${s99[-1]}"
done
R=$(median "${rtt[@]}"); A50=$(median "${a50[@]}"); A99=$(median "${a99[@]}")
S50=$(median "${s50[@]}"); S99=$(median "${s99[@]}")

echo "== pipelined 1 KiB to the ASYNC master, $COUNT messages, $RUNS rounds"
mrate=(); rrate=()
for r in $(seq "$RUNS"); do
    start_off=$(stat am commitLogMaxOffset)
    t0=$(now_ms)
    $RB produce --namesrv="$ns" --topic=HaAsync --count="$COUNT" --size=1024 --mode=async \
        --inflight=256 --json >/dev/null
    t1=$(now_ms)
    until caught_up am as; do sleep 0.01; done
    t2=$(now_ms)
    bytes=$(( $(stat am commitLogMaxOffset) - start_off ))
    mrate+=("$(awk -v b="$bytes" -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", b / t / 1000}')")
    rrate+=("$(awk -v b="$bytes" -v t=$((t2 - t0)) 'BEGIN {printf "%.1f", b / t / 1000}')")
    echo "round $r: $bytes bytes; master appends ${mrate[-1]} MB/s, slave has them all after $((t2 - t0)) ms: ${rrate[-1]} MB/s"
done
MR=$(median "${mrate[@]}"); RR=$(median "${rrate[@]}")

echo "== pipelined 1 KiB, $COUNT messages: ASYNC_MASTER vs SYNC_MASTER msgs/s, $RUNS rounds"
ap=(); sp=()
for r in $(seq "$RUNS"); do
    ap+=("$($RB produce --namesrv="$ns" --topic=HaAsync --count="$COUNT" --size=1024 \
        --mode=async --inflight=256 --json | num msgs_per_s)")
    sp+=("$($RB produce --namesrv="$ns" --topic=HaSync --count="$COUNT" --size=1024 \
        --mode=async --inflight=256 --json | num msgs_per_s)")
    echo "round $r: ASYNC_MASTER ${ap[-1]} msgs/s, SYNC_MASTER ${sp[-1]} msgs/s"
done
AP=$(median "${ap[@]}"); SP=$(median "${sp[@]}")

echo "== catch-up: the slave away while $CATCHUP_MIB MiB are written"
kill "${PID[as]}"; wait "${PID[as]}" 2>/dev/null || true
n=$((CATCHUP_MIB * 1024 * 1024 / 1200))
$RB produce --namesrv="$ns" --topic=HaAsync --count="$n" --size=1024 --mode=async \
    --inflight=256 --json >/dev/null
behind=$(stat am commitLogMaxOffset)
t0=$(now_ms)
broker as as SLAVE
until caught_up am as; do sleep 0.05; done
t1=$(now_ms)
CU=$((t1 - t0))
echo "slave restarted behind by up to $(( (behind) / 1048576 )) MiB of log: caught up in $CU ms (start-up included)"

echo
echo "| figure | value |"
echo "|---|---|"
echo "| loopback ping-pong p50 (RTT), µs | $R |"
echo "| ASYNC_MASTER 1 in flight p50 / p99, µs | $A50 / $A99 |"
echo "| SYNC_MASTER 1 in flight p50 / p99, µs | $S50 / $S99 |"
echo "| SYNC_MASTER adds at p50, µs (in RTTs) | $(awk -v s="$S50" -v a="$A50" -v r="$R" 'BEGIN {printf "%.1f (%.2f)", s - a, (s - a) / r}') |"
echo "| pipelined 1 KiB msgs/s, ASYNC_MASTER / SYNC_MASTER | $AP / $SP ($(awk -v s="$SP" -v a="$AP" 'BEGIN {printf "x%.2f", s / a}')) |"
echo "| master append rate, MB/s (pipelined 1 KiB) | $MR |"
echo "| replication rate, MB/s (until the slave has it all) | $RR ($(awk -v r="$RR" -v m="$MR" 'BEGIN {printf "%.0f %%", r / m * 100}') of the append rate) |"
echo "| catch-up of ~$CATCHUP_MIB MiB, ms | $CU |"
