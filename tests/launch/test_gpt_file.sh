#!/usr/bin/env bash
# A GPT written as a model file (issue 21: "described in a model file like the other models"):
# [model] per_position = 1 makes the loss each position's cross-entropy, and the file (1 block,
# 2 heads, width 16, its head tied to wte) trains exactly what the preset gpt:1-2-16 trains (the
# same losses in the metrics; only the names differ). `dpt model show` and `dpt model torch`
# read the token dataset with --context T; the module torch prints loads the file model's
# checkpoint strictly and gives the held-out loss dpt reported (to 1e-5) with its own forward
# and the loss its header states; `dpt sample` samples from the checkpoint. Mistakes: a
# per_position on a model whose output is not [T, V], a wrong vocabulary size, a token dataset
# without --context, each one line naming the file. Usage: test_gpt_file.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
words_text text.txt
"$dpt" data import-text text.txt --out t.h5 --val-fraction 0.1 >/dev/null || fail "import failed"
V=$($py -c 'import h5py; print(len(h5py.File("t.h5")["vocab"]))')
block() { # NAME KIND [KEY=VALUE...]
  printf '\n[%s]\nkind = %s\n' "$1" "$2"; shift 2
  for kv in "$@"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"; done
}
{
  printf '[model]\ndescription = a GPT of 1 block as a file\nloss = ce\nper_position = 1\n'
  block wte embedding num=$V dim=16 std=0.02
  block wpe posembed std=0.02
  block ln_1 layernorm
  block attn attention heads=2
  block res_1 add from=wpe
  block ln_2 layernorm
  block fc linear out=64 last=1
  block gelu gelu
  block proj linear out=16 last=1
  block res_2 add from=res_1
  block ln_f layernorm
  block lm_head linear out=$V last=1 bias=0 tie=wte
} > gpt.ini
common=(--data t.h5 --context 16 --batch 8 --epochs 1 --solver adamw --lr 0.01 --progress none
        --ckpt 1 --eval-every 1)
for m in gpt.ini gpt:1-2-16; do
  d=run-${m//[:.]/_}
  timeout 120 mpirun --oversubscribe -n 2 "$dpt" train "${common[@]}" --model "$m" --run-dir "$d" \
    > "$d.out" 2>&1 || { cat "$d.out"; fail "training $m"; }
done
losses() { grep -o '"\(loss\|test_loss\)":[^,]*' "$1/metrics.jsonl"; }
[ -n "$(losses run-gpt_ini)" ] || fail "no losses in the file model's metrics"
cmp <(losses run-gpt_ini) <(losses run-gpt_1-2-16) \
  || fail "the file GPT's losses differ from gpt:1-2-16's"
echo "the file GPT trains what gpt:1-2-16 trains: $(losses run-gpt_ini | tail -1)"
"$dpt" model show gpt.ini --data t.h5 --context 16 > show.txt || fail "model show failed"
grep -q "lm_head .*tie=wte .*\[16, $V\]" show.txt || { cat show.txt; fail "show: no [16, V] head"; }
"$dpt" model torch gpt.ini --data t.h5 --context 16 > gpt_module.py || fail "model torch failed"
ck=$(ls run-gpt_ini/ckpt/ckpt-*.h5 | tail -1)
$py - "$ck" t.h5 run-gpt_ini/metrics.jsonl <<'PY' || fail "the printed module does not give dpt's held-out loss"
import json, sys
import h5py, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, ".")
import gpt_module
ck, data, metrics = sys.argv[1:4]
T = 16
net = gpt_module.load_dpt_checkpoint(gpt_module.DptModel(), ck).eval()
test = np.array(h5py.File(data)["test/tokens"])
n = (len(test) - 1) // T
x = torch.tensor(np.stack([test[j * T:j * T + T] for j in range(n)]), dtype=torch.float32)
y = torch.tensor(np.stack([test[j * T + 1:j * T + T + 1] for j in range(n)]), dtype=torch.long)
with torch.no_grad():
    logits = net(x)  # [N, T, V], as its header says
    loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1).mean().item()
dpt = [json.loads(l) for l in open(metrics) if '"type":"epoch"' in l][-1]["test_loss"]
print(f"torch {loss:.7f} dpt {dpt:.7f}")
assert abs(loss - dpt) <= 1e-5 * abs(dpt), (loss, dpt)
PY
s=$("$dpt" sample --ckpt "$ck" --prompt "in the " --tokens 20 --seed 5) || fail "sample: $s"
case $s in "in the "*) ;; *) fail "the sample does not continue the prompt: '$s'" ;; esac
# mistakes: one line naming the file, exit 2
check() { # WHAT GREP CMD...
  local what=$1 want=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  [ $rc -eq 2 ] && [ "$(echo "$out" | grep -c .)" -eq 1 ] && echo "$out" | grep -q -- "$want" \
    || { echo "$out"; fail "$what: expected one line matching '$want', exit 2 (got $rc)"; }
  echo "$what: $out"
}
awk -v v=$V '/^\[lm_head\]/ { head = 1 } head && $1 == "out" { $0 = "out = 9" } $1 == "num" { $0 = "num = 9" } 1' \
  gpt.ini > v9.ini
check "a wrong vocabulary" "v9.ini:.*lm_head: gives 9 outputs.*$V classes" \
  "$dpt" train --data t.h5 --context 16 --model v9.ini --max-steps 1 --progress none --run-dir bad
printf '[model]\nper_position = 1\ninput = 8\n[fc]\nkind = linear\nout = 4\n' > flat.ini
check "per_position on a flat output" "flat.ini:2: .*per_position=1 needs a \[T, V\] output" \
  "$dpt" model show flat.ini
check "a token dataset without --context" "t.h5.*--context" "$dpt" model show gpt.ini --data t.h5
