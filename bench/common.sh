# bench/common.sh: sourced by the benchmark scripts (compare.sh, ha.sh).
# A scratch directory $work (tag $1) removed at exit, the servers in $pids stopped at exit,
# and the small helpers both need.
work=$(mktemp -d "/tmp/rmq-$1-XXXXXX")
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# standalone_broker DIR [ARGS...]: a standalone broker (embedded NameServer, any free ports,
# data and log under DIR) added to $pids; sets $broker_pid and $broker_ns (host:port).
standalone_broker() {
    local dir=$1 log="$1/broker.log"
    shift
    mkdir -p "$dir"
    build/bin/rmq-broker --standalone --listenPort=0 --namesrvListenPort=0 \
        --bindAddress=127.0.0.1 --brokerIP1=127.0.0.1 --storePathRootDir="$dir/data" "$@" \
        2>"$log" & broker_pid=$!
    pids+=($broker_pid)
    for _ in $(seq 100); do grep -q "namesrv_port=" "$log" && break; sleep 0.1; done
    broker_ns="127.0.0.1:$(grep -o 'namesrv_port=[0-9]*' "$log" | cut -d= -f2)"
}

# num FIELD: a number out of the JSON read on stdin
num() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -1; }
# median V...: the median of the values (empty for none)
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
