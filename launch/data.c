/* data.c — `dpt data import-idx` and `dpt data synth`: collect flags (the one collector of
 * options.c), call runtime on rank 0, share the outcome so every rank exits with the same
 * status. An existing output file is kept unless --force says to replace it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "launch.h"
#include "runtime.h"

static const char k_usage_import[] =
    "usage: dpt data import-idx --dir DIR --out FILE.h5 [--force]\n"
    "         convert MNIST-format idx files (DIR/train-images-idx3-ubyte[.gz], ...,\n"
    "         t10k-* optional) into a dpt dataset\n";
static const char k_usage_synth[] =
    "usage: dpt data synth --out FILE.h5 [--train 60000] [--test 10000] [--features 784]\n"
    "         [--classes 10] [--seed 1] [--force]\n"
    "         write a generated classification dataset (Gaussian clusters)\n";
static const char k_usage_text[] =
    "usage: dpt data import-text FILE... --out DATA.h5 [--val-fraction 0.1] [--vocab char|byte]\n"
    "         [--force]\n"
    "         turn UTF-8 text into a token dataset (vocabulary stored in the file; the last\n"
    "         fraction F of the text is the held-out split)\n";
static const char k_usage_force[] =
    "  --force replaces an existing FILE.h5 (atomically: the old file stays until the new one\n"
    "  is complete)\n";

static void data_usage(FILE *f) {
  fprintf(f, "%s%s%s%s", k_usage_import, k_usage_synth, k_usage_text, k_usage_force);
}

/* One flag of a data command: its name, where its text goes, and whether it is a switch. */
typedef struct {
  const char *name;
  const char **value;
  int is_switch;
} flag;

/* Fills the flags from the collected options; an unknown flag, a switch given a value or a
 * flag without one is a usage error naming it. */
static int take(const kv_list *l, flag *flags, int nflags, char *err, size_t errlen) {
  for (int i = 0; i < l->n; i++) {
    const kv *e = &l->items[i];
    int k = 0;
    while (k < nflags && strcmp(flags[k].name, e->key)) k++;
    char dashed[256];
    snprintf(dashed, sizeof dashed, "%s", e->key);
    for (char *c = dashed; *c; c++)
      if (*c == '_') *c = '-';
    if (k == nflags) {
      snprintf(err, errlen, "unknown flag '--%s'", dashed);
      return -1;
    }
    if (flags[k].is_switch) {
      int on;
      if (!e->bare && dpt_parse_bool(e->value, &on)) {
        snprintf(err, errlen, "--%s: '%s' is not a boolean", dashed, e->value);
        return -1;
      }
      *flags[k].value = e->bare || on ? "1" : NULL;
    } else if (e->bare) {
      snprintf(err, errlen, "--%s: needs a value", dashed);
      return -1;
    } else {
      *flags[k].value = e->value;
    }
  }
  return 0;
}

static int to_long(const char *name, const char *text, long *out, char *err, size_t errlen) {
  if (dpt_parse_long(text, out)) {
    snprintf(err, errlen, "--%s: '%s' is not a whole number", name, text);
    return -1;
  }
  return 0;
}

/* An existing output is refused unless --force: a typo must not replace a good dataset. */
static int may_write(const char *out, const char *force, char *err, size_t errlen) {
  struct stat st;
  if (force || stat(out, &st) != 0) return 0;
  snprintf(err, errlen, "--out: '%s' exists (--force replaces it)", out);
  return -1;
}

static int wants_help(int argc, char **argv) {
  for (int i = 3; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

int dpt_launch_data(int argc, char **argv, int rank) {
  char err[DPT_ERR_LEN] = "";
  const char *sub = argc > 2 ? argv[2] : "";
  int status = 0;
  if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
    if (rank == 0) data_usage(stdout);
    return 0;
  }
  kv_list l = {0};
  const char *done = NULL, *out = NULL, *force = NULL;
  int terse = 0; /* the message alone, without the usage text */
  if (!strcmp(sub, "import-idx")) {
    if (wants_help(argc, argv)) {
      if (rank == 0) printf("%s%s", k_usage_import, k_usage_force);
      return 0;
    }
    const char *dir = NULL;
    flag f[] = {{"dir", &dir, 0}, {"out", &out, 0}, {"force", &force, 1}};
    if ((status = dpt_launch_collect(argc, argv, 3, &l, err, sizeof err)) == 0 &&
        (take(&l, f, 3, err, sizeof err) || !dir || !out)) {
      if (!err[0]) snprintf(err, sizeof err, "import-idx needs --dir and --out");
      status = DPT_EXIT_USAGE;
    }
    if (!status && rank == 0 &&
        (may_write(out, force, err, sizeof err)           ? (status = DPT_EXIT_USAGE)
         : dpt_data_import_idx(dir, out, err, sizeof err) ? (status = DPT_EXIT_RUN)
                                                          : 0) == 0)
      done = "imported";
  } else if (!strcmp(sub, "synth")) {
    if (wants_help(argc, argv)) {
      if (rank == 0) printf("%s%s", k_usage_synth, k_usage_force);
      return 0;
    }
    const char *tr = "60000", *te = "10000", *fe = "784", *cl = "10", *sd = "1";
    flag f[] = {{"out", &out, 0},    {"train", &tr, 0}, {"test", &te, 0},    {"features", &fe, 0},
                {"classes", &cl, 0}, {"seed", &sd, 0},  {"force", &force, 1}};
    long ntr = 0, nte = 0, nfe = 0, ncl = 0, seed = 0;
    if ((status = dpt_launch_collect(argc, argv, 3, &l, err, sizeof err)) == 0 &&
        (take(&l, f, 7, err, sizeof err) || !out || to_long("train", tr, &ntr, err, sizeof err) ||
         to_long("test", te, &nte, err, sizeof err) ||
         to_long("features", fe, &nfe, err, sizeof err) ||
         to_long("classes", cl, &ncl, err, sizeof err) ||
         to_long("seed", sd, &seed, err, sizeof err))) {
      if (!err[0]) snprintf(err, sizeof err, "synth needs --out");
      status = DPT_EXIT_USAGE;
    }
    if (!status && rank == 0 &&
        (may_write(out, force, err, sizeof err) ? (status = DPT_EXIT_USAGE)
         : dpt_data_synth(out, ntr, nte, nfe, ncl, seed, err, sizeof err) ? (status = DPT_EXIT_RUN)
                                                                          : 0) == 0)
      done = "wrote";
  } else if (!strcmp(sub, "import-text")) {
    if (wants_help(argc, argv)) {
      if (rank == 0) printf("%s%s", k_usage_text, k_usage_force);
      return 0;
    }
    const char *vf = "0.1", *vocab = "char";
    flag f[] = {
        {"out", &out, 0}, {"val_fraction", &vf, 0}, {"vocab", &vocab, 0}, {"force", &force, 1}};
    double frac = 0;
    int64_t counts[4] = {0};
    l.take_args = 1;
    if ((status = dpt_launch_collect(argc, argv, 3, &l, err, sizeof err)) == 0 &&
        (take(&l, f, 4, err, sizeof err) || !out || !l.nargs)) {
      if (!err[0]) snprintf(err, sizeof err, "import-text needs FILE... and --out");
      status = DPT_EXIT_USAGE;
    }
    if (!status && dpt_parse_double(vf, &frac)) {
      snprintf(err, sizeof err, "--val-fraction: '%s' is not a number", vf);
      status = DPT_EXIT_USAGE;
    }
    /* bad text (missing, empty, invalid UTF-8) is the user's input: one line, status 2 */
    if (!status && rank == 0) {
      if (may_write(out, force, err, sizeof err))
        status = DPT_EXIT_USAGE;
      else if ((status = dpt_data_import_text(l.args, l.nargs, out, frac, vocab, counts, err,
                                              sizeof err)))
        status = status == DPT_EINVAL ? DPT_EXIT_USAGE : DPT_EXIT_RUN, terse = 1;
      else
        printf("dpt data: %lld tokens (%lld training, %lld held out), vocabulary of %lld\n",
               (long long)counts[0], (long long)counts[1], (long long)counts[2],
               (long long)counts[3]);
      if (!status) done = "wrote";
    }
  } else {
    snprintf(err, sizeof err,
             "unknown data command '%s' (expected import-idx, import-text or synth)", sub);
    status = DPT_EXIT_USAGE;
  }
  /* rank 0 did the work; everyone exits with its status */
  if (MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS && !status) {
    snprintf(err, sizeof err, "MPI_Bcast of the outcome failed");
    status = DPT_EXIT_RUN;
  }
  if (status && rank == 0) {
    fprintf(stderr, "dpt data: %s\n", err);
    if (status == DPT_EXIT_USAGE && !terse && !strstr(err, "exists")) data_usage(stderr);
  }
  if (!status && rank == 0 && done) printf("dpt data: %s %s\n", done, out);
  dpt_launch_kv_free(&l); /* out points into it */
  return status;
}
