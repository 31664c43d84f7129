#!/usr/bin/env bash
# Where the kernel refuses process_vm_readv (a container's seccomp filter, as Docker's default
# profile does without CAP_SYS_PTRACE), Open MPI's single-copy path (CMA) cannot work: forced on,
# each large transfer between ranks prints "Read -1, expected N, errno = 1" and the receiver
# gets no data. dpt probes the call before MPI starts and turns the path off there (env.c), so
# under such a filter (no_cma.py) a run at W = 2 trains bitwise what the same run trains
# without the filter, and Open MPI says nothing. The filter is shown to be real: with the path
# forced on, Open MPI's error appears. Usage: test_no_cma.sh DPT WORKDIR
nocma=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/no_cma.py
. "$(dirname "$0")/lib.sh" "$@"
synth 256 0 784 10
unset OMPI_MCA_btl_vader_single_copy_mechanism
run() { # RUN_DIR [wrapper...]: 4 steps at W = 2, buckets of 0.8 MB (well above the eager limit)
  local dir=$1; shift
  timeout 120 "$@" mpirun --oversubscribe -n 2 "$dpt" train --data d.h5 --model mlp:784-512-10 \
    --batch 32 --max-steps 4 --ckpt 1 --progress none --eval-every 0 --run-dir "$dir" \
    > "$dir.out" 2>&1
}
run plain env || { cat plain.out; fail "the run without a filter failed"; }
run filtered "$py" "$nocma" || { cat filtered.out; fail "the run under the filter failed"; }
cat filtered.out
grep -q "errno" filtered.out && fail "Open MPI reported a failed read under the filter"
ck=ckpt/ckpt-0000000004.h5
for g in /model /optim; do
  h5diff "plain/$ck" "filtered/$ck" $g $g >/dev/null || fail "$g differs under the filter"
done
echo "under the filter: no single-copy error, parameters and optimizer state bitwise equal"
# the filter is real: with the path forced on, Open MPI's reads fail under it
OMPI_MCA_btl_vader_single_copy_mechanism=cma run forced "$py" "$nocma"
grep -q "errno = 1" forced.out || { cat forced.out; fail "the filter did not stop a forced CMA read"; }
echo "forced on under the filter, Open MPI's reads fail: $(grep -m1 errno forced.out)"
