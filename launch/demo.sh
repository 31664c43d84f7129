#!/usr/bin/env bash
# The main job on its embedded default: installs what is missing, builds dpt, imports
# Fashion-MNIST from Debian's dataset-fashion-mnist package (or generates a dataset when that
# package cannot be had, and says so) and trains MLP 784-256-128-10 on 2 ranks.
# Extra arguments go to `dpt train` (e.g. --epochs 3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash launch/install-deps.sh demo

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDPT_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target dpt

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p data
fm=/usr/share/datasets/fashion-mnist
if [ -f "$fm/train-images-idx3-ubyte.gz" ]; then
  [ -f data/fashion-mnist.h5 ] || ./build/dpt data import-idx --dir "$fm" --out data/fashion-mnist.h5
  data=data/fashion-mnist.h5
else
  echo "demo: Debian's dataset-fashion-mnist is not available here; training on a generated" \
       "dataset (60000 samples, 784 features, 10 classes) instead" >&2
  [ -f data/synthetic.h5 ] || ./build/dpt data synth --out data/synthetic.h5 --train 60000 \
       --test 10000 --features 784 --classes 10
  data=data/synthetic.h5
fi
ranks=${DPT_RANKS:-2}
# The embedded default: Adam (lr 1e-3), cosine annealing over the run, global batch 64,
# 10 epochs, a checkpoint at the end (runs/demo/ckpt/); run again, it starts over (--fresh).
# Later flags override these.
exec mpirun --oversubscribe -n "$ranks" ./build/dpt train --data "$data" \
  --model mlp:784-256-128-10 --solver adam --sched cosine --epochs 10 --batch 64 \
  --run-dir runs/demo --ckpt 1 --fresh "$@"
