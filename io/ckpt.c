/* ckpt.c — HDF5 checkpoints: collective, atomic writes of parameters and sharded optimizer
 * state into W-independent global datasets, and validated reads of any rank's range.
 *
 * Invariants:
 * - The file layout is a function of the model and the solver only: every rank writes its
 *   range of the flat buffer into the tensors' datasets by hyperslab, so W and the ZeRO stage
 *   do not show in it, and a reader at any W reads its own range back.
 * - Nothing is written at the final path until the whole file is complete and fsync'ed: the
 *   file is written as "<path>.tmp" and renamed by rank 0 after every rank agreed it succeeded.
 * - Every dataset has block checksums (CKPT_BLOCK elements per block) in a sibling dataset
 *   /checksum/<group>/<name>: for block k, sum of w_i and sum of (i+1)*w_i modulo 2^64 over the
 *   32-bit words w_i of its floats. Both sums add up across ranks, so each rank computes its
 *   elements' share and one allreduce completes them; a reader verifies every block it touches.
 *   (HDF5's Fletcher32 filter would force chunked collective I/O, ten times slower here.)
 */
#define _GNU_SOURCE /* fallocate */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "io_internal.h"

/* 3: the root attribute meta_checksum covers every other root attribute */
#define CKPT_FORMAT_VERSION 3
#define CKPT_META_ATTR "meta_checksum"
/* Elements per checksum block (256 KiB of floats): the most a reader reads beyond its range at
 * each end of a tensor to verify it. */
#define CKPT_BLOCK ((size_t)1 << 16)

/* --- the part of a tensor inside [lo, lo+len) of the flat buffer --- */

/* Adds to fs the elements at flat positions [a, b) of the sub-array at fixed leading
 * coordinates at[0..k) of a row-major array of rank r and dims dims: a partial leading slab
 * (recursing into dim k+1), whole slabs along dim k, a partial trailing slab. At most 2r - 1
 * hyperslabs; for rank 2 these are a partial first row, whole rows and a partial last row. */
static void select_flat(hid_t fs, int r, const hsize_t *dims, int k, hsize_t *at, hsize_t a,
                        hsize_t b, int *first) {
  if (b <= a) return;
  hsize_t inner = 1; /* elements per index of dim k */
  for (int i = k + 1; i < r; i++) inner *= dims[i];
  hsize_t i0 = a / inner, i1 = b / inner, a0 = a % inner, b0 = b % inner;
  if (i0 == i1) { /* inside one index of dim k */
    at[k] = i0;
    select_flat(fs, r, dims, k + 1, at, a0, b0, first);
    return;
  }
  if (a0) { /* partial leading slab */
    at[k] = i0;
    select_flat(fs, r, dims, k + 1, at, a0, inner, first);
    i0++;
  }
  if (i1 > i0) { /* whole slabs i0 .. i1-1 */
    hsize_t start[DPT_MAX_RANK] = {0}, count[DPT_MAX_RANK];
    for (int i = 0; i < r; i++) {
      start[i] = i < k ? at[i] : i == k ? i0 : 0;
      count[i] = i < k ? 1 : i == k ? i1 - i0 : dims[i];
    }
    H5Sselect_hyperslab(fs, *first ? H5S_SELECT_SET : H5S_SELECT_OR, start, NULL, count, NULL);
    *first = 0;
  }
  if (b0) { /* partial trailing slab */
    at[k] = i1;
    select_flat(fs, r, dims, k + 1, at, 0, b0, first);
  }
}

/* Selects in file space fs the elements of tensor t (any rank, row-major) that lie in [lo, hi)
 * of the flat buffer. Returns how many. */
static size_t select_range(hid_t fs, const dpt_tensor *t, size_t lo, size_t hi) {
  size_t from = lo > t->offset ? lo : t->offset;
  size_t end = hi < t->offset + t->numel ? hi : t->offset + t->numel;
  H5Sselect_none(fs);
  if (end <= from) return 0;
  hsize_t dims[DPT_MAX_RANK], at[DPT_MAX_RANK] = {0};
  for (int i = 0; i < t->rank; i++) dims[i] = (hsize_t)t->dims[i];
  int first = 1;
  select_flat(fs, t->rank, dims, 0, at, from - t->offset, end - t->offset, &first);
  return end - from;
}

/* --- block checksums --- */

static size_t nblocks(const dpt_tensor *t) {
  return (t->numel + CKPT_BLOCK - 1) / CKPT_BLOCK;
}

/* Adds the contributions of x[0, n), elements [first, first+n) of the tensor, to sums[2k..].
 * Block by block, with 32x32->64-bit products, so the loop vectorises. */
static void checksum_add(uint64_t *sums, const float *x, size_t first, size_t n) {
  const uint32_t *w = (const uint32_t *)(const void *)x; /* the floats' bit patterns */
  size_t done = 0;
  while (done < n) {
    size_t i = first + done, k = i / CKPT_BLOCK;
    size_t take = (k + 1) * CKPT_BLOCK - i;
    if (take > n - done) take = n - done;
    uint32_t pos = (uint32_t)(i % CKPT_BLOCK) + 1;
    uint64_t s0 = 0, s1 = 0;
    const uint32_t *p = w + done;
    for (size_t j = 0; j < take; j++) {
      s0 += p[j];
      s1 += (uint64_t)(uint32_t)(pos + (uint32_t)j) * p[j];
    }
    sums[2 * k] += s0;
    sums[2 * k + 1] += s1;
    done += take;
  }
}

/* --- the metadata checksum ---
 * Block checksums cover the datasets; the root attributes (the position, the solver's and the
 * scheduler's state, the configuration) are covered by one more attribute, meta_checksum:
 * 64-bit FNV-1a, as 16 hex digits, over every other root attribute in name order (strcmp),
 * each as its name, a NUL, 't' and the text with its NUL, or 'n' and the 8 bytes of the number
 * as a little-endian IEEE double. A reader recomputes it from what the file holds, so a changed
 * value, a removed attribute or an added one all show. */

typedef struct {
  const char *name;
  int is_text;
  const char *text;
  double num;
} meta_entry;

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static int cmp_meta(const void *a, const void *b) {
  return strcmp(((const meta_entry *)a)->name, ((const meta_entry *)b)->name);
}

/* Sorts e[0, n) by name and returns the digest. */
static uint64_t meta_digest(meta_entry *e, size_t n) {
  qsort(e, n, sizeof *e, cmp_meta);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    h = fnv_bytes(h, e[i].name, strlen(e[i].name) + 1);
    if (e[i].is_text) {
      h = fnv_bytes(h, "t", 1);
      h = fnv_bytes(h, e[i].text, strlen(e[i].text) + 1);
    } else {
      uint64_t bits;
      memcpy(&bits, &e[i].num, sizeof bits);
      unsigned char le[8];
      for (int k = 0; k < 8; k++) le[k] = (unsigned char)(bits >> (8 * k));
      h = fnv_bytes(h, "n", 1);
      h = fnv_bytes(h, le, sizeof le);
    }
  }
  return h;
}

/* The digest of the root attributes write_all writes for v. -1 if out of memory. */
static int meta_digest_of_view(const dpt_ckpt_view *v, uint64_t *out) {
  size_t n = 2 + (size_t)v->ntext + (size_t)v->nscalar;
  meta_entry *e = calloc(n, sizeof *e);
  if (!e) return -1;
  e[0] = (meta_entry){"format_version", 0, NULL, CKPT_FORMAT_VERSION};
  e[1] = (meta_entry){"dpt_version", 1, DPT_VERSION, 0};
  size_t k = 2;
  for (int i = 0; i < v->ntext; i++)
    e[k++] = (meta_entry){v->texts[i].name, 1, v->texts[i].value, 0};
  for (int i = 0; i < v->nscalar; i++)
    e[k++] = (meta_entry){v->scalar_names[i], 0, NULL, v->scalars[i]};
  *out = meta_digest(e, n);
  free(e);
  return 0;
}

/* Root attribute names of a file, collected for the digest. */
#define META_MAX_ATTRS 4096
#define META_MAX_TEXT 4096
typedef struct {
  char **names;
  size_t n;
  int overflow;
} name_list;

static herr_t collect_name(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)obj, (void)info;
  name_list *l = data;
  if (!strcmp(name, CKPT_META_ATTR)) return 0;
  if (l->n == META_MAX_ATTRS || !(l->names[l->n] = strdup(name))) {
    l->overflow = 1;
    return 1; /* stop */
  }
  l->n++;
  return 0;
}

static int read_text_attr(hid_t obj, const char *name, char *out, size_t outlen);
static int read_number_attr(hid_t a, double *v);

/* Recomputes the digest of file f's root attributes and compares it with meta_checksum.
 * 0: it matches; else a message in err naming path and what is wrong. */
static int verify_meta(const char *path, hid_t f, char *err, size_t errlen) {
  char want[64] = "";
  if (H5Aexists(f, CKPT_META_ATTR) <= 0 || read_text_attr(f, CKPT_META_ATTR, want, sizeof want))
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: attribute '%s' is missing or not text "
                        "(not a checkpoint of this dpt, or damaged)",
                        path, CKPT_META_ATTR);
  name_list l = {calloc(META_MAX_ATTRS, sizeof(char *)), 0, 0};
  meta_entry *e = calloc(META_MAX_ATTRS, sizeof *e);
  int rc = DPT_OK;
  if (!l.names || !e) {
    rc = dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory checking the metadata", path);
    goto done;
  }
  if (H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_name, &l) < 0 || l.overflow) {
    rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                      "%s: cannot list the root attributes (more "
                      "than %d, or damaged)",
                      path, META_MAX_ATTRS);
    goto done;
  }
  for (size_t i = 0; i < l.n && !rc; i++) {
    e[i].name = l.names[i];
    hid_t a = H5Aopen(f, l.names[i], H5P_DEFAULT);
    hid_t type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    int is_text = type >= 0 && H5Tget_class(type) == H5T_STRING;
    if (type >= 0) H5Tclose(type);
    int bad;
    if (is_text) {
      char *t = malloc(META_MAX_TEXT);
      bad = !t || read_text_attr(f, l.names[i], t, META_MAX_TEXT);
      e[i] = (meta_entry){l.names[i], 1, t, 0};
    } else {
      bad = a < 0 || read_number_attr(a, &e[i].num);
    }
    if (a >= 0) H5Aclose(a);
    if (bad)
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: attribute '%s' is neither one text nor "
                        "one number",
                        path, l.names[i]);
  }
  if (!rc) { /* (sorting e leaves the texts to free where they are) */
    char got[32];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)meta_digest(e, l.n));
    if (strcmp(got, want))
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: the metadata checksum fails (root "
                        "attributes such as train.step or hp.lr were changed or corrupted)",
                        path);
  }
done:
  for (size_t i = 0; e && i < l.n; i++)
    if (e[i].is_text) free((char *)e[i].text);
  for (size_t i = 0; l.names && i < l.n; i++) free(l.names[i]);
  free(l.names);
  free(e);
  return rc;
}

/* --- writing --- */

/* Variable-length UTF-8 strings: h5py reads them as str. */
static int write_text(hid_t obj, const char *name, const char *value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a >= 0 ? H5Awrite(a, type, &value) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(type);
  return rc < 0 ? -1 : 0;
}

static int write_double(hid_t obj, const char *name, double v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_DOUBLE, &v) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc < 0 ? -1 : 0;
}

/* Elements per H5Dwrite call: each piece is checksummed just before it is written, so the
 * write copies it from cache rather than from memory. */
#define CKPT_PIECE ((size_t)1 << 18)

/* One dataset of a checkpoint: a tensor of the parameters or of an optimizer state vector. */
typedef struct {
  hid_t group, cgroup; /* where the dataset and its checksums go */
  const dpt_tensor *t;
  const float *src; /* this rank's range [lo, hi) of the flat buffer, from src[0] */
  hid_t d;          /* the dataset, while open */
  uint64_t *sums;   /* its block checksums, 2 per block */
} ckpt_item;

static hid_t create_tensor(hid_t g, const dpt_tensor *t) {
  hsize_t dims[DPT_MAX_RANK];
  for (int i = 0; i < t->rank; i++) dims[i] = (hsize_t)t->dims[i];
  hid_t sp = H5Screate_simple(t->rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER); /* every element is written: no fill pass */
  hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return d;
}

/* Writes this rank's part of it [lo, hi) piece by piece, and adds the pieces' checksums.
 * Independent: no other rank takes part. */
static int write_own(ckpt_item *it, size_t lo, size_t hi, hid_t dxpl) {
  const dpt_tensor *t = it->t;
  size_t from = lo > t->offset ? lo : t->offset;
  size_t end = hi < t->offset + t->numel ? hi : t->offset + t->numel;
  hid_t fs = H5Dget_space(it->d);
  int rc = fs < 0 ? -1 : 0;
  for (size_t a = from; a < end && !rc; a += CKPT_PIECE) {
    size_t b = end - a > CKPT_PIECE ? a + CKPT_PIECE : end;
    const float *p = it->src + (a - lo);
    checksum_add(it->sums, p, a - t->offset, b - a);
    hsize_t n = b - a;
    select_range(fs, t, a, b);
    hid_t ms = H5Screate_simple(1, &n, NULL);
    if (H5Dwrite(it->d, H5T_NATIVE_FLOAT, ms, fs, dxpl, p) < 0) rc = -1;
    H5Sclose(ms);
  }
  if (fs >= 0) H5Sclose(fs);
  return rc;
}

/* The block checksums of one dataset, complete on every rank; rank 0 writes them. Collective. */
static int write_sums(const ckpt_item *it, int rank, hid_t dxpl) {
  hsize_t cdims[2] = {nblocks(it->t), 2};
  hid_t csp = H5Screate_simple(2, cdims, NULL);
  hid_t cd = H5Dcreate2(it->cgroup, it->t->name, H5T_STD_U64LE, csp, H5P_DEFAULT, H5P_DEFAULT,
                        H5P_DEFAULT);
  int rc = cd < 0 ? -1 : 0;
  if (cd >= 0) {
    hid_t cms = H5Screate_simple(2, cdims, NULL);
    if (rank) H5Sselect_none(csp), H5Sselect_none(cms);
    if (H5Dwrite(cd, H5T_NATIVE_UINT64, cms, csp, dxpl, it->sums) < 0) rc = -1;
    H5Sclose(cms);
    H5Dclose(cd);
  }
  H5Sclose(csp);
  return rc;
}

static hid_t make_group(hid_t parent, const char *name, int *rc) {
  hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) *rc = -1;
  return g;
}

/* An MPI result as a dpt error: DPT_EMPI with MPI's message, naming what and the file; 0 when
 * the call succeeded. After a failed collective the peers cannot be trusted. */
static int mpi_failed(int mrc, const char *what, const char *path, char *err, size_t errlen) {
  if (mrc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(mrc, msg, &len);
  return dpt_io__errf(err, errlen, DPT_EMPI, "checkpoint '%s': %s failed: %s", path, what, msg);
}

/* Three phases, so that ranks never wait for each other while the data goes out: every rank
 * creates every dataset (collective metadata), writes its own ranges (independent I/O, the
 * bulk of the time), then one allreduce completes all block checksums and rank 0 writes them.
 * A local failure does not stop the phases: every rank makes the same collective calls, and
 * the failure is agreed on after closing the file. */
static int write_all(hid_t f, MPI_Comm comm, const dpt_ckpt_view *v) {
  int rank, rc = 0;
  MPI_Comm_rank(comm, &rank);
  size_t lo = v->lo, hi = v->lo + v->len, nt = (size_t)v->ntensors;
  size_t nb = (size_t)v->nbuffers, nvitems = nt * (size_t)(1 + v->nvec), nitems = nvitems + nb;
  size_t nsums = 0, bsums = 0;
  for (size_t t = 0; t < nt; t++) nsums += 2 * nblocks(&v->tensors[t]);
  for (size_t b = 0; b < nb; b++) bsums += 2 * nblocks(&v->buffers[b]);
  ckpt_item *items = calloc(nitems + 1, sizeof *items);
  uint64_t *sums = calloc(nsums * (size_t)(1 + v->nvec) + bsums + 1, sizeof *sums);
  hid_t *groups = calloc(4 + 2 * (size_t)v->nvec, sizeof *groups);
  int ok = items && sums && groups, all = 0;
  /* before any collective HDF5 call; an MPI failure counts as a failed write */
  if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) all = 0;
  if (!all) {
    free(items), free(sums), free(groups);
    return -1;
  }
  hid_t c = make_group(f, "checksum", &rc);
  groups[0] = make_group(f, "model", &rc);
  groups[1] = make_group(c, "model", &rc);
  hid_t og = make_group(f, "optim", &rc), cog = make_group(c, "optim", &rc);
  for (int s = 0; s < v->nvec; s++) {
    groups[2 + 2 * s] = make_group(og, v->vec_names[s], &rc);
    groups[3 + 2 * s] = make_group(cog, v->vec_names[s], &rc);
  }
  int ng = 2 + 2 * v->nvec; /* groups in use */
  if (nb) {
    groups[ng] = make_group(f, "buffers", &rc);
    groups[ng + 1] = make_group(c, "buffers", &rc);
  }
  uint64_t *next = sums;
  for (size_t i = nvitems; i < nitems; i++) { /* rank 0 writes the buffers (all ranks hold them) */
    ckpt_item *it = &items[i];
    it->group = groups[ng], it->cgroup = groups[ng + 1];
    it->t = &v->buffers[i - nvitems];
    it->src = v->buffer_data;
    it->sums = next;
    next += 2 * nblocks(it->t);
    it->d = create_tensor(it->group, it->t);
    if (it->d < 0) rc = -1;
  }
  if (nb) ng += 2;
  for (size_t i = 0; i < nvitems; i++) {
    size_t s = i / nt; /* 0: the parameters, 1 + k: state vector k */
    ckpt_item *it = &items[i];
    it->group = groups[2 * s], it->cgroup = groups[2 * s + 1];
    it->t = &v->tensors[i % nt];
    it->src = s ? v->vecs[s - 1] : v->params + lo;
    it->sums = next;
    next += 2 * nblocks(it->t);
    it->d = create_tensor(it->group, it->t);
    if (it->d < 0) rc = -1;
  }
  hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
  /* contiguous, unfiltered, independent: faster here than two-phase collective buffering,
   * measured by bench_ckpt */
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT);
  for (size_t i = 0; i < nvitems; i++)
    if (items[i].d >= 0) rc |= write_own(&items[i], lo, hi, dxpl);
  for (size_t i = nvitems; i < nitems; i++)
    if (items[i].d >= 0) rc |= write_own(&items[i], 0, rank ? 0 : v->nbuffer_floats, dxpl);
  if (v->written) v->written(v->written_ctx);
  for (size_t i = 0; i < nitems; i++)
    if (items[i].d >= 0) H5Dclose(items[i].d);
  if (MPI_Allreduce(MPI_IN_PLACE, sums, (int)(next - sums), MPI_UINT64_T, MPI_SUM, comm) !=
      MPI_SUCCESS)
    rc = -1; /* the sums are not known: the file fails (its checksums would be wrong) */
  for (size_t i = 0; i < nitems; i++) rc |= write_sums(&items[i], rank, dxpl);
  H5Pclose(dxpl);
  for (int k = ng - 1; k >= 0; k--)
    if (groups[k] > 0) H5Gclose(groups[k]);
  if (cog >= 0) H5Gclose(cog);
  if (og >= 0) H5Gclose(og);
  if (c >= 0) H5Gclose(c);
  free(items), free(sums), free(groups);
  /* attributes are collective metadata: every rank writes the same values, failed or not */
  rc |= write_double(f, "format_version", CKPT_FORMAT_VERSION);
  rc |= write_text(f, "dpt_version", DPT_VERSION);
  for (int i = 0; i < v->ntext; i++) rc |= write_text(f, v->texts[i].name, v->texts[i].value);
  for (int i = 0; i < v->nscalar; i++) rc |= write_double(f, v->scalar_names[i], v->scalars[i]);
  uint64_t digest = 0;
  char hex[32];
  rc |= meta_digest_of_view(v, &digest);
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)digest);
  rc |= write_text(f, CKPT_META_ATTR, hex);
  return rc;
}

/* --- space, and what the OS said ---
 * HDF5 reports a failed write without the OS error, and a file whose close failed stays in its
 * list of open files, which it closes again inside MPI_Finalize on a driver already torn down
 * (a segfault). So rank 0 claims the space first (a file that cannot be written is refused
 * before HDF5 opens it, with the OS's own error), and if a write fails anyway (another writer
 * took the space meanwhile) it frees the space held back for the metadata and what the partial
 * file holds before the collective close, so that the close can succeed. (A metadata write
 * that fails inside parallel HDF5 is not survivable: its ranks then disagree on the collective
 * calls of the close; --watchdog ends such a job, as the write is a published wait.) */

/* An upper bound of the file's size: the floats, the checksum tables, and room for HDF5's
 * object headers and attributes (CKPT_META_ROOM per object, measured at under 2 KiB). */
#define CKPT_META_ROOM 4096
/* The metadata part of it: what the close may still have to write. */
static uint64_t meta_bytes(const dpt_ckpt_view *v) {
  uint64_t copies = 1 + (uint64_t)v->nvec;
  uint64_t objects =
      2 * (uint64_t)v->ntensors * copies + 10 + (uint64_t)v->nvec + 2 * (uint64_t)v->nbuffers;
  return objects * CKPT_META_ROOM + (uint64_t)(v->ntext + v->nscalar + 4) * 256 + 65536;
}

static uint64_t estimate_bytes(const dpt_ckpt_view *v) {
  uint64_t data = 0, sums = 0, copies = 1 + (uint64_t)v->nvec;
  for (int t = 0; t < v->ntensors; t++) {
    data += 4 * (uint64_t)v->tensors[t].numel;
    sums += 16 * (uint64_t)nblocks(&v->tensors[t]);
  }
  uint64_t bdata = 0;
  for (int b = 0; b < v->nbuffers; b++)
    bdata += 4 * (uint64_t)v->buffers[b].numel + 16 * (uint64_t)nblocks(&v->buffers[b]);
  uint64_t objects =
      2 * (uint64_t)v->ntensors * copies + 10 + (uint64_t)v->nvec + 2 * (uint64_t)v->nbuffers;
  return copies * (data + sums) + bdata + objects * CKPT_META_ROOM +
         (uint64_t)(v->ntext + v->nscalar + 4) * 256;
}

/* Creates (or truncates) file and allocates `bytes` in it; 0 or the errno. */
static int reserve(const char *file, uint64_t bytes) {
  int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) return errno;
  int e = fallocate(fd, 0, 0, (off_t)bytes) ? errno : 0;
  if (e == EOPNOTSUPP || e == ENOSYS || e == EINVAL) { /* no fallocate here: ask statvfs */
    struct statvfs vfs;
    e = !fstatvfs(fd, &vfs) && (uint64_t)vfs.f_bavail * vfs.f_frsize < bytes ? ENOSPC : 0;
  }
  close(fd);
  if (e) unlink(file);
  return e;
}

/* Rank 0, before the collective create: tmp must be a regular file (or absent), creatable, and
 * room for `bytes` must exist on its file system; and room (room_bytes, "<tmp>.room") is held
 * back for HDF5's metadata, to be released if the data cannot be written (so that the close
 * still can: see above). */
static int claim_space(const char *tmp, const char *room, uint64_t bytes, uint64_t room_bytes,
                       char *err, size_t errlen) {
  struct stat st;
  if (!lstat(tmp, &st) && !S_ISREG(st.st_mode))
    return dpt_io__errf(err, errlen, DPT_EIO,
                        "cannot write checkpoint '%s': it exists and "
                        "is not a regular file",
                        tmp);
  int e = reserve(tmp, bytes);
  if (!e && (e = reserve(room, room_bytes))) unlink(tmp);
  if (e)
    return dpt_io__errf(err, errlen, DPT_EIO,
                        "cannot write checkpoint '%s': %s (it needs "
                        "about %.1f MiB)",
                        tmp, strerror(e), (double)(bytes + room_bytes) / 1048576.0);
  return DPT_OK;
}

static const char *diagnose(const char *file) {
  return dpt_io__full(file);
}

static int fsync_path(const char *path) {
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

/* The view's tensors are well formed: rank 1..DPT_MAX_RANK, numel the product of the dims,
 * inside [0, nparams). Every rank has the same table, so every rank finds the same answer. */
static int check_tensors(const char *path, const dpt_ckpt_view *v, char *err, size_t errlen) {
  for (int i = 0; i < v->ntensors; i++) {
    const dpt_tensor *t = &v->tensors[i];
    uint64_t n = 1;
    int ok = t->name && t->name[0] && t->rank >= 1 && t->rank <= DPT_MAX_RANK;
    for (int k = 0; ok && k < t->rank; k++)
      ok = t->dims[k] > 0 && !__builtin_mul_overflow(n, (uint64_t)t->dims[k], &n);
    if (!ok || n != t->numel || t->offset > v->nparams || t->numel > v->nparams - t->offset)
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "checkpoint '%s': tensor %d ('%s') has rank %d, %zu elements at %zu "
                          "(expected rank 1 to %d, dims whose product is its size, inside the "
                          "%zu parameters)",
                          path, i, t->name ? t->name : "(null)", t->rank, t->numel, t->offset,
                          DPT_MAX_RANK, v->nparams);
  }
  return DPT_OK;
}

int dpt_ckpt_write(const char *path, MPI_Comm comm, const dpt_ckpt_view *v, char *err,
                   size_t errlen) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  int bad = check_tensors(path, v, err, errlen);
  if (bad) return bad;
  char tmp[1100], room[1110];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  snprintf(room, sizeof room, "%s.room", tmp);
  uint64_t room_bytes = meta_bytes(v);
  int status =
      rank == 0 ? claim_space(tmp, room, estimate_bytes(v), room_bytes, err, errlen) : DPT_OK;
  int mrc = MPI_Bcast(&status, 1, MPI_INT, 0, comm);
  if (mpi_failed(mrc, "MPI_Bcast", path, err, errlen)) return DPT_EMPI;
  if (status) {
    if (rank != 0)
      dpt_io__errf(err, errlen, status, "cannot write checkpoint '%s' (see rank 0)", path);
    return status;
  }
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  int ok = f >= 0, all = ok;
  const char *why = ""; /* rank 0: the OS's word for a failure, "" if it has none */
  if (f >= 0) {
    ok = write_all(f, comm, v) == 0;
    /* every writer syncs its data (MPI_File_sync), which a parallel file system needs */
    if (ok && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) ok = 0;
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) all = ok = 0;
    /* a failed write: free the partial file's space so that the close can write its metadata
     * (the close must succeed: see above) */
    if (!all && rank == 0) {
      why = diagnose(tmp);
      unlink(room);
      if (truncate(tmp, 0)) why = why[0] ? why : strerror(errno);
    }
    if (H5Fclose(f) < 0) ok = 0; /* collective; f is not used again, whatever it returned */
  }
  dpt_io__quiet_end(&q);
  mrc = MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, comm);
  if (mpi_failed(mrc, "MPI_Allreduce", path, err, errlen)) {
    if (rank == 0) unlink(room), unlink(tmp);
    return DPT_EMPI;
  }
  if (rank == 0) unlink(room);
  if (rank == 0) { /* rank 0 makes it durable and visible */
    if (!all) {
      if (!why[0]) why = diagnose(tmp);
      unlink(tmp);
      status = dpt_io__errf(err, errlen, DPT_EIO, "cannot write checkpoint '%s'%s%s", tmp,
                            why[0] ? ": " : "", why);
    } else if (fsync_path(tmp) || rename(tmp, path)) {
      status = dpt_io__errf(err, errlen, DPT_EIO, "cannot commit checkpoint '%s': %s", path,
                            strerror(errno));
      unlink(tmp);
    } else {
      char dir[1100];
      snprintf(dir, sizeof dir, "%s", path);
      char *slash = strrchr(dir, '/');
      if (slash) *slash = 0;
      fsync_path(slash ? dir : ".");
    }
  }
  mrc = MPI_Bcast(&status, 1, MPI_INT, 0, comm);
  if (mpi_failed(mrc, "MPI_Bcast", path, err, errlen)) return DPT_EMPI;
  if (status && rank != 0)
    dpt_io__errf(err, errlen, status, "cannot write checkpoint '%s' (see rank 0)", path);
  return status;
}

/* --- reading --- */

/* 1 if attribute a holds exactly one value (scalar or a 1-element array): every attribute dpt
 * writes does, and H5Aread of anything larger into one value would overrun it. */
static int attr_single(hid_t a) {
  hid_t sp = H5Aget_space(a);
  hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (sp >= 0) H5Sclose(sp);
  return n == 1;
}

/* Reads the single numeric value of attribute a as a double; -1 if it is not one number. */
static int read_number_attr(hid_t a, double *v) {
  hid_t type = H5Aget_type(a);
  H5T_class_t c = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  if (type >= 0) H5Tclose(type);
  if ((c != H5T_INTEGER && c != H5T_FLOAT) || !attr_single(a)) return -1;
  return H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0 ? -1 : 0;
}

/* Fills dims[0..rank) of dataset space fs and returns its rank, or -1 when the rank is not
 * 1 .. DPT_MAX_RANK (dims is left all 0): a checkpoint's tensors and checksum tables are never
 * anything else. */
static int rank_and_dims(hid_t fs, hsize_t dims[DPT_MAX_RANK]) {
  for (int i = 0; i < DPT_MAX_RANK; i++) dims[i] = 0;
  int rank = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
  if (rank < 1 || rank > DPT_MAX_RANK) return -1;
  return H5Sget_simple_extent_dims(fs, dims, NULL) < 0 ? -1 : rank;
}

/* "[2, 3, 4]" into buf: the shape of rank dims (hsize_t from a file, or a tensor's int64). */
static void shape_text(char *buf, size_t len, int rank, const hsize_t *fdims,
                       const int64_t *tdims) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? ", " : "[",
                           fdims ? (long long)fdims[i] : (long long)tdims[i]);
  if (at < len) snprintf(buf + at, len - at, rank ? "]" : "[]");
}

/* "<a>/<b>", malloc'ed (tensor names have any length); NULL when out of memory. */
static char *join_path(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", a, b);
  return p;
}

static int read_text_attr(hid_t obj, const char *name, char *out, size_t outlen) {
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t type = H5Aget_type(a);
  int rc = -1, one = attr_single(a); /* one text, not an array of them */
  if (one && H5Tget_class(type) == H5T_STRING && H5Tis_variable_str(type) > 0) {
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(type));
    char *v = NULL;
    if (H5Aread(a, mt, &v) >= 0 && v) {
      snprintf(out, outlen, "%s", v);
      H5free_memory(v);
      rc = 0;
    }
    H5Tclose(mt);
  } else if (one && H5Tget_class(type) == H5T_STRING && H5Tget_size(type) < outlen) {
    size_t size = H5Tget_size(type);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, size);
    rc = H5Aread(a, mt, out) < 0 ? -1 : 0;
    out[size] = 0;
    H5Tclose(mt);
  }
  H5Tclose(type);
  H5Aclose(a);
  return rc;
}

/* Checks x[0, n), elements [first, first+n) of the numel-element dataset at dpath (whole
 * blocks only), against /checksum/<dpath>. 0 if every block matches. */
static int verify_blocks(hid_t f, const char *dpath, const float *x, size_t first, size_t n,
                         size_t numel) {
  if (H5Lexists(f, "checksum", H5P_DEFAULT) <= 0) return -1;
  char *cpath = join_path("checksum", dpath);
  hid_t cd = cpath && H5Oexists_by_name(f, cpath, H5P_DEFAULT) > 0 ? H5Dopen2(f, cpath, H5P_DEFAULT)
                                                                   : H5I_INVALID_HID;
  free(cpath);
  if (cd < 0) return -1;
  size_t nb = (numel + CKPT_BLOCK - 1) / CKPT_BLOCK;
  hid_t cs = H5Dget_space(cd);
  hsize_t cdims[DPT_MAX_RANK];
  int shape_ok = rank_and_dims(cs, cdims) == 2 && cdims[0] == nb && cdims[1] == 2;
  if (cs >= 0) H5Sclose(cs);
  uint64_t *want = shape_ok ? malloc(2 * nb * sizeof *want) : NULL;
  uint64_t *got = shape_ok ? calloc(2 * nb, sizeof *got) : NULL;
  int rc = want && got && H5Dread(cd, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, want) >= 0
               ? 0
               : -1;
  H5Dclose(cd);
  if (!rc) {
    checksum_add(got, x, first, n);
    for (size_t k = first / CKPT_BLOCK; k * CKPT_BLOCK < first + n; k++)
      if (got[2 * k] != want[2 * k] || got[2 * k + 1] != want[2 * k + 1]) rc = -1;
  }
  free(want);
  free(got);
  return rc;
}

/* Reads the part of tensor t in [lo, hi) of the flat buffer into dst (which starts at flat
 * element dst_lo), reading whole checksum blocks around it and verifying them. */
static int read_tensor(const char *path, hid_t f, const char *gname, const dpt_tensor *t,
                       float *dst, size_t dst_lo, size_t lo, size_t hi, char *err, size_t errlen) {
  char *dpath = join_path(gname, t->name);
  if (!dpath) return dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory", path);
  if (H5Oexists_by_name(f, dpath, H5P_DEFAULT) <= 0) {
    int rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: /%s is missing (expected the tensor of this model)", path, dpath);
    free(dpath);
    return rc;
  }
  hid_t d = H5Dopen2(f, dpath, H5P_DEFAULT);
  hid_t fs = H5Dget_space(d);
  hsize_t dims[DPT_MAX_RANK];
  int rank = rank_and_dims(fs, dims);
  int rc = DPT_OK, same = rank == t->rank;
  for (int i = 0; same && i < rank; i++) same = (hsize_t)t->dims[i] == dims[i];
  size_t from = lo > t->offset ? lo : t->offset;
  size_t end = hi < t->offset + t->numel ? hi : t->offset + t->numel;
  char want[200], got[200];
  shape_text(want, sizeof want, t->rank, NULL, t->dims);
  if (rank < 0) {
    rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                      "%s: /%s is not a 1-D to %d-D dataset (the "
                      "model's tensor is %s)",
                      path, dpath, DPT_MAX_RANK, want);
  } else if (!same) {
    shape_text(got, sizeof got, rank, dims, NULL);
    rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                      "%s: /%s is %d-D %s but the model's tensor is %d-D %s (a checkpoint of "
                      "another model?)",
                      path, dpath, rank, got, t->rank, want);
  } else if (from < end) {
    /* widen to whole blocks, in tensor coordinates */
    size_t a = (from - t->offset) / CKPT_BLOCK * CKPT_BLOCK;
    size_t b = (end - t->offset + CKPT_BLOCK - 1) / CKPT_BLOCK * CKPT_BLOCK;
    if (b > t->numel) b = t->numel;
    float *tmp = malloc((b - a) * sizeof *tmp);
    size_t n = select_range(fs, t, t->offset + a, t->offset + b);
    hsize_t mdim = n;
    hid_t ms = H5Screate_simple(1, &mdim, NULL);
    if (!tmp || H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, tmp) < 0)
      rc = dpt_io__errf(err, errlen, DPT_EIO,
                        "%s: cannot read /%s: the file is truncated "
                        "or corrupted",
                        path, dpath);
    else if (verify_blocks(f, dpath, tmp, a, b - a, t->numel))
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: /%s fails its checksum: the file is "
                        "corrupted",
                        path, dpath);
    else
      memcpy(dst + (from - dst_lo), tmp + (from - t->offset - a), (end - from) * sizeof *tmp);
    H5Sclose(ms);
    free(tmp);
  }
  H5Sclose(fs);
  H5Dclose(d);
  free(dpath);
  return rc;
}

static int read_all(const char *path, hid_t f, const dpt_ckpt_view *v, int params_only, char *err,
                    size_t errlen) {
  char buf[256];
  for (int i = 0; i < v->ntext; i++) {
    if (strcmp(v->texts[i].name, "solver") && strcmp(v->texts[i].name, "model")) continue;
    if (read_text_attr(f, v->texts[i].name, buf, sizeof buf))
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: attribute '%s' is missing (is this a dpt checkpoint?)", path,
                          v->texts[i].name);
    if (strcmp(buf, v->texts[i].value) && (!params_only || strcmp(v->texts[i].name, "solver")))
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: was saved with %s '%s' but this run uses '%s'", path,
                          v->texts[i].name, buf, v->texts[i].value);
  }
  double version = 0;
  hid_t va = H5Aexists(f, "format_version") > 0 ? H5Aopen(f, "format_version", H5P_DEFAULT) : -1;
  if (va >= 0) {
    int bad = read_number_attr(va, &version);
    H5Aclose(va);
    if (bad)
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: attribute 'format_version' is not "
                          "one number (expected %d)",
                          path, CKPT_FORMAT_VERSION);
  }
  if (version != CKPT_FORMAT_VERSION)
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: checkpoint format version %g, this dpt "
                        "reads version %d",
                        path, version, CKPT_FORMAT_VERSION);
  size_t lo = v->lo, hi = v->lo + v->len;
  if (H5Lexists(f, "model", H5P_DEFAULT) <= 0)
    return dpt_io__errf(err, errlen, DPT_EINVAL, "%s: group /model is missing", path);
  int rc = 0;
  for (int t = 0; t < v->ntensors && !rc; t++)
    rc = read_tensor(path, f, "model", &v->tensors[t], v->params, 0, lo, hi, err, errlen);
  if (!rc && v->nbuffers && H5Lexists(f, "buffers", H5P_DEFAULT) <= 0)
    return dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: group /buffers is missing (expected the model's buffers, %s ...)",
                        path, v->buffers[0].name);
  for (int b = 0; b < v->nbuffers && !rc; b++)
    rc = read_tensor(path, f, "buffers", &v->buffers[b], v->buffer_data, 0, 0, v->nbuffer_floats,
                     err, errlen);
  if (rc || params_only) return rc;
  for (int s = 0; s < v->nvec && !rc; s++) {
    char gname[128];
    snprintf(gname, sizeof gname, "optim/%s", v->vec_names[s]);
    if (H5Lexists(f, "optim", H5P_DEFAULT) <= 0 || H5Lexists(f, gname, H5P_DEFAULT) <= 0)
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: /%s is missing (expected the solver's state '%s')", path, gname,
                          v->vec_names[s]);
    for (int t = 0; t < v->ntensors && !rc; t++)
      rc = read_tensor(path, f, gname, &v->tensors[t], v->vecs[s], lo, lo, hi, err, errlen);
  }
  for (int i = 0; i < v->nscalar && !rc; i++) {
    if (H5Aexists(f, v->scalar_names[i]) <= 0)
      return dpt_io__errf(err, errlen, DPT_EINVAL, "%s: attribute '%s' is missing", path,
                          v->scalar_names[i]);
    hid_t a = H5Aopen(f, v->scalar_names[i], H5P_DEFAULT);
    if (read_number_attr(a, &v->scalars[i]))
      rc = dpt_io__errf(err, errlen, DPT_EINVAL, "%s: attribute '%s' is not one number", path,
                        v->scalar_names[i]);
    H5Aclose(a);
  }
  return rc;
}

int dpt_ckpt_read(const char *path, const dpt_ckpt_view *v, int params_only, char *err,
                  size_t errlen) {
  int rc = dpt_io__regular(path, "checkpoint", err, errlen);
  if (rc) return rc;
  if (access(path, R_OK))
    return dpt_io__errf(err, errlen, DPT_EIO, "cannot open checkpoint '%s': %s", path,
                        strerror(errno));
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  if (H5Fis_hdf5(path) <= 0) {
    rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                      "'%s' is not an HDF5 file (truncated or not a dpt checkpoint)", path);
  } else {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "cannot open checkpoint '%s' (truncated "
                        "or corrupted)",
                        path);
    } else {
      rc = read_all(path, f, v, params_only, err, errlen);
      H5Fclose(f);
    }
  }
  dpt_io__quiet_end(&q);
  return rc;
}

/* Opens a checkpoint read-only for a look at it (the caller holds HDF5's messages quiet): a
 * regular file that HDF5 reads. The file's handle, or -1 with *rc and the message set. */
static hid_t open_for_reading(const char *path, int *rc, char *err, size_t errlen) {
  hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
  if (f < 0)
    *rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                       "cannot open checkpoint '%s' (missing, truncated or not HDF5)", path);
  return f;
}

int dpt_ckpt_verify_meta(const char *path, char *err, size_t errlen) {
  int rc = dpt_io__regular(path, "checkpoint", err, errlen);
  if (rc) return rc;
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  hid_t f = open_for_reading(path, &rc, err, errlen);
  if (f >= 0) rc = verify_meta(path, f, err, errlen);
  if (f >= 0) H5Fclose(f);
  dpt_io__quiet_end(&q);
  return rc;
}

/* --- inspection --- */

typedef struct {
  dpt_ckpt_item_fn fn;
  void *ctx;
  int bad;
  int meta_ok; /* the metadata checksum matched */
} walk_ctx;

static herr_t on_attr(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  walk_ctx *w = data;
  char value[256] = "";
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t type = H5Aget_type(a);
  if (H5Tget_class(type) == H5T_STRING) {
    read_text_attr(obj, name, value, sizeof value);
  } else {
    double v = 0;
    if (read_number_attr(a, &v))
      snprintf(value, sizeof value, "(not one number)");
    else
      snprintf(value, sizeof value, "%.17g", v);
  }
  H5Tclose(type);
  H5Aclose(a);
  if (!strcmp(name, CKPT_META_ATTR))
    snprintf(value + strlen(value), sizeof value - strlen(value), " %s",
             w->meta_ok ? "ok" : "FAILED");
  w->fn(w->ctx, name, value);
  return 0;
}

static herr_t on_object(hid_t root, const char *name, const H5O_info_t *info, void *data) {
  walk_ctx *w = data;
  if (info->type != H5O_TYPE_DATASET || !strncmp(name, "checksum/", 9)) return 0;
  hid_t d = H5Dopen2(root, name, H5P_DEFAULT);
  hid_t fs = H5Dget_space(d);
  hsize_t dims[DPT_MAX_RANK];
  int rank = rank_and_dims(fs, dims);
  hssize_t n = rank < 0 ? -1 : H5Sget_simple_extent_npoints(fs);
  size_t bytes = 0;
  float *buf = n < 0 || __builtin_mul_overflow((size_t)(n > 0 ? n : 1), sizeof(float), &bytes)
                   ? NULL
                   : malloc(bytes);
  int ok = buf && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0 &&
           verify_blocks(root, name, buf, 0, (size_t)n, (size_t)n) == 0;
  free(buf);
  char *key = join_path("", name), value[256], shape[200];
  shape_text(shape, sizeof shape, rank, dims, NULL);
  if (rank < 0)
    snprintf(value, sizeof value, "not a 1-D to %d-D dataset", DPT_MAX_RANK);
  else
    snprintf(value, sizeof value, "%s checksum %s", shape, ok ? "ok" : "FAILED");
  w->bad |= !ok || !key;
  if (key) w->fn(w->ctx, key, value);
  free(key);
  H5Sclose(fs);
  H5Dclose(d);
  return 0;
}

int dpt_ckpt_describe(const char *path, dpt_ckpt_item_fn fn, void *ctx, char *err, size_t errlen) {
  int rc = dpt_io__regular(path, "checkpoint", err, errlen);
  if (rc) return rc;
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  hid_t f = open_for_reading(path, &rc, err, errlen);
  if (f >= 0) {
    char merr[DPT_ERR_LEN];
    int mrc = verify_meta(path, f, merr, sizeof merr);
    walk_ctx w = {fn, ctx, 0, mrc == 0};
    H5Aiterate2(f, H5_INDEX_CRT_ORDER, H5_ITER_NATIVE, NULL, on_attr, &w);
    H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, on_object, &w);
    if (mrc)
      rc = dpt_io__errf(err, errlen, mrc, "%s", merr);
    else if (w.bad)
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: some datasets fail their checksum "
                        "(the file is corrupted)",
                        path);
    H5Fclose(f);
  }
  dpt_io__quiet_end(&q);
  return rc;
}

typedef struct {
  dpt_ckpt_item_fn fn;
  void *ctx;
} texts_ctx;

static herr_t on_text(hid_t obj, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  texts_ctx *c = data;
  char value[256];
  if (!read_text_attr(obj, name, value, sizeof value)) c->fn(c->ctx, name, value);
  return 0;
}

int dpt_ckpt_texts(const char *path, dpt_ckpt_item_fn fn, void *ctx, char *err, size_t errlen) {
  int rc = dpt_io__regular(path, "checkpoint", err, errlen);
  if (rc) return rc;
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  hid_t f = open_for_reading(path, &rc, err, errlen);
  if (f >= 0) {
    texts_ctx c = {fn, ctx};
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, on_text, &c);
    H5Fclose(f);
  }
  dpt_io__quiet_end(&q);
  return rc;
}

int dpt_ckpt_text_get(const char *path, const char *name, char *out, size_t outlen) {
  if (dpt_io__regular(path, "checkpoint", NULL, 0)) return DPT_EINVAL;
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int rc = f < 0 ? -1 : read_text_attr(f, name, out, outlen);
  if (f >= 0) H5Fclose(f);
  dpt_io__quiet_end(&q);
  return rc ? DPT_EINVAL : DPT_OK;
}
