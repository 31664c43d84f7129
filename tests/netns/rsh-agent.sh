#!/bin/sh
# rsh-agent.sh — what mpirun calls instead of ssh in the netns test bed (--mca plm_rsh_agent):
#   rsh-agent.sh [options] HOST COMMAND...
# Leading options (ssh's) are skipped; HOST is mapped to its namespace through the file
# $DPT_BED_MAP (lines "HOST NAMESPACE", written by bed.sh's bed_up); COMMAND runs there, in its
# own UTS namespace with HOST as hostname, in a clean environment (what mpirun's own
# environment holds is the daemon's business to forward, as over ssh).
while [ $# -gt 0 ]; do
  case "$1" in
    -l|-p|-o|-i|-F) shift 2 ;;  # ssh options with a value
    -*) shift ;;
    *) break ;;
  esac
done
host=$1; shift
[ -n "${DPT_BED_MAP:-}" ] && [ -r "$DPT_BED_MAP" ] || { echo "rsh-agent: no DPT_BED_MAP" >&2; exit 255; }
ns=$(awk -v h="$host" '$1 == h { print $2 }' "$DPT_BED_MAP")
[ -n "$ns" ] || { echo "rsh-agent: host '$host' is not in the bed ($DPT_BED_MAP)" >&2; exit 255; }
exec env -i PATH="$PATH" HOME="${HOME:-/root}" DPT_BED_MAP="$DPT_BED_MAP" \
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$host" "$*"
