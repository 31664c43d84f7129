#!/usr/bin/env bash
# PyTorch interop, for real (README "Models"): train cnn:tiny (and mlp:784-32-10) on a slice
# of Fashion-MNIST on 2 ranks with a checkpoint, print its torch module with `dpt model torch`,
# load the checkpoint into it with load_state_dict(strict=True) (the printed loader), and check
# that torch's test loss and accuracy equal dpt's evaluation of the same parameters. Then a checkpoint of another
# architecture is refused with one line, and one of the same architecture (the preset copied
# into a file) loads. Usage: test_model_torch.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
idx=/usr/share/datasets/fashion-mnist
[ -f "$idx/train-images-idx3-ubyte.gz" ] || fail "Fashion-MNIST is not in $idx (launch/install-deps.sh test)"

"$dpt" data import-idx --dir "$idx" --out fm.h5 >/dev/null || fail "import-idx"
# a slice (2048 training, 1000 test samples) keeps the training short; the attributes (scale,
# offset, num_classes) come along
$py - <<'PY' || fail "h5py could not cut the slice"
import h5py
with h5py.File("fm.h5", "r") as f, h5py.File("sub.h5", "w") as g:
    for k, v in f.attrs.items():
        g.attrs[k] = v
    for split, n in (("train", 2048), ("test", 1000)):
        for part in ("x", "y"):
            d = g.create_dataset(f"{split}/{part}", data=f[split][part][:n])
            for k, v in f[split][part].attrs.items():
                d.attrs[k] = v
PY

# cnn:tiny, and the MLP (the same module printer, its names fc1, act1, fc2)
for spec in cnn:tiny mlp:784-32-10; do
  run=run.${spec%%:*}
  timeout 300 mpirun -n 2 "$dpt" train --data sub.h5 --model "$spec" --batch 128 --epochs 1 \
    --ckpt 1 --run-dir "$run" --progress none > "$run.out" 2>&1 || { cat "$run.out"; fail "training $spec"; }
  ckpt=$run/ckpt/$(cat "$run/ckpt/latest")
  [ -f "$ckpt" ] || fail "no checkpoint of $spec"
  rm -rf dptnet.py __pycache__
  "$dpt" model torch "$spec" > dptnet.py 2> torch.err || { cat torch.err; fail "dpt model torch $spec"; }
  $py - "$ckpt" "$run/metrics.jsonl" <<'PY' || fail "$spec: torch's evaluation differs from dpt's (above)"
import json, sys
import h5py, numpy as np, torch
import torch.nn.functional as F
from dptnet import DptModel, load_dpt_checkpoint

torch.set_num_threads(1)
ckpt, metrics = sys.argv[1:]
net = DptModel()
with h5py.File(ckpt, "r") as f:  # the module's state_dict is the checkpoint's tensors, exactly
    saved = {k: tuple(f["model"][k].shape) for k in f["model"]}
own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
assert saved == own, f"state_dict {own} != checkpoint {saved}"
net = load_dpt_checkpoint(net, ckpt).eval()  # load_state_dict(strict=True)

with h5py.File("sub.h5", "r") as f:  # the values dpt's model sees: (float)(raw * scale + offset)
    x = f["test/x"]
    scale, offset = float(x.attrs["scale"]), float(x.attrs["offset"])
    xs = (x[()].astype(np.float64) * scale + offset).astype(np.float32)
    y = torch.from_numpy(f["test/y"][()].astype(np.int64))
with torch.no_grad():
    logits = net(torch.from_numpy(xs))
loss = F.cross_entropy(logits, y, reduction="none").double().sum().item() / len(y)
acc = (logits.argmax(1) == y).double().mean().item()

epochs = [json.loads(l) for l in open(metrics) if '"type":"epoch"' in l]
dl, da = epochs[-1]["test_loss"], epochs[-1]["test_accuracy"]
print(f"torch: test loss {loss:.9f} accuracy {acc:.4f}; dpt: test loss {dl:.9f} accuracy {da:.4f}")
assert abs(loss - dl) <= 1e-5 * max(1.0, abs(dl)), "test loss"
assert abs(acc - da) <= 1e-9, "test accuracy"
PY
done
ckpt=run.cnn/ckpt/$(cat run.cnn/ckpt/latest)

# another architecture: the same tensors with tanh for relu (refused by the model's identity),
# and another width (refused likewise); the preset copied into a file is the same model
"$dpt" model cat cnn:tiny > same.ini || fail "dpt model cat"
sed 's/^kind = relu$/kind = tanh/' same.ini > tanh.ini
sed 's/^out = 4$/out = 6/' same.ini > wide.ini
grep -q "kind = tanh" tanh.ini && grep -q "out = 6" wide.ini || fail "could not edit the preset"
for m in tanh.ini wide.ini; do
  out=$(timeout 120 "$dpt" train --data sub.h5 --model "$m" --init "$ckpt" --batch 128 \
        --max-steps 1 --run-dir "run.$m" --progress none 2>&1); rc=$?
  n=$(printf '%s\n' "$out" | grep -c '^dpt train:')
  [ "$rc" -eq 1 ] && [ "$n" -eq 1 ] && printf '%s' "$out" | grep -q "was saved with model 'net:[0-9a-f]*' but this run uses 'net:[0-9a-f]*'" \
    || fail "--init of another architecture ($m): status $rc: $out"
done
timeout 120 "$dpt" train --data sub.h5 --model same.ini --init "$ckpt" --batch 128 --max-steps 1 \
  --run-dir run.same --progress none > same.out 2>&1 || { cat same.out; fail "--init of the same architecture"; }
echo "ok: torch loads dpt's checkpoint and evaluates it as dpt does"
