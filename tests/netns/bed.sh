# bed.sh — a cluster of K "nodes" on one machine, for tests and benchmarks (sourced, as root).
#
#   . tests/netns/bed.sh
#   bed_up 2 1gbit || exit $?      # 2 nodes, links shaped to 1 Gbit/s each way; 77 = skipped
#   bed_mpirun 2 -n 4 "$dpt" train ...   # mpirun on node 1, 2 slots per node
#   bed_down                       # also run by the EXIT trap bed_up installs
#
# Layout: one network namespace per node (NS_PREFIX-n1 ... -nK) and one "switch" namespace
# (NS_PREFIX-sw) holding a bridge; each node has `lo` and one veth (eth0) into the bridge,
# shaped with tbf in both directions (the node's eth0 egress and the switch port's egress).
# Addresses are on BED_NET.0/24, which exists only inside these namespaces: nothing is added
# to the root namespace and no namespace has a default route, so no test traffic can leave
# the machine. Every process of a node runs in its own UTS namespace with the node's hostname
# (with one hostname Open MPI takes two namespaces for one node and uses shared memory
# between them). mpirun starts the remote daemons through rsh-agent.sh (plm_rsh_agent).
#
# Names are unique per run (dpt<pid><random>); bed_up refuses to reuse one that exists. bed_down
# kills every process left in the bed's namespaces (they are the bed's own: the namespaces are
# new) and deletes the namespaces, which removes their links, addresses and qdiscs.
#
# Skips (returns 77, with "skipped: <reason>" on stdout) where namespaces cannot be made: not
# root, no ip/tc/unshare, or the kernel refuses a namespace, veth, bridge or tbf.

BED_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BED_NET=${BED_NET:-10.213.77}   # the test /24: only inside the bed's namespaces
BED_SKIP=77
BED_NODES=0
BED_PREFIX=""
BED_WORK=""

bed_skip() { echo "skipped: $*"; return $BED_SKIP; }

# bed_ns I: the namespace of node I (1-based); bed_host I: its hostname; bed_ip I: its address
bed_ns() { echo "$BED_PREFIX-n$1"; }
bed_host() { echo "${BED_PREFIX}n$1"; }
bed_ip() { echo "$BED_NET.$((10 + $1))"; }

# bed_up K RATE [WORKDIR]: K nodes, each link shaped to RATE (tc units: 1gbit, 500mbit) in both
# directions. WORKDIR (default: a new mktemp -d) holds the hostfile and the agent's map.
bed_up() {
  local k=$1 rate=$2 i
  [ "$(id -u)" = 0 ] || { bed_skip "not root (network namespaces need CAP_SYS_ADMIN)"; return; }
  for t in ip tc unshare nsenter; do
    command -v "$t" >/dev/null || { bed_skip "no $t (package iproute2/util-linux)"; return; }
  done
  BED_PREFIX=dpt$$$(printf '%04x' $((RANDOM % 65536)))
  for i in $(seq 1 "$k") sw; do
    local ns=$BED_PREFIX-n$i
    [ "$i" = sw ] && ns=$BED_PREFIX-sw
    if [ -e "/run/netns/$ns" ]; then
      echo "bed: namespace $ns already exists; refusing to use it" >&2
      return 1
    fi
  done
  BED_NODES=$k
  BED_WORK=${3:-$(mktemp -d /tmp/dpt-bed.XXXXXX)}
  mkdir -p "$BED_WORK"
  trap bed_down EXIT
  trap 'exit 130' INT TERM
  ip netns add "$BED_PREFIX-sw" 2>/dev/null || { bed_skip "ip netns add failed (no namespaces)"; return; }
  ip -n "$BED_PREFIX-sw" link set lo up
  ip -n "$BED_PREFIX-sw" link add br0 type bridge 2>/dev/null \
    || { bed_skip "the kernel has no bridge"; return; }
  ip -n "$BED_PREFIX-sw" link set br0 up
  : > "$BED_WORK/hostfile"
  : > "$BED_WORK/map"
  for i in $(seq 1 "$k"); do
    local ns; ns=$(bed_ns "$i")
    ip netns add "$ns" || { bed_skip "ip netns add $ns failed"; return; }
    ip -n "$ns" link set lo up
    ip -n "$BED_PREFIX-sw" link add "p$i" type veth peer name eth0 netns "$ns" 2>/dev/null \
      || { bed_skip "the kernel has no veth"; return; }
    ip -n "$BED_PREFIX-sw" link set "p$i" master br0 up
    ip -n "$ns" addr add "$(bed_ip "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    bed_shape "$i" "$rate" || { bed_skip "tc tbf failed (no sch_tbf)"; return; }
    echo "$(bed_host "$i") $ns" >> "$BED_WORK/map"
  done
  # the first ping across the bridge waits for its learning; make sure every node answers
  for i in $(seq 2 "$k"); do
    local n
    for n in 1 2 3 4 5 6 7 8 9 10; do
      ip netns exec "$(bed_ns 1)" ping -c1 -W1 "$(bed_ip "$i")" >/dev/null 2>&1 && break
      [ $n = 10 ] && { echo "bed: node $i does not answer" >&2; return 1; }
    done
  done
  export DPT_BED_MAP=$BED_WORK/map
  return 0
}

# bed_shape I RATE: (re)shape node I's link to RATE both ways. tbf's burst must hold at least
# one timer tick of traffic at RATE (HZ 250: 4 ms); 128 KiB covers 1 Gbit/s with margin and
# 10 Gbit/s gets 1 MiB. Transfers below the burst pass unshaped.
bed_shape() {
  local i=$1 rate=$2 burst=128kb
  case "$rate" in *[0-9]gbit) [ "${rate%gbit}" -ge 2 ] 2>/dev/null && burst=1mb ;; esac
  tc -n "$(bed_ns "$i")" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms \
    && tc -n "$BED_PREFIX-sw" qdisc replace dev "p$i" root tbf rate "$rate" burst "$burst" latency 50ms
}

# bed_hostfile SLOTS: a hostfile with SLOTS slots on each node; prints its path
bed_hostfile() {
  local f=$BED_WORK/hostfile.$1 i
  : > "$f"
  for i in $(seq 1 "$BED_NODES"); do echo "$(bed_host "$i") slots=$1" >> "$f"; done
  echo "$f"
}

# bed_exec I CMD...: run CMD in node I (its network namespace, its hostname); with BED_TIMEOUT
# set, ended after that many seconds (timeout(1): SIGTERM, status 124)
bed_exec() {
  local i=$1; shift
  timeout "${BED_TIMEOUT:-0}" ip netns exec "$(bed_ns "$i")" unshare --uts sh -c 'hostname "$0" && exec "$@"' \
    "$(bed_host "$i")" "$@"
}

# The MCA settings every run of the bed uses: TCP between nodes and shared memory inside one,
# both only on the test subnet; no binding (all nodes share 2 cores: binding pins every node's
# rank 0 to the same core); idle ranks yield (busy-polling ranks starve the other nodes).
bed_mca() {
  echo --mca plm_rsh_agent "$BED_DIR/rsh-agent.sh" --mca btl tcp,self,vader \
    --mca btl_tcp_if_include "$BED_NET.0/24" --mca oob_tcp_if_include "$BED_NET.0/24" \
    --bind-to none --mca mpi_yield_when_idle 1
}

# bed_mpirun SLOTS MPIRUN_ARGS...: mpirun on node 1 over every node, SLOTS slots each
bed_mpirun() {
  local slots=$1; shift
  # shellcheck disable=SC2046
  bed_exec 1 mpirun --hostfile "$(bed_hostfile "$slots")" $(bed_mca) "$@"
}

# bed_pids I: the processes in node I's namespace
bed_pids() { ip netns pids "$(bed_ns "$1")" 2>/dev/null; }

# bed_all_pids: every process in any of the bed's namespaces
bed_all_pids() {
  local i
  for i in $(seq 1 "$BED_NODES"); do bed_pids "$i"; done
  ip netns pids "$BED_PREFIX-sw" 2>/dev/null
}

# bed_rank_pid I RANK: the process of MPI rank RANK in node I (empty if none)
bed_rank_pid() {
  local p
  for p in $(bed_pids "$1"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" \
      && { echo "$p"; return 0; }
  done
  return 1
}

# Faults on node I's link: cut (link down), loss (nftables: drop everything on eth0), heal.
bed_cut() { ip -n "$(bed_ns "$1")" link set eth0 down; }
bed_loss() {
  ip netns exec "$(bed_ns "$1")" nft -f - <<EOF
table inet dptbed {
  chain in { type filter hook input priority 0; policy accept; iifname "eth0" drop; }
  chain out { type filter hook output priority 0; policy accept; oifname "eth0" drop; }
}
EOF
}
bed_heal() {
  ip -n "$(bed_ns "$1")" link set eth0 up
  ip netns exec "$(bed_ns "$1")" nft delete table inet dptbed 2>/dev/null
  return 0
}

# bed_down: kill what runs in the bed, delete its namespaces. Safe to call twice.
bed_down() {
  [ -n "$BED_PREFIX" ] || return 0
  local i ns pids
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BED_PREFIX-"); do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  done
  sleep 0.2
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$BED_PREFIX-"); do
    ip netns del "$ns" 2>/dev/null
  done
  case "$BED_WORK" in /tmp/dpt-bed.*) rm -rf "$BED_WORK" ;; esac
  BED_PREFIX=""
}
