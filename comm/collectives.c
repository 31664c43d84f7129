/* collectives.c — shard ranges, node topology and the small collectives of comm.h, each MPI
 * result checked and turned into DPT_EMPI with MPI's message. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

int dpt_comm_mpi_error(int rc, const char *what, char *err, size_t errlen) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error %d", rc);
  snprintf(err, errlen, "%s failed: %s", what, msg);
  return DPT_EMPI;
}

int dpt_comm_dup_returning(MPI_Comm comm, MPI_Comm *out, char *err, size_t errlen) {
  *out = MPI_COMM_NULL;
  int rc = MPI_Comm_dup(comm, out);
  if (rc != MPI_SUCCESS) {
    *out = MPI_COMM_NULL;
    return dpt_comm_mpi_error(rc, "MPI_Comm_dup", err, errlen);
  }
  rc = MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
  if (rc != MPI_SUCCESS) {
    MPI_Comm_free(out);
    return dpt_comm_mpi_error(rc, "MPI_Comm_set_errhandler", err, errlen);
  }
  return DPT_OK;
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

/* --- node topology --- */

int dpt_comm_topology(MPI_Comm comm, dpt_topology *out, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  memset(out, 0, sizeof *out);
  MPI_Comm local = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
  if (rc != MPI_SUCCESS) return dpt_comm_mpi_error(rc, "MPI_Comm_split_type", err, errlen);
  MPI_Comm_set_errhandler(local, MPI_ERRORS_RETURN);
  MPI_Comm_rank(local, &out->local_rank);
  MPI_Comm_size(local, &out->local_size);
  /* nodes: one leader (local rank 0, the node's lowest rank) each; a leader's node index is
   * the number of leaders below it, which its node's ranks then receive from it */
  int leader = out->local_rank == 0, before = 0;
  const char *what = "MPI_Allreduce (node count)";
  rc = MPI_Allreduce(&leader, &out->nodes, 1, MPI_INT, MPI_SUM, comm);
  if (rc == MPI_SUCCESS) {
    what = "MPI_Allreduce (ranks per node)";
    rc = MPI_Allreduce(&out->local_size, &out->max_per_node, 1, MPI_INT, MPI_MAX, comm);
  }
  if (rc == MPI_SUCCESS) {
    what = "MPI_Exscan (node index)";
    rc = MPI_Exscan(&leader, &before, 1, MPI_INT, MPI_SUM, comm);
    if (rank == 0) before = 0; /* MPI leaves rank 0's result undefined */
  }
  if (rc == MPI_SUCCESS) {
    what = "MPI_Bcast (node index)";
    rc = MPI_Bcast(&before, 1, MPI_INT, 0, local);
  }
  out->node = before;
  MPI_Comm_free(&local);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, what, err, errlen);
}

/* --- small collectives --- */

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
  int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, comm);
  free(counts);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "parameter all-gather", err, errlen);
}

int dpt_comm_sum_rows(MPI_Comm comm, double *v, size_t len, int nrows, double *work, char *err,
                      size_t errlen) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  size_t mine = len * (size_t)nrows;
  if (mine > INT_MAX)
    return dpt_errf(err, errlen, DPT_EINVAL, "%zu values to gather (at most %d)", mine, INT_MAX);
  int rc = MPI_Allgather(v, (int)mine, MPI_DOUBLE, work, (int)mine, MPI_DOUBLE, comm);
  if (rc != MPI_SUCCESS) return dpt_comm_mpi_error(rc, "MPI_Allgather", err, errlen);
  size_t rows = (size_t)size * (size_t)nrows;
  for (size_t j = 0; j < len; j++) {
    double s = 0;
    for (size_t k = 0; k < rows; k++) s += work[k * len + j];
    v[j] = s;
  }
  return DPT_OK;
}

int dpt_comm_sum(MPI_Comm comm, double *v, int n, char *err, size_t errlen) {
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, comm);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "MPI_Allreduce", err, errlen);
}

int dpt_comm_max(MPI_Comm comm, double *v, int n, char *err, size_t errlen) {
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, comm);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "MPI_Allreduce", err, errlen);
}

int dpt_comm_min_int64(MPI_Comm comm, int64_t *v, int n, char *err, size_t errlen) {
  int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_MIN, comm);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "MPI_Allreduce", err, errlen);
}

int dpt_comm_sum_exact(MPI_Comm comm, int64_t *v, size_t n, char *err, size_t errlen) {
  const size_t most = (size_t)1 << 28; /* MPI counts are ints */
  for (size_t done = 0; done < n; done += most) {
    int cnt = (int)(n - done < most ? n - done : most);
    int rc = MPI_Allreduce(MPI_IN_PLACE, v + done, cnt, MPI_INT64_T, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return dpt_comm_mpi_error(rc, "MPI_Allreduce (exact sum)", err, errlen);
  }
  return DPT_OK;
}

int dpt_comm_bcast_int(MPI_Comm comm, int *v, int root, char *err, size_t errlen) {
  int rc = MPI_Bcast(v, 1, MPI_INT, root, comm);
  return rc == MPI_SUCCESS ? DPT_OK : dpt_comm_mpi_error(rc, "MPI_Bcast", err, errlen);
}

/* --- agreement on failure --- */

int dpt_comm_agree(MPI_Comm comm, int rc) {
  int worst = rc;
  if (MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return DPT_EMPI;
  return worst;
}

/* The message of rank `first` into err on every rank. */
static int bcast_message(MPI_Comm comm, int rank, int first, char *err, size_t errlen) {
  char msg[DPT_ERR_LEN];
  snprintf(msg, sizeof msg, "%s", rank == first ? err : "");
  int rc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, comm);
  if (rc != MPI_SUCCESS) return dpt_comm_mpi_error(rc, "MPI_Bcast (error message)", err, errlen);
  snprintf(err, errlen, "%s", msg);
  return DPT_OK;
}

void dpt_comm_share_error(MPI_Comm comm, int rc, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int mine = rc ? rank : size, first = size;
  int mrc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (mrc != MPI_SUCCESS) {
    dpt_comm_mpi_error(mrc, "MPI_Allreduce (error agreement)", err, errlen);
    return;
  }
  if (first == size) return;
  bcast_message(comm, rank, first, err, errlen);
}

int dpt_comm_agree_error(MPI_Comm comm, int rc, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int v[2] = {rc, rc ? rank : size}; /* the worst code, the lowest failing rank */
  int mrc = MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MIN, comm);
  if (mrc != MPI_SUCCESS)
    return dpt_comm_mpi_error(mrc, "MPI_Allreduce (error agreement)", err, errlen);
  if (v[1] == size) return DPT_OK;
  int brc = bcast_message(comm, rank, v[1], err, errlen);
  return brc ? brc : v[0];
}
