#!/usr/bin/env bash
# --resume auto over an empty, newline-only or missing `latest` (with checkpoints there)
# reports them and starts nothing: the committed files are untouched; a CRLF `latest` resumes,
# and a CR inside one is refused with the CR shown escaped, never raw.
# Usage: test_ckpt_latest.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 16 3
train() { # RUN_DIR [options]: 8 steps an epoch
  local dir=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:16-24-3 \
    --batch 32 --epochs 4 --ckpt-every 4 --keep 2 --sched cosine --run-dir "$dir" \
    --progress none "$@"
}
stamp() { stat -c '%n %Y %s' "$1"/ckpt/* | sort; }

# 2. --resume auto over a latest that names nothing
train runs/b > b1.out 2>&1 || { cat b1.out; fail "run b"; }
cp runs/b/ckpt/latest good-latest
before=$(stamp runs/b)
for kind in empty newline missing; do
  case $kind in
    empty) : > runs/b/ckpt/latest;;
    newline) echo > runs/b/ckpt/latest;;
    missing) rm -f runs/b/ckpt/latest;;
  esac
  train runs/b --resume auto > b-$kind.out 2>&1; rc=$?
  [ $rc -eq 1 ] || { cat b-$kind.out; fail "latest $kind: status $rc, expected 1 (no fresh start)"; }
  grep -q "^dpt train: --resume auto: .*'runs/b/ckpt/latest'.*, but 'runs/b/ckpt' holds ckpt-0000000032.h5, ckpt-0000000028.h5: pass --resume runs/b/ckpt/ckpt-0000000032.h5" b-$kind.out \
    || { cat b-$kind.out; fail "latest $kind: the message does not name the checkpoints"; }
  ! grep -q "ranks on 1 node" b-$kind.out || fail "latest $kind: training started"
  [ "$(stamp runs/b | grep -v latest)" = "$(echo "$before" | grep -v latest)" ] \
    || fail "latest $kind: the checkpoints were touched"
  echo "latest $kind: $(grep '^dpt train' b-$kind.out | cut -c1-100)..."
done
printf 'ckpt-0000000032.h5\r\n' > runs/b/ckpt/latest
train runs/b --resume auto --epochs 5 > b-crlf.out 2>&1 || { cat b-crlf.out; fail "a CRLF latest"; }
grep -q "resuming from runs/b/ckpt/ckpt-0000000032.h5 at step 32" b-crlf.out || fail "CRLF: no resume"
printf 'ckpt-00000\r00032.h5\r\n' > runs/b/ckpt/latest
train runs/b --resume auto > b-cr.out 2>&1 && fail "a CR inside latest was accepted"
! grep -q $'\r' b-cr.out || fail "a raw CR in the message"
grep -q 'holds .ckpt-00000\\r00032.h5.' b-cr.out || { cat b-cr.out; fail "the CR is not shown escaped"; }
echo "latest with CRs: resumed (CRLF), refused with '\\r' shown (inside)"

echo ok
