#!/usr/bin/env bash
# Valgrind memcheck over dpt's MPI tests: every test registered with dpt_add_mpi_test (the same
# binary and working directory ctest uses) at 1 and 2 ranks, then one end-to-end `dpt train` at
# 2 ranks with a checkpoint and a resume. Each rank runs under valgrind with Open MPI's
# suppressions and tests/valgrind/dpt.supp (third-party noise only). A valgrind error counts as
# dpt's when any frame of its stack (or of its allocation/origin stack) is in dpt's sources;
# everything else left unsuppressed is reported as third-party. The summary gives, per binary and
# rank count: exit status, errors (all / dpt's), definitely-lost bytes, wall time.
# Exit status: 0 clean; 1 an error from dpt's code, or a test that failed under valgrind;
# 2 bad usage or a build failure.
#
# Usage: tests/valgrind/run.sh [--quick] [BUILD_DIR]      (default BUILD_DIR: build-valgrind)
#   --quick   np 2 only, for the faster half of the tests and the end-to-end run (CI-sized)
# Environment: DPT_VG_NP="1 2 4" overrides the rank counts of the full mode;
#   DPT_VG_NATIVE=ON|OFF: build with -march=native or not (default: ON unless the CPU has
#   AVX-512, which valgrind cannot decode);
#   DPT_VG_TIMEOUT seconds per run (default 900).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/valgrind"

quick=0
build=""
for a in "$@"; do
  case "$a" in
    --quick|quick) quick=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $a" >&2; exit 2 ;;
    *) build=$a ;;
  esac
done
build=${build:-$root/build-valgrind}
case "$build" in /*) ;; *) build="$PWD/$build" ;; esac

# The faster half of the MPI tests under valgrind at np 2 (det 11 s, user_model 16 s, ckpt 20 s;
# the others: equivalence 24 s, comm reduce 31 s, zero 69 s, on 2 shared cores); quick mode runs
# these at np 2 only, with the end-to-end run.
quick_tests="runtime.test_mpi_det runtime.test_mpi_user_model runtime.test_mpi_ckpt"
nps=${DPT_VG_NP:-1 2}
[ "$quick" = 1 ] && nps=2
timeout_s=${DPT_VG_TIMEOUT:-900}

t_start=$(date +%s)

# --- tools ---
if ! command -v valgrind >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  apt() { $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>/tmp/dpt-apt.log 2>&1; }
  echo "dpt: installing valgrind"
  apt install -y -qq valgrind || { apt update -qq && apt install -y -qq valgrind; } ||
    { echo "run.sh: could not install valgrind (see /tmp/dpt-apt.log)" >&2; exit 2; }
fi
ompi_supp=""
mpi_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v mpiexec)")")")
for f in /usr/share/openmpi "$mpi_prefix/share/openmpi"; do
  [ -f "$f/openmpi-valgrind.supp" ] && { ompi_supp=$f/openmpi-valgrind.supp; break; }
done
[ -n "$ompi_supp" ] || { echo "run.sh: Open MPI's openmpi-valgrind.supp not found" >&2; exit 2; }

# --- build ---
# -march=native is what dpt is built with by default, so it is what runs here when valgrind can
# decode it: valgrind 3.19 handles AVX2/FMA (and the VAES/VPCLMULQDQ of a Zen 3) but no AVX-512,
# so on a CPU with AVX-512 the build is portable (-DDPT_NATIVE=OFF), which still runs every line
# of dpt's code. DPT_VG_NATIVE=ON|OFF overrides the choice.
native=${DPT_VG_NATIVE:-auto}
if [ "$native" = auto ]; then
  if grep -qw avx512f /proc/cpuinfo; then native=OFF; else native=ON; fi
fi
echo "=== build ($build, RelWithDebInfo, DPT_NATIVE=$native)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPT_BUILD_TESTS=ON \
      -DDPT_BUILD_BENCH=OFF -DDPT_SANITIZE=OFF -DDPT_NATIVE="$native" >/dev/null || exit 2
cmake --build "$build" -j"$(nproc)" >"$build/valgrind-build.log" 2>&1 ||
  { tail -30 "$build/valgrind-build.log"; echo "run.sh: build failed" >&2; exit 2; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1
logs="$build/valgrind"
rm -rf "$logs"; mkdir -p "$logs"

# --keep-debuginfo: Open MPI dlcloses its components at MPI_Finalize; without it their frames
# are "???" in leak reports and no suppression can name them. --fullpath-after= prints full
# source paths, which is how a frame is recognised as dpt's.
vg=(valgrind --error-exitcode=42 --suppressions="$ompi_supp" --suppressions="$here/dpt.supp"
    --track-origins=yes --leak-check=full --show-leak-kinds=definite
    --errors-for-leak-kinds=definite --num-callers=30 --keep-debuginfo=yes --fullpath-after=
    --gen-suppressions=all)

# --- analysis of one run's logs (one file per rank) ---
# Prints: contexts, contexts with a dpt frame, errors (valgrind's ERROR SUMMARY), definitely lost
# bytes, 1 if valgrind met an instruction it cannot decode. An error report is a paragraph of the
# log with an "at 0x" frame line (its allocation/origin stacks included); it is dpt's if any
# frame names a file under dpt's sources.
dpt_src="^$root/(optim|io|comm|runtime|launch|tests)/"
analyse() {
  awk -v src="$dpt_src" '
    function flush() { if (inerr) { ctx++; if (mine) dpt++ } inerr = 0; mine = 0; head = "" }
    { sub(/^==[0-9]+== ?/, "") }
    /^$/ || /^[{}]/ { flush(); next }
    /^ *(at|by) 0x/ {
      if (head !~ /^Warning/) inerr = 1
      if (match($0, /\((\/[^:)]+):[0-9]+\)$/)) {
        f = substr($0, RSTART + 1, RLENGTH - 2)
        if (f ~ src) mine = 1
      }
      next
    }
    head == "" { head = $0 }
    /unhandled instruction/ { unhandled = 1 }
    /ERROR SUMMARY:/ { n = $3; gsub(",", "", n); errs += n }
    /definitely lost:/ { b = $3; gsub(",", "", b); lost += b }
    END { flush(); printf "%d %d %d %d %d\n", ctx, dpt, errs, lost, unhandled }' "$@"
}

results=()
any_dpt=0
any_fail=0
# run NAME NP WORKDIR CMD...: one mpiexec -n NP of CMD under valgrind, logs in $logs/NAME.npNP.*
# mpiexec must not kill the other ranks when one exits with valgrind's status (42): they would
# die in their own leak check and their report would be lost. Without that abort mpiexec exits 0
# whatever the ranks return, so each rank writes its own status to NAME.npNP.rc.RANK.
run() {
  local name=$1 np=$2 dir=$3; shift 3
  local tag="$name.np$np" t0 t1 rc r f
  t0=$(date +%s.%N)
  # shellcheck disable=SC2016 # expanded by the rank's shell
  (cd "$dir" && DPT_VG_RC="$logs/$tag.rc" timeout -k 10 "$timeout_s" mpiexec --oversubscribe \
     -n "$np" --mca orte_abort_on_non_zero_status 0 -x DPT_VG_RC \
     bash -c '"$@"; rc=$?; echo $rc >"$DPT_VG_RC.$OMPI_COMM_WORLD_RANK"; exit $rc' rank \
     "${vg[@]}" --log-file="$logs/$tag.%p.vg" "$@" >"$logs/$tag.out" 2>&1)
  rc=$?
  t1=$(date +%s.%N)
  # the worst rank: a failure (not 0, not 42) over valgrind's 42 over 0; no status file: killed
  for ((r = 0; r < np; r++)); do
    f="$logs/$tag.rc.$r"
    if [ -f "$f" ]; then read -r f <"$f"; else f=99; fi
    if [ "$rc" -eq 0 ] || { [ "$rc" -eq 42 ] && [ "$f" -ne 0 ]; }; then rc=$f; fi
  done
  record "$tag" "$rc" "$t0" "$t1" "$logs/$tag".*.vg
}
# record TAG RC T0 T1 LOGS...: analyse the logs, print and keep one line of the summary.
# A test that fails under valgrind is a failure too: rc other than 0 and 42 (valgrind's), or
# cmocka reporting a failed test (with errors the exit status is 42 whatever the test said).
record() {
  local tag=$1 rc=$2 t0=$3 t1=$4; shift 4
  local a status
  if [ $# -eq 0 ] || [ ! -f "$1" ]; then a="0 0 0 0 0"; else a=$(analyse "$@"); fi
  # shellcheck disable=SC2086 # five numbers
  set -- $a
  status=ok
  [ "$2" -gt 0 ] && { status=DPT-ERROR; any_dpt=1; }
  [ "$1" -gt "$2" ] && [ "$2" -eq 0 ] && status="ok (third-party errors)"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 42 ]; then status="FAIL(rc=$rc) $status"; any_fail=1; fi
  if [ "$rc" -eq 42 ] && [ "$3" -eq 0 ]; then status="FAIL(rc=42, no report)"; any_fail=1; fi
  if grep -q '^\[  FAILED  \]' "$logs/$tag.out" 2>/dev/null; then
    status="FAIL(test) $status"; any_fail=1
  fi
  if [ "$5" -gt 0 ]; then
    status="FAIL(valgrind: unhandled instruction; build with DPT_VG_NATIVE=OFF)"; any_fail=1
  fi
  results+=("$(printf '%-34s %6d %6d %8d %12d %8.1f  %s' "$tag" "$3" "$1" "$2" "$4" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$status")")
  echo "${results[-1]}"
}

hdr=$(printf '%-34s %6s %6s %8s %12s %8s  %s' run errors ctx dpt-ctx def-lost-B wall-s status)

# --- the MPI tests, as ctest registers them ---
# dpt_add_mpi_test registers <module>.<name>.np<N> as "mpiexec --oversubscribe -n N BINARY" run in
# the test's source folder; take binary, arguments and folder from ctest itself. (Its environment
# is the OMPI_*/OPENBLAS_* set exported above; DPT_TEST_TMP is compiled in.)
mapfile -t tests < <(cd "$build" && ctest --show-only=json-v1 -L mpi | python3 -c '
import json, os, sys
launchers = {"mpiexec", "mpirun", "orterun", "mpiexec.openmpi", "mpirun.openmpi"}
seen = set()
for t in json.load(sys.stdin)["tests"]:
    cmd = t.get("command") or []
    if not cmd or os.path.basename(cmd[0]) not in launchers or "-n" not in cmd:
        continue
    name = t["name"].rsplit(".np", 1)[0]
    if name in seen:
        continue
    seen.add(name)
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    wd = props.get("WORKING_DIRECTORY", ".")
    print(name, wd, " ".join(cmd[cmd.index("-n") + 2:]))')
[ ${#tests[@]} -gt 0 ] || { echo "run.sh: ctest lists no MPI tests in $build" >&2; exit 2; }

echo "=== valgrind memcheck ($([ $quick = 1 ] && echo quick || echo full): np $nps); logs in $logs"
echo "$hdr"
for np in $nps; do
  for t in "${tests[@]}"; do
    read -r name wd cmd <<<"$t"
    if [ "$quick" = 1 ] && [[ " $quick_tests " != *" $name "* ]]; then continue; fi
    # shellcheck disable=SC2086
    run "$name" "$np" "$wd" $cmd
  done
done

# --- end to end: dpt data synth, dpt train with a checkpoint, then a resume ---
e2e="$build/valgrind/e2e"
rm -rf "$e2e"; mkdir -p "$e2e"
dpt="$build/dpt"
t0=$(date +%s.%N)
(cd "$e2e" && timeout -k 10 "$timeout_s" "${vg[@]}" --log-file="$logs/dpt.synth.np1.%p.vg" \
   "$dpt" data synth --out d.h5 --train 256 --test 64 --features 8 --classes 3 \
   >"$logs/dpt.synth.np1.out" 2>&1)
record dpt.synth.np1 $? "$t0" "$(date +%s.%N)" "$logs"/dpt.synth.np1.*.vg
train=(train --data d.h5 --model mlp:8-16-3 --batch 32 --run-dir run --progress none)
run dpt.train+ckpt 2 "$e2e" "$dpt" "${train[@]}" --epochs 1 --ckpt 1
if [ ! -f "$e2e/run/ckpt/latest" ]; then
  echo "run.sh: the first training run wrote no checkpoint (see $logs/dpt.train+ckpt.np2.out)"
  any_fail=1
fi
run dpt.train+resume 2 "$e2e" "$dpt" "${train[@]}" --epochs 2 --ckpt 1 --resume latest
# the second run must have started from the first one's checkpoint, not from scratch
if ! grep -q "resuming from run/ckpt/" "$logs/dpt.train+resume.np2.out"; then
  echo "run.sh: the second run did not resume (see $logs/dpt.train+resume.np2.out)"
  any_fail=1
fi

# --- summary ---
t_end=$(date +%s)
echo
echo "=== summary (errors: valgrind's count over all ranks; ctx: distinct error reports;"
echo "    dpt-ctx: reports with a frame in dpt's sources; def-lost-B: definitely lost bytes)"
echo "$hdr"
printf '%s\n' "${results[@]}"
echo "wall time: $((t_end - t_start)) s"
if [ "$any_dpt" = 1 ]; then
  echo "FAILED: valgrind errors in dpt's code (see the *.vg logs in $logs)"
  exit 1
fi
if [ "$any_fail" = 1 ]; then
  echo "FAILED: a run failed under valgrind (see the *.out logs in $logs)"
  exit 1
fi
echo "OK: no valgrind errors from dpt's code"
