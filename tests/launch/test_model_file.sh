#!/usr/bin/env bash
# Mistakes in model files (README "Models"): each bad file given to `dpt train --model` gives
# exactly one line naming the file and line, the layer and what was expected, exit status 2,
# and nothing in the run directory. Then the good paths: a file and its bare .ini path train,
# a [H, W] dataset feeds a conv as one channel, and `dpt model show` prints the shapes.
# Usage: test_model_file.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"

"$dpt" data synth --out flat.h5 --train 64 --test 16 --features 784 --classes 10 >/dev/null \
  || fail "could not make the synthetic dataset"
$py - <<'PY' || fail "h5py could not write the image dataset"
import h5py, numpy as np
rng = np.random.default_rng(0)
with h5py.File("img.h5", "w") as f:  # samples [8, 8], 4 classes
    for split, n in (("train", 64), ("test", 16)):
        f[split + "/x"] = rng.standard_normal((n, 8, 8)).astype(np.float32)
        f[split + "/y"] = (np.arange(n) % 4).astype(np.int32)
PY
mkdir adir.ini

# bad NAME DATA EXPECTED <<< FILE: writes NAME.ini from stdin, trains with it, checks
ncase=0; nfail=0
check() {
  local model=$1 data=$2 want=$3 out rc lines
  ncase=$((ncase + 1))
  out=$(timeout 60 "$dpt" train --data "$data" --model "$model" --batch 8 --epochs 1 \
        --run-dir "run.$ncase" --progress none 2>&1 </dev/null); rc=$?
  lines=$(printf '%s\n' "$out" | wc -l)
  if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! printf '%s' "$out" | grep -qF -- "$want" \
     || [ -e "run.$ncase" ]; then
    echo "FAIL: --model $model --data $data: want status 2, one line with '$want' and no run"
    echo "      directory; got status $rc, $lines lines$([ -e "run.$ncase" ] && echo ', a run directory'):"
    printf '%s\n' "$out" | sed 's/^/    /' | head -5
    nfail=$((nfail + 1))
  fi
}
bad() { cat > "$1.ini"; check "file:$1.ini" "$2" "$3"; }

bad empty flat.h5 "empty.ini: the file is empty (expected an optional [model] section" </dev/null
bad nolayers flat.h5 "nolayers.ini: no layers (expected a [name] section per layer" <<'EOF'
[model]
loss = ce
EOF
check file:nosuch.ini flat.h5 "nosuch.ini: cannot open the model file: No such file or directory"
check file:adir.ini flat.h5 "model file: 'adir.ini' is not a regular file (a directory)"
check file: flat.h5 "model 'file:': the path is empty (expected file:PATH)"
check cnn:nope flat.h5 "model 'cnn:nope': no such preset (expected one of cnn:fashion, cnn:tiny"
bad nokind flat.h5 "nokind.ini:1: fc: kind is missing (expected kind = one of linear, relu" <<'EOF'
[fc]
out = 10
EOF
bad badkind flat.h5 "badkind.ini:2: c1: kind 'conv' is unknown (expected one of linear, relu" <<'EOF'
[c1]
kind = conv
out = 4
EOF
bad unknownopt img.h5 "unknownopt.ini:4: c1: option 'strde=2' is not one of conv2d's (expected out=N" <<'EOF'
[c1]
kind = conv2d
kernel = 3
strde = 2
EOF
bad dupopt flat.h5 "dupopt.ini:4: fc: option 'out' is set twice (first at line 3)" <<'EOF'
[fc]
kind = linear
out = 10
out = 12
EOF
bad dupkind flat.h5 "dupkind.ini:3: fc: kind is set twice (first at line 2)" <<'EOF'
[fc]
kind = linear
kind = relu
EOF
bad duplayer flat.h5 "duplayer.ini:5: layer 'fc' is defined twice (first at line 1)" <<'EOF'
[fc]
kind = linear
out = 10

[fc]
kind = relu
EOF
bad channels img.h5 "channels.ini:10: conv2: expects 32 input channels, gets 16" <<'EOF'
[conv1]
kind = conv2d
out = 16
kernel = 3

[conv2]
kind = conv2d
out = 32
kernel = 3
in = 32
EOF
bad classes flat.h5 "classes.ini:3: fc: gives 12 outputs ([12], out = 12), but the dataset has 10 classes (expected the last layer to give 10)" <<'EOF'
[fc]
kind = linear
out = 12
EOF
bad range img.h5 "range.ini:3: c1: option kernel='0' (expected an integer in [1, " <<'EOF'
[c1]
kind = conv2d
kernel = 0
out = 4
EOF
bad smoothing flat.h5 "smoothing.ini:3: loss: option label_smoothing='1.5' (expected a number in [0, 0.999999])" <<'EOF'
[model]
loss = ce
label_smoothing = 1.5
[fc]
kind = linear
out = 10
EOF
bad bigkernel img.h5 "bigkernel.ini:1: c1: kernel 9x9 is larger than the input [1, 8, 8] padded by 0" <<'EOF'
[c1]
kind = conv2d
out = 4
kernel = 9
EOF
bad poolpad img.h5 "poolpad.ini:4: p1: padding=2 is more than half the kernel 2x2" <<'EOF'
[p1]
kind = maxpool2d
kernel = 2
padding = 2
EOF
bad malformed flat.h5 "malformed.ini:2: malformed line (expected [name], key = value, or a comment" <<'EOF'
[fc]
kind linear
EOF
bad outside flat.h5 "outside.ini:1: 'kind' is outside a section (expected [model] or a layer's [name] first)" <<'EOF'
kind = linear
[fc]
EOF
bad modelkey flat.h5 "modelkey.ini:2: [model] has no key 'los' (expected loss, label_smoothing, per_position, input or description)" <<'EOF'
[model]
los = ce
[fc]
kind = linear
out = 10
EOF
bad perposition flat.h5 "perposition.ini:3: loss: per_position=1 needs a [T, V] output, the net's is [10]" <<'EOF'
[model]
loss = ce
per_position = 1
[fc]
kind = linear
out = 10
EOF
bad perposition2 flat.h5 "perposition2.ini:2: loss: option per_position='2'" <<'EOF'
[model]
per_position = 2
[fc]
kind = linear
out = 10
EOF
bad inputshape flat.h5 "inputshape.ini:2: input = [1, 27, 28] holds 756 values, but the dataset's samples are [784] (784 values)" <<'EOF'
[model]
input = 1x27x28
[fc]
kind = linear
out = 10
EOF
bad badshape flat.h5 "badshape.ini:2: [model] input = '1x-28' is not a shape (expected sizes joined by 'x'" <<'EOF'
[model]
input = 1x-28
EOF
bad badname flat.h5 "badname.ini:1: layer name 'conv.1' is not a name (expected letters, digits and '_'" <<'EOF'
[conv.1]
kind = linear
EOF
bad reserved flat.h5 "reserved.ini:1: layer name 'forward' is reserved (a Python keyword, a torch.nn.Module attribute" <<'EOF'
[forward]
kind = linear
EOF
bad flatconv flat.h5 "flatconv.ini:1: c1: conv2d expects a sample of shape [C, H, W], gets [784]; input = CxHxW in [model] reshapes the sample" <<'EOF'
[c1]
kind = conv2d
out = 4
kernel = 3
EOF
bad loss flat.h5 "loss.ini:2: loss 'hinge' is unknown (expected ce or mse)" <<'EOF'
[model]
loss = hinge
[fc]
kind = linear
out = 10
EOF
bad mse flat.h5 "mse.ini:2: loss = mse needs float targets, but the dataset holds class labels (expected loss = ce)" <<'EOF'
[model]
loss = mse
[fc]
kind = linear
out = 10
EOF
bad comma img.h5 "comma.ini:3: c1: kernel = '3,3' holds a ',' or '=' (expected one value per key)" <<'EOF'
[c1]
kind = conv2d
kernel = 3,3
EOF
bad noout flat.h5 "noout.ini:1: fc: option 'out' is missing (expected out=N" <<'EOF'
[fc]
kind = linear
EOF
bad novalue flat.h5 "novalue.ini:3: fc: 'out' has no value" <<'EOF'
[fc]
kind = linear
out =
EOF
bad twomodels flat.h5 "twomodels.ini:3: [model] is given twice (first at line 1)" <<'EOF'
[model]
loss = ce
[model]
EOF
bad actopts flat.h5 "actopts.ini:6: r: relu takes no options (got 'slope=2')" <<'EOF'
[fc]
kind = linear
out = 10
[r]
kind = relu
slope = 2
EOF
bad linopt flat.h5 "linopt.ini:4: fc: option 'bais=0' is not one of linear's (expected out=N" <<'EOF'
[fc]
kind = linear
out = 10
bais = 0
EOF
# weight tying: the source must be an earlier layer whose weight has the tied shape
bad tienone flat.h5 "tienone.ini:4: fc: tie=emb names no earlier layer (expected a layer above it)" <<'EOF'
[fc]
kind = linear
out = 10
tie = emb
EOF
bad tieshape flat.h5 "tieshape.ini:9: fc: tie=fc1: fc1.weight has shape [20, 784], this layer's weight is [10, 20] (expected equal)" <<'EOF'
[fc1]
kind = linear
out = 20
[relu]
kind = relu
[fc]
kind = linear
out = 10
tie = fc1
EOF
bad addfrom img.h5 "addfrom.ini:7: res: from='nope' names no earlier layer (expected a layer above it, or input)" <<'EOF'
[c1]
kind = conv2d
out = 2
kernel = 3
[res]
kind = add
from = nope
EOF
bad addshape img.h5 "addshape.ini:11: res: adds c1's output of shape [2, 8, 8] to an input of shape [2, 4, 4] (expected equal shapes)" <<'EOF'
[c1]
kind = conv2d
out = 2
kernel = 3
padding = 1
[p]
kind = maxpool2d
kernel = 2
[res]
kind = add
from = c1
EOF
bad heads flat.h5 "heads.ini:1: attn: attention expects a sample of shape [T, C], gets [784]" <<'EOF'
[attn]
kind = attention
heads = 3
EOF
bad dropout flat.h5 "dropout.ini:3: d: option p='1.5' (expected a number in [0, " <<'EOF'
[d]
kind = dropout
p = 1.5
EOF
bad nokey flat.h5 "nokey.ini:3: '= 3' has no key (expected key = value)" <<'EOF'
[fc]
kind = linear
= 3
EOF
echo "$ncase cases, $nfail failed"
[ "$nfail" -eq 0 ] || exit 1

# --- the good paths ---
cat > tiny.ini <<'EOF'
# a comment line
[model]
input = 1x28x28 ; a comment after a value
[conv1]
kind = conv2d
out = 2
kernel = 3
[act]
kind = tanh
[pool]
kind = avgpool2d
kernel = 2
[fc]
kind = linear
out = 10
EOF
"$dpt" train --data flat.h5 --model tiny.ini --batch 8 --epochs 1 --run-dir good --progress none \
  --ckpt 1 > good.out 2>&1 || { cat good.out; fail "a bare .ini path does not train"; }
grep -q "test accuracy" good.out || fail "no evaluation in: $(cat good.out)"
# a [8, 8] dataset feeds a conv as [1, 8, 8]; show prints every layer's shape and the total
cat > img.ini <<'EOF'
[c1]
kind = conv2d
out = 3
kernel = 3
[g]
kind = globalavgpool2d
[fc]
kind = linear
out = 4
EOF
"$dpt" model show file:img.ini --data img.h5 > show.out 2>&1 || { cat show.out; fail "model show"; }
grep -q "input \[1, 8, 8\] (the dataset's \[H, W\] sample as one channel)" show.out \
  || fail "show does not say the input shape: $(cat show.out)"
grep -qE "^  c1 +conv2d +\[3, 6, 6\] +30$" show.out || fail "show's conv line: $(cat show.out)"
grep -qE "^  g +globalavgpool2d +\[3, 1, 1\] +0$" show.out || fail "show's pool line: $(cat show.out)"
grep -qE "^  total +46$" show.out || fail "show's total: $(cat show.out)"
"$dpt" train --data img.h5 --model img.ini --batch 8 --epochs 1 --run-dir img --progress none \
  > img.out 2>&1 || { cat img.out; fail "the image model does not train"; }
# without a dataset and without [model] input, show says where the shape comes from
out=$("$dpt" model show img.ini 2>&1); rc=$?
[ "$rc" -eq 2 ] && printf '%s' "$out" | grep -qF "img.ini: the input shape comes from the dataset" \
  || fail "show without a shape: status $rc: $out"
# a UTF-8 BOM and CRLF line ends are read as inih reads them
printf '\xef\xbb\xbf[model]\r\ninput = 1x28x28\r\n[fc]\r\nkind = linear\r\nout = 10\r\n' > crlf.ini
"$dpt" model show crlf.ini --data flat.h5 > crlf.out 2>&1 || { cat crlf.out; fail "a file with a BOM and CRLF"; }
grep -qE "^  fc +linear +\[10\] +7,850$" crlf.out || fail "crlf.ini: $(cat crlf.out)"
echo "ok: $ncase bad model files refused, good files train"
