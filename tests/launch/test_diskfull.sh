#!/usr/bin/env bash
# A full disk is reported, not crashed on: on a small tmpfs (mounted here, unmounted by a trap
# even on failure) a checkpoint that does not fit ends the job with status 1 and one line
# naming the file and ENOSPC (no segfault in MPI_Finalize), nothing partial is committed and
# the previous checkpoint stays intact and named by `latest`; out of inodes says ENOSPC too;
# a metrics file that fills the disk ends the run with status 1 and one line, and holds only
# whole records; a dataset (dpt data synth) or charts (dpt plot) that do not fit say ENOSPC
# and leave nothing partial. Skipped (77) where tmpfs cannot be mounted (not root, no mount namespace).
# Usage: test_diskfull.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
mnt=$work/mnt
mkdir -p "$mnt"
mounted=0
cleanup() { [ $mounted = 1 ] && umount "$mnt" 2>/dev/null; mounted=0; }
trap cleanup EXIT
mount_tmpfs() { # OPTIONS
  cleanup
  if ! mount -t tmpfs -o "$1" dpt-test "$mnt" 2>mount.err; then
    echo "SKIP: cannot mount a tmpfs: $(cat mount.err)"
    exit 77
  fi
  mounted=1
}
synth 256 64 16 3
train() { # [options]: 8 steps an epoch; each checkpoint about 3.3 MB
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:16-512-512-3 \
    --batch 32 --epochs 2 --progress none "$@"
}
one_line() { # OUT WANT: status 1 (checked by the caller), WANT on the one "dpt train:" line
  [ "$(grep -c '^dpt train:' "$1")" = 1 ] || { cat "$1"; fail "$1: not one error line"; }
  grep -q "^dpt train: $2" "$1" || { cat "$1"; fail "$1: no '$2'"; }
  ! grep -qi "segmentation\|signal 11\|backtrace\|HDF5-DIAG" "$1" || { cat "$1"; fail "$1: crashed"; }
}

# 1. the second checkpoint does not fit
mount_tmpfs size=5m
train --run-dir run1 --ckpt-dir "$mnt/ckpt" --ckpt-every 4 --keep 1 > ckpt.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat ckpt.out; fail "checkpoint: status $rc, expected 1"; }
one_line ckpt.out "cannot write checkpoint '$mnt/ckpt/ckpt-0000000008.h5.tmp': No space left on device"
[ "$(cat "$mnt/ckpt/latest")" = ckpt-0000000004.h5 ] || fail "checkpoint: latest is not step 4"
"$dpt" ckpt inspect "$mnt/ckpt/ckpt-0000000004.h5" > /dev/null || fail "checkpoint: step 4 damaged"
[ -z "$(ls "$mnt"/ckpt/*.tmp 2>/dev/null)" ] || fail "checkpoint: a partial file was left"
echo "checkpoint: $(grep '^dpt train' ckpt.out)"

# 2. out of inodes: the checkpoint's file cannot be created
mount_tmpfs size=64m,nr_inodes=16
mkdir "$mnt/ckpt"
i=0; while touch "$mnt/fill$i" 2>/dev/null; do i=$((i + 1)); done
train --run-dir run2 --ckpt-dir "$mnt/ckpt" --ckpt 1 > inodes.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat inodes.out; fail "inodes: status $rc, expected 1"; }
one_line inodes.out "cannot write checkpoint '$mnt/ckpt/ckpt-0000000016.h5.tmp': No space left on device"
echo "inodes: $(grep '^dpt train' inodes.out)"

# 3. the metrics file fills the disk
mount_tmpfs size=16k
train --run-dir run3 --metrics "$mnt/metrics.jsonl" --model mlp:16-8-3 --epochs 40 > metrics.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat metrics.out; fail "metrics: status $rc, expected 1"; }
one_line metrics.out "--metrics: cannot write '$mnt/metrics.jsonl': No space left on device"
[ -s "$mnt/metrics.jsonl" ] || fail "metrics: the file is empty"
[ "$(tail -c 1 "$mnt/metrics.jsonl" | od -An -c | tr -d ' ')" = '\n' ] || fail "metrics: cut mid-line"
$py -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$mnt/metrics.jsonl" \
  || fail "metrics: a record does not parse"
echo "metrics: $(grep '^dpt train' metrics.out); $(wc -l < "$mnt/metrics.jsonl") whole records kept"

# 4. a dataset that does not fit: one line with ENOSPC, nothing left behind
mount_tmpfs size=64k
"$dpt" data synth --out "$mnt/big.h5" --train 4096 --test 64 --features 32 --classes 4 \
  > data.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat data.out; fail "dataset: status $rc, expected 1"; }
grep -q "^dpt data: .*cannot write /train/x: No space left on device" data.out \
  || { cat data.out; fail "dataset: no line naming the file and ENOSPC"; }
[ -z "$(ls -A "$mnt")" ] || fail "dataset: files left behind: $(ls "$mnt")"
echo "dataset: $(grep '^dpt data' data.out)"

# 5. charts that do not fit: one line with ENOSPC, no partial chart (each is written atomically)
mount_tmpfs size=8k
"$dpt" plot --out "$mnt/plots" run1/metrics.jsonl > plot.out 2>&1; rc=$?
[ $rc -eq 1 ] || { cat plot.out; fail "charts: status $rc, expected 1"; }
grep -q "^dpt plot: cannot write '$mnt/plots/.*\.svg': No space left on device" plot.out \
  || { cat plot.out; fail "charts: no line naming the chart and ENOSPC"; }
for f in "$mnt"/plots/*.svg; do
  [ -e "$f" ] || continue
  $py -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$f" || fail "charts: $f is partial"
done
[ -z "$(ls "$mnt"/plots/*.tmp 2>/dev/null)" ] || fail "charts: a temporary file was left"
echo "charts: $(grep '^dpt plot' plot.out)"
echo ok
