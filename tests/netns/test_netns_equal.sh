#!/usr/bin/env bash
# Across nodes dpt trains what it trains on one host: in the netns test bed (bed.sh; links
# shaped to 1 Gbit/s), 2 nodes x 1 rank and 2 nodes x 2 ranks end with bitwise the same
# parameters and optimizer state as the same W on one host (h5diff, exact), and in
# --deterministic mode as W = 1; a checkpoint written across 2 nodes x 2 ranks verifies
# (dpt ckpt inspect) and, resumed on one host, ends bitwise where the uninterrupted run ends.
# Across nodes the reducer is the node-aware one (--reduce auto); --reduce rank-order and ring
# give the same bits; the reducer's own test (COMM_TEST: comm_test_reduce_node) passes at 2 x 2 in the bed.
# Skipped (77) where the bed cannot be made. Usage: test_netns_equal.sh DPT WORKDIR [COMM_TEST]
dpt=$1; work=$2; comm_test=${3:-}
. "$(dirname "$0")/bed.sh"
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
fail() { echo "FAIL: $*"; exit 1; }
bed_up 2 1gbit "$work/bed"; rc=$?
[ $rc -eq 0 ] || exit $rc

"$dpt" data synth --out d.h5 --train 1024 --test 128 --features 32 --classes 4 >/dev/null \
  || fail "could not make the synthetic dataset"
common=(train --data "$work/d.h5" --model mlp:32-64-48-4 --batch 32 --epochs 2 --ckpt 1
        --progress none --sched cosine --clip-norm 1)
final=ckpt-0000000064.h5   # 2 epochs of 32 steps
host() { # W RUN_DIR [options]: W ranks on this host
  local w=$1 dir=$2; shift 2
  timeout 120 mpirun --oversubscribe --bind-to none -n "$w" "$dpt" "${common[@]}" \
    --run-dir "$work/$dir" "$@" > "$dir.out" 2>&1 || { cat "$dir.out"; fail "training $dir"; }
}
bed() { # SLOTS W RUN_DIR [options]: W ranks over the bed's 2 nodes, SLOTS on each
  local s=$1 w=$2 dir=$3; shift 3
  BED_TIMEOUT=120 bed_mpirun "$s" -n "$w" "$dpt" "${common[@]}" --run-dir "$work/$dir" "$@" \
    > "$dir.out" 2>&1 || { cat "$dir.out"; fail "training $dir in the bed"; }
  grep -q "$w ranks on 2 nodes" "$dir.out" || { cat "$dir.out"; fail "$dir did not run on 2 nodes"; }
}
same() { # A B: parameters and optimizer state bitwise equal
  local g
  for g in /model /optim; do h5diff "$1" "$2" "$g" "$g" >/dev/null || return 1; done
}
rx() { ip -n "$(bed_ns 2)" -s link show eth0 | awk '/RX:/ { getline; print $1 }'; }

for w in 2 4; do
  s=$((w / 2))
  host "$w" "host-w$w"
  before=$(rx)
  bed "$s" "$w" "bed-2x$s"
  bytes=$(($(rx) - before))
  [ "$bytes" -gt 100000 ] || fail "2x$s: only $bytes bytes crossed node 2's link"
  same "host-w$w/ckpt/$final" "bed-2x$s/ckpt/$final" \
    || fail "2 nodes x $s ranks differs from W=$w on one host (h5diff host-w$w/ckpt/$final bed-2x$s/ckpt/$final)"
  echo "2 nodes x $s ranks: bitwise what W=$w trains on one host ($bytes bytes into node 2)"
done

bed 2 4 flat-2x2 --reduce rank-order --zero 0
host 4 host-w4-z0 --zero 0
same host-w4-z0/ckpt/$final flat-2x2/ckpt/$final || fail "2x2 --reduce rank-order differs from one host"
bed 2 4 node-2x2 --reduce node --zero 0
same host-w4-z0/ckpt/$final node-2x2/ckpt/$final || fail "2x2 --reduce node (ZeRO 0) differs from one host"
bed 2 4 ring-2x2 --reduce ring --zero 0
same host-w4-z0/ckpt/$final ring-2x2/ckpt/$final || fail "2x2 --reduce ring (ZeRO 0) differs from one host"
echo "ZeRO 0 at 2 nodes x 2 ranks: --reduce node, ring and rank-order bitwise what W=4 trains on one host"
if [ -n "$comm_test" ]; then
  BED_TIMEOUT=120 bed_mpirun 2 -n 4 "$comm_test" > comm.out 2>&1 \
    || { cat comm.out; fail "the node-aware reducer's test at 2 nodes x 2 ranks"; }
  echo "comm_test_reduce_node at 2 nodes x 2 ranks: passed (auto picks node)"
fi

det=(--deterministic 1 --micro-shards 8)
host 1 det-w1 "${det[@]}"
bed 2 4 det-2x2 "${det[@]}"
same det-w1/ckpt/$final det-2x2/ckpt/$final || fail "--deterministic: 2 nodes x 2 ranks differs from W=1"
echo "--deterministic: 2 nodes x 2 ranks bitwise what W=1 trains"

# a checkpoint across nodes (step 40 of 64), verified, resumed on one host
bed 2 4 resume --max-steps 40
latest=resume/ckpt/$(cat resume/ckpt/latest)
[ "$latest" = resume/ckpt/ckpt-0000000040.h5 ] || fail "the cross-node run's latest is $latest"
"$dpt" ckpt inspect "$latest" > inspect.out 2>&1 || { cat inspect.out; fail "$latest does not verify"; }
host 4 resume --resume latest
grep -q "resuming from .* at step 40" resume.out || { cat resume.out; fail "no resume at step 40"; }
same host-w4/ckpt/$final resume/ckpt/$final || fail "written across nodes, resumed on one host: differs"
echo "checkpoint of step 40 written across 2x2 verifies; resumed on one host: bitwise the same"
echo ok
