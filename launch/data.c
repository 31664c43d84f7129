/* data.c — `dpt data import-idx` and `dpt data synth`: parse flags, call runtime on rank 0,
 * share the outcome so every rank exits with the same status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch.h"
#include "runtime.h"

static void data_usage(FILE *f) {
  fprintf(f,
          "usage: dpt data import-idx --dir DIR --out FILE.h5\n"
          "         convert MNIST-format idx files (DIR/train-images-idx3-ubyte[.gz], ...,\n"
          "         t10k-* optional) into a dpt dataset\n"
          "       dpt data synth --out FILE.h5 [--train 60000] [--test 10000] [--features 784]\n"
          "         [--classes 10] [--seed 1]\n"
          "         write a generated classification dataset (Gaussian clusters)\n");
}

/* Reads "--name value" pairs into the named slots; unknown flags are usage errors. */
typedef struct {
  const char *name;
  const char **value;
} flag;

static int parse(int argc, char **argv, flag *flags, int nflags, char *err, size_t errlen) {
  for (int i = 3; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2)) {
      snprintf(err, errlen, "unexpected argument '%s'", a);
      return -1;
    }
    const char *eq = strchr(a, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    int k = 0;
    while (k < nflags && (strlen(flags[k].name) != len || strncmp(flags[k].name, a + 2, len)))
      k++;
    if (k == nflags) {
      snprintf(err, errlen, "unknown flag '%.*s'", (int)len + 2, a);
      return -1;
    }
    if (eq) {
      *flags[k].value = eq + 1;
    } else if (i + 1 < argc) {
      *flags[k].value = argv[++i];
    } else {
      snprintf(err, errlen, "flag '%s' needs a value", a);
      return -1;
    }
  }
  return 0;
}

static int to_long(const char *name, const char *text, long *out, char *err, size_t errlen) {
  char *end;
  *out = strtol(text, &end, 10);
  if (end == text || *end) {
    snprintf(err, errlen, "--%s: '%s' is not a whole number", name, text);
    return -1;
  }
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
  if (!strcmp(sub, "import-idx")) {
    const char *dir = NULL, *out = NULL;
    flag f[] = {{"dir", &dir}, {"out", &out}};
    if (parse(argc, argv, f, 2, err, sizeof err) || !dir || !out) {
      if (!err[0]) snprintf(err, sizeof err, "import-idx needs --dir and --out");
      status = DPT_EXIT_USAGE;
    } else if (rank == 0 && dpt_data_import_idx(dir, out, err, sizeof err)) {
      status = DPT_EXIT_RUN;
    }
  } else if (!strcmp(sub, "synth")) {
    const char *out = NULL, *tr = "60000", *te = "10000", *fe = "784", *cl = "10", *sd = "1";
    flag f[] = {{"out", &out},     {"train", &tr},   {"test", &te},
                {"features", &fe}, {"classes", &cl}, {"seed", &sd}};
    long ntr, nte, nfe, ncl, seed;
    if (parse(argc, argv, f, 6, err, sizeof err) || !out ||
        to_long("train", tr, &ntr, err, sizeof err) ||
        to_long("test", te, &nte, err, sizeof err) ||
        to_long("features", fe, &nfe, err, sizeof err) ||
        to_long("classes", cl, &ncl, err, sizeof err) ||
        to_long("seed", sd, &seed, err, sizeof err)) {
      if (!err[0]) snprintf(err, sizeof err, "synth needs --out");
      status = DPT_EXIT_USAGE;
    } else if (rank == 0 && dpt_data_synth(out, ntr, nte, nfe, ncl, seed, err, sizeof err)) {
      status = DPT_EXIT_RUN;
    }
  } else {
    snprintf(err, sizeof err, "unknown data command '%s' (expected import-idx or synth)", sub);
    status = DPT_EXIT_USAGE;
  }
  /* rank 0 did the work; everyone exits with its status */
  MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (status && rank == 0) {
    fprintf(stderr, "dpt data: %s\n", err);
    if (status == DPT_EXIT_USAGE) data_usage(stderr);
  }
  return status;
}
