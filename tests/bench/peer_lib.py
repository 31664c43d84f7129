#!/usr/bin/python3
"""peer_lib.py -- the records the dpt-vs-PyTorch benchmarks share (peer.sh, peer_cnn.sh,
peer_gpt.sh; see peer_lib.sh), one JSON line on stdout per call, and what their tables share.

  peer_lib.py dpt OUT W REP B [KEY=JSON ...]
      a dpt run from OUT.jsonl (dpt's metrics), OUT.log (its output) and OUT.rss.<rank> (peak
      RSS, KiB, from /usr/bin/time): samples/s of the training loop on rank 0 = steps * B /
      (time of the last step record - start of the first step; `time` is seconds since the
      reporter opened, the first step's start is its time minus its duration B / samples_per_s),
      so a final evaluation (--eval-every EPOCHS) falls outside; step_samples_per_s from the
      steps' own durations; summary_samples_per_s = dpt's summary line (which counts the final
      evaluation too); the first step's loss (first_loss), the last epoch's losses and
      accuracy; rss_mb per rank.
  peer_lib.py torch OUT REP [KEY=JSON ...]
      a torch run: the line of OUT.log starting {"peer": "torch", with its own rss_mb (getrusage
      in each rank) kept as self_rss_mb and rss_mb from OUT.rss.<rank> as dpt's.
KEY=JSON pairs are added to the record (variant="...", fallback=true).
"""
import glob
import json
import re
import sys


def rss_mb(out):
    return [int(open(f).read().split()[-1]) / 1024 for f in sorted(glob.glob(out + ".rss.*"))]


def dpt_record(out, world, rep, batch):
    steps, epochs = [], []
    for line in open(out + ".jsonl"):
        r = json.loads(line)
        if r["type"] == "step":
            steps.append(r)
        elif r["type"] == "epoch":
            epochs.append(r)
    t_start = steps[0]["time"] - batch / steps[0]["samples_per_s"]
    train_s = steps[-1]["time"] - t_start
    step_s = sum(batch / s["samples_per_s"] for s in steps)
    summ = re.search(r"\(([0-9.]+) samples/s\)", open(out + ".log").read())
    last = epochs[-1] if epochs else {}
    return {"peer": "dpt", "world": world, "batch": batch, "rep": rep, "steps": len(steps),
            "train_s": train_s, "samples_per_s": len(steps) * batch / train_s,
            "step_samples_per_s": len(steps) * batch / step_s,
            "summary_samples_per_s": float(summ.group(1)) if summ else None,
            "first_loss": steps[0].get("loss"),
            "train_loss": last.get("train_loss"), "test_loss": last.get("test_loss"),
            "test_accuracy": last.get("test_accuracy"), "rss_mb": rss_mb(out)}


def torch_record(out, rep):
    rec = [json.loads(line) for line in open(out + ".log")
           if line.startswith('{"peer": "torch"')][0]
    rec["rep"] = rep
    rec["self_rss_mb"] = rec.pop("rss_mb", None)
    rec["rss_mb"] = rss_mb(out)
    return rec


def sgemm_rate(lines):
    """The best GFLOP/s of bench_cnn's `sgemm ...: X GFLOP/s` lines."""
    return max(float(re.search(r"sgemm \S+: ([0-9.]+) GFLOP", s).group(1)) for s in lines)


def best(recs, peer, **key):
    """The fastest record of peer matching key (fallback runs only when nothing else), and all."""
    rs = [r for r in recs if r["peer"] == peer and all(r.get(k) == v for k, v in key.items())]
    rs = [r for r in rs if not r.get("fallback")] or rs
    return (max(rs, key=lambda r: r["samples_per_s"]) if rs else None), rs


def main(argv):
    kind, rest = argv[1], argv[2:]
    extra = dict(a.split("=", 1) for a in rest if "=" in a)
    pos = [a for a in rest if "=" not in a]
    if kind == "dpt":
        rec = dpt_record(pos[0], int(pos[1]), int(pos[2]), int(pos[3]))
    elif kind == "torch":
        rec = torch_record(pos[0], int(pos[1]))
    else:
        raise SystemExit("peer_lib.py: dpt or torch, not " + kind)
    rec.update({k: json.loads(v) for k, v in extra.items()})
    print(json.dumps(rec))


if __name__ == "__main__":
    main(sys.argv)
