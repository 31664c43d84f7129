#!/usr/bin/env bash
# A tiny GPT end to end with the dpt command: import a text, train at W = 2 with a held-out
# evaluation (nats and bits per token in the metrics file), checkpoint, then `dpt sample`:
# the same seed gives the same text (also from the checkpoint of a W = 1 run of the same
# --deterministic training), another seed another text. Bad input is one line naming it:
# a context longer than a split, a GPT on a dataset that is not text, a prompt character
# outside the vocabulary. Usage: test_gpt.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"

words_text text.txt
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
# the checkpoint loads into a nanoGPT-style torch module (strict names and shapes) that gives
# the held-out loss dpt reported, over the same consecutive windows
$py - "$c2" t.h5 run2/metrics.jsonl <<'PY' || fail "the checkpoint does not load into torch as dpt computes it"
import json, math, sys
import h5py, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
ck, data, metrics = sys.argv[1:4]
T, C, H, L = 16, 16, 2, 1
with h5py.File(ck) as f:
    state = {k: torch.from_numpy(np.array(v)) for k, v in f["model"].items()}
with h5py.File(data) as f:
    test = np.array(f["test/tokens"]); V = len(f["vocab"])
class Attn(nn.Module):
    def __init__(s):
        super().__init__(); s.c_attn = nn.Linear(C, 3 * C); s.c_proj = nn.Linear(C, C)
    def forward(s, x):
        B = x.shape[0]; q, k, v = s.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        a = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        a = a.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf")).softmax(-1)
        return s.c_proj((a @ v).transpose(1, 2).reshape(B, T, C))
class MLP(nn.Module):
    def __init__(s):
        super().__init__(); s.c_fc = nn.Linear(C, 4 * C); s.c_proj = nn.Linear(4 * C, C)
    def forward(s, x): return s.c_proj(F.gelu(s.c_fc(x)))
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln_1 = nn.LayerNorm(C); s.attn = Attn(); s.ln_2 = nn.LayerNorm(C); s.mlp = MLP()
    def forward(s, x):
        x = x + s.attn(s.ln_1(x)); return x + s.mlp(s.ln_2(x))
class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.transformer = nn.ModuleDict(dict(wte=nn.Embedding(V, C), wpe=nn.Embedding(T, C),
                                           h=nn.ModuleList(Block() for _ in range(L)), ln_f=nn.LayerNorm(C)))
        s.lm_head = nn.Linear(C, V, bias=False)
        s.lm_head.weight = s.transformer.wte.weight  # tied, as dpt's
    def forward(s, idx):
        x = s.transformer.wte(idx) + s.transformer.wpe(torch.arange(T))
        for b in s.transformer.h: x = b(x)
        return s.lm_head(s.transformer.ln_f(x))
assert "lm_head.weight" not in state and "lm_head.bias" not in state, sorted(state)
state["lm_head.weight"] = state["transformer.wte.weight"]  # the checkpoint holds it once
m = GPT(); m.load_state_dict(state, strict=True)
n = (len(test) - 1) // T
x = torch.tensor(np.stack([test[j * T:j * T + T] for j in range(n)]), dtype=torch.long)
y = torch.tensor(np.stack([test[j * T + 1:j * T + T + 1] for j in range(n)]), dtype=torch.long)
with torch.no_grad(): loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1)).item()
dpt = [json.loads(l) for l in open(metrics) if '"type":"epoch"' in l][-1]["test_loss"]
print(f"torch {loss:.7f} dpt {dpt:.7f}")
assert abs(loss - dpt) <= 1e-5 * abs(dpt), (loss, dpt)
PY
cmp <("$dpt" ckpt inspect "$c1" | grep '/model/') <("$dpt" ckpt inspect "$c2" | grep '/model/') \
  || fail "W=1 and W=2 checkpoints differ"
s1=$("$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 5 --top-k 5) || fail "sample failed: $s1"
s2=$("$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 5 --top-k 5)
s3=$("$dpt" sample --ckpt "$c1" --prompt "in the " --tokens 60 --seed 5 --top-k 5)
s4=$("$dpt" sample --ckpt "$c2" --prompt "in the " --tokens 60 --seed 6 --top-k 5)
[ "$s1" = "$s2" ] || fail "the same seed gave different texts: '$s1' vs '$s2'"
[ "$s1" = "$s3" ] || fail "W=1's checkpoint samples differently: '$s1' vs '$s3'"
[ "$s1" != "$s4" ] || fail "seeds 5 and 6 gave the same text"
s6=$("$dpt" sample --ckpt run2/ckpt --prompt "in the " --tokens 60 --seed 5 --top-k 5)
[ "$s6" = "$s1" ] || fail "--ckpt run2/ckpt (its latest) samples differently"
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
