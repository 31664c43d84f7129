#!/usr/bin/env bash
# metrics.jsonl survives a crash: a rank killed with SIGKILL from outside mid-run (after it
# wrote steps past its last checkpoint), a torn line appended as a crash mid-write would leave,
# then --resume latest: every line parses as JSON, the first record is the configuration, each
# step appears exactly once, time never goes backwards, and `dpt plot` reads the file.
# The timing columns: every step record says where its time went (compute_s + the waits =
# step_s, each wait <= the step, comm_hidden in [0, 1]); a "timing" record per --log-every
# interval (and the last step) holds every rank's figures, each interval once after the resume,
# the maxima >= rank 0's and the slowest rank the one with the most compute. ZeRO's all-gather
# is timed only with ZeRO, batch statistics only with BatchNorm; --verbose prints the figures.
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
waits = ["wait_grad_s", "wait_gather_s", "wait_small_s", "wait_stats_s"]
eps = 1e-5  # the record's %.6g rounding
for r in (r for r in recs if r["type"] == "step"):
    assert all(r[k] >= 0 for k in waits + ["compute_s", "step_s"]), r
    assert all(r[k] <= r["step_s"] + eps for k in waits + ["compute_s", "comm_wait_s"]), r
    assert abs(sum(r[k] for k in waits) - r["comm_wait_s"]) <= eps * r["step_s"] + 1e-8, r
    assert abs(r["compute_s"] + r["comm_wait_s"] - r["step_s"]) <= eps * r["step_s"] + 1e-8, r
    assert r["comm_hidden"] is None or 0 <= r["comm_hidden"] <= 1, r
    assert r["wait_stats_s"] == 0, r  # no BatchNorm in this model
assert any(r["type"] == "step" and r["wait_gather_s"] > 0 for r in recs), "ZeRO 1: no all-gather wait"
# one bucket (--bucket-mb 25 holds all 75k gradients) starts when backward has ended: nothing hidden
hid = sorted(r["comm_hidden"] for r in recs if r["type"] == "step")
assert hid[len(hid) // 2] < 0.5, f"one bucket, yet a median of {hid[len(hid) // 2]} hidden"
tim = [r for r in recs if r["type"] == "timing"]
assert [t["step"] for t in tim] == [100, 200, 300, 400, 500, 512], [t["step"] for t in tim]
assert [t["first_step"] for t in tim] == [1, 101, 201, 301, 401, 501], tim
for t in tim:
    assert t["ranks"] == 2 and t["steps"] == t["step"] - t["first_step"] + 1, t
    pr, mx = t["per_rank"], t["max"]
    for k, v in pr.items():
        assert len(v) == 2, (k, v)
        if k == "comm_hidden":
            assert all(h is None or 0 <= h <= 1 for h in v), v
        else:
            assert mx[k] == max(v) and mx[k] >= v[0], (k, v, mx)
            assert all(x <= max(pr["step_s"]) * (1 + 1e-6) for x in v), (k, v)
    assert t["slowest_rank"] in (0, 1) and pr["compute_s"][t["slowest_rank"]] == mx["compute_s"], t
    hs = [h for h in pr["comm_hidden"] if h is not None]
    assert t["comm_hidden_min"] == (min(hs) if hs else None), t
    for k in range(2):  # the interval's means add up like the steps'
        tot = sum(pr[w][k] for w in waits)
        assert abs(tot - pr["comm_wait_s"][k]) <= 1e-9 + 1e-6 * tot, t
        assert abs(pr["compute_s"][k] + tot - pr["step_s"][k]) <= 1e-9 + 1e-6 * pr["step_s"][k], t
print(f"timing columns consistent; {len(tim)} timing records (each interval once), e.g. step "
      f"{tim[-1]['max']['step_s'] * 1e3:.3f} ms, gradient wait {tim[-1]['max']['wait_grad_s'] * 1e3:.3f} ms")
PY
"$dpt" plot --out=plots --label=resumed run/metrics.jsonl > plot.out 2>&1 \
  || { cat plot.out; fail "dpt plot"; }
[ -s plots/loss_step.svg ] || fail "dpt plot drew no loss chart"
grep -q ">resumed<" plots/loss_step.svg || fail "dpt plot --label=NAME did not name the run"

# --verbose: rank 0 prints every interval's figures (rank 0 and the largest over ranks); ZeRO 0
# has no all-gather; BatchNorm's statistics are summed across ranks and timed as such; with
# --overlap 0 every bucket starts in the wait: nothing hidden
cat > bn.ini <<'INI'
[fc1]
kind = linear
out = 64
[bn1]
kind = batchnorm1d
[relu1]
kind = relu
[fc2]
kind = linear
out = 4
INI
timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model bn.ini --batch 32 \
  --max-steps 40 --log-every 16 --zero 0 --overlap 0 --run-dir bn --progress none --verbose \
  > bn.out 2>&1 \
  || { cat bn.out; fail "the --verbose run"; }
for range in 1-16 17-32 33-40; do
  grep -q "^dpt: timings, steps $range (ms per step, rank 0 / largest over 2 ranks): step [0-9.]* / [0-9.]*, compute [0-9.]* / [0-9.]* (slowest rank [01]), waits .*gradient [0-9.]* / [0-9.]* (.* hidden behind backward), all-gather 0.000 / 0.000, loss and norm [0-9.]* / [0-9.]*, batch statistics [0-9.]* / [0-9.]*$" bn.out \
    || { cat bn.out; fail "--verbose printed no timings of steps $range"; }
done
$py - bn/metrics.jsonl <<'PY' || fail "bn/metrics.jsonl"
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
steps = [r for r in recs if r["type"] == "step"]
assert all(r["wait_gather_s"] == 0 for r in steps), "ZeRO 0 waited for an all-gather"
assert all(r["wait_stats_s"] > 0 for r in steps), "BatchNorm's statistics sums were not timed"
assert all(r["comm_hidden"] == 0 for r in steps), "--overlap 0, yet some reduction was hidden"
print(f"ZeRO 0: no all-gather wait; BatchNorm: statistics wait "
      f"{sum(r['wait_stats_s'] for r in steps) / len(steps) * 1e3:.3f} ms per step")
PY
# small buckets (0.01 MiB: 30 of them) start while backward still computes the earlier layers
timeout 120 mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:32-256-256-4 \
  --batch 8 --max-steps 40 --bucket-mb 0.01 --run-dir small --progress none > small.out 2>&1 || { cat small.out; fail "the --bucket-mb 0.01 run"; }
$py - small/metrics.jsonl <<'PY' || fail "small/metrics.jsonl"
import json, sys
hid = [json.loads(l)["comm_hidden"] for l in open(sys.argv[1]) if '"type":"step"' in l]
assert sum(h > 0 for h in hid) >= 0.9 * len(hid), f"small buckets, yet nothing hidden: {hid}"
print(f"--bucket-mb 0.01: {sum(hid) / len(hid):.0%} of the reduction hidden on average")
PY
echo ok
