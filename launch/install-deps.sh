#!/usr/bin/env bash
# Installs the Debian 12 packages dpt needs, only those missing. Run as root (or with sudo
# available). Usage: launch/install-deps.sh [build|demo|test|bench]
set -euo pipefail
role=${1:-build}
pkgs=(cmake make gcc pkg-config libc6-dev openmpi-bin libopenmpi-dev libopenblas-dev
      libhdf5-openmpi-dev hdf5-tools libinih-dev zlib1g-dev libjansson-dev)
case "$role" in
  build) ;;
  demo)  pkgs+=(dataset-fashion-mnist) ;;
  test)  pkgs+=(dataset-fashion-mnist libcmocka-dev python3 python3-numpy python3-h5py python3-torch librsvg2-bin
               slurmctld slurmd slurm-client munge valgrind
               clang clang-format libclang-rt-14-dev tmux groff-base man-db
               iproute2 iputils-ping iperf3 nftables) ;;
  bench) pkgs+=(libcmocka-dev dataset-fashion-mnist python3-torch python3-numpy) ;;
  *) echo "install-deps.sh: unknown role '$role' (expected build, demo, test or bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "dpt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/dpt-apt.log 2>&1; then
  # An optional package (the dataset) may be unavailable; install the rest and say so.
  echo "dpt: apt-get could not install everything at once; retrying one by one" >&2
  for p in "${missing[@]}"; do
    $sudo apt-get install -y -qq --no-install-recommends "$p" >>/tmp/dpt-apt.log 2>&1 \
      || echo "dpt: could not install $p (see /tmp/dpt-apt.log)" >&2
  done
fi
