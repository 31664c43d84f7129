/* env.c — the process environment dpt wants before OpenBLAS and MPI initialise.
 *
 * - One rank is one core: OpenBLAS gets one thread unless the user says otherwise.
 * - Debian's OpenBLAS 0.3.21 does not recognise recent AMD/Intel CPUs and falls back to AVX2
 *   kernels; where the CPU has AVX-512 we ask for the SkylakeX kernels (about twice the sgemm
 *   rate). OpenBLAS reads both variables when it is loaded, i.e. before main, so the process
 *   re-executes itself once with them set.
 * - Open MPI's single-copy path between ranks of a node (CMA, process_vm_readv) is left on
 *   where the kernel lets this process use it, and turned off where it does not (a container
 *   whose seccomp filter refuses the call, as Docker's does without CAP_SYS_PTRACE): there Open
 *   MPI would fail the first large transfer ("Read ... failed with errno=1"). It is worth
 *   keeping: on a 2-core VM (Xeon, 2026-12-01) it halved the wait of ZeRO stage 3's layer
 *   gathers at W = 4 (436 against 895 ms a step) and changed MLP and CNN steps by less than the
 *   noise; an earlier VM (Zen 3) gave MLP steps 12% faster without it, so dpt turned it off on
 *   every virtual machine until then. Open MPI reads the variable in MPI_Init.
 * A variable the user has set is never changed; DPT_NO_ENV_TUNING=1 changes nothing but the
 * thread count and the single-copy guard (which keeps the ranks' data intact). */
#define _GNU_SOURCE /* execv of /proc/self/exe, setenv, process_vm_readv */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* 1 if process_vm_readv works on this process (a seccomp filter may refuse it outright). */
static int cma_allowed(void) {
  char from[8] = "dpt-cma", to[8] = {0};
  struct iovec local = {to, sizeof to}, remote = {from, sizeof from};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)sizeof to &&
         !memcmp(from, to, sizeof to);
}

void dpt_env_setup(char **argv) {
  int reexec = 0;
  if (!getenv("OPENBLAS_NUM_THREADS")) reexec |= !setenv("OPENBLAS_NUM_THREADS", "1", 1);
  const char *off = getenv("DPT_NO_ENV_TUNING");
  if (!(off && *off && strcmp(off, "0"))) {
    __builtin_cpu_init();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f"))
      reexec |= !setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  }
  if (!getenv("OMPI_MCA_btl_vader_single_copy_mechanism") && !cma_allowed())
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  if (reexec && argv && !getenv("DPT_REEXECED")) {
    setenv("DPT_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    /* if exec fails, go on with the kernels already loaded */
  }
}
