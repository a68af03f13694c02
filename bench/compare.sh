#!/usr/bin/env bash
# bench/compare.sh: one run on loopback of ringmq beside the machine's limits and two
# peers, Redis 7 Streams (appendfsync everysec and always) and NATS JetStream (file
# storage), each driven by a C client that is not the bottleneck (redis-benchmark,
# rmq-bench nats). Prints one table with ringmq/peer and ringmq/limit ratios, writes
# bench/results/<date>-<host>.md and a PNG chart, and stops every server it started.
# Read bench/README.md before quoting a figure.
#
#   bench/compare.sh            (COUNT=100000 messages per throughput run by default)
#   RUNS=5 bench/compare.sh     (every figure is the median of RUNS runs; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-100000}
LAT_COUNT=${LAT_COUNT:-20000}
INFLIGHT=${INFLIGHT:-256}
RUNS=${RUNS:-3}
RB=build/bin/rmq-bench
source bench/common.sh compare

# ---- what it needs --------------------------------------------------------------------------
missing=""
for c in redis-server:redis-server redis-benchmark:redis-tools nats-server:nats-server \
         iperf3:iperf3 fio:fio gnuplot:gnuplot-nox; do
    command -v "${c%%:*}" >/dev/null 2>&1 || missing="$missing ${c#*:}"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing:$missing"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
            >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; exit 1; }
    else
        echo "compare.sh: missing packages; as root: apt-get install -y$missing" >&2
        exit 1
    fi
fi
[ -x "$RB" ] || ninja bench >/dev/null

# put NAME VALUE: one run's figure; after the runs NAME is the median of its figures
put() { eval "V_$1=\"\${V_$1:-} $2\""; }
free_port() { python3 - 2>/dev/null <<'EOF' || echo $((20000 + RANDOM % 20000))
import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
EOF
}

# ---- limits ------------------------------------------------------------------------------------
limits() {
    echo "== limits"
    local pp
    pp=$($RB engine --runs=1 --requests=$LAT_COUNT --size=1024 | awk '/^pingpong/ {
        n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) v[++n] = $i; print v[1], v[3]}')
    put pingpong "${pp% *}"
    put pingpong999 "${pp#* }"
    fio --name=seq --directory="$work" --rw=write --bs=1m --size=512m --ioengine=psync \
        --output="$work/fio1" >/dev/null
    put fio_mbs "$(sed -n 's/.*WRITE: bw=[^(]*(\([0-9.]*\)MB\/s).*/\1/p' "$work/fio1" | head -1)"
    fio --name=sync --directory="$work" --rw=write --bs=4k --size=16m --fdatasync=1 \
        --ioengine=psync --output="$work/fio2" >/dev/null
    local f unit
    f=$(awk '/sync percentiles/ {f=1} f && /50.00th/ {gsub(/[^0-9]/, " ", $0); split($0, a, " "); print a[3]; exit}' "$work/fio2")
    unit=$(awk '/sync percentiles/ {print; exit}' "$work/fio2" | sed -n 's/.*(\(.sec\)).*/\1/p')
    [ "$unit" = "nsec" ] && f=$(awk -v v="$f" 'BEGIN {print v / 1000}')
    [ "$unit" = "msec" ] && f=$(awk -v v="$f" 'BEGIN {print v * 1000}')
    put fsync_us "$f"
    iport=$(free_port)
    iperf3 -s -1 -p "$iport" -B 127.0.0.1 >/dev/null 2>&1 & pids+=($!)
    sleep 0.3
    put iperf_gbit "$(iperf3 -c 127.0.0.1 -p "$iport" -t 3 -f g |
        awk '/sender/ {for (i = 2; i <= NF; i++) if ($i == "Gbits/sec") {print $(i - 1); exit}}')"
    rm -f "$work/fio1" "$work/fio2" "$work"/seq.* "$work"/sync.*
}

# ---- ringmq ------------------------------------------------------------------------------------
ringmq() { # ringmq ASYNC_FLUSH|SYNC_FLUSH: fills R_<flush>_* variables
    local flush=$1 ns pid
    standalone_broker "$work/ringmq-$1-$run" --flushDiskType="$flush"
    pid=$broker_pid ns=$broker_ns
    local common="--namesrv=$ns --topic=Compare --json"
    $RB produce $common --queues=8 --count=1000 --mode=sync >/dev/null
    local one=$($RB produce $common --count=$LAT_COUNT --mode=sync)
    local k1=$($RB produce $common --count=$COUNT --mode=async --inflight=$INFLIGHT --size=1024)
    local b128=$($RB produce $common --count=$COUNT --mode=async --inflight=$INFLIGHT --size=128)
    local back=$($RB consume $common --count=$((COUNT * 2)) --connections=2)
    put R_${flush}_p50 "$(echo "$one" | num p50)"
    put R_${flush}_p99 "$(echo "$one" | num p99)"
    put R_${flush}_p999 "$(echo "$one" | num p99.9)"
    put R_${flush}_k1 "$(echo "$k1" | num msgs_per_s)"
    put R_${flush}_k1p99 "$(echo "$k1" | num p99)"
    put R_${flush}_b128 "$(echo "$b128" | num msgs_per_s)"
    put R_${flush}_b128p99 "$(echo "$b128" | num p99)"
    put R_${flush}_back "$(echo "$back" | num mb_per_s)"
    put R_${flush}_enters "$(echo "$k1" | num io_uring_enter_per_msg)"
    put R_${flush}_cpu "$(echo "$k1" | num cpu_us_per_msg)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# ---- Redis 7 Streams ---------------------------------------------------------------------------
payload() { head -c "$1" /dev/zero | tr '\0' 'b'; }
redis() { # redis everysec|always
    local mode=$1 port dir="$work/redis-$1-$run" out
    port=$(free_port); mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --appendonly yes --appendfsync "$mode" \
        --save '' --dir "$dir" >"$dir/log" 2>&1 & local pid=$!
    pids+=($pid)
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    out=$(redis-benchmark -p "$port" -n "$LAT_COUNT" -c 1 -P 1 --csv XADD s '*' f "$(payload 1024)" | tail -1)
    put S_${mode}_p50 "$(echo "$out" | awk -F'","' '{print $5 * 1000}')"
    put S_${mode}_p99 "$(echo "$out" | awk -F'","' '{print $7 * 1000}')"
    out=$(redis-benchmark -p "$port" -n "$COUNT" -c 1 -P "$INFLIGHT" --csv XADD s '*' f "$(payload 1024)" | tail -1)
    put S_${mode}_k1 "$(echo "$out" | awk -F'","' '{print $2}')"
    put S_${mode}_k1p99 "$(echo "$out" | awk -F'","' '{print $7 * 1000}')"
    out=$(redis-benchmark -p "$port" -n "$COUNT" -c 1 -P "$INFLIGHT" --csv XADD s '*' f "$(payload 128)" | tail -1)
    put S_${mode}_b128 "$(echo "$out" | awk -F'","' '{print $2}')"
    put S_${mode}_b128p99 "$(echo "$out" | awk -F'","' '{print $7 * 1000}')"
    kill "$pid"; wait "$pid" 2>/dev/null || true
}

# ---- NATS JetStream ------------------------------------------------------------------------------
nats() {
    local nport out npid
    nport=$(free_port)
    nats-server -js -a 127.0.0.1 -p "$nport" -sd "$work/nats-$run" >"$work/nats.log" 2>&1 & npid=$!
    pids+=($npid)
    for _ in $(seq 100); do grep -q "Server is ready" "$work/nats.log" && break; sleep 0.1; done
    out=$($RB nats --port="$nport" --count="$LAT_COUNT" --size=1024 --inflight=1)
    put N_p50 "$(echo "$out" | num p50)"; put N_p99 "$(echo "$out" | num p99)"
    put N_p999 "$(echo "$out" | num p99.9)"
    out=$($RB nats --port="$nport" --count="$COUNT" --size=1024 --inflight="$INFLIGHT")
    put N_k1 "$(echo "$out" | num msgs_per_s)"; put N_k1p99 "$(echo "$out" | num p99)"
    out=$($RB nats --port="$nport" --count="$COUNT" --size=128 --inflight="$INFLIGHT")
    put N_b128 "$(echo "$out" | num msgs_per_s)"; put N_b128p99 "$(echo "$out" | num p99)"
    kill "$npid"; wait "$npid" 2>/dev/null || true
}

# ---- the runs: each system once per run, in turn, so drift hits all of them alike ----------------
for run in $(seq "$RUNS"); do
    echo "== run $run of $RUNS: limits, ringmq ASYNC_FLUSH and SYNC_FLUSH, Redis everysec and always, NATS"
    limits
    ringmq ASYNC_FLUSH
    ringmq SYNC_FLUSH
    redis everysec
    redis always
    nats
done
for v in ${!V_@}; do
    eval "${v#V_}=$(median ${!v})"
done
echo "ping-pong p50 ${pingpong} us, p99.9 ${pingpong999} us, fio write ${fio_mbs} MB/s, write+fdatasync p50 ${fsync_us} us, iperf3 ${iperf_gbit} Gbit/s"

# ---- the table -------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "x%.2f", a / b; else print "-" }'; }
best() { printf '%s\n' "$@" | sort -g | tail -1; }
least() { printf '%s\n' "$@" | sort -g | head -1; }
fio_msgs=$(awk -v m="$fio_mbs" 'BEGIN {printf "%.0f", m * 1e6 / 1024}')
date_=$(date +%Y-%m-%d); host=$(hostname)
mkdir -p bench/results
md="bench/results/$date_-$host.md"
{
echo "# ringmq beside its limits and peers, $date_ on $host"
echo
echo "Loopback, bench/compare.sh: every figure is the median of $RUNS runs (COUNT=$COUNT, LAT_COUNT=$LAT_COUNT, INFLIGHT=$INFLIGHT)."
echo "Latency in µs (lower is better), throughput in msgs/s or MB/s (higher is better)."
echo "\"vs best peer\" > 1 means ringmq is better; \"vs limit\" is ringmq's share of the limit."
echo
echo "| workload | ringmq | Redis everysec | Redis always | NATS JetStream | limit | vs best peer | vs limit |"
echo "|---|---|---|---|---|---|---|---|"
bp=$(least "$S_everysec_p50" "$N_p50")
echo "| 1 KiB, 1 in flight, p50 µs (async flush) | $R_ASYNC_FLUSH_p50 | $S_everysec_p50 | - | $N_p50 | ping-pong $pingpong | $(ratio "$bp" "$R_ASYNC_FLUSH_p50") | $(ratio "$pingpong" "$R_ASYNC_FLUSH_p50") |"
echo "| 1 KiB, 1 in flight, p99 µs (async flush) | $R_ASYNC_FLUSH_p99 | $S_everysec_p99 | - | $N_p99 | - | $(ratio "$(least "$S_everysec_p99" "$N_p99")" "$R_ASYNC_FLUSH_p99") | - |"
echo "| 1 KiB, 1 in flight, p99.9 µs (async flush) | $R_ASYNC_FLUSH_p999 | - | - | $N_p999 | ping-pong $pingpong999 | $(ratio "$N_p999" "$R_ASYNC_FLUSH_p999") | $(ratio "$pingpong999" "$R_ASYNC_FLUSH_p999") |"
bp=$(best "$S_everysec_k1" "$N_k1")
echo "| 1 KiB pipelined, msgs/s (async flush) | $R_ASYNC_FLUSH_k1 | $S_everysec_k1 | - | $N_k1 | fio write $fio_msgs | $(ratio "$R_ASYNC_FLUSH_k1" "$bp") | $(ratio "$R_ASYNC_FLUSH_k1" "$fio_msgs") |"
bp=$(best "$S_everysec_b128" "$N_b128")
echo "| 1 KiB pipelined, p99 µs (async flush) | $R_ASYNC_FLUSH_k1p99 | $S_everysec_k1p99 | - | $N_k1p99 | - | $(ratio "$(least "$S_everysec_k1p99" "$N_k1p99")" "$R_ASYNC_FLUSH_k1p99") | - |"
echo "| 128 B pipelined, msgs/s (async flush) | $R_ASYNC_FLUSH_b128 | $S_everysec_b128 | - | $N_b128 | - | $(ratio "$R_ASYNC_FLUSH_b128" "$bp") | - |"
echo "| 1 KiB, 1 in flight, p50 µs (durable) | $R_SYNC_FLUSH_p50 | - | $S_always_p50 | - | fdatasync $fsync_us | $(ratio "$S_always_p50" "$R_SYNC_FLUSH_p50") | $(ratio "$fsync_us" "$R_SYNC_FLUSH_p50") |"
echo "| 1 KiB pipelined, msgs/s (durable) | $R_SYNC_FLUSH_k1 | - | $S_always_k1 | - | - | $(ratio "$R_SYNC_FLUSH_k1" "$S_always_k1") | - |"
echo "| 1 KiB pipelined, p99 µs (durable) | $R_SYNC_FLUSH_k1p99 | - | $S_always_k1p99 | - | - | $(ratio "$S_always_k1p99" "$R_SYNC_FLUSH_k1p99") | - |"
echo "| 128 B pipelined, msgs/s (durable) | $R_SYNC_FLUSH_b128 | - | $S_always_b128 | - | - | $(ratio "$R_SYNC_FLUSH_b128" "$S_always_b128") | - |"
echo "| read-back, MB/s | $R_ASYNC_FLUSH_back | - | - | - | iperf3 $(awk -v g="$iperf_gbit" 'BEGIN {printf "%.0f", g * 125}') | - | $(ratio "$R_ASYNC_FLUSH_back" "$(awk -v g="$iperf_gbit" 'BEGIN {print g * 125}')") |"
echo
echo "ringmq broker per message (1 KiB pipelined): ASYNC_FLUSH $R_ASYNC_FLUSH_enters io_uring_enter, $R_ASYNC_FLUSH_cpu µs CPU; SYNC_FLUSH $R_SYNC_FLUSH_enters io_uring_enter, $R_SYNC_FLUSH_cpu µs CPU."
echo "NATS JetStream's file store syncs on its own schedule (like ASYNC_FLUSH); Redis \"always\" and ringmq SYNC_FLUSH answer after fdatasync."
} >"$md"
cat "$md"
cat >"$work/chart.dat" <<EOF
"1 KiB async" $R_ASYNC_FLUSH_k1 $S_everysec_k1 $N_k1
"128 B async" $R_ASYNC_FLUSH_b128 $S_everysec_b128 $N_b128
"1 KiB durable" $R_SYNC_FLUSH_k1 $S_always_k1 0
"128 B durable" $R_SYNC_FLUSH_b128 $S_always_b128 0
EOF
gnuplot -e "set terminal pngcairo size 900,500; set output '${md%.md}.png';
    set title 'pipelined sends, msgs/s ($date_, $host)'; set style data histograms;
    set style fill solid 0.8; set boxwidth 0.9; set grid ytics; set yrange [0:*];
    set key outside right top;
    plot '$work/chart.dat' using 2:xtic(1) title 'ringmq', '' using 3 title 'Redis Streams',
    '' using 4 title 'NATS JetStream'"
echo "wrote $md and ${md%.md}.png"
