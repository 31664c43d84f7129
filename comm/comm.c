/* comm.c — bucketed, overlapped gradient allreduce and the small collectives of comm.h.
 *
 * A bucket starts only when it is complete and every bucket after it has started, so the
 * sequence of MPI_Iallreduce calls is identical on every rank. Outstanding requests are tested
 * on every dpt_comm_ready call so Open MPI's progress engine moves them while backward runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

struct dpt_comm {
  MPI_Comm comm;     /* private duplicate with MPI_ERRORS_RETURN */
  float *buf;        /* borrowed gradient buffer */
  size_t n;          /* its length */
  size_t bucket;     /* elements per bucket */
  int nbuckets;
  int overlap;       /* start buckets as they complete (1) or all in wait (0) */
  size_t *done;      /* elements marked final per bucket this step */
  MPI_Request *req;  /* per bucket; MPI_REQUEST_NULL when not started or finished */
  int next;          /* next bucket to start: nbuckets-1 down to 0; -1 when all started */
  int mpi_rc;        /* first MPI error met in dpt_comm_ready (reported by wait) */
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int mpi_fail(int rc, const char *what, char *err, size_t errlen) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  snprintf(err, errlen, "%s failed: %s", what, msg);
  return DPT_COMM_EMPI;
}

dpt_range dpt_comm_shard(size_t n, int rank, int size) {
  size_t blocks = (n + DPT_COMM_ALIGN - 1) / DPT_COMM_ALIGN;
  size_t per = blocks / (size_t)size, extra = blocks % (size_t)size;
  size_t r = (size_t)rank;
  size_t first = r * per + (r < extra ? r : extra);
  size_t count = per + (r < extra ? 1 : 0);
  dpt_range out;
  out.offset = first * DPT_COMM_ALIGN;
  size_t end = (first + count) * DPT_COMM_ALIGN;
  if (out.offset > n) out.offset = n;
  if (end > n) end = n;
  out.len = end - out.offset;
  return out;
}

int dpt_comm_create(MPI_Comm comm, float *buf, size_t n, size_t bucket_bytes, int overlap,
                    dpt_comm **out, char *err, size_t errlen) {
  *out = NULL;
  if (bucket_bytes < sizeof(float)) {
    snprintf(err, errlen, "bucket size %zu bytes is too small (expected >= 4)", bucket_bytes);
    return DPT_COMM_EINVAL;
  }
  struct dpt_comm *c = calloc(1, sizeof *c);
  if (!c) goto nomem;
  c->comm = MPI_COMM_NULL;
  c->buf = buf;
  c->n = n;
  c->bucket = bucket_bytes / sizeof(float);
  if (c->bucket > (size_t)1 << 30) c->bucket = (size_t)1 << 30; /* MPI counts are int */
  c->nbuckets = n ? (int)((n + c->bucket - 1) / c->bucket) : 0;
  c->overlap = overlap;
  c->done = calloc((size_t)c->nbuckets + 1, sizeof *c->done);
  c->req = malloc(((size_t)c->nbuckets + 1) * sizeof *c->req);
  if (!c->done || !c->req) goto nomem;
  for (int k = 0; k < c->nbuckets; k++) c->req[k] = MPI_REQUEST_NULL;
  c->next = c->nbuckets - 1;
  int rc = MPI_Comm_dup(comm, &c->comm);
  if (rc != MPI_SUCCESS) {
    dpt_comm_free(c);
    return mpi_fail(rc, "MPI_Comm_dup", err, errlen);
  }
  MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  *out = c;
  return DPT_COMM_OK;
nomem:
  dpt_comm_free(c);
  snprintf(err, errlen, "cannot allocate the gradient reducer (%zu elements)", n);
  return DPT_COMM_ENOMEM;
}

void dpt_comm_free(dpt_comm *c) {
  if (!c) return;
  if (c->req)
    for (int k = 0; k < c->nbuckets; k++)
      if (c->req[k] != MPI_REQUEST_NULL) MPI_Wait(&c->req[k], MPI_STATUS_IGNORE);
  if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
  free(c->done);
  free(c->req);
  free(c);
}

static size_t bucket_len(const dpt_comm *c, int k) {
  size_t off = (size_t)k * c->bucket;
  return off + c->bucket <= c->n ? c->bucket : c->n - off;
}

static int start(dpt_comm *c, int k) {
  return MPI_Iallreduce(MPI_IN_PLACE, c->buf + (size_t)k * c->bucket, (int)bucket_len(c, k),
                        MPI_FLOAT, MPI_SUM, c->comm, &c->req[k]);
}

/* Starts buckets in the fixed order while the next one is complete. */
static void start_ready(dpt_comm *c) {
  while (c->next >= 0 && c->done[c->next] == bucket_len(c, c->next)) {
    int rc = start(c, c->next);
    if (rc != MPI_SUCCESS && !c->mpi_rc) c->mpi_rc = rc;
    c->next--;
  }
}

void dpt_comm_ready(void *ctx, size_t offset, size_t len) {
  dpt_comm *c = ctx;
  while (len > 0) {
    int k = (int)(offset / c->bucket);
    size_t end = (size_t)(k + 1) * c->bucket;
    size_t take = offset + len < end ? len : end - offset;
    c->done[k] += take;
    offset += take;
    len -= take;
  }
  if (!c->overlap) return;
  start_ready(c);
  /* let MPI progress what is in flight */
  int flag;
  for (int k = c->nbuckets - 1; k > c->next; k--)
    if (c->req[k] != MPI_REQUEST_NULL) MPI_Test(&c->req[k], &flag, MPI_STATUS_IGNORE);
}

int dpt_comm_wait(dpt_comm *c, double *wait_s, char *err, size_t errlen) {
  double t0 = now();
  int rc = c->mpi_rc;
  for (; c->next >= 0 && !rc; c->next--) rc = start(c, c->next);
  if (!rc) rc = MPI_Waitall(c->nbuckets, c->req, MPI_STATUSES_IGNORE);
  if (wait_s) *wait_s = now() - t0;
  memset(c->done, 0, (size_t)c->nbuckets * sizeof *c->done);
  c->next = c->nbuckets - 1;
  c->mpi_rc = 0;
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "gradient allreduce", err, errlen);
  return DPT_COMM_OK;
}

int dpt_comm_allgather(MPI_Comm comm, float *buf, size_t n, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size == 1) return DPT_COMM_OK;
  int *counts = malloc(2 * (size_t)size * sizeof *counts);
  if (!counts) {
    snprintf(err, errlen, "cannot allocate all-gather counts for %d ranks", size);
    return DPT_COMM_ENOMEM;
  }
  int *displs = counts + size;
  for (int r = 0; r < size; r++) {
    dpt_range s = dpt_comm_shard(n, r, size);
    counts[r] = (int)s.len;
    displs[r] = (int)s.offset;
  }
  int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT,
                          comm);
  free(counts);
  return rc == MPI_SUCCESS ? DPT_COMM_OK : mpi_fail(rc, "parameter all-gather", err, errlen);
}

int dpt_comm_sum(MPI_Comm comm, double *v, int n, char *err, size_t errlen) {
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm);
  return rc == MPI_SUCCESS ? DPT_COMM_OK : mpi_fail(rc, "MPI_Allreduce", err, errlen);
}

int dpt_comm_agree(MPI_Comm comm, int rc) {
  int worst = rc;
  if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return DPT_COMM_EMPI;
  return worst;
}

void dpt_comm_share_error(MPI_Comm comm, int rc, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int mine = rc ? rank : size, first = size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return;
  char msg[DPT_COMM_ERR_LEN];
  snprintf(msg, sizeof msg, "%s", rank == first ? err : "");
  MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm);
  snprintf(err, errlen, "%s", msg);
}
