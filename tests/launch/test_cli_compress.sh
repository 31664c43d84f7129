#!/usr/bin/env bash
# --compress: training at W = 2 with each compression (bf16, fp16, powersgd:2 after 8 plain
# steps) converges as the uncompressed run does (train loss falls by more than half, the final
# loss within 0.1 of uncompressed), the startup says what is compressed; bad values, and
# --deterministic or --reduce node with compression, are refused with one line and status 2.
# Usage: test_cli_compress.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 1024 256 24 5
train() { # NAME [options]
  local name=$1; shift
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:24-64-32-5 \
    --batch 32 --epochs 4 --lr 0.003 --progress none --run-dir "$name" "$@" > "$name.out" 2>&1 \
    || { cat "$name.out"; fail "training $name"; }
}
loss() { # RUN EPOCH: its train loss
  $py -c 'import json,sys
for l in open(sys.argv[1]):
    m = json.loads(l)
    if m["type"] == "epoch" and m["epoch"] == int(sys.argv[2]): print(m["train_loss"])' \
    "$1/metrics.jsonl" "$2"
}
train none
ref=$(loss none 3)
for c in bf16 fp16 powersgd:2; do
  name=${c%%:*}
  train "$name" --compress "$c" --compress-start 8
  grep -q "gradients compressed" "$name.out" || fail "$c: no line says the gradients are compressed"
  first=$(loss "$name" 0) last=$(loss "$name" 3)
  echo "$c: train loss $first -> $last (uncompressed: $(loss none 0) -> $ref)"
  $py -c "import sys; a, b, r = map(float, sys.argv[1:]); sys.exit(not (b < a / 2 and b < r + 0.1))" \
    "$first" "$last" "$ref" || fail "$c: train loss $first -> $last (uncompressed ends at $ref)"
done
cmp -s none/metrics.jsonl bf16/metrics.jsonl && fail "bf16 trained bitwise what fp32 did"

refuse() { # SUBSTRING args...
  local sub=$1 out rc; shift
  out=$(timeout 60 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --progress none "$@" 2>&1)
  rc=$?
  [ "$rc" = 2 ] && [ "$(printf '%s\n' "$out" | grep -c '^dpt')" = 1 ] \
    && printf '%s' "$out" | grep -qF -- "$sub" \
    || fail "dpt train $*: want status 2 and one line with '$sub'; got $rc: $out"
}
refuse "'zip' is not one of none, bf16, fp16, powersgd" --compress zip
refuse "'powersgd:0' is not one of" --compress powersgd:0
refuse "--compress bf16: not with --deterministic" --compress bf16 --deterministic 1
refuse "--compress fp16: works with --reduce auto or rank-order, not node" --compress fp16 --reduce node
echo "compression: 3 trainings converge, 4 refusals"
