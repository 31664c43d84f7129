/* fuzz_util.c — see fuzz_util.h. */
#define _GNU_SOURCE /* mkdtemp, nftw, RTLD_NEXT */
#include "fuzz_util.h"

#include <dlfcn.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- typed values from the input --- */

uint8_t fz_u8(fz_in *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

uint32_t fz_u32(fz_in *in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v = v << 8 | fz_u8(in);
  return v;
}

uint64_t fz_u64(fz_in *in) {
  uint64_t hi = fz_u32(in);
  return hi << 32 | fz_u32(in);
}

int64_t fz_range(fz_in *in, int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  uint64_t span = (uint64_t)hi - (uint64_t)lo, v = 0;
  for (uint64_t s = span; s; s >>= 8) v = v << 8 | fz_u8(in);
  if (span != UINT64_MAX) v %= span + 1;
  return (int64_t)((uint64_t)lo + v);
}

double fz_double(fz_in *in) {
  uint64_t bits = fz_u64(in);
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

int fz_bool(fz_in *in) {
  return fz_u8(in) & 1;
}

const uint8_t *fz_bytes(fz_in *in, size_t max, size_t *len) {
  size_t want = (size_t)fz_range(in, 0, 65535);
  if (want > max) want = max;
  if (want > in->n) want = in->n;
  const uint8_t *p = in->p;
  in->p += want;
  in->n -= want;
  *len = want;
  return p;
}

/* --- scratch directory --- */

static char g_dir[512];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

static void remove_dir(void) {
  nftw(g_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fz_path(char *buf, const char *name) {
  if (!g_dir[0]) {
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dpt-fuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_dir)) {
      perror("fuzz: mkdtemp");
      abort();
    }
    atexit(remove_dir);
  }
  snprintf(buf, 4096, "%s/%s", g_dir, name);
  return buf;
}

void fz_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
    perror(path);
    abort();
  }
}

void fz_init(void) {
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* dpt silences its own calls; the harness's too */
}

void fz_check_no_open_hdf5(const char *what) {
  ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (n != 0) {
    fprintf(stderr, "fuzz: %zd HDF5 object(s) still open after %s\n", n, what);
    abort();
  }
}

/* --- out-parameters written by HDF5 ---
 * libhdf5 is not instrumented, so ASan only sees its writes into the caller's memory when they
 * go through memcpy. H5Sget_simple_extent_dims stores one element per dim with plain writes: a
 * caller that passes an array shorter than the dataspace's rank (a file with more dims than
 * the code expects) would overflow it unseen. This wrapper, which the static dpt libraries
 * link to instead of libhdf5's, lets HDF5 write into a buffer of the largest rank and copies
 * the result with an instrumented memcpy, so such an overflow is reported in the caller. */
int H5Sget_simple_extent_dims(hid_t space, hsize_t dims[], hsize_t maxdims[]) {
  typedef int (*fn)(hid_t, hsize_t *, hsize_t *);
  static fn real;
  if (!real) {
    void *p = dlsym(RTLD_NEXT, "H5Sget_simple_extent_dims");
    if (!p) abort();
    memcpy(&real, &p, sizeof real);
  }
  hsize_t d[H5S_MAX_RANK], m[H5S_MAX_RANK];
  int r = real(space, dims ? d : NULL, maxdims ? m : NULL);
  if (r > 0 && r <= H5S_MAX_RANK) {
    if (dims) memcpy(dims, d, (size_t)r * sizeof *d);
    if (maxdims) memcpy(maxdims, m, (size_t)r * sizeof *m);
  }
  return r;
}

void fz_hdf5_flags(int *raw, int *verbose) {
  const char *r = getenv("DPT_FUZZ_RAW");
  *raw = !(r && !strcmp(r, "0"));
  *verbose = getenv("DPT_FUZZ_VERBOSE") != NULL;
}

size_t fz_bytes_upto(long long n, size_t tsize, size_t max) {
  return n > 0 && tsize && (unsigned long long)n <= max / tsize ? (size_t)n * tsize : 0;
}
