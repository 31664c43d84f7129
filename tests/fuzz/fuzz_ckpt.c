/* fuzz_ckpt.c — libFuzzer harness for the checkpoint loader: dpt_ckpt_load_run (runtime/
 * checkpoint.c over io/ckpt.c's dpt_ckpt_read and the metadata checksum, what --resume and
 * --init run), the resume checks (dpt_ckpt_check_start: counters against the run, the
 * configuration compared), dpt_ckpt_describe (`dpt ckpt inspect`) and dpt_ckpt_text_get.
 *
 * Templates: the real checkpoints in corpus/ckpt/real-*.h5 (written by `dpt train --ckpt 1` for
 * model mlp:4-3-2 with various solvers and schedulers; make_corpus.py), loaded at start-up.
 * Two kinds of input:
 * - structured (the default, and what `run.sh fuzz` explores): a template, how the reader is set
 *   up (rank count, rank, ZeRO sharding, params only, deterministic mode), then up to
 *   FZ_MAX_EDITS edits made with the HDF5 API to a copy of the template: delete or replace a
 *   dataset (type, rank, dims, layout, contents), poke bytes, recompute or resize a checksum,
 *   delete or replace an attribute (type, shape, length), flip one bit of an attribute's
 *   value, re-sign the metadata (recompute meta_checksum, so that later stages see the edited
 *   values), add attributes, links and groups.
 *   Every file is valid HDF5, so what breaks is dpt's reading, not HDF5's parsing.
 * - raw: an input starting with the HDF5 signature is the checkpoint itself (replay proves the
 *   real ones load). DPT_FUZZ_RAW=0 turns raw inputs into structured ones (run.sh fuzz).
 *
 * Checks beyond "no crash, no leak": an unedited template loads and describes without error,
 * failures carry a message, and every HDF5 object dpt opened is closed again. */
#include <hdf5.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "fuzz_util.h"
#include "internal.h"
#include "io.h"

#ifndef FZ_CKPT_TEMPLATES
#error "FZ_CKPT_TEMPLATES must name the folder of real-*.h5 templates (CMakeLists.txt)"
#endif

#define FZ_MODEL "mlp:4-3-2" /* the model every template was written for */
#define FZ_MAX_TEMPLATES 32
#define FZ_MAX_EDITS 8
#define FZ_MAX_NAMES 128
#define FZ_MAX_WRITE_BYTES ((size_t)1 << 20)
#define FZ_BLOCK ((size_t)1 << 16) /* io/ckpt.c's CKPT_BLOCK: elements per checksum block */
/* A dim far beyond memory (see fuzz_dataset.c): anything it sizes exceeds ASan's 1 TiB limit. */
#define FZ_HUGE ((uint64_t)1 << 41)

const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "allocator_may_return_null=1";
}

typedef struct {
  char file[300];
  uint8_t *bytes;
  size_t len;
  dpt_train_opts opts; /* solver, its hyperparameters, scheduler, seed */
  int ndatasets, nattrs;
  char *datasets[FZ_MAX_NAMES]; /* "model/fc1.weight", "checksum/optim/exp_avg/fc1.bias" */
  char *attrs[FZ_MAX_NAMES];    /* root attribute names */
  int lenient;                  /* a raw input, not a template: bad texts are not fatal */
} template_t;

static template_t g_t[FZ_MAX_TEMPLATES];
static int g_nt;
static int g_raw = 1;
static int g_verbose; /* DPT_FUZZ_VERBOSE=1: print what each input led to (to tune the harness) */
static dpt_model g_model;

/* --- templates --- */

static herr_t collect_dataset(hid_t o, const char *name, const H5O_info_t *info, void *data) {
  (void)o;
  template_t *t = data;
  if (info->type == H5O_TYPE_DATASET && t->ndatasets < FZ_MAX_NAMES)
    t->datasets[t->ndatasets++] = strdup(name);
  return 0;
}

/* Root attributes: names, and the texts that set up the reader as the writer was. */
/* A single variable-length text attribute of obj into out; -1 if it is not one. */
static int dpt_ckpt_text_get_h(hid_t obj, const char *name, char *out, size_t len) {
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t ty = H5Aget_type(a), sp = H5Aget_space(a);
  int rc = -1;
  if (H5Sget_simple_extent_npoints(sp) == 1 && H5Tget_class(ty) == H5T_STRING &&
      H5Tis_variable_str(ty) > 0) {
    char *s = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ty));
    if (H5Aread(a, mt, &s) >= 0 && s) {
      snprintf(out, len, "%s", s);
      H5free_memory(s);
      rc = 0;
    }
    H5Tclose(mt);
  }
  H5Sclose(sp);
  H5Tclose(ty);
  H5Aclose(a);
  return rc;
}

static herr_t collect_attr(hid_t o, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  template_t *t = data;
  if (!t->lenient && t->nattrs < FZ_MAX_NAMES) t->attrs[t->nattrs++] = strdup(name);
  char v[256] = "", err[DPT_ERR_LEN];
  hid_t a = H5Aopen(o, name, H5P_DEFAULT), ty = H5Aget_type(a), sp = H5Aget_space(a);
  int one = H5Sget_simple_extent_npoints(sp) == 1; /* raw inputs may hold anything */
  H5Sclose(sp);
  if (!one) {
  } else if (H5Tget_class(ty) == H5T_STRING && H5Tis_variable_str(ty) > 0) {
    char *s = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ty));
    if (H5Aread(a, mt, &s) >= 0 && s) snprintf(v, sizeof v, "%s", s), H5free_memory(s);
    H5Tclose(mt);
  } else if (!strcmp(name, "train.seed")) {
    double d = 0;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &d) >= 0 && d >= 0 && d < 9e18) t->opts.seed = (long)d;
  }
  H5Tclose(ty);
  H5Aclose(a);
  if ((!strcmp(name, "solver") || !strcmp(name, "sched")) &&
      dpt_train_set(&t->opts, name, v, err, sizeof err) && !t->lenient) {
    fprintf(stderr, "fuzz_ckpt: template %s: %s\n", t->file, err);
    abort();
  }
  return 0;
}

/* The configuration after the kinds: cfg.* (training options), cfg_hp.* (the solver's
 * hyperparameters as configured), sched_hp.* (the scheduler's). */
static herr_t collect_config(hid_t o, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  template_t *t = data;
  int cfg = !strncmp(name, "cfg.", 4), hp = !strncmp(name, "cfg_hp.", 7),
      shp = !strncmp(name, "sched_hp.", 9);
  if (!cfg && !hp && !shp) return 0;
  char v[256] = "", err[DPT_ERR_LEN];
  if (dpt_ckpt_text_get_h(o, name, v, sizeof v)) return 0;
  int rc = cfg  ? dpt_train_set(&t->opts, name + 4, v, err, sizeof err)
           : hp ? dpt_optim_solver_set(&t->opts.solver, name + 7, v, err, sizeof err)
                : dpt_optim_sched_set(&t->opts.sched, name + 9, v, err, sizeof err);
  if (rc && !t->lenient) {
    fprintf(stderr, "fuzz_ckpt: template %s: %s = %s: %s\n", t->file, name, v, err);
    abort();
  }
  return 0;
}

/* hp.* after the kinds (a kind resets its hyperparameters). */
static herr_t collect_hp(hid_t o, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  template_t *t = data;
  if (strncmp(name, "hp.", 3)) return 0;
  char *s = NULL, err[DPT_ERR_LEN];
  hid_t a = H5Aopen(o, name, H5P_DEFAULT), mt = H5Tcopy(H5T_C_S1), ty = H5Aget_type(a),
        sp = H5Aget_space(a);
  int ok = H5Sget_simple_extent_npoints(sp) == 1 && H5Tis_variable_str(ty) > 0;
  H5Sclose(sp);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5Tget_cset(ty));
  H5Tclose(ty);
  if (ok && H5Aread(a, mt, &s) >= 0 && s) {
    if (dpt_optim_solver_set(&t->opts.solver, name + 3, s, err, sizeof err) && !t->lenient) {
      fprintf(stderr, "fuzz_ckpt: template %s: %s\n", t->file, err);
      abort();
    }
    H5free_memory(s);
  }
  H5Tclose(mt);
  H5Aclose(a);
  return 0;
}

/* The options a checkpoint was written with, from its texts (and seed). -1 if it does not open. */
static int read_opts(const char *path, template_t *t) {
  dpt_train_defaults(&t->opts);
  hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (h < 0) return -1;
  H5Aiterate2(h, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_attr, t);
  H5Aiterate2(h, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_hp, t);
  H5Aiterate2(h, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_config, t);
  H5Fclose(h);
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const template_t *)a)->file, ((const template_t *)b)->file);
}

static void load_templates(void) {
  DIR *d = opendir(FZ_CKPT_TEMPLATES);
  struct dirent *e;
  while (d && (e = readdir(d)) && g_nt < FZ_MAX_TEMPLATES) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, "real-", 5) || len < 3 || strcmp(e->d_name + len - 3, ".h5")) continue;
    snprintf(g_t[g_nt++].file, sizeof g_t[0].file, "%s/%s", FZ_CKPT_TEMPLATES, e->d_name);
  }
  if (d) closedir(d);
  if (!g_nt) {
    fprintf(stderr, "fuzz_ckpt: no real-*.h5 templates in %s (run make_corpus.py)\n",
            FZ_CKPT_TEMPLATES);
    abort();
  }
  qsort(g_t, (size_t)g_nt, sizeof g_t[0], by_name); /* the same index, the same template */
  for (int i = 0; i < g_nt; i++) {
    template_t *t = &g_t[i];
    FILE *f = fopen(t->file, "rb");
    if (!f || fseek(f, 0, SEEK_END) || (long)(t->len = (size_t)ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) || !(t->bytes = malloc(t->len)) ||
        fread(t->bytes, 1, t->len, f) != t->len) {
      perror(t->file);
      abort();
    }
    fclose(f);
    if (read_opts(t->file, t) < 0) abort();
    hid_t h = H5Fopen(t->file, H5F_ACC_RDONLY, H5P_DEFAULT);
    H5Ovisit(h, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, t);
    H5Fclose(h);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fz_init();
  fz_hdf5_flags(&g_raw, &g_verbose);
  dpt_log_init(0, g_verbose ? DPT_LOG_INFO : DPT_LOG_ERROR, 0); /* the resume check's notes */
  char err[DPT_ERR_LEN];
  if (dpt_mlp_create(FZ_MODEL, "relu", "ce", &g_model, err, sizeof err)) {
    fprintf(stderr, "fuzz_ckpt: %s\n", err);
    abort();
  }
  load_templates();
  return 0;
}

/* --- edits --- */

static void fill_bytes(fz_in *in, uint8_t *buf, size_t len) {
  size_t n;
  const uint8_t *src = fz_bytes(in, 256, &n);
  for (size_t i = 0; i < len; i++) buf[i] = n ? src[i % n] : 0;
}

/* io/ckpt.c's block checksums of x[0, n): per block, the sum of the words and of (i+1)*word. */
static uint64_t *checksums(const float *x, size_t n, size_t *nb) {
  *nb = (n + FZ_BLOCK - 1) / FZ_BLOCK;
  uint64_t *s = calloc(2 * *nb + 2, sizeof *s);
  if (!s) abort();
  for (size_t i = 0; i < n; i++) {
    uint32_t w;
    memcpy(&w, &x[i], sizeof w);
    s[2 * (i / FZ_BLOCK)] += w;
    s[2 * (i / FZ_BLOCK) + 1] += (uint64_t)(uint32_t)(i % FZ_BLOCK + 1) * w;
  }
  return s;
}

/* Creates dataset `path` (its old link removed first). */
static void new_dataset(fz_in *in, hid_t f, const char *path, const hsize_t *old, int old_rank) {
  static const hid_t *const types[] = {&H5T_NATIVE_FLOAT_g,  &H5T_NATIVE_FLOAT_g,
                                       &H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_INT32_g,
                                       &H5T_NATIVE_UINT64_g, &H5T_NATIVE_UINT8_g};
  int tk = (int)fz_range(in, 0, 6);
  hid_t t = tk < 6 ? H5Tcopy(*types[tk]) : H5Tcopy(H5T_C_S1);
  if (tk == 6) H5Tset_size(t, 4);
  int rank = (int)fz_range(in, 0, 3);
  int layout = (int)fz_range(in, 0, 2); /* contiguous, chunked, chunked and unwritten */
  hsize_t dims[3], chunk[3];
  int huge = 0;
  for (int i = 0; i < rank; i++) {
    int how = (int)fz_range(in, 0, 3);
    if (how == 0 && i < old_rank)
      dims[i] = old[i] + (hsize_t)fz_range(in, -1, 1); /* near the expected shape */
    else if (how == 1 && layout == 2)
      dims[i] = fz_u64(in) | FZ_HUGE, huge = 1;
    else
      dims[i] = (hsize_t)fz_range(in, 0, 6);
    chunk[i] = dims[i] < 1 ? 1 : dims[i] > 4 ? 4 : dims[i];
  }
  hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (layout && rank) H5Pset_chunk(dcpl, rank, chunk);
  H5Ldelete(f, path, H5P_DEFAULT);
  hid_t d = H5Dcreate2(f, path, t, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d >= 0 && layout != 2 && !huge) {
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    size_t bytes = fz_bytes_upto(np, H5Tget_size(t), FZ_MAX_WRITE_BYTES);
    if (bytes) {
      uint8_t *buf = malloc(bytes);
      if (!buf) abort();
      fill_bytes(in, buf, bytes);
      H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
      free(buf);
    }
  }
  if (d >= 0) H5Dclose(d);
  H5Pclose(dcpl);
  H5Sclose(sp);
  H5Tclose(t);
}

/* Dims of dataset path into d[3] (rank returned; -1 if it cannot be opened). */
static int dims_of(hid_t f, const char *path, hsize_t *d) {
  hid_t ds = H5Oexists_by_name(f, path, H5P_DEFAULT) > 0 ? H5Dopen2(f, path, H5P_DEFAULT) : -1;
  if (ds < 0) return -1;
  hid_t sp = H5Dget_space(ds);
  int r = H5Sget_simple_extent_ndims(sp);
  if (r >= 0 && r <= 3)
    H5Sget_simple_extent_dims(sp, d, NULL);
  else
    r = -1;
  H5Sclose(sp);
  H5Dclose(ds);
  return r;
}

/* Reads dataset path as floats (NULL if it cannot, or is bigger than FZ_MAX_WRITE_BYTES). */
static float *read_floats(hid_t f, const char *path, size_t *n) {
  hid_t ds = H5Oexists_by_name(f, path, H5P_DEFAULT) > 0 ? H5Dopen2(f, path, H5P_DEFAULT) : -1;
  if (ds < 0) return NULL;
  hid_t sp = H5Dget_space(ds);
  hssize_t np = H5Sget_simple_extent_npoints(sp);
  float *x = NULL;
  if (np >= 0 && (size_t)np <= FZ_MAX_WRITE_BYTES / sizeof(float)) {
    x = malloc((size_t)np * sizeof *x + 1);
    if (!x) abort();
    if (np > 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
      free(x);
      x = NULL;
    }
    *n = (size_t)np;
  }
  H5Sclose(sp);
  H5Dclose(ds);
  return x;
}

/* Rewrites checksum/<path> for the dataset's current contents, with `extra` blocks more or
 * fewer rows than it needs and possibly a third column (io/ckpt.c sizes its buffer from the
 * tensor, not from what the file holds). */
static void write_checksum(fz_in *in, hid_t f, const char *path, int reshape) {
  size_t n, nb;
  float *x = read_floats(f, path, &n);
  if (!x) return;
  uint64_t *s = checksums(x, n, &nb);
  free(x);
  char cpath[400];
  snprintf(cpath, sizeof cpath, "checksum/%s", path);
  hsize_t dims[2] = {nb, 2};
  if (reshape) {
    int64_t rows = (int64_t)nb + fz_range(in, -1, 6);
    dims[0] = (hsize_t)(rows < 0 ? 0 : rows);
    if (fz_range(in, 0, 3) == 0) dims[1] = (hsize_t)fz_range(in, 1, 3);
  }
  size_t cells = (size_t)(dims[0] * dims[1]); /* at most 2 * (nb + 6): nb is small here */
  uint64_t *buf = calloc(cells + 1, sizeof *buf);
  if (!buf) abort();
  for (size_t i = 0; i < cells && i < 2 * nb; i++) buf[i] = s[i];
  free(s);
  H5Ldelete(f, cpath, H5P_DEFAULT);
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t d = H5Dcreate2(f, cpath, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (d >= 0) {
    if (cells) H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
  }
  H5Sclose(sp);
  free(buf);
}

/* Changes a few bytes of a dataset in place (then, maybe, its checksum to match). */
static void poke(fz_in *in, hid_t f, const char *path) {
  hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
  if (ds < 0) return;
  hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
  hssize_t np = H5Sget_simple_extent_npoints(sp);
  size_t bytes = fz_bytes_upto(np, H5Tget_size(t), FZ_MAX_WRITE_BYTES);
  if (bytes) {
    uint8_t *buf = malloc(bytes);
    if (!buf) abort();
    if (H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
      int k = (int)fz_range(in, 1, 4);
      for (int i = 0; i < k; i++) {
        size_t at = (size_t)fz_range(in, 0, (int64_t)bytes - 1);
        buf[at] = fz_u8(in);
      }
      H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    }
    free(buf);
  }
  H5Sclose(sp);
  H5Tclose(t);
  H5Dclose(ds);
}

/* Replaces (or adds) root attribute `name`: a number, a string (variable or fixed length, up to
 * 400 bytes), arrays of either, or an empty dataspace. */
static void set_attr(fz_in *in, hid_t f, const char *name) {
  int kind = (int)fz_range(in, 0, 7);
  hsize_t count = kind >= 4 && kind <= 5 ? (hsize_t)fz_range(in, 2, 6) : 1;
  hid_t sp = kind == 6   ? H5Screate(H5S_NULL)
             : count > 1 ? H5Screate_simple(1, &count, NULL)
                         : H5Screate(H5S_SCALAR);
  hid_t t;
  size_t tlen;
  const uint8_t *text = fz_bytes(in, 400, &tlen);
  char *str = malloc(tlen + 1);
  if (!str) abort();
  memcpy(str, text, tlen);
  str[tlen] = 0;
  double num[8];
  for (int i = 0; i < 8; i++) num[i] = i ? num[0] + i : fz_double(in);
  const void *data = num;
  char *vl[8];
  char *fixed = NULL;
  switch (kind) {
  case 0:
  case 4:
  case 6: t = H5Tcopy(H5T_NATIVE_DOUBLE); break;
  case 1:
    t = H5Tcopy(H5T_NATIVE_INT64);
    {
      int64_t v = (int64_t)fz_u64(in);
      memcpy(num, &v, sizeof v);
    }
    break;
  case 2:
  case 5: /* variable-length strings */
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    if (fz_bool(in)) H5Tset_cset(t, H5T_CSET_UTF8);
    for (int i = 0; i < 8; i++) vl[i] = str;
    data = vl;
    break;
  case 3: { /* fixed length, any size from 1 to 400 */
    size_t size = (size_t)fz_range(in, 1, 400);
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, size);
    if (fz_bool(in)) H5Tset_strpad(t, H5T_STR_NULLPAD);
    fixed = calloc(size + 1, 1);
    if (!fixed) abort();
    memcpy(fixed, str, tlen < size ? tlen : size);
    data = fixed;
    break;
  }
  default: { /* float32[2] array type: a class H5Aread to double cannot convert */
    hsize_t two = 2;
    t = H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &two);
    float v[2] = {1, 2};
    memcpy(num, v, sizeof v);
  }
  }
  if (H5Aexists(f, name) > 0) H5Adelete(f, name);
  hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0) {
    if (kind != 6) H5Awrite(a, t, data);
    H5Aclose(a);
  }
  free(fixed);
  free(str);
  H5Tclose(t);
  H5Sclose(sp);
}

/* Flips one bit of root attribute name's value: of a number's double, or of a text's byte. */
static void flip_attr(fz_in *in, hid_t f, const char *name) {
  char v[512];
  int bit = (int)fz_range(in, 0, 63);
  if (!dpt_ckpt_text_get_h(f, name, v, sizeof v)) {
    size_t n = strlen(v);
    if (!n) return;
    v[(size_t)bit % n] ^= (char)(1 << (bit % 7)); /* never 0x80: stays a NUL-free text */
    if (!v[(size_t)bit % n]) v[(size_t)bit % n] = 1;
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    const char *p = v;
    H5Adelete(f, name);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, t, &p), H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return;
  }
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  if (a < 0) return;
  hid_t sp = H5Aget_space(a);
  double d;
  if (H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_DOUBLE, &d) >= 0) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    b ^= (uint64_t)1 << bit;
    memcpy(&d, &b, sizeof d);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &d);
  }
  H5Sclose(sp);
  H5Aclose(a);
}

/* --- re-signing: io/ckpt.c's meta_checksum, recomputed over the file's root attributes --- */

typedef struct {
  char name[256];
  int text;
  char value[512];
  double num;
} sig_entry;

typedef struct {
  sig_entry *e;
  int n, bad;
} sig_list;

static herr_t collect_sig(hid_t o, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  sig_list *l = data;
  if (!strcmp(name, "meta_checksum") || strlen(name) >= sizeof l->e[0].name) return 0;
  if (l->n == 512) return l->bad = 1, 1;
  sig_entry *e = &l->e[l->n];
  snprintf(e->name, sizeof e->name, "%s", name);
  if (!dpt_ckpt_text_get_h(o, name, e->value, sizeof e->value)) {
    e->text = 1;
  } else {
    hid_t a = H5Aopen(o, name, H5P_DEFAULT), sp = H5Aget_space(a);
    e->text = 0;
    if (H5Sget_simple_extent_npoints(sp) != 1 || H5Aread(a, H5T_NATIVE_DOUBLE, &e->num) < 0)
      l->bad = 1;
    H5Sclose(sp);
    H5Aclose(a);
  }
  l->n++;
  return 0;
}

static int by_entry(const void *a, const void *b) {
  return strcmp(((const sig_entry *)a)->name, ((const sig_entry *)b)->name);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
  return h;
}

static void resign(hid_t f) {
  sig_list l = {calloc(512, sizeof(sig_entry)), 0, 0};
  if (!l.e) abort();
  H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_sig, &l);
  if (!l.bad) {
    qsort(l.e, (size_t)l.n, sizeof *l.e, by_entry);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < l.n; i++) {
      h = fnv(h, l.e[i].name, strlen(l.e[i].name) + 1);
      if (l.e[i].text) {
        h = fnv(h, "t", 1);
        h = fnv(h, l.e[i].value, strlen(l.e[i].value) + 1);
      } else {
        uint64_t b;
        memcpy(&b, &l.e[i].num, sizeof b);
        uint8_t le[8];
        for (int k = 0; k < 8; k++) le[k] = (uint8_t)(b >> (8 * k));
        h = fnv(h, "n", 1);
        h = fnv(h, le, sizeof le);
      }
    }
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    const char *p = hex;
    if (H5Aexists(f, "meta_checksum") > 0) H5Adelete(f, "meta_checksum");
    hid_t a = H5Acreate2(f, "meta_checksum", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, t, &p), H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
  }
  free(l.e);
}

enum {
  E_DELETE,
  E_REPLACE,
  E_POKE,
  E_CHECKSUM,
  E_CHECKSUM_SHAPE,
  E_ATTR_DELETE,
  E_ATTR_SET,
  E_ATTR_ADD,
  E_GROUP,
  E_LINK,
  E_ATTR_FLIP,
  E_RESIGN,
  E_COUNT
};

static void edit(fz_in *in, hid_t f, const template_t *t) {
  int op = (int)fz_range(in, 0, E_COUNT - 1);
  const char *ds = t->datasets[fz_range(in, 0, t->ndatasets - 1)];
  const char *at = t->attrs[fz_range(in, 0, t->nattrs - 1)];
  const char *plain = strncmp(ds, "checksum/", 9) ? ds : ds + 9; /* the tensor it covers */
  hsize_t old[3] = {0, 0, 0};
  int old_rank;
  switch (op) {
  case E_DELETE: H5Ldelete(f, ds, H5P_DEFAULT); break;
  case E_REPLACE:
    old_rank = dims_of(f, ds, old);
    new_dataset(in, f, ds, old, old_rank);
    break;
  case E_POKE:
    poke(in, f, ds);
    if (fz_bool(in)) write_checksum(in, f, plain, 0);
    break;
  case E_CHECKSUM: write_checksum(in, f, plain, 0); break;
  case E_CHECKSUM_SHAPE: write_checksum(in, f, plain, 1); break;
  case E_ATTR_DELETE: H5Adelete(f, at); break;
  case E_ATTR_SET: set_attr(in, f, at); break;
  case E_ATTR_ADD: {
    size_t n;
    const uint8_t *p = fz_bytes(in, 64, &n);
    char name[65];
    memcpy(name, p, n);
    name[n] = 0;
    if (name[0]) set_attr(in, f, name);
    break;
  }
  case E_ATTR_FLIP: flip_attr(in, f, at); break;
  case E_RESIGN: resign(f); break;
  case E_GROUP: { /* a group where a dataset was, or a dataset where a group was */
    static const char *const groups[] = {"model", "optim", "checksum", "checksum/model",
                                         "checksum/optim"};
    const char *g = groups[fz_range(in, 0, 4)];
    if (fz_bool(in)) {
      H5Ldelete(f, ds, H5P_DEFAULT);
      hid_t h = H5Gcreate2(f, ds, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      if (h >= 0) H5Gclose(h);
    } else {
      H5Ldelete(f, g, H5P_DEFAULT);
      new_dataset(in, f, g, old, 0);
    }
    break;
  }
  case E_LINK: { /* a soft link (dangling, to itself or to another dataset) or a hard link */
    const char *to = t->datasets[fz_range(in, 0, t->ndatasets - 1)];
    int kind = (int)fz_range(in, 0, 2);
    H5Ldelete(f, ds, H5P_DEFAULT);
    if (kind == 0) H5Lcreate_soft("/nowhere", f, ds, H5P_DEFAULT, H5P_DEFAULT);
    if (kind == 1) H5Lcreate_soft(ds, f, ds, H5P_DEFAULT, H5P_DEFAULT);
    if (kind == 2 && strcmp(to, ds)) H5Lcreate_hard(f, to, f, ds, H5P_DEFAULT, H5P_DEFAULT);
    break;
  }
  default: break;
  }
}

/* --- loading with dpt --- */

typedef struct {
  int items;
} describe_ctx;

static void on_item(void *ctx, const char *name, const char *value) {
  describe_ctx *c = ctx;
  c->items++;
  if (strlen(name) > 4096 || strlen(value) > 4096) abort(); /* both NUL-terminated, bounded */
}

static void fail(const char *what, const char *file, const char *err) {
  fprintf(stderr, "fuzz_ckpt: %s (template %s)\n  %s\n", what, file, err);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  char path[4096];
  fz_path(path, "ckpt.h5");
  fz_in in = {data, size};
  const template_t *t = &g_t[0];
  unsigned flags = 0;
  int world = 1, rank = 0, shard = 0, edits = 0;
  static template_t raw; /* a raw input's own options */
  if (g_raw && size >= 8 && !memcmp(data, sig, 8)) {
    fz_write(path, data, size);
    edits = -1; /* unknown */
    for (int i = 0; i < g_nt; i++)
      if (g_t[i].len == size && !memcmp(g_t[i].bytes, data, size)) t = &g_t[i], edits = 0;
    if (edits) { /* not a template: set the reader up as the file's texts say, if they can */
      raw.lenient = 1;
      snprintf(raw.file, sizeof raw.file, "(raw input)");
      if (read_opts(path, &raw) == 0) t = &raw;
      fz_check_no_open_hdf5("reading the options of a raw input (harness)");
    }
  } else {
    t = &g_t[fz_u8(&in) % g_nt];
    flags = fz_u8(&in);
    world = (int)fz_range(&in, 1, 5);
    rank = (int)fz_range(&in, 0, world - 1);
    shard = fz_bool(&in);
    edits = (int)fz_range(&in, 0, FZ_MAX_EDITS);
    fz_write(path, t->bytes, t->len);
    if (edits) {
      hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
      if (f < 0) abort();
      for (int i = 0; i < edits; i++) edit(&in, f, t);
      if (H5Fclose(f) < 0) abort();
    }
    fz_check_no_open_hdf5("editing the template (harness)");
  }

  /* the reader as runtime/train.c sets it up: this rank's solver shard (ZeRO) or all of it */
  dpt_train_opts o = t->opts;
  o.deterministic = (flags & 2) != 0;
  int as_saved = o.deterministic == t->opts.deterministic; /* else the check must say so */
  int params_only = (flags & 1) != 0;
  char err[DPT_ERR_LEN] = "";
  dpt_range r =
      shard ? dpt_comm_shard(g_model.nparams, rank, world) : (dpt_range){0, g_model.nparams};
  float *params = calloc(g_model.nparams, sizeof *params);
  dpt_solver *solver = NULL;
  dpt_sched *sched = NULL;
  if (!params || dpt_solver_create(&o.solver, r.len, &solver, err, sizeof err) ||
      dpt_sched_create(&o.sched, o.solver.lr, dpt_solver_has_momentum(solver),
                       dpt_solver_momentum(solver), 100, &sched, err, sizeof err))
    fail("cannot set up the reader", t->file, err);
  dpt_train_pos pos;
  memset(&pos, 0, sizeof pos);
  double *scales = malloc((size_t)g_model.ntensors * sizeof *scales);
  if (!scales) fail("out of memory", t->file, "");
  for (int i = 0; i < g_model.ntensors; i++) scales[i] = NAN;
  pos.grad_scale = scales;
  int rc = dpt_ckpt_load_run(path, &o, &g_model, params, solver, r.offset, sched, &pos, params_only,
                             err, sizeof err);
  if (g_verbose) fprintf(stderr, "load: %d %s\n", rc, rc ? err : "ok");
  if (rc && !err[0]) fail("load failed without a message", t->file, "");
  if (rc && edits == 0) fail("an unedited checkpoint does not load", t->file, err);
  fz_check_no_open_hdf5("dpt_ckpt_load_run");
  if (!rc && !params_only) { /* the resume checks, as rank 0 of this reader (8 steps an epoch) */
    rc = dpt_ckpt_check_start(&o, path, &pos, 8, world, shard, 0, 0, err, sizeof err);
    if (g_verbose) fprintf(stderr, "check: %d %s\n", rc, rc ? err : "ok");
    if (rc && !err[0]) fail("the resume check failed without a message", t->file, "");
    if (rc && edits == 0 && as_saved) fail("an unedited checkpoint fails the check", t->file, err);
    fz_check_no_open_hdf5("dpt_ckpt_check_start");
  }

  describe_ctx c = {0};
  char ierr[DPT_ERR_LEN] = "";
  rc = dpt_ckpt_describe(path, on_item, &c, ierr, sizeof ierr);
  if (rc && !ierr[0]) fail("describe failed without a message", t->file, "");
  if (rc && edits == 0) fail("an unedited checkpoint does not describe", t->file, ierr);
  fz_check_no_open_hdf5("dpt_ckpt_describe");

  char text[8]; /* short on purpose: values longer than the buffer are truncated */
  dpt_ckpt_text_get(path, (flags & 4) ? "model" : "solver", text, sizeof text);
  fz_check_no_open_hdf5("dpt_ckpt_text_get");

  dpt_sched_free(sched);
  dpt_solver_free(solver);
  free(params);
  free(scales);
  return 0;
}
