#!/usr/bin/env bash
# dpt as a user installs it: `cmake --install` of this build tree into a temporary prefix (the
# tree is not configured again), then the out-of-tree example model (example/) built against the
# prefix twice, with find_package(dpt) and with pkg-config (mpicc), and each build trained on 2
# ranks; the example exits non-zero when its loss did not fall. Also: the installed dpt prints
# the version, every installed header compiles on its own, and no installed package file names
# the build or source tree.
# Usage: test_install.sh CMAKE BUILD_DIR EXAMPLE_DIR LIBDIR VERSION MPICC MPIEXEC [CFLAGS]
set -u
cmake=$1; build=$2; example=$3; libdir=$4; version=$5; mpicc=$6; mpiexec=$7; cflags=${8:-}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset CMAKE_PREFIX_PATH PKG_CONFIG_PATH DPT_FAULT

# 1. the install
"$cmake" --install "$build" --prefix "$prefix" > "$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "cmake --install $build"; }
for f in bin/dpt "$libdir/libdpt_runtime.a" "$libdir/libdpt_optim.a" "$libdir/libdpt_io.a" \
         "$libdir/libdpt_comm.a" "$libdir/libdpt_base.a" include/dpt/runtime.h \
         include/dpt/optim.h include/dpt/io.h include/dpt/comm.h include/dpt/base.h \
         "$libdir/cmake/dpt/dptConfig.cmake" "$libdir/cmake/dpt/dptConfigVersion.cmake" \
         "$libdir/cmake/dpt/dptTargets.cmake" "$libdir/pkgconfig/dpt.pc"; do
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

# 2. pkg-config: the version, and every installed header compiles alone with its flags
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
[ "$(pkg-config --modversion dpt)" = "$version" ] || fail "pkg-config --modversion dpt"
pc_cflags=$(pkg-config --cflags dpt) || fail "pkg-config --cflags dpt"
pc_libs=$(pkg-config --libs dpt) || fail "pkg-config --libs dpt"
for h in "$prefix"/include/dpt/*.h; do
  printf '#include <dpt/%s>\n' "${h##*/}" > "$tmp/header.c"
  # shellcheck disable=SC2086
  "$mpicc" -std=c11 -Wall -Wextra -Werror $pc_cflags -c "$tmp/header.c" -o "$tmp/header.o" \
    || fail "installed header dpt/${h##*/} does not compile on its own"
done

# 3. the example with find_package(dpt)
"$cmake" -S "$example" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$mpicc" -DCMAKE_C_FLAGS="$cflags" > "$tmp/cmake.log" 2>&1 \
  || { cat "$tmp/cmake.log"; fail "configuring the example with find_package(dpt)"; }
grep -qx "dpt_DIR:PATH=$prefix/$libdir/cmake/dpt" "$tmp/cmake-build/CMakeCache.txt" \
  || fail "find_package(dpt) did not find the temporary prefix"
"$cmake" --build "$tmp/cmake-build" > "$tmp/cmake-build.log" 2>&1 \
  || { cat "$tmp/cmake-build.log"; fail "building the example with find_package(dpt)"; }

# 4. the example with pkg-config, through its Makefile
cp "$example/Makefile" "$example/user_model.c" "$tmp/" || fail "copying the example"
make -C "$tmp" CC="$mpicc" CFLAGS="-O2 -Wall -Wextra -Werror $cflags" > "$tmp/make.log" 2>&1 \
  || { cat "$tmp/make.log"; fail "building the example with pkg-config"; }

# 5. each build trains on 2 ranks; the example checks its loss fell
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
