# faults.sh — one fault in a 2-node job of the netns test bed, measured (sourced after bed.sh,
# with the bed up, from a work directory holding d.h5).
#
#   fault_setup DPT                 # the dataset and the uninterrupted reference run (one host)
#   fault_run cut|loss|stop|kill|crash  # one job, the fault on node 2 at a random moment
#   # sets FAULT_MS (fault to every process of the bed gone), FAULT_RC (mpirun's status),
#   # FAULT_LINE (the line naming the fault), FAULT_LATEST (the last checkpoint), FAULT_OK
#   # ("" or what went wrong: not gone within FAULT_BOUND s, latest does not verify, the
#   # resume on one host is not bitwise the uninterrupted run)
#
# Faults: cut (node 2's link down), loss (nftables drops everything on node 2's link), stop
# (SIGSTOP of the rank on node 2), kill (kill -9 of the rank on node 2), crash (node 2's link
# cut and every process on node 2 frozen at once). The job runs with dpt's
# defaults (no --watchdog) plus whatever MCA settings FAULT_MCA holds.
FAULT_BOUND=${FAULT_BOUND:-60}
FAULT_STEPS=2000 # enough that the job still runs when the fault comes (steps of ≈ 1-3 ms)

fault_setup() {
  fault_dpt=$1
  "$fault_dpt" data synth --out d.h5 --train 2048 --test 64 --features 32 --classes 4 >/dev/null \
    || { echo "FAIL: could not make the synthetic dataset"; return 1; }
  fault_args=(train --data "$PWD/d.h5" --model mlp:32-256-256-4 --batch 32 --max-steps
              $FAULT_STEPS --epochs 1000 --ckpt-every 200 --keep 2 --progress none)
  timeout 300 mpirun --oversubscribe --bind-to none -n 2 "$fault_dpt" "${fault_args[@]}" \
    --run-dir "$PWD/ref" > ref.out 2>&1 || { cat ref.out; echo "FAIL: the reference run"; return 1; }
  fault_ref=$PWD/ref/ckpt/$(cat ref/ckpt/latest)
}

# fault_gone [SKIP]: 0 when no process is left in the bed's namespaces (but node SKIP's: a
# crashed node's frozen processes stand for ones that no longer exist)
fault_gone() {
  local i
  for i in $(seq 1 "$BED_NODES"); do
    [ "$i" = "${1:-0}" ] && continue
    [ -z "$(bed_pids "$i")" ] || return 1
  done
}

fault_run() {
  local f=$1 dir=$PWD/f-$1 i pid t0 t1
  FAULT_OK="" FAULT_LINE="" FAULT_LATEST="" FAULT_MS=-1 FAULT_RC=-1
  rm -rf "$dir"
  # shellcheck disable=SC2086
  BED_TIMEOUT=600 bed_mpirun 1 ${FAULT_MCA:-} -n 2 "$fault_dpt" "${fault_args[@]}" \
    --run-dir "$dir" > "$dir.out" 2>&1 &
  local job=$!
  for i in $(seq 1 600); do [ -s "$dir/ckpt/latest" ] && break; sleep 0.05; done
  [ -s "$dir/ckpt/latest" ] || { FAULT_OK="no checkpoint before the fault"; cat "$dir.out"; return 1; }
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.2 + 1.5 * r / 32768 }')" # a random moment
  pid=$(bed_rank_pid 2 1) || { FAULT_OK="rank 1 not found on node 2"; return 1; }
  t0=$(date +%s%N)
  case $f in
    cut) bed_cut 2 ;;
    loss) bed_loss 2 ;;
    stop) kill -STOP "$pid" ;;
    kill) kill -9 "$pid" ;;
    # a crashed node answers nothing (no FIN, no RST): its link cut and its processes frozen
    # (killing them would end the rsh agent's local pipe at once, which no ssh channel does)
    crash) bed_cut 2; kill -STOP $(bed_pids 2) ;;
  esac
  local skip=0
  [ "$f" = crash ] && skip=2
  while ! fault_gone $skip; do
    [ $((($(date +%s%N) - t0) / 1000000000)) -ge $((FAULT_BOUND * 3)) ] && break
    sleep 0.2
  done
  t1=$(date +%s%N)
  FAULT_MS=$(((t1 - t0) / 1000000))
  fault_gone || { kill -9 $(bed_all_pids) 2>/dev/null; sleep 0.5; }
  [ "$f" = crash ] && kill -9 $(bed_pids 2) 2>/dev/null
  wait $job; FAULT_RC=$?
  bed_heal 2
  # dpt's line (the watchdog's, or a rank's as the launcher ends the job), else Open MPI's
  FAULT_LINE=$(grep -m1 -E "^dpt\[rank [0-9]+\]: (watchdog:|SIG[A-Z]+ at step)" "$dir.out")
  [ -n "$FAULT_LINE" ] \
    || FAULT_LINE=$(grep -m1 -E "noticed that|lost communication|exited on signal" "$dir.out")
  [ -n "$FAULT_LINE" ] || FAULT_LINE="(no line naming the fault: $(head -c 200 "$dir.out" | tr '\n' ' '))"
  FAULT_LATEST=$dir/ckpt/$(cat "$dir/ckpt/latest")
  [ "$FAULT_MS" -le $((FAULT_BOUND * 1000)) ] || FAULT_OK="not gone within $FAULT_BOUND s"
  "$fault_dpt" ckpt inspect "$FAULT_LATEST" > "$dir.inspect" 2>&1 \
    || FAULT_OK="${FAULT_OK:+$FAULT_OK; }latest ($FAULT_LATEST) does not verify"
  timeout 300 mpirun --oversubscribe --bind-to none -n 2 "$fault_dpt" "${fault_args[@]}" \
    --run-dir "$dir" --resume latest > "$dir.resume" 2>&1 \
    || FAULT_OK="${FAULT_OK:+$FAULT_OK; }the resume failed ($(tail -1 "$dir.resume"))"
  local g
  for g in /model /optim; do
    h5diff "$fault_ref" "$dir/ckpt/$(cat "$dir/ckpt/latest")" $g $g >/dev/null 2>&1 \
      || { FAULT_OK="${FAULT_OK:+$FAULT_OK; }the resume is not bitwise the uninterrupted run"; break; }
  done
  [ -z "$FAULT_OK" ]
}
