#!/usr/bin/env bash
# The committed .clang-format holds for every C source and header of the tree: clang-format
# --dry-run --Werror over them all (the files git tracks, or every *.c/*.h outside build trees
# when there is no git). Usage: check_format.sh REPO
set -u
repo=$1
cd "$repo" || exit 1
command -v clang-format >/dev/null || { echo "FAIL: clang-format is not installed (launch/install-deps.sh test)"; exit 1; }
if git rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -co --exclude-standard '*.c' '*.h')
else
  mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print)
fi
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no C files found under $repo"; exit 1; }
existing=()
for f in "${files[@]}"; do [ -f "$f" ] && existing+=("$f"); done
if clang-format --dry-run --Werror "${existing[@]}" 2> format.out; then
  echo "${#existing[@]} files formatted as .clang-format says ($(clang-format --version | head -1))"
  rm -f format.out
else
  grep -o '^[^:]*:[0-9]*' format.out | sort -u | head -20
  echo "FAIL: $(grep -c 'error:' format.out) places differ from .clang-format (clang-format -i FILE)"
  exit 1
fi
