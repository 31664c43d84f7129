/* mpi_fail.h — test-only MPI failure injection through MPI's profiling interface (PMPI).
 *
 * A test program that includes this file (in exactly one of its files) defines the MPI
 * functions dpt's collectives go through; each counts its calls and forwards to PMPI_*, except
 * the one call the test chose, which fails as MPI would: it communicates nothing, invokes the
 * communicator's error handler (MPI_Comm_call_errhandler: under MPI_ERRORS_ARE_FATAL the job
 * aborts, so a communicator dpt forgot to switch to MPI_ERRORS_RETURN fails the test) and
 * returns an error code whose string is MPI_FAIL_MESSAGE. Every rank makes the same calls in the
 * same order, so every rank fails at the same call and no peer is left waiting.
 */
#ifndef DPT_TESTS_MPI_FAIL_H
#define DPT_TESTS_MPI_FAIL_H

#include <mpi.h>

#define MPI_FAIL_MESSAGE "failure injected by the test"

static long mpi_fail_at;    /* fail the mpi_fail_at-th call counted (1-based); 0: none */
static long mpi_fail_calls; /* calls counted since mpi_fail_arm */
static int mpi_fail_counting;
static int mpi_fail_code = MPI_ERR_OTHER;
static MPI_Comm mpi_fail_spared = MPI_COMM_NULL; /* calls on it are neither counted nor failed */

/* Calls on comm pass through (the caller's communicator, whose handler is the caller's). */
static inline void mpi_fail_spare(MPI_Comm comm) {
  mpi_fail_spared = comm;
}

/* Counts calls from now on and fails call number `at` (0: only count). */
static inline void mpi_fail_arm(long at) {
  static int made;
  if (!made) { /* an error class and code of our own, with our message */
    int cls;
    if (PMPI_Add_error_class(&cls) == MPI_SUCCESS &&
        PMPI_Add_error_code(cls, &mpi_fail_code) == MPI_SUCCESS)
      PMPI_Add_error_string(mpi_fail_code, MPI_FAIL_MESSAGE);
    else
      mpi_fail_code = MPI_ERR_OTHER;
    made = 1;
  }
  mpi_fail_at = at;
  mpi_fail_calls = 0;
  mpi_fail_counting = 1;
}

/* Stops counting; returns how many calls were counted. */
static inline long mpi_fail_disarm(void) {
  mpi_fail_counting = 0;
  mpi_fail_at = 0;
  return mpi_fail_calls;
}

/* 1 if this call is the one to fail (its error handler then already ran). */
static inline int mpi_fail_here(MPI_Comm comm) {
  if (!mpi_fail_counting || comm == mpi_fail_spared || ++mpi_fail_calls != mpi_fail_at) return 0;
  PMPI_Comm_call_errhandler(comm, mpi_fail_code);
  return 1;
}

int MPI_Allreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Allreduce(s, r, n, t, op, c);
}
int MPI_Bcast(void *b, int n, MPI_Datatype t, int root, MPI_Comm c) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Bcast(b, n, t, root, c);
}
int MPI_Exscan(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Exscan(s, r, n, t, op, c);
}
int MPI_Allgatherv(const void *s, int sn, MPI_Datatype st, void *r, const int rn[], const int rd[],
                   MPI_Datatype rt, MPI_Comm c) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Allgatherv(s, sn, st, r, rn, rd, rt, c);
}
int MPI_Reduce_scatter(const void *s, void *r, const int rn[], MPI_Datatype t, MPI_Op op,
                       MPI_Comm c) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Reduce_scatter(s, r, rn, t, op, c);
}
int MPI_Comm_dup(MPI_Comm c, MPI_Comm *out) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Comm_dup(c, out);
}
int MPI_Comm_split_type(MPI_Comm c, int type, int key, MPI_Info info, MPI_Comm *out) {
  return mpi_fail_here(c) ? mpi_fail_code : PMPI_Comm_split_type(c, type, key, info, out);
}
int MPI_Ialltoallv(const void *s, const int sn[], const int sd[], MPI_Datatype st, void *r,
                   const int rn[], const int rd[], MPI_Datatype rt, MPI_Comm c, MPI_Request *req) {
  if (mpi_fail_here(c)) {
    *req = MPI_REQUEST_NULL;
    return mpi_fail_code;
  }
  return PMPI_Ialltoallv(s, sn, sd, st, r, rn, rd, rt, c, req);
}
int MPI_Iallreduce(const void *s, void *r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c,
                   MPI_Request *req) {
  if (mpi_fail_here(c)) {
    *req = MPI_REQUEST_NULL;
    return mpi_fail_code;
  }
  return PMPI_Iallreduce(s, r, n, t, op, c, req);
}
int MPI_Ireduce_scatter(const void *s, void *r, const int rn[], MPI_Datatype t, MPI_Op op,
                        MPI_Comm c, MPI_Request *req) {
  if (mpi_fail_here(c)) {
    *req = MPI_REQUEST_NULL;
    return mpi_fail_code;
  }
  return PMPI_Ireduce_scatter(s, r, rn, t, op, c, req);
}

#endif
