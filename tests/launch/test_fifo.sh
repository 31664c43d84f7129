#!/usr/bin/env bash
# Files that are not regular files are refused without blocking: a FIFO as the dataset, as the
# checkpoint to resume from, as the checkpoint to inspect, as `latest`, and as the metrics file
# each end (status 1, within the timeout) with one line naming the file and what it is.
# Usage: test_fifo.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 16 3
mkfifo fifo.h5 || fail "mkfifo"
check() { # NAME WANT COMMAND...: status 1 within 20 s, WANT in the output
  local name=$1 want=$2; shift 2
  timeout 20 "$dpt" "$@" > $name.out 2>&1 < /dev/null; local rc=$?
  [ $rc -ne 124 ] || fail "$name: blocked (killed by the timeout)"
  [ $rc -eq 1 ] || { cat $name.out; fail "$name: status $rc, expected 1"; }
  grep -q -- "$want" $name.out || { cat $name.out; fail "$name: no '$want'"; }
  echo "$name: $(grep -m1 "$want" $name.out)"
}
check dataset "dataset 'fifo.h5' is a FIFO (expected a regular file)" train --model mlp:16-24-3 --batch 32 --epochs 1 --progress none --data fifo.h5 --run-dir r1
check resume "checkpoint 'fifo.h5' is a FIFO" train --model mlp:16-24-3 --batch 32 --epochs 1 --progress none --data d.h5 --run-dir r2 --resume fifo.h5
check init "checkpoint 'fifo.h5' is a FIFO" train --model mlp:16-24-3 --batch 32 --epochs 1 --progress none --data d.h5 --run-dir r3 --init fifo.h5
check inspect "checkpoint 'fifo.h5' is a FIFO" ckpt inspect fifo.h5
mkdir -p r4/ckpt && mkfifo r4/ckpt/latest
check latest "'r4/ckpt/latest'" train --model mlp:16-24-3 --batch 32 --epochs 1 --progress none --data d.h5 --run-dir r4 --resume auto
grep -q "not a regular file" latest.out || fail "latest: does not say it is not a regular file"
mkfifo metrics.jsonl
check metrics "--metrics: 'metrics.jsonl' is not a regular file" train --model mlp:16-24-3 --batch 32 --epochs 1 --progress none --data d.h5 --run-dir r5 --metrics metrics.jsonl
mkdir -p r6/ckpt && mkfifo r6/ckpt/ckpt-0000000008.h5.tmp
check ckpt-tmp "ckpt-0000000008.h5.tmp': it exists and is not a regular file" train --model mlp:16-24-3 --batch 32 --epochs 1 --progress none --data d.h5 --run-dir r6 --ckpt 1
echo ok
