#!/usr/bin/env bash
# dpt as a user installs it: `cmake --install` of this build tree into a temporary prefix (the
# tree is not configured again), then the out-of-tree example model (example/) built against the
# prefix twice, with find_package(dpt) and with pkg-config (mpicc), and each build trained on 2
# ranks; the example exits non-zero when its loss did not fall. Also: the installed dpt prints
# the version, every installed header compiles on its own, no installed package file names the
# build or source tree, the man page renders without warnings and lists every option of
# `dpt train --help`, and the bash completion completes commands, options and values.
# Usage: test_install.sh CMAKE BUILD_DIR EXAMPLE_DIR LIBDIR MANDIR DATADIR VERSION MPICC MPIEXEC
#                        [CFLAGS]
set -u
cmake=$1; build=$2; example=$3; libdir=$4; mandir=$5; datadir=$6; version=$7; mpicc=$8
mpiexec=$9; cflags=${10:-}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset CMAKE_PREFIX_PATH PKG_CONFIG_PATH DPT_FAULT CC CFLAGS LDFLAGS

# 1. the install
"$cmake" --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "cmake --install $build"; }
for f in bin/dpt "$libdir/libdpt_runtime.a" "$libdir/libdpt_optim.a" "$libdir/libdpt_io.a" \
         "$libdir/libdpt_comm.a" "$libdir/libdpt_base.a" include/dpt/runtime.h \
         include/dpt/optim.h include/dpt/io.h include/dpt/comm.h include/dpt/base.h \
         "$libdir/cmake/dpt/dptConfig.cmake" "$libdir/cmake/dpt/dptConfigVersion.cmake" \
         "$libdir/cmake/dpt/dptTargets.cmake" "$libdir/pkgconfig/dpt.pc" "$mandir/man1/dpt.1" \
         "$datadir/bash-completion/completions/dpt" "$datadir/dpt/models/cnn-tiny.ini"; do
  [ -f "$prefix/$f" ] || fail "cmake --install did not install $f"
done
out=$("$prefix/bin/dpt" --version) || fail "installed dpt --version exits non-zero"
[ "$out" = "dpt $version" ] || fail "dpt --version printed '$out', expected 'dpt $version'"
out=$("$prefix/bin/dpt" version)
[ "$out" = "dpt $version" ] || fail "dpt version printed '$out', expected 'dpt $version'"
src=$(cd "$example/../../.." && pwd)
if grep -rlF -e "$src" -e "$build" "$prefix/$libdir/cmake" "$prefix/$libdir/pkgconfig"; then
  fail "an installed package file names the source or build tree (above)"
fi

# 2. the man page: no warnings from groff or man, every training option and solver in it
page=$prefix/$mandir/man1/dpt.1
warn=$(groff -man -ww -z "$page" 2>&1) || fail "groff -man -ww -z dpt.1 exits non-zero"
[ -z "$warn" ] || { echo "$warn"; fail "groff warns about dpt.1 (above)"; }
MANWIDTH=80 man --warnings -l "$page" > "$tmp/man.txt" 2> "$tmp/man.err" \
  || { cat "$tmp/man.err"; fail "man -l dpt.1 exits non-zero"; }
[ ! -s "$tmp/man.err" ] || { cat "$tmp/man.err"; fail "man --warnings -l dpt.1 warns (above)"; }
"$prefix/bin/dpt" train --help | sed -n 's/^    \(--[a-z0-9-]*\).*/\1/p' > "$tmp/train-options"
[ "$(wc -l < "$tmp/train-options")" -ge 20 ] || fail "dpt train --help lists too few options"
"$prefix/bin/dpt" solvers | sed -n 's/^  \([a-z][a-z0-9_]*\)$/\1/p' > "$tmp/solvers"
[ -s "$tmp/solvers" ] || fail "dpt solvers lists no solver"
while read -r word; do
  grep -qE -- "^ +$word( |\$)" "$tmp/man.txt" || fail "the man page does not list $word"
done < <(cat "$tmp/train-options" "$tmp/solvers")
for section in NAME SYNOPSIS COMMANDS "TRAINING OPTIONS" SOLVERS SCHEDULERS "EXIT STATUS"; do
  grep -qx "$section" "$tmp/man.txt" || fail "the man page has no section $section"
done
for cmd in train "data import-idx" "data synth" "ckpt inspect" "model show" "model torch" compare \
           plot solvers schedulers; do
  grep -qE "^ {7}$cmd( {2,}|\$)" "$tmp/man.txt" \
    || fail "the man page's COMMANDS do not describe '$cmd'"
done

# 3. the bash completion, sourced in a clean bash, completing with the installed dpt
cat > "$tmp/complete.sh" <<'SH'
. "$1"
complete -p dpt | grep -q -- "-F _dpt" || { echo "no completion registered for dpt"; exit 1; }
# reply WORDS...: the completions of the last word
reply() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _dpt
          echo "${COMPREPLY[*]}"; }
expect() { local want=$1; shift; local got; got=$(reply "$@")
           [ "$got" = "$want" ] || { echo "'$*' completes to '$got', expected '$want'"; exit 1; }; }
expect train dpt tr
expect --solver dpt train --sol
expect "import-idx synth" dpt data ""
expect inspect dpt ckpt ins
expect "torch" dpt model to
expect --sched-warmup-iters dpt train --sched-warmup-i
got=" $(reply dpt train --solver "") "
for s in $(dpt solvers | sed -n 's/^  \([a-z][a-z0-9_]*\)$/\1/p'); do
  [[ $got == *" $s "* ]] || { echo "dpt train --solver does not offer $s"; exit 1; }
done
# the value words the script holds must be the ones dpt train --help names
for opt in progress on-nonfinite activation loss; do
  line=$(dpt train --help | grep -E "^    --$opt ")
  for w in $(reply dpt train "--$opt" ""); do
    [[ $line == *"$w"* ]] || { echo "--$opt $w is offered but not in dpt train --help"; exit 1; }
  done
done
echo completion ok
SH
PATH=$prefix/bin:$PATH bash --norc --noprofile "$tmp/complete.sh" \
  "$prefix/$datadir/bash-completion/completions/dpt" > "$tmp/complete.out" 2>&1
grep -qx "completion ok" "$tmp/complete.out" || { cat "$tmp/complete.out"; fail "bash completion"; }

# 4. pkg-config: the version, and every installed header compiles alone with its flags
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
[ "$(pkg-config --modversion dpt)" = "$version" ] || fail "pkg-config --modversion dpt"
pc_cflags=$(pkg-config --cflags dpt) || fail "pkg-config --cflags dpt"
pkg-config --libs dpt > /dev/null || fail "pkg-config --libs dpt"
for h in "$prefix"/include/dpt/*.h; do
  printf '#include <dpt/%s>\n' "${h##*/}" > "$tmp/header.c"
  # shellcheck disable=SC2086
  "$mpicc" -std=c11 -Wall -Wextra -Werror $pc_cflags -c "$tmp/header.c" -o "$tmp/header.o" \
    || fail "installed header dpt/${h##*/} does not compile on its own"
done

# 5. the example with find_package(dpt), compiled by the plain C compiler (not mpicc): the
#    imported targets must carry MPI's (and HDF5's, OpenBLAS's) flags themselves
"$cmake" -S "$example" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$cflags" > "$tmp/cmake.log" 2>&1 \
  || { cat "$tmp/cmake.log"; fail "configuring the example with find_package(dpt)"; }
grep -qx "dpt_DIR:PATH=$prefix/$libdir/cmake/dpt" "$tmp/cmake-build/CMakeCache.txt" \
  || fail "find_package(dpt) did not find the temporary prefix"
"$cmake" --build "$tmp/cmake-build" > "$tmp/cmake-build.log" 2>&1 \
  || { cat "$tmp/cmake-build.log"; fail "building the example with find_package(dpt)"; }

# 6. the example with pkg-config, through its Makefile
cp "$example/Makefile" "$example/user_model.c" "$tmp/" || fail "copying the example"
make -C "$tmp" CC="$mpicc" CFLAGS="-O2 -Wall -Wextra -Werror $cflags" > "$tmp/make.log" 2>&1 \
  || { cat "$tmp/make.log"; fail "building the example with pkg-config"; }

# 7. each build trains on 2 ranks; the example checks its loss fell
for exe in "$tmp/cmake-build/user_model" "$tmp/user_model"; do
  mkdir -p "$tmp/run" && rm -rf "$tmp/run"/*
  "$mpiexec" -n 2 --oversubscribe "$exe" "$tmp/run" > "$tmp/run.out" 2>&1
  rc=$?
  cat "$tmp/run.out"
  [ $rc -eq 0 ] || fail "$exe on 2 ranks exited $rc (the loss did not fall, or it failed)"
  grep -q "^dpt: 2 ranks" "$tmp/run.out" || fail "$exe did not train on 2 ranks"
  grep -Eq "^user_model: [0-9]+ steps; test loss" "$tmp/run.out" || fail "$exe printed no result"
done
echo "install test ok"
