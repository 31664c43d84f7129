#!/usr/bin/env bash
# PyTorch interop for the layers with buffers and two inputs (README "Models"): a residual CNN
# with BatchNorm and dropout on a slice of Fashion-MNIST, and a small attention classifier
# (embedding, causal self-attention, residual add, LayerNorm, Linear on the last dimension) on
# token sequences, and a GPT-like one (learned positions, a Linear without bias tied to the
# embedding, as nanoGPT's lm_head) on the same sequences, each trained on 2 ranks with a checkpoint, printed with `dpt model torch`,
# loaded with load_state_dict(strict=True) (parameters and running statistics), and evaluated
# in torch: test loss and accuracy equal dpt's evaluation.
# Usage: test_model_torch_layers.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
idx=/usr/share/datasets/fashion-mnist
[ -f "$idx/train-images-idx3-ubyte.gz" ] || fail "Fashion-MNIST is not in $idx (launch/install-deps.sh test)"

"$dpt" data import-idx --dir "$idx" --out fm.h5 >/dev/null || fail "import-idx"
$py - <<'PY' || fail "h5py could not write the datasets"
import h5py, numpy as np
with h5py.File("fm.h5", "r") as f, h5py.File("img.h5", "w") as g:  # 1024 + 500 images
    for k, v in f.attrs.items():
        g.attrs[k] = v
    for split, n in (("train", 1024), ("test", 500)):
        for part in ("x", "y"):
            d = g.create_dataset(f"{split}/{part}", data=f[split][part][:n])
            for k, v in f[split][part].attrs.items():
                d.attrs[k] = v
rng = np.random.default_rng(3)
with h5py.File("tok.h5", "w") as g:  # sequences of 12 tokens in [0, 16); label: the first token's quarter
    for split, n in (("train", 512), ("test", 256)):
        x = rng.integers(0, 16, size=(n, 12))
        g[f"{split}/x"] = x.astype(np.float32)
        g[f"{split}/y"] = (x[:, 0] // 4).astype(np.int32)
PY

cat > res.ini <<'EOF'
[model]
input = 1x28x28
label_smoothing = 0.1
[conv1]
kind = conv2d
out = 6
kernel = 3
padding = 1
[bn1]
kind = batchnorm2d
[relu1]
kind = relu
[conv2]
kind = conv2d
out = 6
kernel = 3
padding = 1
[bn2]
kind = batchnorm2d
momentum = 0.2
[res]
kind = add
from = relu1
[relu2]
kind = relu
[pool]
kind = maxpool2d
kernel = 2
[drop]
kind = dropout
p = 0.25
[flat]
kind = flatten
[fc]
kind = linear
out = 10
EOF
cat > attn.ini <<'EOF'
[emb]
kind = embedding
num = 16
dim = 8
[attn]
kind = attention
heads = 2
[res]
kind = add
from = emb
[ln]
kind = layernorm
[proj]
kind = linear
out = 8
last = 1
[act]
kind = gelu_tanh
[flat]
kind = flatten
[fc]
kind = linear
out = 4
EOF

cat > tied.ini <<'EOF'
[wte]
kind = embedding
num = 16
dim = 8
[wpe]
kind = posembed
[ln_1]
kind = layernorm
[attn]
kind = attention
heads = 2
[res]
kind = add
from = wpe
[ln_f]
kind = layernorm
[head]
kind = linear
out = 16
last = 1
bias = 0
tie = wte
[flat]
kind = flatten
[fc]
kind = linear
out = 4
EOF

for m in res:img.h5 attn:tok.h5 tied:tok.h5; do
  name=${m%%:*}; data=${m#*:}
  timeout 300 mpirun -n 2 "$dpt" train --data "$data" --model "$name.ini" --batch 64 --epochs 1 \
    --ckpt 1 --run-dir "run.$name" --progress none > "train.$name" 2>&1 \
    || { cat "train.$name"; fail "training $name.ini"; }
  "$dpt" model torch "$name.ini" --data "$data" > "net_$name.py" 2> "torch.$name" \
    || { cat "torch.$name"; fail "dpt model torch $name.ini"; }
  ckpt=run.$name/ckpt/$(cat "run.$name/ckpt/latest")
  $py - "$ckpt" "net_$name" "$data" "run.$name/metrics.jsonl" <<'PY' || fail "$name: torch's evaluation differs from dpt's (above)"
import importlib, json, sys
import h5py, numpy as np, torch
import torch.nn.functional as F

torch.set_num_threads(1)
ckpt, modname, data, metrics = sys.argv[1:]
mod = importlib.import_module(modname)
net = mod.DptModel()
with h5py.File(ckpt, "r") as f:
    saved = {k: tuple(f[g][k].shape) for g in ("model", "buffers") if g in f for k in f[g]}
own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
tied = getattr(net, "dpt_tied", {})  # one Parameter under two names, held once by dpt
assert set(saved) == set(own) - set(tied), f"state_dict {sorted(own)} != checkpoint {sorted(saved)}"
if "head.weight" in own:
    assert tied == {"head.weight": "wte.weight"} and net.head.weight is net.wte.weight, tied
net = mod.load_dpt_checkpoint(net, ckpt).eval()
if "bn1.running_var" in own:  # the running statistics came along (not torch's initial 1)
    assert not torch.allclose(net.bn1.running_var, torch.ones(6)), "running_var not loaded"
    assert int(net.bn1.num_batches_tracked) == 16, int(net.bn1.num_batches_tracked)
with h5py.File(data, "r") as f:
    x = f["test/x"]
    scale = float(x.attrs["scale"]) if "scale" in x.attrs else 1.0
    offset = float(x.attrs["offset"]) if "offset" in x.attrs else 0.0
    xs = (x[()].astype(np.float64) * scale + offset).astype(np.float32)
    y = torch.from_numpy(f["test/y"][()].astype(np.int64))
with torch.no_grad():
    logits = net(torch.from_numpy(xs))
ls = 0.1 if "bn1.running_var" in own else 0.0
loss = F.cross_entropy(logits, y, label_smoothing=ls, reduction="none").double().sum().item() / len(y)
acc = (logits.argmax(1) == y).double().mean().item()
ep = [json.loads(l) for l in open(metrics) if '"type":"epoch"' in l][-1]
print(f"{modname}: torch test loss {loss:.9f} accuracy {acc:.4f}; dpt {ep['test_loss']:.9f} {ep['test_accuracy']:.4f}")
assert abs(loss - ep["test_loss"]) <= 1e-5 * max(1.0, abs(ep["test_loss"])), "test loss"
assert abs(acc - ep["test_accuracy"]) <= 1e-9, "test accuracy"
PY
done
echo "ok: BatchNorm, dropout, residual add, embedding, attention, LayerNorm, posembed and tied models load into torch"
