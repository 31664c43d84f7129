#!/usr/bin/env bash
# A tiny GPT end to end with the dpt command: import a text, train at W = 2 with a held-out
# evaluation (nats and bits per token in the metrics file), checkpoint, then `dpt sample`:
# the same seed gives the same text (also from the checkpoint of a W = 1 run of the same
# --deterministic training), another seed another text. Bad input is one line naming it:
# a context longer than a split, a GPT on a dataset that is not text, a prompt character
# outside the vocabulary. Usage: test_gpt.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"

$py -c '
import random
r = random.Random(3)
w = ["in ", "the ", "beginning ", "god ", "created ", "heaven ", "and ", "earth ", ".\n"]
print("".join(r.choice(w) for _ in range(700)), end="")' > text.txt
"$dpt" data import-text text.txt --out t.h5 --val-fraction 0.1 >/dev/null || fail "import failed"

common=(--data t.h5 --context 16 --model gpt:1-2-16 --batch 8 --epochs 2 --solver adamw --lr 0.01
        --deterministic 1 --micro-shards 2 --progress none --ckpt 1)
for w in 1 2; do
  out=$(timeout 300 mpirun -n $w "$dpt" train "${common[@]}" --run-dir run$w 2>&1) \
    || fail "training at W=$w failed: $out"
done
grep -q '"type":"epoch".*"test_loss":[0-9]' run2/metrics.jsonl || fail "no held-out loss in the metrics"
$py - run2/metrics.jsonl <<'PY' || fail "bits per token are not nats / ln 2"
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if '"epoch"' in l and '"type":"epoch"' in l]
assert recs, "no epoch records"
for r in recs:
    assert abs(r["test_bits_per_token"] - r["test_loss"] / math.log(2)) < 1e-6, r
    assert r["test_loss"] < math.log(10), r   # below the uniform guess over the 10 symbols
PY
c1=$(ls run1/ckpt/ckpt-*.h5 | tail -1); c2=$(ls run2/ckpt/ckpt-*.h5 | tail -1)
cmp <("$dpt" ckpt inspect "$c1" | grep '/model/') <("$dpt" ckpt inspect "$c2" | grep '/model/') \
  || fail "W=1 and W=2 checkpoints differ"
s1=$("$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 5 --top-k 5) || fail "sample failed: $s1"
s2=$("$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 5 --top-k 5)
s3=$("$dpt" sample --ckpt "$c1" --prompt "in the " --tokens 60 --seed 5 --top-k 5)
s4=$("$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 6 --top-k 5)
[ "$s1" = "$s2" ] || fail "the same seed gave different texts: '$s1' vs '$s2'"
[ "$s1" = "$s3" ] || fail "W=1's checkpoint samples differently: '$s1' vs '$s3'"
[ "$s1" != "$s4" ] || fail "seeds 5 and 6 gave the same text"
case $s1 in "in the "*) ;; *) fail "the sample does not continue the prompt: '$s1'" ;; esac
[ "${#s1}" -eq $((7 + 60)) ] || fail "expected 67 characters, got ${#s1}: '$s1'"
# the dataset moved: --data names it
mv t.h5 moved.h5
"$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 5 --top-k 5 >/dev/null 2>&1 \
  && fail "sampling without the dataset succeeded"
s5=$("$dpt" sample --ckpt "$c2" --data moved.h5 --prompt "in the " --tokens 60 --seed 5 --top-k 5)
[ "$s5" = "$s1" ] || fail "--data moved.h5 samples differently"
mv moved.h5 t.h5

"$dpt" data synth --out s.h5 --train 64 --test 16 --features 16 --classes 3 >/dev/null
printf 'ab' > tiny.txt; "$dpt" data import-text tiny.txt --out tiny.h5 --val-fraction 0 >/dev/null
# status | substring | command...
check() {
  local want=$1 sub=$2; shift 2
  local got rc
  got=$("$@" 2>&1 </dev/null); rc=$?
  [ "$rc" -eq "$want" ] || fail "$*: status $rc, want $want: $got"
  [ "$(printf '%s\n' "$got" | grep -c '^dpt')" -eq 1 ] || fail "$*: not one dpt line: $got"
  printf '%s' "$got" | grep -qF -- "$sub" || fail "$*: no '$sub' in: $got"
}
tr=(train --model gpt:1-2-16 --batch 8 --progress none --run-dir bad)
# data that does not fit is found by the run (status 1, as every data mismatch); a malformed
# spec or sample flag is usage (status 2)
check 1 "t.h5: the held-out split has" "$dpt" "${tr[@]}" --data t.h5 --context 400
check 1 "tiny.h5: the training split has 2 tokens, too few for --context 16" "$dpt" "${tr[@]}" --data tiny.h5 --context 16
check 1 "t.h5 is a token dataset: give --context" "$dpt" "${tr[@]}" --data t.h5
check 1 "s.h5 is not a token dataset" "$dpt" "${tr[@]}" --data s.h5 --context 16
check 1 "needs a token dataset" "$dpt" "${tr[@]}" --data s.h5
check 2 "gpt:2-3-16" "$dpt" train --model gpt:2-3-16 --data t.h5 --context 16
check 2 "character U+0051 is not in the vocabulary" "$dpt" sample --ckpt "$c2" --prompt "Q"
check 2 "--ckpt nope.h5" "$dpt" sample --ckpt nope.h5
check 2 "--temperature" "$dpt" sample --ckpt "$c2" --temperature 0
echo ok
