#!/usr/bin/env bash
# The README's commands, as a newcomer types them: every line of every ```sh block of README.md
# runs in a fresh copy of the source tree, in order, in one shell (so the README's `export`
# lines hold for what follows), with HOME in the work directory. Training runs are shortened
# (--epochs N becomes --epochs 1); a few commands cannot run inside the test suite and are
# skipped, each with its reason below. Usage: test_readme.sh DPT WORKDIR README
set -u
readme=$3
repo=$(cd "$(dirname "$readme")" && pwd)
work=$2
rm -rf "$work"; mkdir -p "$work/home"; cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# a fresh copy of the tree, as a clone would give it (no build directories, no runs)
mkdir -p tree
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 cp -P --parents -t "$work/tree" 2>/dev/null)
else
  (cd "$repo" && tar --exclude='./build*' --exclude=./runs --exclude=./data -cf - .) | tar -C tree -xf -
fi
[ -f tree/launch/demo.sh ] || fail "could not copy the source tree"

# the commands: ```sh blocks, continuation lines joined, comments and blank lines dropped
/usr/bin/python3 - "$readme" > commands.txt <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for block in re.findall(r"^```sh[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
    line = ""
    for raw in block.split("\n"):
        raw = re.sub(r"(^|\s)#(?![!{]).*$", "", raw).rstrip()  # comments (not ${#x} or #!)
        if raw.endswith("\\"):
            line += raw[:-1] + " "
            continue
        line += raw
        if line.strip():
            print(line.strip())
        line = ""
PY
[ -s commands.txt ] || fail "no sh commands found in the README"

# what the suite cannot run, and why (each is tested elsewhere)
skip_reason() {
  case $1 in
    "bash tests/run.sh"*) echo "the test command itself";;
    sbatch*|*" sbatch "*) echo "needs a SLURM cluster (tests/launch/slurm/test_slurm.sh runs both batch scripts)";;
    *tests/bench/*.sh*|*build/tests/bench/bench_*) echo "a benchmark (minutes; run by hand)";;
    *tests/fuzz/run.sh*) echo "fuzzing (the test command replays the corpora)";;
    *) return 1;;
  esac
}

{
  echo 'set -u; export HOME='"$work/home"
  echo 'cd '"$work/tree"
  n=0
  while IFS= read -r c; do
    n=$((n + 1))
    if why=$(skip_reason "$c"); then
      printf 'echo %q\n' "SKIP [$n] $c  ($why)"
      continue
    fi
    short=$(printf '%s' "$c" | sed -E 's/--epochs [0-9]+/--epochs 1/g')
    printf 'echo %q\n' "RUN  [$n] $short"
    printf '( %s ) > out.%d 2>&1 < /dev/null; rc=$?\n' "$short" "$n"
    printf 'if [ $rc -ne 0 ]; then echo "FAIL [%d] exit $rc:"; tail -15 out.%d | sed "s/^/    /"; echo FAILED >> %q; fi\n' \
      "$n" "$n" "$work/failures"
    # `export` and `cd` must hold for the lines that follow: run those in this shell too
    case $short in export\ *|cd\ *) printf '%s\n' "$short";; esac
  done < commands.txt
} > run.sh

bash run.sh | tee run.log
runs=$(grep -c '^RUN ' run.log); fails=$(grep -c '^FAIL ' run.log); skips=$(grep -c '^SKIP ' run.log)
echo "$((runs - fails)) passed, $fails failed, $skips skipped"
[ "$fails" -eq 0 ] && [ "$runs" -gt 0 ]
