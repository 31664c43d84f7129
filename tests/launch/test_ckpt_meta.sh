#!/usr/bin/env bash
# Checkpoint metadata is covered by a checksum: one flipped bit in a root attribute (a counter,
# a solver or scheduler state value, a hyperparameter text) is caught by a resume and by
# `dpt ckpt inspect` (meta_checksum FAILED, status 1); and out-of-range counters in a file whose
# checksum matches (re-signed here) are refused, naming the attribute and the range.
# Usage: test_ckpt_meta.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 256 64 16 3
train() { # [options]: 8 steps an epoch
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:16-24-3 \
    --batch 32 --epochs 4 --sched cosine --progress none "$@"
}
train --run-dir good --max-steps 10 --ckpt 1 > good.out 2>&1 || { cat good.out; fail "training"; }
good=good/ckpt/ckpt-0000000010.h5

# edit.py FILE MODE NAME [VALUE]: flip (one bit of a number's double or a text's last byte),
# or set NAME to VALUE and re-sign (recompute meta_checksum as io/ckpt.c does)
cat > edit.py <<'PY'
import struct, sys, h5py, numpy as np
path, mode, name = sys.argv[1:4]
def digest(f):
    h = 0xcbf29ce484222325
    def fnv(h, b):
        for c in b:
            h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h
    for k in sorted(k for k in f.attrs if k != "meta_checksum"):
        v = f.attrs[k]
        h = fnv(h, k.encode() + b"\0")
        if isinstance(v, (str, bytes)):
            h = fnv(h, b"t" + (v.encode() if isinstance(v, str) else v) + b"\0")
        else:
            h = fnv(h, b"n" + struct.pack("<d", float(v)))
    return "%016x" % h
with h5py.File(path, "r+") as f:
    v = f.attrs[name]
    if mode == "flip":
        if isinstance(v, str):
            f.attrs[name] = v[:-1] + chr(ord(v[-1]) ^ 1)
        else:
            bits = np.array([float(v)]).view(np.uint64)
            bits ^= np.uint64(1) << np.uint64(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
            f.attrs.modify(name, bits.view(np.float64)[0])
    else:
        f.attrs.modify(name, float(sys.argv[4]))
        f.attrs["meta_checksum"] = digest(f)
PY

# 1. one flipped bit: caught by the resume and by inspect
n=0
# (bit 52, the exponent's lowest, halves or doubles a counter: still a whole number in range)
for case in "solver.step 52" "solver.step 0" "sched.last_epoch 52" "train.step_in_epoch 52" \
            "train.epoch_loss 3" "sched.lr 40" "hp.weight_decay" "cfg_hp.lr" "train.run_id"; do
  set -- $case
  f=flip-$1-${2:-t}.h5
  cp $good $f
  $py edit.py $f flip $1 ${2:-} || fail "could not flip $1"
  train --run-dir flip --resume $f > $f.out 2>&1 && fail "$1 flipped: the resume succeeded"
  # (a value a counter cannot hold is named as such before the checksum is compared)
  grep -q "^dpt train: $f: \(the metadata checksum fails\|attribute '$1' is \)" $f.out \
    || { cat $f.out; fail "$1 flipped: the resume does not report the metadata checksum"; }
  "$dpt" ckpt inspect $f > $f.inspect 2>&1 && fail "$1 flipped: inspect exits 0"
  grep -q "^  meta_checksum .* FAILED$" $f.inspect && grep -q "metadata checksum fails" $f.inspect \
    || { cat $f.inspect; fail "$1 flipped: inspect does not say the metadata checksum failed"; }
  n=$((n + 1))
done
echo "flipped bits caught by resume and inspect: $n cases"
"$dpt" ckpt inspect $good > inspect.out || fail "inspect of a good checkpoint"
grep -q "^  meta_checksum  *[0-9a-f]\{16\} ok$" inspect.out || { cat inspect.out; fail "no 'meta_checksum ... ok'"; }

# 2. counters out of range with a matching checksum: named with their range
while read -r name value want; do
  f=range-$name.h5
  cp $good $f
  $py edit.py $f set $name $value || fail "could not set $name"
  "$dpt" ckpt inspect $f >/dev/null || fail "$name = $value: the re-signed file does not verify"
  train --run-dir range --resume $f > $f.out 2>&1 && fail "$name = $value: the resume succeeded"
  grep -q "$want" $f.out || { cat $f.out; fail "$name = $value: expected '$want'"; }
  echo "$name = $value: $(grep '^dpt train' $f.out | cut -c1-110)"
done <<'CASES'
train.step_in_epoch 9 'train.step_in_epoch' is 9 (expected at most train.steps_per_epoch 8
train.epoch 1e15 'train.epoch' is 1000000000000000 (expected at most train.step 10
train.world_size 0 'train.world_size' is 0 (expected 1 to
train.zero 7 'train.zero' is 7 (expected a ZeRO stage
solver.step 11 'solver.step' is 11 (expected a whole number from 0 to train.step 10)
train.steps_per_epoch 4 is 2 steps into epoch 1, but this run's epochs have 8 steps
CASES
echo ok
