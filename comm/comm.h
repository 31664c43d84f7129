/* comm.h — dpt's collective layer over MPI: bucketed, overlapped gradient reduction, shard
 * ranges, and small reductions the trainer needs. The whole public surface of comm/.
 *
 * Invariants:
 * - Knows nothing of solvers or models: it sees a flat fp32 buffer and ranges of it.
 * - Buckets are fixed slices of the buffer, [k*E, (k+1)*E) for E = bucket elements, and are
 *   started in one fixed order (last bucket first, the order backward produces them) on every
 *   rank, whatever order the ready ranges arrive in, so nonblocking collectives always match.
 * - Every MPI call is checked; a failure becomes DPT_EMPI with MPI's error string.
 *   After such an error the peers cannot be trusted: the caller should stop (MPI_Abort at top).
 */
#ifndef DPT_COMM_H
#define DPT_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h" /* the error space (DPT_E*, DPT_ERR_LEN) */

/* Shard boundaries are multiples of this many floats (64 bytes: a cache line, one AVX-512
 * vector), so every rank's slice starts aligned when the buffer does. */
#define DPT_COMM_ALIGN 16

/* A contiguous range of a flat buffer, in elements. */
typedef struct {
  size_t offset, len;
} dpt_range;

/* The shard of rank r of W over a buffer of n elements: contiguous, boundaries multiples of
 * DPT_COMM_ALIGN, as even as alignment allows; shards of all ranks tile [0, n). */
dpt_range dpt_comm_shard(size_t n, int rank, int size);

/* --- gradient reduction --- */

typedef struct dpt_comm dpt_comm;

/* Creates a reducer that sums buf[0, n) over every rank of comm, bucket_bytes per bucket
 * (>= 4). With overlap, a bucket's reduction starts as soon as it is final (see
 * dpt_comm_ready); without, everything starts in dpt_comm_wait. With shard_only, each rank gets
 * the sum only over its own shard (dpt_comm_shard; a reduce-scatter, ZeRO-1 and 2); otherwise
 * every rank gets all of it (an allreduce). Sums are taken in rank order, so they are bitwise the
 * same either way and whatever the bucket size. buf is borrowed (must outlive the reducer).
 * Collective over comm: every rank must call it with the same n and sizes. */
int dpt_comm_create(MPI_Comm comm, float *buf, size_t n, size_t bucket_bytes, int overlap,
                    int shard_only, dpt_comm **out, char *err, size_t errlen);
void dpt_comm_free(dpt_comm *c);

/* Marks buf[offset, offset+len) final for this step; starts the reduction of every bucket that
 * is now complete and next in the fixed order. Ranges must not overlap within a step. Matches
 * dpt_grad_ready_fn (ctx is the dpt_comm). */
void dpt_comm_ready(void *c, size_t offset, size_t len);

/* Starts whatever has not started and waits for every bucket: afterwards buf holds the sum over
 * ranks (with shard_only: in this rank's shard; the rest of buf is then unspecified).
 * Collective. *wait_s (may be NULL) receives the time spent blocked here. Resets the reducer
 * for the next step. */
int dpt_comm_wait(dpt_comm *c, double *wait_s, char *err, size_t errlen);

/* Gathers every rank's shard (dpt_comm_shard) of buf[0, n) so every rank holds all of it:
 * ZeRO's parameter all-gather after each rank updated the shard it owns. Collective. */
int dpt_comm_allgather(MPI_Comm comm, float *buf, size_t n, char *err, size_t errlen);

/* --- small collectives (collective over comm) --- */

/* Sums v[0, n) over ranks in place (doubles: losses, counts, norms). */
int dpt_comm_sum(MPI_Comm comm, double *v, int n, char *err, size_t errlen);

/* Maximum of v[0, n) over ranks in place. */
int dpt_comm_max(MPI_Comm comm, double *v, int n, char *err, size_t errlen);

/* Sums v[0, n) of 64-bit integers over ranks in place. Integer addition is exact and
 * associative (modulo 2^64, so even a wrap-around in between cancels), so the result is the
 * same whatever the rank count and the reduction order: deterministic mode's gradient sum. */
int dpt_comm_sum_exact(MPI_Comm comm, int64_t *v, size_t n, char *err, size_t errlen);

/* Reduce-scatter of the same exact sums: out receives the sum over ranks of in[own range]
 * (own = dpt_comm_shard(n, rank, W)), out holding own.len elements. Collective. */
int dpt_comm_reduce_scatter_exact(MPI_Comm comm, const int64_t *in, size_t n, int64_t *out,
                                  char *err, size_t errlen);

/* Agreement on failure: returns the most negative rc over ranks (0 if all are 0). Every rank
 * calls it at the same point, so one rank's bad input stops every rank with no hang. */
int dpt_comm_agree(MPI_Comm comm, int rc);

/* Makes rank root's message the message on every rank (for one clear line from rank 0 whoever
 * failed): the message of the lowest rank whose rc is non-zero is broadcast into err. */
void dpt_comm_share_error(MPI_Comm comm, int rc, char *err, size_t errlen);

#endif /* DPT_COMM_H */
