#!/usr/bin/env bash
# peer.sh — dpt against PyTorch 1.13 DistributedDataParallel in the same run.
#
# Usage: bash tests/bench/peer.sh [BUILD_DIR] [EPOCHS]        (defaults: build, 2)
# Environment overrides: EPOCHS, REPS (2: runs of each side per configuration, best kept),
# WORLDS ("1 2"), BATCHES ("64 256"), STEP_REPS (7: timed steps per optimizer run),
# STEP_N (16777216: optimizer benchmark parameters), ACC_TOL (0.02), PEER_CACHE (default: a new
# directory of the run's own, removed at the end; set it to keep the datasets between runs),
# PEER_CORETYPE (OpenBLAS kernels of both sides; default SkylakeX on AVX-512 CPUs),
# PEER_TORCH_MALLOC (glibc tunables of the torch side; see below),
# TORCH_BUCKET_VIEW (0; 1: ZeroRedundancyOptimizer(parameters_as_bucket_view=True), labelled).
#
# 1. Training: MLP 784-256-128-10 (relu, cross-entropy) on Fashion-MNIST, Adam lr 1e-3, cosine
#    annealing over the run (per epoch, T_max = EPOCHS: dpt's default interval), global batch B
#    split over W ranks, EPOCHS epochs. dpt: `dpt train --zero 1`; torch: tests/bench/
#    peer_torch.py, DDP (gloo) + ZeroRedundancyOptimizer(Adam). For every W and B the two run
#    alternately (dpt, torch, dpt, torch, ...), REPS times each, both started the same way:
#    `mpirun --oversubscribe -n W /usr/bin/time -f %M ...` (same launcher, same core binding,
#    same peak-RSS measurement: the maximum resident set of each rank process, in MiB).
#    samples/s covers the training loop only, on rank 0:
#      dpt:   steps * B / (time of the last step record - start of the first step) from its
#             metrics JSONL (`time` is seconds since the reporter opened; the first step's start
#             is its time minus its duration B / samples_per_s). Evaluation runs only after the
#             last epoch (--eval-every EPOCHS), so no evaluation falls inside that window.
#             dpt's own summary figure (which also counts that final evaluation) is shown in
#             the per-run lines as "summary".
#      torch: steps * B / wall time from a barrier after loading to the end of the last step.
#    Test accuracy: the whole test split after the last epoch (same HDF5 file, same values).
# 2. Optimizer step alone on STEP_N fp32 parameters, one thread: dpt's bench_optim N against
#    tests/bench/peer_step.py (torch.optim Adam and AdamW, foreach False and True, the faster
#    kept), alternately, REPS times each, best ms/step of all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
epochs=${2:-${EPOCHS:-2}}
reps=${REPS:-2}
worlds=${WORLDS:-"1 2"}
batches=${BATCHES:-"64 256"}
step_reps=${STEP_REPS:-7}
step_n=${STEP_N:-$((16 * 1024 * 1024))}
acc_tol=${ACC_TOL:-0.02}
bucket_view=${TORCH_BUCKET_VIEW:-0}
. "$here/peer_lib.sh"
peer_env # Debian's python3 ($py), one thread, the same OpenBLAS kernels, torch's malloc tunables
peer_cache peer

# --- what is needed: Debian packages, dpt and bench_optim, the dataset ---
bash "$root/launch/install-deps.sh" bench
missing=()
[ -x /usr/bin/time ] || missing+=(time)
"$py" -c 'import h5py' 2>/dev/null || missing+=(python3-h5py)
if [ ${#missing[@]} -gt 0 ]; then
  echo "peer: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >"$cache/apt.log" 2>&1 || { cat "$cache/apt.log" >&2; exit 1; }
fi
cmake --build "$build" -j"$(getconf _NPROCESSORS_ONLN)" --target dpt >/dev/null
have_bench=1
cmake --build "$build" -j"$(getconf _NPROCESSORS_ONLN)" --target bench_optim >/dev/null 2>&1 || have_bench=0
[ -x "$build/tests/bench/bench_optim" ] || have_bench=0
dpt=$build/dpt

mkdir -p "$cache"
fm=/usr/share/datasets/fashion-mnist
if [ -f "$fm/train-images-idx3-ubyte.gz" ]; then
  data=$cache/fashion-mnist.h5
  [ -f "$data" ] || "$dpt" data import-idx --dir "$fm" --out "$data" >/dev/null
  dataname="Fashion-MNIST ($data)"
else
  echo "peer: Debian's dataset-fashion-mnist is not available; using a generated dataset" \
       "(60000 x 784, 10 classes) instead: accuracies are not Fashion-MNIST's" >&2
  data=$cache/synthetic.h5
  [ -f "$data" ] || "$dpt" data synth --out "$data" --train 60000 --test 10000 \
       --features 784 --classes 10 >/dev/null
  dataname="generated data ($data)"
fi

results=$cache/results.jsonl
: >"$results"

run_dpt() { # W B REP
  local tag=dpt-w$1-b$2-r$3
  local out=$cache/$tag
  if ! launch "$1" "$out.rss" "$dpt" train --data "$data" --model mlp:784-256-128-10 \
      --solver adam --lr 1e-3 --sched cosine --batch "$2" --epochs "$epochs" --zero 1 \
      --eval-every "$epochs" --progress none --metrics "$out.jsonl" --run-dir "$cache/run" \
      >"$out.log" 2>&1; then
    echo "peer: dpt failed (W=$1 B=$2), see $out.log:" >&2
    tail -5 "$out.log" >&2
    return 0
  fi
  peer_dpt_record "$out" "$1" "$3" "$2" variant='"dpt --zero 1"' >>"$results"
}

torch_once() { # W B REP TAG ZERO: one run; 0 if it wrote its record
  local out=$cache/$4
  if launch "$1" "$out.rss" env "$torch_malloc" "$py" "$here/peer_torch.py" --data "$data" \
      --model 784-256-128-10 --batch "$2" --epochs "$epochs" --zero "$5" \
      --bucket-view "$bucket_view" --port "$(free_port)" >"$out.log" 2>&1 &&
      grep -q '^{"peer": "torch"' "$out.log"; then
    # fallback: ZeroRedundancyOptimizer failed twice, DDP + plain Adam
    peer_torch_record "$out" "$3" fallback="$([ "$5" = 0 ] && echo true || echo false)" >>"$results"
    return 0
  fi
  echo "peer: torch failed (W=$1 B=$2 zero=$5), see $out.log:" >&2
  tail -5 "$out.log" >&2
  return 1
}

run_torch() { # W B REP: DDP + ZeroRedundancyOptimizer, once more if that fails, then the
  # nearest working variant (DDP + plain Adam), labelled as such in the table
  local tag=torch-w$1-b$2-r$3
  torch_once "$1" "$2" "$3" "$tag" 1 && return 0
  echo "peer: retrying once" >&2
  torch_once "$1" "$2" "$3" "$tag-retry" 1 && return 0
  echo "peer: falling back to DDP + plain Adam (no ZeroRedundancyOptimizer)" >&2
  torch_once "$1" "$2" "$3" "$tag-fallback" 0 || true
}

echo "peer: dpt vs PyTorch $("$py" -c 'import torch; print(torch.__version__)') DDP on $dataname"
echo "peer: $(getconf _NPROCESSORS_ONLN) cores, $epochs epoch(s), REPS=$reps, W in {$worlds}, B in {$batches};" \
     "per-run records in $results"
echo "peer: torch side with $torch_malloc"
echo "peer: OpenBLAS coretype ${OPENBLAS_CORETYPE:-(detected)} on both sides; dpt's Open MPI" \
     "single copy: $( grep -qw hypervisor /proc/cpuinfo && echo "none (virtual machine)" || echo default)"
for w in $worlds; do
  for b in $batches; do
    for rep in $(seq 1 "$reps"); do
      run_dpt "$w" "$b" "$rep"
      run_torch "$w" "$b" "$rep"
    done
  done
done

# --- optimizer step alone ---
steplog=$cache/step.log
: >"$steplog"
for rep in $(seq 1 "$reps"); do
  if [ "$have_bench" = 1 ]; then
    "$build/tests/bench/bench_optim" "$step_n" "$step_reps" >>"$steplog" 2>&1 || true
  fi
  env "$torch_malloc" "$py" "$here/peer_step.py" --n "$step_n" --reps "$step_reps" \
    >>"$steplog" 2>&1 || true
done

"$py" - "$results" "$steplog" "$acc_tol" "$have_bench" <<'EOF'
import json, re, sys
results, steplog, tol, have_bench = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
recs = [json.loads(l) for l in open(results) if l.strip()]
f1 = lambda v: "-" if v is None else "%.0f" % v
f4 = lambda v: "-" if v is None or v != v else "%.4f" % v
print("\nper run (samples/s of the training loop; dpt 'summary' = dpt's own figure, which also "
      "counts the final evaluation; RSS MiB per rank):")
for r in recs:
    extra = ""
    if r["peer"] == "dpt":
        extra = " summary %s" % f1(r["summary_samples_per_s"])
    else:
        extra = " (getrusage in-process %s)" % "/".join("%.0f" % v for v in r["self_rss_mb"])
    print("  %-5s W=%d B=%-3d rep %d  %8.0f samples/s  acc %s  train loss %s  RSS %s%s  [%s]"
          % (r["peer"], r["world"], r["batch"], r["rep"], r["samples_per_s"],
             f4(r["test_accuracy"]), f4(r["train_loss"]), "/".join("%.0f" % v for v in r["rss_mb"]), extra, r["variant"]))

def best(peer, w, b):
    rs = [r for r in recs if r["peer"] == peer and r["world"] == w and r["batch"] == b]
    main = [r for r in rs if not r.get("fallback")]  # fallback runs only when nothing else
    rs = main or rs
    return max(rs, key=lambda r: r["samples_per_s"]) if rs else None, rs

print("\ntraining throughput: best of the runs; peak RSS: max over ranks and runs (MiB)")
hdr = ("W", "batch", "dpt s/s", "torch s/s", "dpt/torch", "dpt acc", "torch acc", "",
       "dpt MiB", "torch MiB", "MiB ratio")
print("%2s %5s %9s %9s %9s %8s %9s %-15s %8s %9s %9s" % hdr)
keys = sorted({(r["world"], r["batch"]) for r in recs})
variants = set()
for w, b in keys:
    d, ds = best("dpt", w, b)
    t, ts = best("torch", w, b)
    variants.update(r["variant"] for r in ts)
    row = [str(w), str(b)]
    row.append(f1(d and d["samples_per_s"]))
    row.append(f1(t and t["samples_per_s"]))
    row.append("%.2f" % (d["samples_per_s"] / t["samples_per_s"]) if d and t else "-")
    row.append(f4(d and d["test_accuracy"]))
    row.append(f4(t and t["test_accuracy"]))
    flag = ""
    if d and t and d["test_accuracy"] is not None and t["test_accuracy"] is not None and abs(d["test_accuracy"] - t["test_accuracy"]) > tol:
        flag = "NOT comparable"
    if t and (t.get("fallback") or t["variant"] != "DDP+ZeroRedundancyOptimizer(Adam)"):
        flag = (flag + " " if flag else "") + "torch:" + t["variant"]
    row.append(flag)
    dm = max(v for r in ds for v in r["rss_mb"]) if ds else None
    tm = max(v for r in ts for v in r["rss_mb"]) if ts else None
    row += [f1(dm), f1(tm), "%.2f" % (dm / tm) if dm and tm else "-"]
    print("%2s %5s %9s %9s %9s %8s %9s %-15s %8s %9s %9s" % tuple(row))
print("torch side: %s, gloo; dpt side: dpt train --zero 1 (MPI). 'NOT comparable': test "
      "accuracies differ by more than %.3g after the same epochs." % (", ".join(sorted(variants)) or "-", tol))

# optimizer step
text = open(steplog).read()
n = re.search(r"N = (\d+) parameters", text)
dpt_ms = {}
for name in ("adam", "adamw"):
    v = [float(x) for x in re.findall(r"^%s\s+([0-9.]+)\s" % name, text, re.M)]
    dpt_ms[name] = min(v) if v else None
torch = {}
for l in text.splitlines():
    if l.startswith('{"peer": "torch-step"'):
        r = json.loads(l)
        for k, v in r["ms"].items():
            key = (r["solver"], k)
            torch[key] = min(torch.get(key, 1e30), v)
        torch[(r["solver"], "fused")] = r["fused"]
print("\noptimizer step alone, one thread, N = %s fp32 parameters, best ms/step of all runs"
      % (n.group(1) if n else "?"))
print("%-6s %10s %16s %15s %12s %9s" % ("solver", "dpt ms", "torch foreach=F", "torch foreach=T",
                                         "torch best", "torch/dpt"))
for name in ("adam", "adamw"):
    fF, fT = torch.get((name, "foreach=False")), torch.get((name, "foreach=True"))
    tb = min(x for x in (fF, fT) if x is not None) if (fF or fT) else None
    d = dpt_ms[name]
    print("%-6s %10s %16s %15s %12s %9s" % (name, "%.2f" % d if d else "-",
          "%.2f" % fF if fF else "-", "%.2f" % fT if fT else "-", "%.2f" % tb if tb else "-",
          "%.2f" % (tb / d) if tb and d else "-"))
for name in ("adam", "adamw"):
    print("torch %s fused=True: %s" % (name, torch.get((name, "fused"), "?")))
if not have_bench:
    print("dpt side missing: the build directory has no tests/bench/bench_optim "
          "(configure with tests on)")
EOF
