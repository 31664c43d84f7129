/* comm.c — bucketed, overlapped, bitwise-reproducible gradient reduction and the small
 * collectives of comm.h.
 *
 * A bucket's reduction is an exchange (MPI_Ialltoallv: each rank receives every rank's copy of
 * the part of the bucket inside its own shard) followed by a local sum in rank order. So the
 * result does not depend on MPI's algorithm, on the bucket size or on whether every rank wants
 * the whole sum (allreduce: the shards are then all-gathered) or only its shard
 * (reduce-scatter, ZeRO-1 and 2): ZeRO stages 0, 1 and 2 see bitwise the same gradient.
 * A bucket starts only when it is complete and every bucket after it has started, so the
 * sequence of nonblocking collectives is identical on every rank. Outstanding requests are
 * tested on every dpt_comm_ready call so Open MPI progresses them while backward runs.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

struct dpt_comm {
  MPI_Comm comm;     /* private duplicate with MPI_ERRORS_RETURN */
  int rank, size;
  float *buf;        /* borrowed gradient buffer */
  size_t n;          /* its length */
  size_t bucket;     /* elements per bucket */
  int nbuckets;
  int overlap;       /* start buckets as they complete (1) or all in wait (0) */
  int shard_only;    /* 1: only this rank's shard is summed (reduce-scatter); 0: all of it */
  dpt_range *shards; /* dpt_comm_shard of every rank */
  float *stage;      /* size * shards[rank].len: every rank's copy of this rank's shard */
  int *counts;       /* 4 * size ints of alltoallv arguments per bucket, built per start */
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
  return DPT_EMPI;
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
                    int shard_only, dpt_comm **out, char *err, size_t errlen) {
  *out = NULL;
  if (bucket_bytes < sizeof(float)) {
    snprintf(err, errlen, "bucket size %zu bytes is too small (expected >= 4)", bucket_bytes);
    return DPT_EINVAL;
  }
  if (n > (size_t)INT_MAX) {
    snprintf(err, errlen, "%zu gradient elements exceed MPI's int counts", n);
    return DPT_EINVAL;
  }
  struct dpt_comm *c = calloc(1, sizeof *c);
  if (!c) goto nomem;
  c->comm = MPI_COMM_NULL;
  c->buf = buf;
  c->n = n;
  c->bucket = bucket_bytes / sizeof(float);
  if (c->bucket > (size_t)1 << 30) c->bucket = (size_t)1 << 30;
  c->nbuckets = n ? (int)((n + c->bucket - 1) / c->bucket) : 0;
  c->overlap = overlap;
  c->shard_only = shard_only;
  int rc = MPI_Comm_dup(comm, &c->comm);
  if (rc != MPI_SUCCESS) {
    dpt_comm_free(c);
    return mpi_fail(rc, "MPI_Comm_dup", err, errlen);
  }
  MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c->comm, &c->rank);
  MPI_Comm_size(c->comm, &c->size);
  c->shards = malloc((size_t)c->size * sizeof *c->shards);
  c->counts = malloc(4 * (size_t)c->size * ((size_t)c->nbuckets + 1) * sizeof *c->counts);
  c->done = calloc((size_t)c->nbuckets + 1, sizeof *c->done);
  c->req = malloc(((size_t)c->nbuckets + 1) * sizeof *c->req);
  if (!c->shards || !c->counts || !c->done || !c->req) goto nomem;
  for (int r = 0; r < c->size; r++) c->shards[r] = dpt_comm_shard(n, r, c->size);
  c->stage = malloc(((size_t)c->size * c->shards[c->rank].len + 1) * sizeof *c->stage);
  if (!c->stage) goto nomem;
  for (int k = 0; k < c->nbuckets; k++) c->req[k] = MPI_REQUEST_NULL;
  c->next = c->nbuckets - 1;
  *out = c;
  return DPT_OK;
nomem:
  dpt_comm_free(c);
  snprintf(err, errlen, "cannot allocate the gradient reducer (%zu elements)", n);
  return DPT_ENOMEM;
}

void dpt_comm_free(dpt_comm *c) {
  if (!c) return;
  if (c->req)
    for (int k = 0; k < c->nbuckets; k++)
      if (c->req[k] != MPI_REQUEST_NULL) MPI_Wait(&c->req[k], MPI_STATUS_IGNORE);
  if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
  free(c->shards);
  free(c->stage);
  free(c->counts);
  free(c->done);
  free(c->req);
  free(c);
}

static size_t bucket_len(const dpt_comm *c, int k) {
  size_t off = (size_t)k * c->bucket;
  return off + c->bucket <= c->n ? c->bucket : c->n - off;
}

/* [lo, hi) of bucket k intersected with rank r's shard (empty: lo == hi). */
static void overlap_of(const dpt_comm *c, int k, int r, size_t *lo, size_t *hi) {
  size_t b0 = (size_t)k * c->bucket, b1 = b0 + bucket_len(c, k);
  size_t s0 = c->shards[r].offset, s1 = s0 + c->shards[r].len;
  *lo = b0 > s0 ? b0 : s0;
  *hi = b1 < s1 ? b1 : s1;
  if (*hi < *lo) *hi = *lo;
}

/* Bucket k: every rank sends each peer the part of the bucket in that peer's shard, and
 * receives every rank's copy of the part in its own shard into the staging rows. */
static int start(dpt_comm *c, int k) {
  int w = c->size;
  int *sc = c->counts + (size_t)4 * w * k, *sd = sc + w, *rc = sd + w, *rd = rc + w;
  size_t mylo, myhi, L = c->shards[c->rank].len;
  overlap_of(c, k, c->rank, &mylo, &myhi);
  for (int r = 0; r < w; r++) {
    size_t lo, hi;
    overlap_of(c, k, r, &lo, &hi);
    sc[r] = (int)(hi - lo);
    sd[r] = (int)lo;
    rc[r] = (int)(myhi - mylo);
    rd[r] = (int)((size_t)r * L + (mylo - c->shards[c->rank].offset));
  }
  return MPI_Ialltoallv(c->buf, sc, sd, MPI_FLOAT, c->stage, rc, rd, MPI_FLOAT, c->comm,
                        &c->req[k]);
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
  int flag; /* let MPI progress what is in flight */
  for (int k = c->nbuckets - 1; k > c->next; k--)
    if (c->req[k] != MPI_REQUEST_NULL) MPI_Test(&c->req[k], &flag, MPI_STATUS_IGNORE);
}

/* The sum of every rank's copy of this rank's shard, in rank order 0, 1, ..., W-1: the same
 * association whatever the bucket size, the MPI algorithm or the stage. */
static void sum_shard(dpt_comm *c) {
  size_t L = c->shards[c->rank].len;
  float *restrict out = c->buf + c->shards[c->rank].offset;
  const float *restrict st = c->stage;
  for (size_t i = 0; i < L; i++) out[i] = st[i];
  for (int q = 1; q < c->size; q++) {
    const float *restrict row = st + (size_t)q * L;
    for (size_t i = 0; i < L; i++) out[i] = out[i] + row[i];
  }
}

int dpt_comm_wait(dpt_comm *c, double *wait_s, char *err, size_t errlen) {
  double t0 = now();
  int rc = c->mpi_rc;
  for (; c->next >= 0 && !rc; c->next--) rc = start(c, c->next);
  if (!rc) rc = MPI_Waitall(c->nbuckets, c->req, MPI_STATUSES_IGNORE);
  if (!rc) {
    sum_shard(c);
    if (!c->shard_only && c->size > 1) {
      int w = c->size, *counts = c->counts, *displs = c->counts + w;
      for (int r = 0; r < w; r++) {
        counts[r] = (int)c->shards[r].len;
        displs[r] = (int)c->shards[r].offset;
      }
      rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, c->buf, counts, displs,
                          MPI_FLOAT, c->comm);
    }
  }
  if (wait_s) *wait_s = now() - t0;
  memset(c->done, 0, (size_t)c->nbuckets * sizeof *c->done);
  c->next = c->nbuckets - 1;
  c->mpi_rc = 0;
  if (rc != MPI_SUCCESS) return mpi_fail(rc, "gradient reduction", err, errlen);
  return DPT_OK;
}

int dpt_comm_allgather(MPI_Comm comm, float *buf, size_t n, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size == 1) return DPT_OK;
  int *counts = malloc(2 * (size_t)size * sizeof *counts);
  if (!counts) {
    snprintf(err, errlen, "cannot allocate all-gather counts for %d ranks", size);
    return DPT_ENOMEM;
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
  return rc == MPI_SUCCESS ? DPT_OK : mpi_fail(rc, "parameter all-gather", err, errlen);
}

int dpt_comm_sum(MPI_Comm comm, double *v, int n, char *err, size_t errlen) {
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm);
  return rc == MPI_SUCCESS ? DPT_OK : mpi_fail(rc, "MPI_Allreduce", err, errlen);
}

int dpt_comm_max(MPI_Comm comm, double *v, int n, char *err, size_t errlen) {
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, comm);
  return rc == MPI_SUCCESS ? DPT_OK : mpi_fail(rc, "MPI_Allreduce", err, errlen);
}

int dpt_comm_sum_exact(MPI_Comm comm, int64_t *v, size_t n, char *err, size_t errlen) {
  const size_t most = (size_t)1 << 28; /* MPI counts are ints */
  for (size_t done = 0; done < n; done += most) {
    int cnt = (int)(n - done < most ? n - done : most);
    int rc = MPI_Allreduce(MPI_IN_PLACE, v + done, cnt, MPI_INT64_T, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce (exact sum)", err, errlen);
  }
  return DPT_OK;
}

int dpt_comm_reduce_scatter_exact(MPI_Comm comm, const int64_t *in, size_t n, int64_t *out,
                                  char *err, size_t errlen) {
  int size;
  MPI_Comm_size(comm, &size);
  if (n > (size_t)INT_MAX) {
    snprintf(err, errlen, "exact reduce-scatter: %zu elements, at most %d", n, INT_MAX);
    return DPT_EINVAL;
  }
  int *counts = malloc((size_t)size * sizeof *counts);
  if (!counts) {
    snprintf(err, errlen, "out of memory");
    return DPT_ENOMEM;
  }
  for (int r = 0; r < size; r++) counts[r] = (int)dpt_comm_shard(n, r, size).len;
  int rc = MPI_Reduce_scatter(in, out, counts, MPI_INT64_T, MPI_SUM, comm);
  free(counts);
  return rc == MPI_SUCCESS ? DPT_OK : mpi_fail(rc, "MPI_Reduce_scatter (exact sum)", err, errlen);
}

int dpt_comm_agree(MPI_Comm comm, int rc) {
  int worst = rc;
  if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return DPT_EMPI;
  return worst;
}

void dpt_comm_share_error(MPI_Comm comm, int rc, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int mine = rc ? rank : size, first = size;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == size) return;
  char msg[DPT_ERR_LEN];
  snprintf(msg, sizeof msg, "%s", rank == first ? err : "");
  MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm);
  snprintf(err, errlen, "%s", msg);
}
