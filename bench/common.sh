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

# num FIELD: a number out of the JSON read on stdin
num() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" | head -1; }
# median V...: the median of the values (empty for none)
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
