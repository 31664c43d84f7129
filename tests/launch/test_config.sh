#!/usr/bin/env bash
# The configuration as users handle it: --print-config writes the effective options as an INI
# file that --config reads back to the same options; flags after --config win; every
# subcommand answers --help with status 0; dpt --version names the version.
# Usage: test_config.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"

"$dpt" train --solver sgd --momentum 0.9 --nesterov on --lr 0.0012345678901 --sched onecycle \
  --sched-max-lr 0.1 --sched-three-phase yes --batch 32 --seed 9007199254740993 \
  --print-config > a.ini || fail "--print-config exited $?"
for want in "lr = 0.0012345678901" "nesterov = true" "three_phase = true" "seed = 9007199254740993" \
            "batch = 32" "name = sgd" "name = onecycle" "max_lr = 0.1"; do
  grep -qx "$want" a.ini || fail "--print-config lacks '$want'"
done
"$dpt" train --config a.ini --print-config > b.ini || fail "reading the printed config back"
cmp -s a.ini b.ini || { diff a.ini b.ini | head; fail "the printed config does not read back to itself"; }
"$dpt" train --config a.ini --lr 0.5 --print-config | grep -qx "lr = 0.5" \
  || fail "a flag after --config does not win"

for c in "train" "compare" "data" "data import-idx" "data synth" "ckpt" "ckpt inspect" \
         "solvers" "schedulers"; do
  # shellcheck disable=SC2086
  out=$("$dpt" $c --help 2>&1) || fail "dpt $c --help exited $?"
  printf '%s' "$out" | grep -q "usage\|--\|Solvers\|Schedulers" || fail "dpt $c --help printed no usage"
done
"$dpt" --version | grep -qx "dpt [0-9][0-9.]*" || fail "dpt --version"
echo ok
