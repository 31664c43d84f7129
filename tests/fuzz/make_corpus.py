#!/usr/bin/python3
"""make_corpus.py — writes the seed corpora of dpt's fuzz harnesses (tests/fuzz/corpus/<harness>/)
and the option dictionary (config.dict). Running it twice gives the same files, except for the
modification times HDF5 stores inside the real checkpoints (and the reproducers made from them).

    /usr/bin/python3 tests/fuzz/make_corpus.py [--dpt build/dpt]

Needs a built `dpt` (the checkpoint templates are real checkpoints it writes, with mpirun for
the 2-rank one) and h5py (for the reproducers). The structured inputs of fuzz_dataset and
fuzz_ckpt are encoded with the same reader the harnesses use (fuzz_util.c: fz_u8, fz_range, ...
— big-endian, as few bytes as a range needs), so each seed below says what file it builds.
Files named repro-* reproduce bugs the fuzzers found in dpt (see repro_seeds); replay runs them
like every other seed.
"""
import argparse
import gzip
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


# --- the harnesses' input reader (fuzz_util.c), as an encoder ---------------------------------
class Enc:
    def __init__(self):
        self.b = bytearray()

    def u8(self, v):
        self.b.append(v & 0xFF)
        return self

    def u64(self, v):
        self.b += struct.pack(">Q", v & (2**64 - 1))
        return self

    def double(self, d):
        return self.u64(struct.unpack("<Q", struct.pack("<d", d))[0])

    def range(self, lo, hi, v):
        """fz_range(lo, hi) returning v: the offset, big-endian, in as many bytes as hi-lo needs."""
        span = hi - lo
        if span <= 0:
            return self
        assert lo <= v <= hi, (lo, hi, v)
        nbytes = (span.bit_length() + 7) // 8
        self.b += (v - lo).to_bytes(nbytes, "big")
        return self

    def bool(self, v):
        return self.u8(1 if v else 0)

    def bytes(self, data):
        """fz_bytes: a 2-byte length, then the bytes."""
        self.range(0, 65535, len(data))
        self.b += data
        return self


def write(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def clean(harness):
    """Removes the seeds of a harness (all are generated here)."""
    d = os.path.join(CORPUS, harness)
    if os.path.isdir(d):
        for n in os.listdir(d):
            os.remove(os.path.join(d, n))


# --- fuzz_config: INI text, then NUL-separated command-line words -------------------------------
def config_seeds():
    clean("config")
    base = "[train]\ndata = d.h5\nmodel = mlp:4-3-2\nbatch = 16\nepochs = 2\n"
    solvers = {
        "gd": "lr = 0.1\nweight_decay = 0.01\nmaximize = true\n",
        "sgd": "lr = 0.1\nmomentum = 0.9\nnesterov = true\ndampening = 0\n",
        "adagrad": "lr = 0.01\nlr_decay = 0.001\ninitial_accumulator_value = 0.1\neps = 1e-10\n",
        "adadelta": "lr = 1\nrho = 0.95\neps = 1e-6\n",
        "asgd": "lr = 0.01\nlambd = 1e-4\nalpha = 0.75\nt0 = 1000\n",
        "rprop": "lr = 0.01\netas = 0.5,1.2\nstep_sizes = 1e-6,50\n",
        "rmsprop": "lr = 0.01\nalpha = 0.9\nmomentum = 0.5\ncentered = true\n",
        "adam": "lr = 1e-3\nbetas = 0.9,0.999\namsgrad = true\n",
        "adamax": "lr = 2e-3\nbetas = 0.8,0.99\n",
        "adamw": "lr = 1e-3\nweight_decay = 0.01\n",
        "lion": "lr = 1e-4\nbetas = 0.9,0.99\n",
    }
    scheds = {
        "none": "",
        "step": "step_size = 3\ngamma = 0.5\nwarmup = linear\nwarmup_iters = 2\n",
        "multistep": "milestones = 1, 3,5\ngamma = 0.1\n",
        "exponential": "gamma = 0.9\nwarmup = constant\nwarmup_iters = 1\nwarmup_factor = 0.5\n",
        "cosine": "T_max = 4\neta_min = 1e-5\ninterval = step\n",
        "cosine_warm_restarts": "T_0 = 2\nT_mult = 2\neta_min = 0\n",
        "cyclic": "base_lr = 0.01\nmax_lr = 0.1\nstep_size_up = 3\nmode = exp_range\ngamma = 0.99\n",
        "onecycle": "max_lr = 0.1\npct_start = 0.25\nanneal_strategy = linear\nthree_phase = true\n",
        "linear": "start_factor = 0.5\nend_factor = 1\ntotal_iters = 3\n",
        "constant": "factor = 0.5\ntotal_iters = 2\n",
        "polynomial": "total_iters = 4\npower = 2\n",
        "plateau": "mode = max\nfactor = 0.5\npatience = 1\nthreshold = 0.01\nthreshold_mode = abs\ncooldown = 1\nmin_lr = 1e-6\n",
    }
    for s, hp in solvers.items():
        write("config", f"solver-{s}.ini", f"{base}[solver]\nname = {s}\n{hp}".encode())
    for k, hp in scheds.items():
        solver = "[solver]\nname = sgd\nmomentum = 0.9\n" if k in ("cyclic", "onecycle") else ""
        write("config", f"sched-{k}.ini", f"{base}{solver}[sched]\nname = {k}\n{hp}".encode())
    train = ("; comment\n# another\ndata = d.h5\n[train]\nepochs = 3\nmax_steps = 7\naccum = 2\n"
             "clip_norm = 1.5\nseed = 7\nzero = 2\nbucket_mb = 0.5\noverlap = no\ncache_mb = 0\n"
             "eval_every = 0\nrun_dir = r\nckpt = yes\nckpt_every = 2\nckpt_epochs = 1\nkeep = 0\n"
             "resume = auto\nmetrics = m.jsonl\nlabel = x\nlog_every = 5\nprogress = plain\n"
             "deterministic = true\nmicro_shards = 4\nstop_signals = SIGUSR1,TERM,HUP\n"
             "time_limit = 1-00:30:00\nstop_margin = 2.5\nverbose = 1\nactivation = gelu\n"
             "loss = mse\n")
    write("config", "train-all.ini", train.encode())
    # command-line words after the file (they win over it)
    words = [b"--solver", b"rmsprop", b"--centered=1", b"--sched", b"cyclic", b"--sched-mode",
             b"triangular2", b"--time-limit", b"45:00", b"--stop-signals=none", b"--verbose"]
    write("config", "argv-words.ini", b"data = d.h5\n\0" + b"\0".join(words))
    write("config", "argv-bad-word.ini", b"data = d.h5\n\0notanoption")
    # errors: unknown section, missing '=', bad values, out-of-range values
    write("config", "err-section.ini", b"[optimizer]\nlr = 1\n")
    write("config", "err-syntax.ini", b"[train]\nbatch 8\n")
    write("config", "err-range.ini", b"data = d\n[solver]\nname = adam\nlr = -3\n")
    write("config", "err-number.ini", b"data = d\nepochs = 1e99\nbatch = 2.5\n")
    write("config", "err-duration.ini", b"data = d\ntime_limit = 1-2:3:4:5\n")
    write("config", "err-pair.ini", b"data = d\n[solver]\nname = adam\nbetas = 0.9\n")


def config_dict(dpt):
    """Every option, solver, scheduler and hyperparameter name, as libFuzzer dictionary words."""
    words = set(["[train]", "[solver]", "[sched]", "name", " = ", "--", "true", "false", "yes",
                 "no", "none", "auto", "nan", "inf", "-inf", "1e308", "0x1p-1074", ","])
    for cmd in (["train", "--help"], ["solvers"], ["schedulers"]):
        out = subprocess.run([dpt] + cmd, capture_output=True, text=True).stdout
        for line in out.splitlines():
            t = line.split()
            if not t:
                continue
            if t[0].startswith("--"):
                words.add(t[0][2:].replace("-", "_"))
                words.add(t[0])
                if len(t) > 1 and not t[1][0].isupper():
                    words.add(t[1])
            elif line.startswith("  ") and not line.startswith("   ") and len(t) == 1:
                words.add(t[0])  # a solver or scheduler name
    with open(os.path.join(HERE, "config.dict"), "w") as f:
        f.write("# libFuzzer dictionary for fuzz_config (make_corpus.py writes it)\n")
        for w in sorted(words):
            f.write('"%s"\n' % w.replace("\\", "\\\\").replace('"', '\\"'))


# --- fuzz_idx: a mode byte, then file contents ------------------------------------------------
def idx_images(n, rows, cols, pixels):
    return struct.pack(">IIII", 0x803, n, rows, cols) + bytes(pixels)


def idx_labels(labels):
    return struct.pack(">II", 0x801, len(labels)) + bytes(labels)


def idx_seeds():
    clean("idx")
    rng = random.Random(1)
    tx = idx_images(4, 3, 2, [rng.randrange(256) for _ in range(24)])
    ty = idx_labels([0, 3, 1, 2])
    vx = idx_images(2, 3, 2, [rng.randrange(256) for _ in range(12)])
    vy = idx_labels([2, 0])
    write("idx", "train-x", bytes([0]) + tx)
    write("idx", "train-y", bytes([1]) + ty)
    write("idx", "test-x", bytes([2]) + vx)
    write("idx", "test-y", bytes([3]) + vy)
    write("idx", "train-x-with-test", bytes([4]) + tx)
    write("idx", "train-x-gz-by-harness", bytes([8]) + tx)
    write("idx", "train-y-gzip-file", bytes([1]) + gzip.compress(ty, mtime=0))
    write("idx", "constant-pixels", bytes([0]) + idx_images(2, 1, 1, [7, 7]))
    pieces = [tx, ty, vx, vy]
    write("idx", "split-all-four", bytes([16]) + b"".join(struct.pack(">H", len(p)) + p
                                                          for p in pieces))
    gz = [gzip.compress(p, mtime=0) for p in pieces]
    write("idx", "split-all-four-gzip", bytes([16]) + b"".join(struct.pack(">H", len(p)) + p
                                                               for p in gz))
    # errors the importer must name: truncated, extra data, wrong magic, count mismatch, test
    # label beyond the training ones, corrupt gzip
    write("idx", "err-truncated", bytes([0]) + tx[:-3])
    write("idx", "err-extra-byte", bytes([1]) + ty + b"\0")
    write("idx", "err-magic", bytes([1]) + struct.pack(">II", 0x803, 4) + bytes(4))
    write("idx", "err-count", bytes([1]) + idx_labels([0, 1, 2]))
    write("idx", "err-test-label", bytes([3]) + idx_labels([9, 0]))
    write("idx", "err-gzip-corrupt", bytes([0]) + gzip.compress(tx, mtime=0)[:20] + b"\xff" * 8)
    write("idx", "err-empty", bytes([0]))


# --- fuzz_dataset: choices that build an HDF5 file (fuzz_dataset.c) ---------------------------
X_TYPES = ["u8", "u8", "f32", "f32", "f64", "i8", "u16be", "str", "enum", "array"]
Y_TYPES = ["u8", "i64", "i32", "f32", "f32", "i8", "u64", "u16be", "f64", "str", "enum"]


def ds_attr(e, kind=0, value=0.0, as_int=None):
    """make_attr: 0 absent, 1/2 double, 3 int64, 4 int8, 5 two doubles, 6 string, 7 null."""
    e.range(0, 7, kind)
    if kind:
        if as_int is not None:
            e.u64(as_int)
        else:
            e.double(value)


def ds_dataset(e, y, tk, rank, dims_rest, layout, data, n_shift=None):
    """make_dataset (not huge): type index, shape byte, layout, dims, write flag, contents."""
    e.range(0, (len(Y_TYPES) if y else len(X_TYPES)) - 1, tk)
    if y:
        shape = {1: 0, 2: 1}.get(rank)
        if shape is None:  # rank 0 or 3: (shape & 3) == 3, rank = (shape >> 2) % 4
            shape = 3 | (rank << 2)
    else:
        shape = rank - 1 if 1 <= rank <= 4 else 5 | (rank << 3)
    e.u8(shape)
    e.range(0, 3, layout)
    if layout == 2:
        e.range(0, 7, 1)  # not huge
    for i in range(rank):
        if i == 0:
            if n_shift is None:
                e.range(0, 15, 1)
            else:
                e.range(0, 15, 0).range(-1, 1, n_shift)
        else:
            e.range(1 if y else 0, 5, dims_rest[i - 1])
    if layout == 2:
        e.bool(False)  # no fill value
    e.range(0, 7, 1 if data is not None else 0)  # written?
    if data is not None:
        e.bytes(data)


def ds_split(e, n, x, y, scale=(0, 0.0), offset=(0, 0.0), kind=6):
    """make_split with a full layout: x = (type, rank, dims after N, layout, bytes), y alike."""
    e.range(0, 15, kind)
    e.range(0, 15, 5).range(0, 24, n)  # N small
    ds_dataset(e, False, *x)
    ds_attr(e, *scale)
    ds_attr(e, *offset)
    ds_dataset(e, True, *y)


def ds_reads(e, counts_and_idx):
    e.range(0, 3, counts_and_idx[0])  # cache budget pick
    for n, idx in counts_and_idx[1:]:
        e.range(0, 16, len(idx))
        for i in idx:
            e.range(-1, n, i)


def dataset_seeds():
    clean("dataset")
    # 1. uint8 images [6, 2, 2] with scale/offset, int64 labels, num_classes 3; test split too
    e = Enc().bool(False)
    ds_attr(e, 3, as_int=3)
    ds_split(e, 6, (0, 3, [2, 2], 0, bytes(range(0, 240, 10))),
             (1, 1, [], 0, struct.pack("<6q", 0, 1, 2, 0, 1, 2)), (1, 0.5), (1, -1.0))
    ds_split(e, 2, (0, 3, [2, 2], 1, bytes(range(8))), (0, 1, [], 0, bytes([1, 0])))
    ds_reads(e, [1, (6, [0, 5, 2, 2]), (2, [1, 0])])
    write("dataset", "u8-images-labels", e.b)
    # 2. float32 x [5, 3] chunked, float32 targets [5, 2] (regression), no test split
    e = Enc().bool(True)
    ds_attr(e, 0)
    ds_split(e, 5, (2, 2, [3], 2, struct.pack("<15f", *[i / 4 for i in range(15)])),
             (3, 2, [2], 2, struct.pack("<10f", *range(10))))
    e.range(0, 15, 0)
    ds_reads(e, [2, (5, [4, 0, 1]), (1, [0])])
    write("dataset", "f32-targets-chunked", e.b)
    # 3. compact float32 x rank 4 and uint8 labels with max label + 1 classes
    e = Enc().bool(False)
    ds_attr(e, 0)
    ds_split(e, 3, (3, 4, [1, 2, 1], 3, struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
             (0, 1, [], 3, bytes([4, 0, 4])))
    e.range(0, 15, 0)
    ds_reads(e, [3, (3, [2, 2, 2, 0]), (1, [])])
    write("dataset", "compact-rank4", e.b)
    # 4. errors: labels beyond num_classes, negative labels, y with N+1 rows, x of type float64,
    #    a string x, an empty group, /train as a dataset
    e = Enc().bool(False)
    ds_attr(e, 1, 2.0)
    ds_split(e, 3, (0, 2, [2], 0, bytes(6)), (0, 1, [], 0, bytes([0, 1, 2])))
    e.range(0, 15, 0)
    write("dataset", "err-label-ge-classes", e.b)
    e = Enc().bool(False)
    ds_attr(e, 0)
    ds_split(e, 2, (0, 2, [2], 0, bytes(4)), (5, 1, [], 0, bytes([0, 0xFF])))
    e.range(0, 15, 0)
    write("dataset", "err-negative-label", e.b)
    e = Enc().bool(False)
    ds_attr(e, 0)
    ds_split(e, 2, (0, 2, [1], 0, bytes(2)), (0, 1, [], 0, bytes(3), 1))
    e.range(0, 15, 0)
    write("dataset", "err-y-rows", e.b)
    for tk, name in ((4, "err-x-float64"), (7, "err-x-string"), (8, "err-x-enum")):
        e = Enc().bool(False)
        ds_attr(e, 0)
        ds_split(e, 2, (tk, 2, [2], 0, bytes(range(8, 40))), (0, 1, [], 0, bytes(2)))
        e.range(0, 15, 0)
        write("dataset", name, e.b)
    write("dataset", "err-empty-group", Enc().bool(False).range(0, 7, 0).range(0, 15, 2).b)
    write("dataset", "err-train-dataset", Enc().bool(False).range(0, 7, 0).range(0, 15, 1).b)
    write("dataset", "err-no-train", Enc().bool(False).range(0, 7, 0).range(0, 15, 0).b)
    # 5. random choices (the fuzzer's starting variety)
    rng = random.Random(2)
    for i in range(12):
        write("dataset", f"random-{i:02d}", bytes(rng.randrange(256)
                                                  for _ in range(rng.randrange(40, 400))))


def dataset_raw_seeds(dpt, tmp):
    """Real files (raw inputs): what `dpt data synth` and the idx importer write."""
    out = os.path.join(tmp, "synth.h5")
    subprocess.run([dpt, "data", "synth", "--out", out, "--train", "8", "--test", "4",
                    "--features", "3", "--classes", "2"], check=True, capture_output=True,
                   env=mpi_env())
    shutil.copy(out, os.path.join(CORPUS, "dataset", "raw-synth.h5"))


# --- fuzz_ckpt: real checkpoints (templates) and edit lists -----------------------------------
TEMPLATES = [  # (name, solver options, scheduler options, extra train options, ranks)
    ("gd-none", ["--solver", "gd"], [], [], 1),
    ("sgd-cyclic", ["--solver", "sgd", "--momentum", "0.9", "--nesterov", "1"],
     ["--sched", "cyclic", "--sched-step-size-up", "2"], [], 1),
    ("adagrad-step", ["--solver", "adagrad"],
     ["--sched", "step", "--sched-step-size", "1", "--sched-warmup", "linear",
      "--sched-warmup-iters", "1"], [], 1),
    ("asgd-plateau", ["--solver", "asgd"], ["--sched", "plateau"], [], 1),
    ("rprop-restarts", ["--solver", "rprop"], ["--sched", "cosine_warm_restarts"], [], 1),
    ("rmsprop-onecycle", ["--solver", "rmsprop", "--momentum", "0.5", "--centered", "1"],
     ["--sched", "onecycle"], [], 1),
    ("adam-amsgrad-cosine", ["--solver", "adam", "--amsgrad", "1"], ["--sched", "cosine"], [], 1),
    ("adamw-det-2ranks", ["--solver", "adamw"], ["--sched", "multistep"],
     ["--deterministic", "1", "--micro-shards", "2"], 2),
    ("lion-poly", ["--solver", "lion"], ["--sched", "polynomial"], [], 1),
    ("adadelta-exp", ["--solver", "adadelta"], ["--sched", "exponential"], [], 1),
]


def mpi_env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OPENBLAS_NUM_THREADS="1")
    return env


def ckpt_templates(dpt, tmp):
    data = os.path.join(tmp, "d.h5")
    subprocess.run([dpt, "data", "synth", "--out", data, "--train", "64", "--test", "16",
                    "--features", "4", "--classes", "2"], check=True, capture_output=True,
                   env=mpi_env())
    for name, solver, sched, extra, ranks in TEMPLATES:
        run = os.path.join(tmp, name)
        cmd = [dpt, "train", "--data", data, "--model", "mlp:4-3-2", "--epochs", "1",
               "--batch", "16", "--ckpt", "1", "--run-dir", run, "--progress", "none"]
        cmd += solver + sched + extra
        if ranks > 1:
            cmd = ["mpirun", "-n", str(ranks)] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env())
        if r.returncode:
            sys.exit(f"make_corpus: {' '.join(cmd)} failed:\n{r.stderr}")
        ck = [f for f in os.listdir(os.path.join(run, "ckpt")) if f.endswith(".h5")]
        shutil.copy(os.path.join(run, "ckpt", sorted(ck)[-1]),
                    os.path.join(CORPUS, "ckpt", f"real-{name}.h5"))


def ckpt_seeds():
    """Structured inputs: template, flags (1 params only, 2 deterministic, 4 text "model"),
    rank count, rank, sharded, edits."""
    n = len(TEMPLATES)
    order = sorted(range(n), key=lambda i: f"real-{TEMPLATES[i][0]}.h5")  # harness: by name
    rng = random.Random(3)
    for pos, i in enumerate(order):
        name = TEMPLATES[i][0]
        det = 2 if "det" in name else 0
        for world, rank, shard, flags in ((1, 0, 0, det), (3, 1, 1, det), (4, 3, 1, 1 | det | 4)):
            e = Enc().u8(pos).u8(flags).range(1, 5, world).range(0, world - 1, rank)
            e.bool(shard).range(0, 8, 0)
            write("ckpt", f"load-{name}-w{world}r{rank}", e.b)
        # one edit of each kind, on random targets (12 kinds: fuzz_ckpt.c's E_COUNT)
        for op in range(12):
            e = Enc().u8(pos).u8(det).range(1, 5, 2).range(0, 1, op % 2).bool(op % 3 == 0)
            e.range(0, 8, 1).range(0, 11, op)
            e.b += bytes(rng.randrange(256) for _ in range(rng.randrange(8, 64)))
            write("ckpt", f"edit{op}-{name}", e.b)
        # a flipped bit in an attribute, then the metadata re-signed: past the checksum to the
        # counters' range checks and the configuration check
        for k in range(3):
            e = Enc().u8(pos).u8(det).range(1, 5, 1).bool(False).range(0, 8, 2)
            e.range(0, 11, 10).range(0, 127, rng.randrange(128)).range(0, 127, rng.randrange(128))
            e.range(0, 63, rng.randrange(64))
            e.range(0, 11, 11).range(0, 127, 0).range(0, 127, 0)
            write("ckpt", f"flip-resign{k}-{name}", e.b)


# --- reproducers of bugs found by fuzzing (each names the code it crashed) --------------------
def repro_seeds():
    import h5py  # /usr/bin/python3 (Debian python3-h5py)
    import numpy as np

    # idx.c read_header: rows * cols in int64 overflows (UBSan) for 0xffffffff x 0xffffffff
    write("idx", "repro-idx-dims-overflow",
          bytes([0]) + struct.pack(">IIII", 0x803, 1, 0xFFFFFFFF, 0xFFFFFFFF))

    d = os.path.join(CORPUS, "dataset")
    # dataset.c read_labels: n * sizeof(int64) wraps to 0 for n = 2^62 (a 3 KB file: chunked,
    # never written); HDF5 then fills 2^62 labels into a 1-byte buffer (heap overflow)
    with h5py.File(os.path.join(d, "repro-dataset-labels-wrap.h5"), "w", libver="earliest") as f:
        f.create_dataset("train/x", shape=(2**62, 1), dtype="u1", chunks=(1, 1))
        f.create_dataset("train/y", shape=(2**62,), dtype="i8", chunks=(1,))
    # dataset.c read_targets: n * width wraps to 0 for [2^62, 4] float targets; a read of
    # sample 1 then copies from past the 4-byte buffer (heap overflow)
    with h5py.File(os.path.join(d, "repro-dataset-targets-wrap.h5"), "w",
                   libver="earliest") as f:
        f.create_dataset("train/x", shape=(2**62, 1), dtype="f4", chunks=(1, 1))
        f.create_dataset("train/y", shape=(2**62, 4), dtype="f4", chunks=(1, 4))
    # dataset.c open_x: features = product of dims in int64 overflows (UBSan); HDF5 accepts dims
    # [1, 2^62 + 1, 4], whose element count wraps around 2^64 to 4
    with h5py.File(os.path.join(d, "repro-dataset-features-overflow.h5"), "w",
                   libver="earliest") as f:
        f.create_dataset("train/x", shape=(1, 2**62 + 1, 4), dtype="f4", chunks=(1, 1, 4))
        f.create_dataset("train/y", data=np.zeros(1, dtype="i4"))
    # the same with N = 0: the element count is 0, the features still overflow
    with h5py.File(os.path.join(d, "repro-dataset-features-overflow-n0.h5"), "w",
                   libver="earliest") as f:
        f.create_dataset("train/x", shape=(0, 2**62 + 1, 4), maxshape=(None, 2**62 + 1, 4),
                         dtype="f4", chunks=(1, 1, 4))
        f.create_dataset("train/y", data=np.zeros(0, dtype="i4"))

    # checkpoints: a real one (adam) with one thing changed each
    src = os.path.join(CORPUS, "ckpt", "real-adam-amsgrad-cosine.h5")

    def ckpt(name, change):
        path = os.path.join(CORPUS, "ckpt", f"repro-ckpt-{name}.h5")
        shutil.copy(src, path)
        with h5py.File(path, "r+") as f:
            change(f)

    def checksum_rows(f):  # ckpt.c verify_blocks reads it whole into a [blocks, 2] buffer
        good = f["checksum/model/fc1.bias"][()]
        del f["checksum/model/fc1.bias"]
        f["checksum/model/fc1.bias"] = np.vstack([good] + [good] * 5).astype("u8")

    def text_array(f):  # ckpt.c read_text_attr: H5Aread of 3 strings into one char *
        f.attrs.create("solver", ["adam", "adam", "adam"],
                       dtype=h5py.string_dtype("utf-8"))

    def number_array(f):  # ckpt.c read_all / on_attr: H5Aread of 4 doubles into one double
        f.attrs["format_version"] = np.array([2.0, 2.0, 2.0, 2.0])

    def rank3(f):  # ckpt.c read_tensor / on_object: dims[2] filled for a rank-3 dataset
        del f["model/fc1.weight"]
        f["model/fc1.weight"] = np.zeros((3, 4, 1), dtype="f4")

    def step_huge(f):  # checkpoint.c dpt_ckpt_load_run: (long)1e300 (UBSan float-cast)
        f.attrs["train.step"] = 1e300

    ckpt("checksum-rows", checksum_rows)
    ckpt("text-array", text_array)
    ckpt("number-array", number_array)
    ckpt("rank3", rank3)
    ckpt("step-1e300", step_huge)
    # (runtime/checkpoint.c build(): the pointer (float *)p + (lo - solver_lo) overflows when a
    # ZeRO shard starting past 0 loads every parameter: the structured seeds load-*-w3r1 and
    # load-*-w4r3, rank 1 of 3 and rank 3 of 4 with sharding on, reproduce it)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dpt", default=os.path.join(ROOT, "build", "dpt"))
    a = ap.parse_args()
    if not os.access(a.dpt, os.X_OK):
        sys.exit(f"make_corpus: no dpt at {a.dpt} (build it, or pass --dpt)")
    config_seeds()
    config_dict(a.dpt)
    idx_seeds()
    dataset_seeds()
    clean("ckpt")
    os.makedirs(os.path.join(CORPUS, "ckpt"), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        dataset_raw_seeds(a.dpt, tmp)
        ckpt_templates(a.dpt, tmp)
    ckpt_seeds()
    repro_seeds()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(CORPUS)
                for f in fs)
    print(f"make_corpus: {total // 1024} KiB in {CORPUS}")


if __name__ == "__main__":
    main()
