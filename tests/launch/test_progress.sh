#!/usr/bin/env bash
# The progress bar where users run: `mpirun -n 2 dpt train` in a terminal (tmux, at 80 and 160
# columns). Rank 0's stderr is a pipe to mpirun there; the bar must still be drawn, fit the
# terminal (a wrapped line would leave stale copies on every redraw), end each epoch on a line
# of its own, and show a rate within 20% of the throughput the metrics file records over the
# last second before it. Usage: test_progress.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
command -v tmux >/dev/null || { echo "SKIP: tmux is not installed"; exit 77; }
synth 16000 32 64 4
sock=$work/tmux.sock # our own tmux server: nothing shared with a user's sessions
trap 'tmux -S "$sock" kill-server 2>/dev/null' EXIT
for cols in 80 160; do
  run=run$cols
  tmux -S "$sock" new-session -d -s "bar$cols" -x "$cols" -y 40 \
    "mpirun --oversubscribe -n 2 '$dpt' train --data d.h5 --model mlp:64-1024-1024-4 --batch 32 \
       --epochs 2 --run-dir $run; echo EXIT=\$?; sleep 600" || fail "tmux"
  for _ in $(seq 1 1200); do
    tmux -S "$sock" capture-pane -p -t "bar$cols" > "pane$cols.txt"
    grep -q '^EXIT=' "pane$cols.txt" && break
    sleep 0.1
  done
  grep -qx 'EXIT=0' "pane$cols.txt" || { cat "pane$cols.txt"; fail "$cols columns: the run failed"; }
  $py - "pane$cols.txt" "$cols" "$run/metrics.jsonl" <<'PY' || { cat "pane$cols.txt"; fail "$cols columns"; }
import json, re, sys
rows, cols, metrics = open(sys.argv[1]).read().split("\n"), int(sys.argv[2]), sys.argv[3]
bars = [r for r in rows if "samples/s ETA" in r]
# one bar line per epoch, each a whole bar: nothing stale, nothing wrapped
assert len(bars) == 2, f"{len(bars)} bar lines, expected 2 (one per epoch): {bars}"
for r in bars:
    assert re.match(r"^epoch [12]/2 \[[#.]+\] \d+/1000 loss \d", r), f"not a whole bar: {r!r}"
    assert len(r.rstrip()) <= cols - 1, f"bar wider than the terminal: {len(r.rstrip())}"
for r in rows:
    assert r.startswith(("dpt", "epoch ", "EXIT=", " ", "")) or not r, r
    assert not re.search(r"#{3}|\bETA\b", r) or r in bars, f"stale bar text: {r!r}"
assert "1000/1000" in bars[-1], bars[-1]
shown = float(re.search(r"(\d+) samples/s", bars[-1]).group(1))
# the run's throughput from its metrics file over the last 4 s (twice the bar's smoothing
# time), or past its first 10% of steps if it ran shorter (start-up: page faults, first buckets)
steps = [json.loads(l) for l in open(metrics)]
steps = [(r["step"], r["time"]) for r in steps if r["type"] == "step"]
s1, t1 = steps[-1]
s0, t0 = next(((s, t) for s, t in reversed(steps) if t <= t1 - 4.0), steps[len(steps) // 10])
actual = (s1 - s0) * 32 / (t1 - t0)
assert abs(shown - actual) <= 0.2 * actual, f"shown {shown:.0f} samples/s, run {actual:.0f}"
print(f"{cols} columns: 2 bar lines, widest {max(len(r.rstrip()) for r in bars)}; "
      f"shown {shown:.0f} samples/s, run {actual:.0f}")
PY
  tmux -S "$sock" kill-session -t "bar$cols"
done
echo ok
