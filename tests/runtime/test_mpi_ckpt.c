/* Checkpoints: exact resume (k steps, then resume for the rest == the uninterrupted run, bit
 * for bit), resume at another ZeRO stage (bitwise) and at another W (within the W-to-W
 * tolerance), and bad files (another model, another solver, truncated, corrupted, a missing
 * dataset, a flipped bit in the metadata), each rejected with a message naming it while the
 * run directory stays untouched; a resumed run with another configuration refused unless
 * allowed; a second run in a run directory refused unless fresh, and then pruning only its
 * own checkpoints. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpi_test.h"
#include "runtime.h"

#define REL_TOL 1e-5

static int world_rank, world_size;
static char data_path[1024], dir[1024];

typedef struct {
  const char *kv[16][2];
  int n;
} opts;

static void put(opts *o, const char *k, const char *v) {
  o->kv[o->n][0] = k;
  o->kv[o->n++][1] = v;
}

/* Trains on the first w ranks; returns rc (same on every participating rank) and, on world
 * rank 0, the final parameters in *params (malloc'ed) and the error in err. */
static int run(int w, const opts *extra, float **params, size_t *n, char *err) {
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, world_rank < w ? 0 : MPI_UNDEFINED, world_rank, &sub);
  int rc = 0;
  if (sub != MPI_COMM_NULL) {
    dpt_train_opts o;
    dpt_train_defaults(&o);
    const char *base[][2] = {{"data", data_path}, {"model", "mlp:12-24-3"}, {"batch", "16"},
                             {"epochs", "3"},     {"sched", "cosine"},      {"progress", "none"},
                             {"run_dir", dir}};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
      assert_int_equal(dpt_train_set(&o, base[i][0], base[i][1], err, DPT_ERR_LEN), 0);
    for (int i = 0; i < extra->n; i++)
      if (dpt_train_set(&o, extra->kv[i][0], extra->kv[i][1], err, DPT_ERR_LEN))
        fail_msg("%s: %s", extra->kv[i][0], err);
    dpt_model m;
    assert_int_equal(dpt_mlp_create(o.model, o.activation, o.loss, &m, err, DPT_ERR_LEN), 0);
    *n = m.nparams;
    float *p = malloc(m.nparams * sizeof(float));
    dpt_train_result res;
    rc = dpt_train_run_model(&o, &m, sub, &res, p, err, DPT_ERR_LEN);
    m.destroy(&m);
    MPI_Comm_free(&sub);
    if (world_rank == 0)
      *params = p;
    else
      free(p);
  }
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Bcast(err, DPT_ERR_LEN, MPI_CHAR, 0, MPI_COMM_WORLD);
  return rc;
}

static void fresh_dir(const char *name) {
  snprintf(dir, sizeof dir, "%s/%s_np%d", DPT_TEST_TMP, name, world_size);
  if (world_rank == 0) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

/* k steps (stopping mid-epoch), resume, finish: bitwise the uninterrupted run. */
static void resume_case(const char *zero_save, int w_save, const char *zero_load, int w_load,
                        int bitwise) {
  char err[DPT_ERR_LEN];
  float *ref = NULL, *got = NULL;
  size_t n = 0;
  fresh_dir("ref");
  opts a = {.n = 0};
  put(&a, "zero", zero_load);
  assert_int_equal(run(w_load, &a, &ref, &n, err), 0);
  fresh_dir("resume");
  opts b = {.n = 0};
  put(&b, "zero", zero_save);
  put(&b, "max_steps", "37"); /* mid-epoch: 30 steps per epoch */
  put(&b, "ckpt", "1");
  assert_int_equal(run(w_save, &b, &got, &n, err), 0);
  free(got);
  got = NULL;
  opts c = {.n = 0};
  put(&c, "zero", zero_load);
  put(&c, "resume", "latest");
  int rc = run(w_load, &c, &got, &n, err);
  if (rc) fail_msg("resume: %s", err);
  if (world_rank == 0) {
    double rel = dpt_test_rel_l2(got, ref, n);
    print_message("save W=%d zero=%s, resume W=%d zero=%s: relative L2 %.3g\n", w_save, zero_save,
                  w_load, zero_load, rel);
    if (bitwise)
      assert_memory_equal(got, ref, n * sizeof(float));
    else
      assert_true(rel <= REL_TOL);
  }
  free(ref);
  free(got);
}

static void test_exact_resume(void **state) {
  (void)state;
  resume_case("-1", world_size, "-1", world_size, 1);
}

static void test_resume_at_another_stage(void **state) {
  (void)state;
  if (world_size < 2) skip();
  resume_case("2", world_size, "0", world_size, 1);
}

static void test_resume_at_another_world_size(void **state) {
  (void)state;
  if (world_size < 2) skip();
  resume_case("1", world_size, "0", 1, 0);
}

/* --- bad files --- */

static void copy_file(const char *from, const char *to) {
  char cmd[2500];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
  assert_int_equal(system(cmd), 0);
}

static void expect_rejected(const char *file, const char *model, const char *solver,
                            const char *want) {
  char err[DPT_ERR_LEN] = "";
  float *p = NULL;
  size_t n;
  opts o = {.n = 0};
  put(&o, "resume", file);
  if (model) put(&o, "model", model);
  if (solver) put(&o, "solver", solver);
  int rc = run(world_size, &o, &p, &n, err);
  free(p);
  assert_true(rc < 0);
  if (!strstr(err, want)) fail_msg("'%s' does not mention '%s'", err, want);
}

/* --ckpt-epochs: a checkpoint at the end of every epoch, at the epoch boundary's step. */
static void test_checkpoint_every_epoch(void **state) {
  (void)state;
  char err[DPT_ERR_LEN];
  float *p = NULL;
  size_t n;
  fresh_dir("epochs");
  opts o = {.n = 0};
  put(&o, "ckpt_epochs", "1");
  put(&o, "keep", "0");
  assert_int_equal(run(world_size, &o, &p, &n, err), 0);
  free(p);
  for (int e = 1; e <= 3; e++) { /* 30 steps per epoch */
    char path[1200];
    snprintf(path, sizeof path, "%s/ckpt/ckpt-%010d.h5", dir, 30 * e);
    if (access(path, R_OK)) fail_msg("no checkpoint %s", path);
  }
}

/* Replaces root attribute name of f with values v[0, n) (a scalar when n == 0). */
static void put_attr(hid_t f, const char *name, const double *v, hsize_t n) {
  hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
  assert_true(H5Adelete(f, name) >= 0);
  hid_t a = H5Acreate2(f, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(H5Awrite(a, H5T_NATIVE_DOUBLE, v) >= 0);
  H5Aclose(a);
  H5Sclose(sp);
}

static void huge_step(hid_t f) {
  put_attr(f, "train.step", (double[]){1e300}, 0);
}

static void array_version(hid_t f) {
  put_attr(f, "format_version", (double[]){2, 2, 2, 2}, 4);
}

static void rank3_weight(hid_t f) {
  hsize_t dims[3] = {3, 4, 1};
  float v[12] = {0};
  hid_t sp = H5Screate_simple(3, dims, NULL);
  assert_true(H5Ldelete(f, "/model/fc1.weight", H5P_DEFAULT) >= 0);
  hid_t d = H5Dcreate2(f, "/model/fc1.weight", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
  assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
  H5Dclose(d);
  H5Sclose(sp);
}

static void test_bad_checkpoints_are_rejected(void **state) {
  (void)state;
  char err[DPT_ERR_LEN];
  float *p = NULL;
  size_t n;
  fresh_dir("bad");
  opts o = {.n = 0};
  put(&o, "max_steps", "5");
  put(&o, "ckpt", "1");
  assert_int_equal(run(world_size, &o, &p, &n, err), 0);
  free(p);
  char good[1100], bad[1100], latest[1100];
  snprintf(good, sizeof good, "%s/ckpt/ckpt-0000000005.h5", dir);
  snprintf(latest, sizeof latest, "%s/ckpt/latest", dir);
  struct stat before, after;
  assert_int_equal(stat(good, &before), 0);
  expect_rejected(good, "mlp:12-30-3", NULL, "fc1.weight");
  expect_rejected(good, NULL, "sgd", "solver 'adam'");
  snprintf(bad, sizeof bad, "%s/truncated.h5", dir);
  if (world_rank == 0) {
    copy_file(good, bad);
    assert_int_equal(truncate(bad, before.st_size / 2), 0);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_rejected(bad, NULL, NULL, "truncated.h5");
  snprintf(bad, sizeof bad, "%s/corrupt.h5", dir);
  if (world_rank == 0) { /* flip bytes inside /model/fc1.weight's data */
    copy_file(good, bad);
    hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/model/fc1.weight", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    if (off == HADDR_UNDEF) { /* chunked: find the chunk through the chunk index */
      f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
      d = H5Dopen2(f, "/model/fc1.weight", H5P_DEFAULT);
      hsize_t coff[2], csize;
      unsigned mask;
      haddr_t addr;
      hid_t fs = H5Dget_space(d);
      assert_true(H5Dget_chunk_info(d, fs, 0, coff, &mask, &addr, &csize) >= 0);
      H5Sclose(fs);
      off = addr;
      H5Dclose(d);
      H5Fclose(f);
    }
    FILE *fp = fopen(bad, "r+b");
    fseek(fp, (long)off + 40, SEEK_SET);
    unsigned char junk[16];
    memset(junk, 0xA5, sizeof junk);
    fwrite(junk, 1, sizeof junk, fp);
    fclose(fp);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_rejected(bad, NULL, NULL, "corrupted");
  snprintf(bad, sizeof bad, "%s/missing.h5", dir);
  if (world_rank == 0) {
    copy_file(good, bad);
    hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(f, "/optim/exp_avg_sq/fc2.bias", H5P_DEFAULT) >= 0);
    H5Fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  expect_rejected(bad, NULL, NULL, "exp_avg_sq/fc2.bias");
  /* values of the right names but the wrong kind (each once crashed the loader under fuzzing) */
  static const struct {
    const char *file, *what, *want;
    void (*edit)(hid_t f);
  } kinds[] = {
      {"step.h5", "train.step = 1e300", "'train.step' is 1e+300", huge_step},
      {"version.h5", "format_version = [2, 2, 2, 2]", "'format_version' is not one number",
       array_version},
      {"rank3.h5", "/model/fc1.weight of shape [3, 4, 1]", "is 3-D [3, 4, 1]", rank3_weight}};
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    snprintf(bad, sizeof bad, "%s/%s", dir, kinds[k].file);
    if (world_rank == 0) {
      copy_file(good, bad);
      hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
      kinds[k].edit(f);
      H5Fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank == 0) print_message("rejecting a checkpoint with %s\n", kinds[k].what);
    expect_rejected(bad, NULL, NULL, kinds[k].want);
  }
  /* nothing in the run directory was overwritten by the failed resumes */
  assert_int_equal(stat(good, &after), 0);
  assert_true(after.st_mtime == before.st_mtime && after.st_size == before.st_size);
  FILE *f = fopen(latest, "r");
  char name[64] = "";
  assert_non_null(fgets(name, sizeof name, f));
  fclose(f);
  assert_string_equal(name, "ckpt-0000000005.h5\n");
}

/* Flips bit `bit` of the double root attribute name of file path (rank 0 only). */
static void flip_attr_bit(const char *path, const char *name, int bit) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  double v;
  assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  bits ^= (uint64_t)1 << bit;
  memcpy(&v, &bits, sizeof v);
  assert_true(H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0);
  H5Aclose(a);
  H5Fclose(f);
}

static void ignore_item(void *ctx, const char *name, const char *value) {
  (void)ctx, (void)name, (void)value;
}

/* A flipped bit in a root attribute that stays a plausible value (the scheduler's lr, the
 * epoch's loss sum, Adam's step counter halved) is caught by the load and by inspect. */
static void test_flipped_metadata_is_rejected(void **state) {
  (void)state;
  char err[DPT_ERR_LEN];
  float *p = NULL;
  size_t n;
  fresh_dir("meta");
  opts o = {.n = 0};
  put(&o, "max_steps", "6"); /* 6 = 1.5 * 2^2: bit 52 makes it 3 */
  put(&o, "ckpt", "1");
  assert_int_equal(run(world_size, &o, &p, &n, err), 0);
  free(p);
  static const struct {
    const char *attr;
    int bit;
  } flips[] = {{"sched.lr", 30}, {"train.epoch_loss", 1}, {"solver.step", 52}};
  for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
    char good[1100], bad[1100];
    snprintf(good, sizeof good, "%s/ckpt/ckpt-0000000006.h5", dir);
    snprintf(bad, sizeof bad, "%s/flip%zu.h5", dir, k);
    if (world_rank == 0) {
      copy_file(good, bad);
      flip_attr_bit(bad, flips[k].attr, flips[k].bit);
      char ierr[DPT_ERR_LEN];
      assert_int_not_equal(dpt_ckpt_inspect(bad, ignore_item, NULL, ierr, sizeof ierr), 0);
      if (!strstr(ierr, "metadata checksum")) fail_msg("inspect: '%s'", ierr);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect_rejected(bad, NULL, NULL, "the metadata checksum fails");
  }
}

/* Resuming with another lr is refused, naming it; allowed with allow_config_change. */
static void test_config_change_needs_a_flag(void **state) {
  (void)state;
  char err[DPT_ERR_LEN];
  float *p = NULL;
  size_t n;
  fresh_dir("config");
  opts a = {.n = 0};
  put(&a, "max_steps", "6");
  put(&a, "ckpt", "1");
  assert_int_equal(run(world_size, &a, &p, &n, err), 0);
  free(p);
  opts b = {.n = 0};
  put(&b, "resume", "auto");
  put(&b, "lr", "0.25");
  assert_true(run(world_size, &b, &p, &n, err) < 0);
  free(p);
  if (!strstr(err, "--lr 0.25 (checkpoint: 0.001)") || !strstr(err, "--allow-config-change"))
    fail_msg("'%s'", err);
  put(&b, "allow_config_change", "1");
  int rc = run(world_size, &b, &p, &n, err);
  free(p);
  if (rc) fail_msg("with allow_config_change: %s", err);
}

/* A second run in the directory of a longer one is refused; with fresh it runs, and pruning
 * (keep 2) removes only its own checkpoints, so latest names an existing file. */
static void test_second_run_keeps_the_first(void **state) {
  (void)state;
  char err[DPT_ERR_LEN], path[1200];
  float *p = NULL;
  size_t n;
  fresh_dir("second");
  opts a = {.n = 0};
  put(&a, "ckpt_every", "10");
  put(&a, "keep", "2");
  assert_int_equal(run(world_size, &a, &p, &n, err), 0); /* 90 steps: keeps 80 and 90 */
  free(p);
  opts b = a;
  put(&b, "max_steps", "30");
  assert_true(run(world_size, &b, &p, &n, err) < 0);
  free(p);
  if (!strstr(err, "holds checkpoints of another run (ckpt-0000000090.h5, ckpt-0000000080.h5)"))
    fail_msg("'%s'", err);
  put(&b, "fresh", "1");
  assert_int_equal(run(world_size, &b, &p, &n, err), 0);
  free(p);
  static const struct { int step, present; } want[] = {{10, 0}, {20, 1}, {30, 1}, {80, 1}, {90, 1}};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    snprintf(path, sizeof path, "%s/ckpt/ckpt-%010d.h5", dir, want[k].step);
    if ((access(path, R_OK) == 0) != want[k].present)
      fail_msg("%s should %sbe there", path, want[k].present ? "" : "not ");
  }
  snprintf(path, sizeof path, "%s/ckpt/latest", dir);
  FILE *f = fopen(path, "r");
  char name[64] = "";
  assert_non_null(f);
  assert_non_null(fgets(name, sizeof name, f));
  fclose(f);
  assert_string_equal(name, "ckpt-0000000030.h5\n");
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  dpt_log_init(world_rank, DPT_LOG_WARN, 0);
  snprintf(data_path, sizeof data_path, "%s/ckpt_np%d.h5", DPT_TEST_TMP, world_size);
  char err[DPT_ERR_LEN];
  int rc = 0;
  if (world_rank == 0) rc = dpt_data_synth(data_path, 480, 64, 12, 3, 5, err, sizeof err);
  MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rc) {
    MPI_Finalize();
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_resume),
      cmocka_unit_test(test_resume_at_another_stage),
      cmocka_unit_test(test_resume_at_another_world_size),
      cmocka_unit_test(test_checkpoint_every_epoch),
      cmocka_unit_test(test_bad_checkpoints_are_rejected),
      cmocka_unit_test(test_flipped_metadata_is_rejected),
      cmocka_unit_test(test_config_change_needs_a_flag),
      cmocka_unit_test(test_second_run_keeps_the_first),
  };
  return dpt_test_finish(cmocka_run_group_tests(tests, NULL, NULL));
}
