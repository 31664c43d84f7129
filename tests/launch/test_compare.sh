#!/usr/bin/env bash
# dpt compare and dpt plot: four solvers on 4 ranks in 2 groups of 2 train from the same initial
# parameters on the same batches (their first losses are equal), and give a table of 4 rows and
# valid SVG plots; dpt plot draws finished runs (named with --label); the analytic problems
# reproduce the worked example (GD on x^2 - 4x + 3 from 0 with lr 0.3: 1.2, 1.68, ... -> 2) and
# bring Adam to Rosenbrock's minimum; bad input is one clear line.
# Usage: test_compare.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 1024 256 20 4

# every SVG in a directory parses as SVG with finite coordinates
svg_ok() {
  $py - "$1" <<'PY'
import sys, glob, re, xml.etree.ElementTree as ET
files = glob.glob(sys.argv[1] + "/*.svg")
assert files, "no svg"
for f in files:
    root = ET.parse(f).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", f
    assert all(root.get(a) for a in ("width", "height", "viewBox")), f
    for el in root.iter():
        for a in ("points", "d"):
            v = el.get(a)
            if v and re.search(r"nan|inf", v, re.I):
                raise SystemExit(f + ": non-finite coordinates")
print(len(files))
PY
}

# 1. four solvers, 4 ranks, 2 groups of 2
timeout 300 mpirun --oversubscribe -n 4 "$dpt" compare --solvers sgd,adam,adamw,lion \
  --momentum 0.9 --data d.h5 --model mlp:20-32-4 --batch 32 --epochs 3 --group-ranks 2 \
  --target-loss 1.0 --out cmp --progress none > cmp.out 2>&1 || { cat cmp.out; fail "compare"; }
grep -q "4 runs, 2 groups of 2 ranks" cmp.out || { cat cmp.out; fail "not 2 groups of 2"; }
[ "$(grep -c '^| \(sgd\|adam\|adamw\|lion\) |' cmp/summary.md)" = 4 ] \
  || { cat cmp/summary.md; fail "summary.md does not have one row per solver"; }
grep -q "^| sgd |" cmp.out || fail "the table was not printed"
n=$(svg_ok cmp) || fail "invalid SVG from compare"
[ "$n" -ge 5 ] || fail "expected 5 plots, got $n"
for s in sgd adam adamw lion; do
  [ -s cmp/$s/metrics.jsonl ] || fail "no metrics for $s"
  grep -q "\"label\":\"$s\"" cmp/$s/metrics.jsonl || fail "$s: metrics not labelled"
  grep -q '"ranks":2' cmp/$s/metrics.jsonl || fail "$s did not train on 2 ranks"
done
# same initial parameters and first batch: the first step's loss is the same for every solver
first=$(for s in sgd adam adamw lion; do grep -m1 '"type":"step"' cmp/$s/metrics.jsonl | grep -o '"loss":[^,]*'; done | sort -u | wc -l)
[ "$first" = 1 ] || fail "the runs did not start from the same parameters and batch"
echo "compare: 4 solvers in 2 groups of 2, table of 4 rows, $n valid plots, equal first losses"

# 2. dpt plot on finished runs
"$dpt" plot --out replot cmp/sgd/metrics.jsonl cmp/lion/metrics.jsonl > plot.out 2>&1 \
  || { cat plot.out; fail "dpt plot"; }
n=$(svg_ok replot) || fail "invalid SVG from dpt plot"
grep -q ">sgd<" replot/loss_step.svg && grep -q ">lion<" replot/loss_step.svg \
  || fail "the plot's legend does not name the runs"
# --label names the files in order; more labels than files is bad usage
"$dpt" plot --out relabel --label first --label "second run" cmp/sgd/metrics.jsonl \
  cmp/lion/metrics.jsonl > relabel.out 2>&1 || { cat relabel.out; fail "dpt plot --label"; }
grep -q ">first<" relabel/loss_step.svg && grep -q ">second run<" relabel/loss_step.svg \
  && ! grep -q ">sgd<" relabel/loss_step.svg || fail "--label does not name the runs"
echo "plot: $n valid plots; --label names them"

# 3. the worked example and Rosenbrock
"$dpt" compare --problem quadratic --solvers gd --lr 0.3 --steps 20 --out quad > quad.out 2>&1 \
  || { cat quad.out; fail "compare --problem quadratic"; }
$py - quad/trajectories.jsonl <<'PY' || fail "the worked example's iterates are wrong"
import json, sys
xs = [json.loads(l)["x"][0] for l in open(sys.argv[1]) if json.loads(l)["run"] == "gd"]
want = [0, 1.2, 1.68, 1.872, 1.9488]
assert all(abs(a - b) < 1e-5 for a, b in zip(xs, want)), xs[:5]
assert abs(xs[-1] - 2) < 1e-4, xs[-1]
print("quadratic:", " -> ".join("%g" % x for x in xs[:5]), "... ->", "%.6f" % xs[-1])
PY
"$dpt" compare --problem rosenbrock --solvers gd,adam --lr 0.02 --steps 3000 --out rosen \
  > rosen.out 2>&1 || { cat rosen.out; fail "compare --problem rosenbrock"; }
$py - rosen/trajectories.jsonl <<'PY' || fail "Rosenbrock: Adam did not reach (1, 1)"
import json, sys
last = {}
for l in open(sys.argv[1]):
    r = json.loads(l); last[r["run"]] = r["x"]
x, y = last["adam"]
assert abs(x - 1) < 1e-2 and abs(y - 1) < 1e-2, (x, y)
print("rosenbrock: adam ends at (%.4f, %.4f)" % (x, y))
PY
svg_ok rosen >/dev/null || fail "invalid SVG from the Rosenbrock run"

# 4. bad input
check() { # expected-status substring ranks args...
  local want=$1 sub=$2 ranks=$3; shift 3
  local out rc
  out=$(timeout 60 mpirun --oversubscribe -n "$ranks" "$dpt" "$@" 2>&1 </dev/null); rc=$?
  [ "$rc" -eq "$want" ] && [ "$(printf '%s\n' "$out" | grep -c '^dpt')" -eq 1 ] \
    && printf '%s' "$out" | grep -qF -- "$sub" \
    || { echo "$out"; fail "dpt $*: expected status $want and one line with '$sub'"; }
}
check 2 "--solvers" 4 compare --data d.h5
check 2 "nope" 4 compare --solvers adam,nope --data d.h5
check 2 "--group-ranks 3" 4 compare --solvers adam,sgd --group-ranks 3 --data d.h5
check 2 "frobnicate" 4 compare --solvers adam --frobnicate 1 --data d.h5
check 2 "rosenbrok" 2 compare --problem rosenbrok --solvers adam
check 2 "no metrics" 1 plot
check 1 "missing.jsonl" 1 plot missing.jsonl
check 2 "--label given 2 times for 1" 1 plot --label a --label b cmp/sgd/metrics.jsonl
check 2 "--label needs a name" 1 plot cmp/sgd/metrics.jsonl --label
echo ok
