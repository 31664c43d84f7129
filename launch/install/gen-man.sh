#!/usr/bin/env bash
# Writes the man page dpt.1 from its template (launch/dpt.1.in) and the built dpt: the option
# lists are `dpt train --help`, `dpt solvers` and `dpt schedulers` turned into roff, so the
# page lists exactly the options the command accepts. Run by the build (launch/CMakeLists.txt).
# Fails, writing nothing, when a listing cannot be read or holds no option.
# Usage: gen-man.sh DPT TEMPLATE OUT VERSION
set -euo pipefail
dpt=$1; template=$2; out=$3; version=$4

# Option lines are printed as "    --%-28s %-14s %s" (flag, default, help: launch/main.c
# print_flag): the default starts one column after the padded flag, the help one column after
# the padded default. A line "  NAME" starts a solver or scheduler (listings).
to_roff='
function esc(s) {
  gsub(/\\/, "\\e", s)
  gsub(/-/, "\\-", s)
  sub(/^[.'"'"']/, "\\\\\\&&", s)
  return s
}
/^    --/ {
  flag = substr($0, 5); sub(/ .*/, "", flag)
  w = length(flag) > 30 ? length(flag) : 30
  rest = substr($0, 6 + w)
  value = ""
  if (substr(rest, 1, 1) != " ") { value = rest; sub(/ .*/, "", value) }
  vw = length(value) > 14 ? length(value) : 14
  help = substr(rest, vw + 2); sub(/ +$/, "", help)
  # a layout other than the one above would cut words: stop rather than print a wrong page
  if (substr(rest, vw + 1, 1) != " " || help !~ /^[^ ]/ || substr($0, 5 + w, 1) != " ") {
    print "gen-man.sh: unexpected option line layout: " $0 > "/dev/stderr"
    bad = 1
  }
  print ".TP"
  print ".B " esc(flag)
  if (help != "") print esc(help) (help ~ /[.:]$/ ? "" : ".")
  if (value != "") print "Default: " esc(value) "."
  n++
  next
}
sections && /^  [a-z][a-z0-9_]*$/ { sub(/^ +/, ""); print ".SS " esc($0); next }
END { if (n == 0 || bad) exit 1 }
'
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp" "$tmp".*' EXIT
"$dpt" train --help | awk -v sections=0 "$to_roff" > "$tmp.train" \
  || { echo "gen-man.sh: no options in '$dpt train --help'" >&2; exit 1; }
"$dpt" solvers | awk -v sections=1 "$to_roff" > "$tmp.solvers" \
  || { echo "gen-man.sh: no solvers in '$dpt solvers'" >&2; exit 1; }
"$dpt" schedulers | awk -v sections=1 "$to_roff" > "$tmp.scheds" \
  || { echo "gen-man.sh: no schedulers in '$dpt schedulers'" >&2; exit 1; }
awk -v version="$version" -v train="$tmp.train" -v solvers="$tmp.solvers" \
    -v scheds="$tmp.scheds" '
  function cat(f,   l) { while ((getline l < f) > 0) print l; close(f) }
  /^@TRAIN_OPTIONS@$/ { cat(train); next }
  /^@SOLVERS@$/ { cat(solvers); next }
  /^@SCHEDULERS@$/ { cat(scheds); next }
  { gsub(/@DPT_VERSION@/, version); print }
' "$template" > "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
