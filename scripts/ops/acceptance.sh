#!/usr/bin/env bash
# Runs the acceptance scenarios (../shared/acceptance) in parallel shards.
#
#   scripts/ops/acceptance.sh RUN_PY BIN [SHARDS] [RUNNER ARGS...]
#
# The scenarios mostly wait (reloads, timeouts, backends that answer late), so a few runners
# side by side finish in a fraction of the time one takes. Scenarios are dealt round robin,
# in the runner's own order, to SHARDS runners, each given its names with --names; RUNNER ARGS
# (--filter, --pending, ...) narrow the list first. Each shard's output goes to
# target/test-logs/acceptance-N.log; the summary lines and every failure are printed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_PY=$1
BIN=$2
SHARDS=${3:-4}
shift $(($# < 3 ? $# : 3))
LOGS="$ROOT/target/test-logs"
mkdir -p "$LOGS"

# The runner's --names selects by prefix: a name and every name it prefixes (kuma-s1 and
# kuma-s10) form one group, given to one shard by its shortest name. Pending scenarios are
# left out unless the arguments ask for them (--pending, --filter, --names), as the runner
# itself does.
mapfile -t shards < <(python3 "$RUN_PY" --list "$@" | python3 -c '
import sys
shards, explicit = int(sys.argv[1]), sys.argv[2] == "1"
names = []
for line in sys.stdin:
    parts = line.split()
    if len(parts) < 2 or parts[-1] == "scenarios":
        continue
    if "[pending]" in line and not explicit:
        continue
    names.append(parts[0])
keys = []
for n in sorted(names):
    if not any(n.startswith(k) for k in keys):
        keys.append(n)
print("\n".join(" ".join(keys[i::shards]) for i in range(shards)))
print("acceptance.sh: %d scenarios" % len(names), file=sys.stderr)
' "$SHARDS" "$([[ " $* " == *" --pending "* || " $* " == *" --filter "* || " $* " == *" --names "* ]] && echo 1 || echo 0)")
echo "acceptance.sh: $SHARDS shards"
pids=()
for ((s = 0; s < ${#shards[@]}; s++)); do
    args=()
    for name in ${shards[$s]}; do
        args+=(--names "$name")
    done
    ((${#args[@]} > 0)) || continue
    python3 "$RUN_PY" --bin "$BIN" "${args[@]}" >"$LOGS/acceptance-$s.log" 2>&1 &
    pids+=("$!:$s")
done
((${#pids[@]} > 0)) || { echo "acceptance.sh: no scenario selected" >&2; exit 1; }
rc=0
total_pass=0
total_fail=0
for entry in "${pids[@]}"; do
    pid=${entry%%:*}
    s=${entry##*:}
    wait "$pid" || rc=1
    grep -E '^FAIL' "$LOGS/acceptance-$s.log" || true
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOGS/acceptance-$s.log" | tail -1)
    echo "shard $s: ${summary:-no summary (see $LOGS/acceptance-$s.log)}"
    [[ -n $summary ]] || rc=1
    total_pass=$((total_pass + $(awk '{print $1}' <<<"${summary:-0}")))
    total_fail=$((total_fail + $(awk '{print $3}' <<<"${summary:-0 passed, 0 failed}")))
done
echo "acceptance: $total_pass passed, $total_fail failed"
exit "$rc"
