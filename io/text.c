/* text.c — token datasets: dpt_io_import_text turns UTF-8 text into one, dpt_io_tokens_* read
 * it back (format: io.h "Token datasets" and README "Dataset format").
 *
 * Invariants:
 * - A character vocabulary is the sorted set of distinct code points of all the input files
 *   (token id = rank of the code point in it); a byte vocabulary is the 256 byte values (token id
 *   = byte). Files are concatenated in the order given, nothing inserted between them.
 * - The held-out split is the last ceil(F * N) tokens of the stream (as nanoGPT's
 *   shakespeare_char splits), the training split what comes before.
 * - UTF-8 is checked strictly for a character vocabulary (no overlong forms, no surrogates,
 *   nothing above U+10FFFF); the first bad byte's offset in its file is named.
 * - Written atomically through io_internal.h's writer (tmp file, then dpt_file_commit).
 */
#include "io_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- reading the input text ----------------------------------------------------------------- */

/* Reads the whole of path into *buf (*len bytes). Empty files are refused. */
static int slurp(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen) {
  *buf = NULL, *len = 0;
  int rc = dpt_io__regular(path, "text file", err, errlen);
  if (rc) return DPT_EINVAL; /* missing or not a file: the user's input, named in err */
  FILE *f = fopen(path, "rb");
  if (!f) return dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  unsigned char *b = malloc(cap);
  while (b) {
    size_t got = fread(b + n, 1, cap - n, f);
    n += got;
    if (n < cap) break;
    unsigned char *nb = realloc(b, cap * 2);
    if (!nb) free(b);
    b = nb, cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!b) return dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory", path);
  if (bad) {
    free(b);
    return dpt_io__errf(err, errlen, DPT_EIO, "%s: read error", path);
  }
  if (n == 0) {
    free(b);
    return dpt_io__errf(err, errlen, DPT_EINVAL, "%s: empty file (expected text)", path);
  }
  *buf = b, *len = n;
  return DPT_OK;
}

/* Decodes one UTF-8 code point at s[0..n); returns its length (1..4) and *cp, or 0 if the bytes
 * there are not valid UTF-8 (RFC 3629). */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  if (c < 0x80) return *cp = c, 1;
  int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (!len || c > 0xF4 || (size_t)len > n) return 0;
  uint32_t v = c & (0x7F >> len);
  for (int k = 1; k < len; k++) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[k] & 0x3F);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

int dpt_io_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The text of all files as one stream of code points (char) or bytes, appended to *cps. */
typedef struct {
  uint32_t *v;
  size_t n, cap;
} cp_buf;

static int push(cp_buf *b, uint32_t c) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1 << 16;
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return -1;
    b->v = v, b->cap = cap;
  }
  b->v[b->n++] = c;
  return 0;
}

static int decode_file(const char *path, int bytes, cp_buf *b, char *err, size_t errlen) {
  unsigned char *s;
  size_t n;
  int rc = slurp(path, &s, &n, err, errlen);
  if (rc) return rc;
  for (size_t i = 0; i < n && rc == DPT_OK;) {
    uint32_t cp = s[i];
    int len = bytes ? 1 : utf8_next(s + i, n - i, &cp);
    if (!len)
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: invalid UTF-8 at byte offset %zu (byte 0x%02X; --vocab byte takes "
                        "any bytes)",
                        path, i, s[i]);
    else if (push(b, cp))
      rc = dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory", path);
    i += (size_t)(len ? len : 1);
  }
  free(s);
  return rc;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Index of c in the sorted vocab[0..v) (present by construction). */
static int32_t token_of(const uint32_t *vocab, size_t v, uint32_t c) {
  size_t lo = 0, hi = v;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (vocab[mid] <= c)
      lo = mid;
    else
      hi = mid;
  }
  return (int32_t)lo;
}

/* ---- writing -------------------------------------------------------------------------------- */

static int write_i32(hid_t loc, const char *name, size_t n, const void *data) {
  hsize_t dims[1] = {(hsize_t)n};
  hid_t sp = H5Screate_simple(1, dims, NULL), d = H5I_INVALID_HID;
  int ok =
      sp >= 0 &&
      (d = H5Dcreate2(loc, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
      (n == 0 || H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  if (d >= 0 && H5Dclose(d) < 0) ok = 0;
  if (sp >= 0) H5Sclose(sp);
  return ok ? 0 : -1;
}

static int write_text_attr(hid_t obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1), sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
  int ok = t >= 0 && H5Tset_size(t, strlen(value) + 1) >= 0 && (sp = H5Screate(H5S_SCALAR)) >= 0 &&
           (a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
           H5Awrite(a, t, value) >= 0;
  if (a >= 0 && H5Aclose(a) < 0) ok = 0;
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  return ok ? 0 : -1;
}

static int write_split(dpt_io__writer *w, const char *name, const int32_t *tok, size_t n, char *err,
                       size_t errlen) {
  hid_t g = H5Gcreate2(w->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int rc = DPT_OK;
  if (g < 0 || write_i32(g, "tokens", n, tok) < 0) {
    const char *why = dpt_io__full(w->tmp);
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot write /%s/tokens%s%s", w->tmp, name,
                      why[0] ? ": " : "", why);
  }
  if (g >= 0 && H5Gclose(g) < 0 && rc == DPT_OK)
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot close group /%s", w->tmp, name);
  return rc;
}

static int write_all(const char *out, int bytes, const uint32_t *vocab, size_t v,
                     const int32_t *tok, size_t ntrain, size_t ntest, char *err, size_t errlen) {
  dpt_io__writer w = {H5I_INVALID_HID, out, NULL};
  int rc = dpt_io__writer_open(&w, out, err, errlen);
  if (!rc) rc = write_split(&w, "train", tok, ntrain, err, errlen);
  if (!rc && ntest) rc = write_split(&w, "test", tok + ntrain, ntest, err, errlen);
  if (!rc && (write_i32(w.file, "vocab", v, vocab) < 0 ||
              write_text_attr(w.file, "vocab_kind", bytes ? "byte" : "char") < 0))
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot write /vocab", w.tmp);
  if (!rc) rc = dpt_io__writer_commit(&w, (int64_t)v, err, errlen);
  if (rc) dpt_io__writer_abort(&w);
  return rc;
}

int dpt_io_import_text(const char *const *files, int nfiles, const char *out, double val_fraction,
                       const char *vocab_kind, dpt_text_summary *sum, char *err, size_t errlen) {
  int bytes = vocab_kind && !strcmp(vocab_kind, "byte");
  if (vocab_kind && !bytes && strcmp(vocab_kind, "char"))
    return dpt_io__errf(err, errlen, DPT_EINVAL, "--vocab: '%s' (expected byte or char)",
                        vocab_kind);
  if (!(val_fraction >= 0 && val_fraction < 1))
    return dpt_io__errf(err, errlen, DPT_EINVAL, "--val-fraction: %g (expected 0 <= F < 1)",
                        val_fraction);
  if (nfiles < 1) return dpt_io__errf(err, errlen, DPT_EINVAL, "no input text files");
  cp_buf b = {0};
  int rc = DPT_OK;
  for (int i = 0; i < nfiles && !rc; i++) rc = decode_file(files[i], bytes, &b, err, errlen);
  uint32_t *vocab = NULL;
  int32_t *tok = NULL;
  size_t v = 0;
  if (!rc && (!(vocab = malloc((bytes ? 256 : b.n) * sizeof *vocab)) ||
              !(tok = malloc(b.n * sizeof *tok))))
    rc = dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory", out);
  if (!rc) {
    if (bytes) {
      for (v = 0; v < 256; v++) vocab[v] = (uint32_t)v;
    } else {
      memcpy(vocab, b.v, b.n * sizeof *vocab);
      qsort(vocab, b.n, sizeof *vocab, cmp_u32);
      for (size_t i = 0; i < b.n; i++)
        if (i == 0 || vocab[i] != vocab[v - 1]) vocab[v++] = vocab[i];
    }
    for (size_t i = 0; i < b.n; i++) tok[i] = bytes ? (int32_t)b.v[i] : token_of(vocab, v, b.v[i]);
    size_t ntest = (size_t)ceil(val_fraction * (double)b.n);
    if (ntest >= b.n)
      rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                        "%s: --val-fraction %g leaves no training text (%zu tokens)", files[0],
                        val_fraction, b.n);
    if (!rc) rc = write_all(out, bytes, vocab, v, tok, b.n - ntest, ntest, err, errlen);
    if (!rc && sum)
      sum->tokens = (int64_t)b.n, sum->train = (int64_t)(b.n - ntest), sum->test = (int64_t)ntest,
      sum->vocab = (int64_t)v;
  }
  free(tok);
  free(vocab);
  free(b.v);
  return rc;
}

/* ---- reading a token dataset ---------------------------------------------------------------- */

struct dpt_tokens {
  char *path;
  int bytes;
  int64_t nvocab;
  int32_t *vocab;
  int64_t n[2];
  int32_t *tok[2];
};

int dpt_io_is_tokens(const char *path) {
  struct stat st;
  if (!path || stat(path, &st) || !S_ISREG(st.st_mode)) return 0; /* a FIFO would block */
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  int yes = 0;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f >= 0) {
    yes = H5Lexists(f, "train", H5P_DEFAULT) > 0 && H5Lexists(f, "train/tokens", H5P_DEFAULT) > 0;
    H5Fclose(f);
  }
  dpt_io__quiet_end(&q);
  return yes;
}

/* Reads the 1-D int32 dataset name of f into a new array; *n its length. */
static int read_i32(hid_t f, const char *path, const char *name, int32_t **out, int64_t *n,
                    char *err, size_t errlen) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5I_INVALID_HID;
  hsize_t dims[1] = {0};
  int rc = DPT_OK;
  *out = NULL;
  if (d < 0 || (sp = H5Dget_space(d)) < 0 || H5Sget_simple_extent_ndims(sp) != 1 ||
      H5Sget_simple_extent_dims(sp, dims, NULL) < 0)
    rc =
        dpt_io__errf(err, errlen, DPT_EINVAL, "%s: /%s missing or not one-dimensional", path, name);
  if (!rc && !(*out = malloc((dims[0] ? dims[0] : 1) * sizeof **out)))
    rc = dpt_io__errf(err, errlen, DPT_ENOMEM, "%s: out of memory for /%s", path, name);
  if (!rc && dims[0] && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot read /%s", path, name);
  if (sp >= 0) H5Sclose(sp);
  if (d >= 0) H5Dclose(d);
  if (rc) free(*out), *out = NULL;
  *n = (int64_t)dims[0];
  return rc;
}

void dpt_io_tokens_close(dpt_tokens *t) {
  if (!t) return;
  free(t->tok[0]);
  free(t->tok[1]);
  free(t->vocab);
  free(t->path);
  free(t);
}

static int tokens_load(dpt_tokens *t, hid_t f, char *err, size_t errlen) {
  int rc = read_i32(f, t->path, "vocab", &t->vocab, &t->nvocab, err, errlen);
  if (!rc && t->nvocab < 1)
    rc = dpt_io__errf(err, errlen, DPT_EINVAL, "%s: /vocab is empty", t->path);
  char kind[8] = "";
  hid_t a = rc ? H5I_INVALID_HID : H5Aopen(f, "vocab_kind", H5P_DEFAULT), ty = H5I_INVALID_HID;
  if (!rc && (a < 0 || (ty = H5Aget_type(a)) < 0 || H5Tget_class(ty) != H5T_STRING ||
              H5Tget_size(ty) > sizeof kind || H5Aread(a, ty, kind) < 0))
    rc = dpt_io__errf(err, errlen, DPT_EINVAL, "%s: root attribute vocab_kind missing", t->path);
  if (ty >= 0) H5Tclose(ty);
  if (a >= 0) H5Aclose(a);
  t->bytes = !strcmp(kind, "byte");
  if (!rc && !t->bytes && strcmp(kind, "char"))
    rc = dpt_io__errf(err, errlen, DPT_EINVAL, "%s: vocab_kind '%s' (expected byte or char)",
                      t->path, kind);
  for (int s = 0; s < 2 && !rc; s++) {
    const char *name = s ? "test/tokens" : "train/tokens";
    if (s && H5Lexists(f, "test", H5P_DEFAULT) <= 0) break;
    rc = read_i32(f, t->path, name, &t->tok[s], &t->n[s], err, errlen);
    for (int64_t i = 0; !rc && i < t->n[s]; i++)
      if (t->tok[s][i] < 0 || t->tok[s][i] >= t->nvocab)
        rc = dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: /%s[%lld] = %d is outside the vocabulary [0, %lld)", t->path, name,
                          (long long)i, t->tok[s][i], (long long)t->nvocab);
  }
  return rc;
}

int dpt_io_tokens_open(const char *path, dpt_tokens **out, char *err, size_t errlen) {
  *out = NULL;
  int rc = dpt_io__regular(path, "dataset", err, errlen);
  if (rc) return rc;
  dpt_tokens *t = calloc(1, sizeof *t);
  if (!t || !(t->path = strdup(path))) {
    free(t);
    return dpt_io__errf(err, errlen, DPT_ENOMEM, "out of memory");
  }
  dpt_io__quiet q;
  dpt_io__quiet_begin(&q);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    rc = dpt_io__errf(err, errlen, DPT_EIO, "%s: cannot open as HDF5", path);
  else
    rc = tokens_load(t, f, err, errlen);
  if (f >= 0) H5Fclose(f);
  dpt_io__quiet_end(&q);
  if (rc)
    dpt_io_tokens_close(t);
  else
    *out = t;
  return rc;
}

int64_t dpt_io_tokens_count(const dpt_tokens *t, dpt_split split) {
  return t->n[split == DPT_SPLIT_TEST];
}

int64_t dpt_io_tokens_vocab(const dpt_tokens *t, const int32_t **codes, int *bytes) {
  if (codes) *codes = t->vocab;
  if (bytes) *bytes = t->bytes;
  return t->nvocab;
}

int dpt_io_tokens_read(const dpt_tokens *t, dpt_split split, const int64_t *start, size_t count,
                       int64_t len, float *x, int32_t *next, char *err, size_t errlen) {
  int s = split == DPT_SPLIT_TEST;
  for (size_t i = 0; i < count; i++) {
    if (start[i] < 0 || len < 1 || start[i] + len + 1 > t->n[s])
      return dpt_io__errf(err, errlen, DPT_EINVAL,
                          "%s: window [%lld, %lld] outside the %s split's %lld tokens", t->path,
                          (long long)start[i], (long long)(start[i] + len), s ? "test" : "training",
                          (long long)t->n[s]);
    const int32_t *w = t->tok[s] + start[i];
    for (int64_t j = 0; j < len; j++) {
      if (x) x[i * (size_t)len + (size_t)j] = (float)w[j];
      if (next) next[i * (size_t)len + (size_t)j] = w[j + 1];
    }
  }
  return DPT_OK;
}
