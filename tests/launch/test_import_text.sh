#!/usr/bin/env bash
# `dpt data import-text`: a good text is imported (the KJV corpus from Debian's bible-kjv when
# installed, else a generated text, said so); each bad input gives one line naming the file and
# the problem, exit status 2, and leaves an existing output as it was.
# Usage: test_import_text.sh DPT WORKDIR
. "$(dirname "$0")/lib.sh" "$@"

if command -v bible >/dev/null 2>&1; then
  bible Gen1:1-Rev22:21 > corpus.txt || fail "bible could not print the KJV"
  want_vocab=73
else
  echo "bible-kjv is not installed: using a generated text instead"
  $py -c 'import random; r=random.Random(1); print("\n".join(" ".join(r.choice(["in","the","beginning","God","created","heaven","and","earth"]) for _ in range(12)) for _ in range(2000)))' > corpus.txt
  want_vocab=
fi
out=$("$dpt" data import-text corpus.txt --out kjv.h5 --val-fraction 0.1 2>&1) \
  || fail "import of a good text failed: $out"
printf '%s\n' "$out" | grep -q "wrote kjv.h5" || fail "no 'wrote' line: $out"
if [ -n "$want_vocab" ]; then
  printf '%s\n' "$out" | grep -q "vocabulary of $want_vocab\$" || fail "KJV vocabulary is not $want_vocab: $out"
fi
n=$(wc -m < corpus.txt)
printf '%s\n' "$out" | grep -q "^dpt data: $n tokens" || fail "expected $n tokens: $out"
sum=$(md5sum < kjv.h5)

: > empty.txt
printf 'In the \xff beginning' > bad.txt
printf 'ok' > ok.txt
printf 'ab\xc0\x80' > overlong.txt      # an overlong NUL
printf 'ab\xed\xa0\x80' > surrogate.txt # U+D800
printf 'ab\xe2\x82' > truncated.txt     # a sequence cut by the end of the file
printf 'ab\xf4\x90\x80\x80' > beyond.txt # above U+10FFFF
printf '\n' > one.txt
mkdir -p adir.txt
# status | substring | args...
check() {
  local want=$1 sub=$2; shift 2
  local got rc
  got=$("$dpt" data import-text "$@" 2>&1); rc=$?
  case $sub in --*|exists) ;; *) [ "$(printf '%s\n' "$got" | wc -l)" -eq 1 ] || fail "not one line: $got" ;; esac
  [ "$rc" -eq "$want" ] || fail "dpt data import-text $*: status $rc, want $want: $got"
  [ "$(printf "%s\n" "$got" | grep -c "^dpt")" -eq 1 ] || fail "dpt data import-text $*: not one line: $got"
  printf '%s' "$got" | grep -qF -- "$sub" || fail "dpt data import-text $*: no '$sub' in: $got"
}
# bad text: exactly one line; a malformed flag: one "dpt" line, then the usage
check 2 "empty.txt: empty file" empty.txt --out kjv.h5 --force
check 2 "bad.txt: invalid UTF-8 at byte offset 7" ok.txt bad.txt --out kjv.h5 --force
check 2 "missing.txt" missing.txt --out kjv.h5 --force
for f in overlong surrogate truncated beyond; do
  check 2 "$f.txt: invalid UTF-8 at byte offset 2" ok.txt $f.txt --out kjv.h5 --force
done
check 2 "'adir.txt' is a directory" adir.txt --out kjv.h5 --force
check 2 "one.txt: --val-fraction 0.1 leaves no training text" one.txt --out kjv.h5 --force
check 2 "--vocab: 'words'" ok.txt --out kjv.h5 --force --vocab words
check 2 "--val-fraction" ok.txt --out kjv.h5 --force --val-fraction 1
check 2 "--val-fraction: 'x'" ok.txt --out kjv.h5 --force --val-fraction x
check 2 "exists" ok.txt --out kjv.h5
[ "$(md5sum < kjv.h5)" = "$sum" ] || fail "a failed import changed kjv.h5"
ls kjv.h5.tmp* >/dev/null 2>&1 && fail "a temporary file was left behind"
# a byte vocabulary takes any bytes
"$dpt" data import-text bad.txt --out bytes.h5 --vocab byte >/dev/null || fail "--vocab byte refused bytes"
echo "ok"
