/* Checkpoints of tensors of any rank, on 1, 2 and 4 ranks: a table with a rank-4 conv weight
 * [3, 4, 5, 6], a rank-3 and a rank-8 tensor, a bias, and 200 tensors with 80-character names
 * (a transformer's count) is written collectively (each rank its shard, cut across rows and
 * slabs), read back bitwise whole and at another rank's range, described with the right
 * shapes by io and by `dpt ckpt inspect`, and read by h5py with the right shape and values.
 * A model whose tensor has another shape is rejected naming both shapes; a table with a
 * rank-9 tensor is refused before anything is written. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "comm.h"
#include "io.h"
#include "mpi_test.h"
#include "runtime.h"

#define NLONG 200 /* tensors with long names */
#define NT (4 + NLONG)

static int world_rank, world_size;
static dpt_tensor tensors[NT];
static char names[NLONG][96];
static size_t nparams;

static void make_table(void) {
  static const struct {
    const char *name;
    int rank;
    int64_t dims[DPT_MAX_RANK];
  } fixed[4] = {{"block.conv.weight", 4, {3, 4, 5, 6}},
                {"block.rank3", 3, {2, 3, 7}},
                {"block.bias", 1, {5}},
                {"block.rank8", 8, {2, 1, 2, 1, 3, 1, 1, 2}}};
  size_t off = 0;
  for (int t = 0; t < NT; t++) {
    dpt_tensor *x = &tensors[t];
    memset(x, 0, sizeof *x);
    if (t < 4) {
      x->name = fixed[t].name;
      x->rank = fixed[t].rank;
      memcpy(x->dims, fixed[t].dims, sizeof x->dims);
    } else {
      int i = t - 4;
      snprintf(names[i], sizeof names[i],
               "transformer.h.%03d.attn.c_attn.a_name_much_longer_than_forty_seven_chars.weight",
               i);
      x->name = names[i];
      x->rank = 2;
      x->dims[0] = 3, x->dims[1] = 1 + i % 4;
    }
    x->numel = 1;
    for (int k = 0; k < x->rank; k++) x->numel *= (size_t)x->dims[k];
    x->offset = off;
    off += x->numel;
  }
  nparams = off;
}

static float value(size_t i) {
  return (float)i * 0.5f + 0.25f;
} /* exact in fp32 here */

/* Rank r of W writes [cut[r-1], cut[r]): cuts inside the rank-4 tensor (at 187 = [1, 2, 1, 1]
 * plus 0 — a partial slab at every level), inside the rank-3 one (373) and the rank-8 one
 * (419), so that writers select partial rows and slabs of every rank; the last rank writes the
 * rest (1, 2 or 4 ranks). (Readers widen to whole checksum blocks, so this is where partial
 * selections happen.) */
static dpt_range writer_range(int rank, int size) {
  static const size_t start[4] = {0, 187, 373, 419};
  assert_true(size <= 4);
  size_t hi = rank == size - 1 ? nparams : start[rank + 1];
  return (dpt_range){start[rank], hi - start[rank]};
}

/* Writes the checkpoint at path: params = value(i), one state vector "exp_avg" = -value(i). */
static void write_ckpt(const char *path) {
  dpt_range own = writer_range(world_rank, world_size);
  float *params = malloc(nparams * sizeof *params), *m1 = malloc((own.len + 1) * sizeof *m1);
  assert_true(params && m1);
  for (size_t i = 0; i < nparams; i++) params[i] = value(i);
  for (size_t i = 0; i < own.len; i++) m1[i] = -value(own.offset + i);
  const char *vn[1] = {"exp_avg"};
  float *vv[1] = {m1};
  const char *sn[1] = {"solver.step"};
  double sv[1] = {7};
  dpt_ckpt_text tx[2] = {{"solver", "adam"}, {"model", "ranks"}};
  dpt_ckpt_view v = {.ntensors = NT,
                     .tensors = tensors,
                     .nparams = nparams,
                     .lo = own.offset,
                     .len = own.len,
                     .params = params,
                     .nvec = 1,
                     .vec_names = vn,
                     .vecs = vv,
                     .nscalar = 1,
                     .scalar_names = sn,
                     .scalars = sv,
                     .ntext = 2,
                     .texts = tx};
  char err[DPT_ERR_LEN] = "";
  int rc = dpt_ckpt_write(path, MPI_COMM_WORLD, &v, err, sizeof err);
  if (rc) fail_msg("write: %s", err);
  free(params);
  free(m1);
}

/* Reads [lo, lo+len) (params, and the state unless params_only) and checks them bitwise. */
static void read_range(const char *path, size_t lo, size_t len, int params_only) {
  float *params = calloc(nparams, sizeof *params), *m1 = calloc(len + 1, sizeof *m1);
  assert_true(params && m1);
  const char *vn[1] = {"exp_avg"};
  float *vv[1] = {m1};
  const char *sn[1] = {"solver.step"};
  double sv[1] = {0};
  dpt_ckpt_text tx[2] = {{"solver", "adam"}, {"model", "ranks"}};
  dpt_ckpt_view v = {.ntensors = NT,
                     .tensors = tensors,
                     .nparams = nparams,
                     .lo = lo,
                     .len = len,
                     .params = params,
                     .nvec = 1,
                     .vec_names = vn,
                     .vecs = vv,
                     .nscalar = 1,
                     .scalar_names = sn,
                     .scalars = sv,
                     .ntext = 2,
                     .texts = tx};
  char err[DPT_ERR_LEN] = "";
  int rc = dpt_ckpt_read(path, &v, params_only, err, sizeof err);
  if (rc) fail_msg("read [%zu, +%zu): %s", lo, len, err);
  for (size_t i = 0; i < nparams; i++) {
    float want = i >= lo && i < lo + len ? value(i) : 0.0f;
    if (memcmp(&params[i], &want, sizeof want))
      fail_msg("param %zu: %g, expected %g", i, params[i], want);
  }
  for (size_t i = 0; !params_only && i < len; i++) {
    float want = -value(lo + i);
    if (memcmp(&m1[i], &want, sizeof want))
      fail_msg("exp_avg %zu: %g, expected %g", lo + i, m1[i], want);
  }
  if (!params_only) assert_true(sv[0] == 7);
  free(params);
  free(m1);
}

typedef struct {
  int conv_ok, rank8_ok, long_ok, items;
} described;

static void on_item(void *ctx, const char *name, const char *val) {
  described *d = ctx;
  d->items++;
  if (!strcmp(name, "/model/block.conv.weight"))
    d->conv_ok = !strcmp(val, "[3, 4, 5, 6] checksum ok");
  if (!strcmp(name, "/optim/exp_avg/block.rank8"))
    d->rank8_ok = !strcmp(val, "[2, 1, 2, 1, 3, 1, 1, 2] checksum ok");
  if (!strcmp(name, "/model/transformer.h.199.attn.c_attn.a_name_much_longer_than_forty_seven"
                    "_chars.weight"))
    d->long_ok = !strcmp(val, "[3, 4] checksum ok");
}

/* Runs cmd, returns its exit status and its output in out. */
static int run(const char *cmd, char *out, size_t len) {
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, len - 1, p);
  out[n] = 0;
  return pclose(p);
}

static void test_any_rank_round_trips(void **state) {
  (void)state;
  make_table();
  char path[1024];
  snprintf(path, sizeof path, "%s/ckpt_rank_np%d.h5", DPT_TEST_TMP, world_size);
  write_ckpt(path);
  MPI_Barrier(MPI_COMM_WORLD);
  read_range(path, 0, nparams, 1); /* every parameter */
  /* another rank's range, and a range that starts and ends inside rows and slabs */
  dpt_range other = writer_range(world_size - 1 - world_rank, world_size);
  read_range(path, other.offset, other.len, 0);
  read_range(path, 37 + (size_t)world_rank, 291, 0);
  described d = {0};
  char err[DPT_ERR_LEN] = "";
  assert_int_equal(dpt_ckpt_describe(path, on_item, &d, err, sizeof err), 0);
  assert_true(d.conv_ok && d.rank8_ok && d.long_ok);
  assert_true(d.items >= 2 * NT);
  if (world_rank == 0) {
    char cmd[2400], out[1 << 16];
    snprintf(cmd, sizeof cmd, "'%s' ckpt inspect '%s' 2>&1", DPT_EXE, path);
    int rc = run(cmd, out, sizeof out);
    if (rc || !strstr(out, "/model/block.conv.weight") ||
        !strstr(out, "[3, 4, 5, 6] checksum ok") ||
        !strstr(out, "[2, 1, 2, 1, 3, 1, 1, 2] checksum ok"))
      fail_msg("dpt ckpt inspect (status %d):\n%s", rc, out);
    snprintf(
        cmd, sizeof cmd,
        "/usr/bin/python3 - '%s' 2>&1 <<'PY'\n"
        "import sys, h5py, numpy as np\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "w = f['model/block.conv.weight']\n"
        "assert w.shape == (3, 4, 5, 6), w.shape\n"
        "assert w.dtype == np.float32\n"
        "off = %zu\n"
        "want = (np.arange(off, off + 360, dtype=np.float32) * 0.5 + 0.25).reshape(3, 4, 5, 6)\n"
        "assert np.array_equal(w[...], want)\n"
        "assert f['optim/exp_avg/block.rank8'].shape == (2, 1, 2, 1, 3, 1, 1, 2)\n"
        "assert f['model/block.rank3'].shape == (2, 3, 7)\n"
        "assert len(f['model']) == %d\n"
        "print('h5py ok')\n"
        "PY",
        path, tensors[0].offset, NT);
    rc = run(cmd, out, sizeof out);
    if (rc || !strstr(out, "h5py ok")) fail_msg("h5py (status %d):\n%s", rc, out);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

static void test_other_shape_is_rejected(void **state) {
  (void)state;
  make_table();
  char path[1024];
  snprintf(path, sizeof path, "%s/ckpt_rank_np%d.h5", DPT_TEST_TMP, world_size);
  write_ckpt(path);
  MPI_Barrier(MPI_COMM_WORLD);
  tensors[0].dims[2] = 6, tensors[0].dims[3] = 5; /* same numel, another shape */
  float *params = calloc(nparams, sizeof *params);
  dpt_ckpt_view v = {
      .ntensors = NT, .tensors = tensors, .nparams = nparams, .len = nparams, .params = params};
  char err[DPT_ERR_LEN] = "";
  assert_int_equal(dpt_ckpt_read(path, &v, 1, err, sizeof err), DPT_EINVAL);
  if (!strstr(err, "4-D [3, 4, 5, 6]") || !strstr(err, "[3, 4, 6, 5]"))
    fail_msg("message does not name both shapes: %s", err);
  free(params);
  /* rank 9 is beyond DPT_MAX_RANK: refused on every rank, nothing written */
  make_table();
  tensors[2].rank = DPT_MAX_RANK + 1;
  char bad[1024];
  snprintf(bad, sizeof bad, "%s/ckpt_rank9_np%d.h5", DPT_TEST_TMP, world_size);
  unlink(bad);
  MPI_Barrier(MPI_COMM_WORLD);
  dpt_ckpt_view w = {.ntensors = NT, .tensors = tensors, .nparams = nparams, .len = nparams};
  assert_int_equal(dpt_ckpt_write(bad, MPI_COMM_WORLD, &w, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "block.bias"));
  assert_int_not_equal(access(bad, F_OK), 0);
  MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_any_rank_round_trips),
      cmocka_unit_test(test_other_shape_is_rejected),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
