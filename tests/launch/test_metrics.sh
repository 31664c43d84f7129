#!/usr/bin/env bash
# metrics.jsonl survives a crash: a rank killed with SIGKILL from outside mid-run (after it
# wrote steps past its last checkpoint), a torn line appended as a crash mid-write would leave,
# then --resume latest: every line parses as JSON, the first record is the configuration, each
# step appears exactly once, time never goes backwards, and `dpt plot` reads the file.
# Usage: test_metrics.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"
synth 2048 64 32 4
# 512 steps of batch 8 (2 epochs); checkpoints every 100 steps
args=(--data d.h5 --model mlp:32-256-256-4 --batch 8 --epochs 2 --ckpt-every 100 --run-dir run
      --progress none)
timeout 120 mpirun --oversubscribe -n 2 "$dpt" train "${args[@]}" > first.out 2>&1 &
job=$!
mpirun_pid=""
for _ in $(seq 1 300); do
  mpirun_pid=$(job_mpirun "$job") && [ -n "$mpirun_pid" ] && break; sleep 0.1
done
[ -n "$mpirun_pid" ] || fail "mpirun did not start"
# wait until steps past the first checkpoint are recorded, then kill rank 1 from outside
for _ in $(seq 1 600); do
  n=$(grep -c '"type":"step"' run/metrics.jsonl 2>/dev/null || echo 0)
  [ -f run/ckpt/latest ] && [ "$n" -gt 150 ] && break
  sleep 0.05
done
[ -f run/ckpt/latest ] || fail "no checkpoint before the kill"
victim=$(rank_pid "$mpirun_pid" 1) || fail "rank 1 not found"
kill -9 "$victim"
wait "$job"; rc=$?
[ "$rc" -ne 0 ] || fail "the job survived the kill"
written=$(grep -c '"type":"step"' run/metrics.jsonl)
latest=$(cat run/ckpt/latest)
echo "killed rank 1 after $written step records; latest checkpoint $latest"
printf '{"type":"step","step":99999,"epo' >> run/metrics.jsonl # a torn last line
timeout 120 mpirun --oversubscribe -n 2 "$dpt" train "${args[@]}" --resume latest \
  > resume.out 2>&1 || { cat resume.out; fail "resume"; }
$py - run/metrics.jsonl <<'PY' || fail "metrics.jsonl after the resume"
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]  # every line parses
assert recs[0]["type"] == "config", recs[0]
assert recs[0]["train"]["batch"] == 8 and recs[0]["solver"]["name"] == "adam", recs[0]
steps = [r["step"] for r in recs if r["type"] == "step"]
assert steps == list(range(1, 513)), f"steps not each once in order: {len(steps)} records"
times = [r["time"] for r in recs if "time" in r]
assert all(b >= a for a, b in zip(times, times[1:])), "time goes backwards"
epochs = [r["epoch"] for r in recs if r["type"] == "epoch"]
assert epochs == [0, 1], epochs
print(f"{len(recs)} records, steps 1..512 once each, time non-decreasing to {times[-1]:.2f} s")
PY
"$dpt" plot --out=plots --label=resumed run/metrics.jsonl > plot.out 2>&1 \
  || { cat plot.out; fail "dpt plot"; }
[ -s plots/loss_step.svg ] || fail "dpt plot drew no loss chart"
grep -q ">resumed<" plots/loss_step.svg || fail "dpt plot --label=NAME did not name the run"
echo ok
