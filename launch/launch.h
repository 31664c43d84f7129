/* launch.h — what the `dpt` command's files share: exit statuses and subcommands. */
#ifndef DPT_LAUNCH_H
#define DPT_LAUNCH_H

#include "runtime.h"

/* Exit status of the dpt command (README "Exit status"). */
enum {
  DPT_EXIT_OK = 0,
  DPT_EXIT_RUN = 1,
  DPT_EXIT_USAGE = 2,
  DPT_EXIT_STOPPED = 3,
  DPT_EXIT_HUNG = 4
};

/* --- options: the command line and --config files as one ordered list (main.c) --- */
typedef struct {
  char *key;          /* dashes turned into underscores */
  char *value;        /* "" when bare */
  const char *origin; /* "command line" or the config file's path */
  int line;           /* the config file's line (0 on the command line) */
  int bare;           /* a flag given alone ("--verbose"): only a boolean may be */
  char section[8];    /* the config file's section: "train", "solver", "sched" ("" otherwise) */
} kv;

typedef struct {
  kv *items;
  int n, cap;
  int take_args;     /* set by the caller: arguments that are not flags go to args (dpt plot's
                        files) instead of being an error */
  const char **args; /* borrowed from argv */
  int nargs;
} kv_list;

/* Parses argv[first..] ("--name value", "--name=value", "--flag", --config FILE read in place)
 * into l: the one option collector of every subcommand. Config files: INI sections [train] (or
 * none), [solver] ("name = adam" and its hyperparameters), [sched] ("name = cosine" and its);
 * an unknown section or a key given twice in one file is an error naming the file and line.
 * 0, or an exit status with a message. */
int dpt_launch_collect(int argc, char **argv, int first, kv_list *l, char *err, size_t errlen);
/* Applies l to o: the solver and scheduler kinds first, then everything else, in order. */
int dpt_launch_apply(dpt_train_opts *o, const kv_list *l, char *err, size_t errlen);
/* Names the config file and line in err when the bad value came from one. */
void dpt_launch_blame(const kv_list *l, char *err, size_t errlen);
void dpt_launch_kv_free(kv_list *l);
/* Writes o as an INI file that --config reads back to the same options ([train], [solver] with
 * its name and hyperparameters, [sched] likewise): `dpt train --print-config`. */
void dpt_launch_print_config(const dpt_train_opts *o, FILE *f);

/* `dpt compare ...` and `dpt plot ...` (compare.c); after MPI_Init on every rank. */
int dpt_launch_compare(int argc, char **argv, int rank, MPI_Comm comm);
int dpt_launch_plot(int argc, char **argv);

/* `dpt model show|torch|presets|cat ...` (model.c); no MPI. Returns the exit status. */
int dpt_launch_model(int argc, char **argv);

/* `dpt data ...`; called after MPI_Init on every rank. Returns the exit status. */
int dpt_launch_data(int argc, char **argv, int rank);

/* --- the watchdog (watchdog.c): a job never hangs for ever --- */
/* Starts the watchdog thread for o->watchdog (0: off; < 0: auto), before MPI_Init. */
void dpt_launch_watchdog_start(const dpt_train_opts *o, int rank);
/* What main is in when the trainer publishes nothing (final: the exit, which counts whatever
 * the trainer published last); the rank once MPI says it. */
void dpt_launch_watchdog_phase(const char *what, int final);
void dpt_launch_watchdog_rank(int rank);

#endif
