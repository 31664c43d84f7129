# lib.sh — what the launch tests share. Sourced first thing, with the test's arguments:
#   . "$(dirname "$0")/lib.sh" "$@"      (DPT WORKDIR ...)
# It sets dpt and work, starts in a fresh WORKDIR, and defines fail, synth and the helpers
# that find one job's processes (never another job's: tests may run side by side).
set -u
dpt=$1; work=$2
py=/usr/bin/python3
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset DPT_FAULT

fail() { echo "FAIL: $*"; exit 1; }

# synth TRAIN TEST FEATURES CLASSES: d.h5, a generated classification dataset
synth() {
  "$dpt" data synth --out d.h5 --train "$1" --test "$2" --features "$3" --classes "$4" \
    >/dev/null || fail "could not make the synthetic dataset"
}

# words_text FILE: a text of 700 words drawn from 9 (16 symbols), the same each time
words_text() {
  $py -c '
import random
r = random.Random(3)
w = ["in ", "the ", "beginning ", "god ", "created ", "heaven ", "and ", "earth ", ".\n"]
print("".join(r.choice(w) for _ in range(700)), end="")' > "$1"
}

# job_mpirun PID: the mpirun of a background job PID that runs `timeout ... mpirun ...` (PID is
# timeout itself, or the subshell that started it)
job_mpirun() {
  local to=$1
  [ "$(cat "/proc/$to/comm" 2>/dev/null)" = timeout ] || to=$(pgrep -x timeout -P "$1")
  pgrep -x mpirun -P "$to"
}

# rank_pid MPIRUN RANK: the process of that rank among mpirun's children
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" \
      && { echo "$p"; return 0; }
  done
  return 1
}
