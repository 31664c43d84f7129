/* env.c — the process environment dpt wants before OpenBLAS and MPI initialise.
 *
 * - One rank is one core: OpenBLAS gets one thread unless the user says otherwise.
 * - Debian's OpenBLAS 0.3.21 does not recognise recent AMD/Intel CPUs and falls back to AVX2
 *   kernels; where the CPU has AVX-512 we ask for the SkylakeX kernels (about twice the sgemm
 *   rate). OpenBLAS reads both variables when it is loaded, i.e. before main, so the process
 *   re-executes itself once with them set.
 * - On a virtual machine, Open MPI's single-copy path between ranks of a node (CMA,
 *   process_vm_readv) costs the hypervisor a page-table walk per transfer: on the 2-core VM
 *   dpt is developed on, copying through the shared-memory buffers instead made a training
 *   step at global batch 256 on 2 ranks 12% faster. Open MPI reads the variable in MPI_Init.
 * A variable the user has set is never changed; DPT_NO_ENV_TUNING=1 changes nothing but the
 * thread count. */
#define _GNU_SOURCE /* execv of /proc/self/exe, setenv */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 if /proc/cpuinfo lists the "hypervisor" flag (the kernel runs under a hypervisor). */
static int on_hypervisor(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return 0;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    if (!strncmp(line, "flags", 5)) found = strstr(line, " hypervisor") != NULL;
  fclose(f);
  return found;
}

void dpt_env_setup(char **argv) {
  int reexec = 0;
  if (!getenv("OPENBLAS_NUM_THREADS")) reexec |= !setenv("OPENBLAS_NUM_THREADS", "1", 1);
  const char *off = getenv("DPT_NO_ENV_TUNING");
  if (!(off && *off && strcmp(off, "0"))) {
    __builtin_cpu_init();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f"))
      reexec |= !setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    if (!getenv("OMPI_MCA_btl_vader_single_copy_mechanism") && on_hypervisor())
      setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  }
  if (reexec && argv && !getenv("DPT_REEXECED")) {
    setenv("DPT_REEXECED", "1", 1);
    execv("/proc/self/exe", argv);
    /* if exec fails, go on with the kernels already loaded */
  }
}
