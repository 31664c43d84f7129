/* compare.c — `dpt compare`: several training runs (solvers, schedules) on the same data, the
 * same initial parameters and the same batch order, side by side, then one table and one set of
 * plots of all of them.
 *
 * Invariants:
 * - The ranks are split into groups of equal size (one communicator each); run i trains on
 *   group i mod G, so with enough ranks runs train at the same time, and otherwise one after
 *   another. Every run is an ordinary dpt_train_run in its own directory <out>/<name>.
 * - A run that fails (it diverges, say) does not stop the others: its group records the message
 *   in <out>/<name>/error.txt and the table says "failed".
 * - Rank 0 of comm writes the table (summary.md, and to `out`) and the plots once every group
 *   is done; it reads the runs' metrics files, so <out> must be visible to it (one machine, or a
 *   shared file system as clusters have).
 */
#include "comm.h"
#include "playground.h"
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A directory name from a label: letters, digits, '-', '_', '.', others as '_'. */
static void dir_name(const char *label, char *out, size_t len) {
  size_t k = 0;
  for (const char *c = label; *c && k + 1 < len; c++)
    out[k++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                       *c == '-' || *c == '.' || *c == '_'
                   ? *c
                   : '_';
  out[k] = 0;
}

/* Group size: what the caller asked for, else as many ranks per run as the runs leave, at
 * least one; always a divisor of W. */
static int group_size(int asked, int size, int nruns) {
  int g = asked > 0 ? asked : (size >= nruns ? size / nruns : 1);
  if (g > size) g = size;
  while (size % g) g--;
  return g;
}

static void write_error(const char *dir, const char *msg) {
  char path[1200];
  snprintf(path, sizeof path, "%s/error.txt", dir);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "%s\n", msg);
  fclose(f);
}

static int read_error(const char *dir, char *msg, size_t len) {
  char path[1200];
  snprintf(path, sizeof path, "%s/error.txt", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  if (!fgets(msg, (int)len, f)) msg[0] = 0;
  fclose(f);
  msg[strcspn(msg, "\n")] = 0;
  return 1;
}

static void fmt_num(char *buf, size_t len, double v, const char *fmt) {
  if (isfinite(v))
    snprintf(buf, len, fmt, v);
  else
    snprintf(buf, len, "—");
}

/* The table, as Markdown, into f. */
static void write_table(FILE *f, const dpt_train_opts *runs, char (*dirs)[1100], int nruns,
                        double target) {
  char tgt[64];
  fmt_num(tgt, sizeof tgt, target, "%g");
  fprintf(f,
          "| run | final test acc | best test acc | final test loss | best test loss | "
          "final train loss | time (s) | steps | steps to loss <= %s |\n",
          tgt);
  fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < nruns; i++) {
    char path[1200], msg[512], err[DPT_ERR_LEN];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dirs[i]);
    dpt_metrics_summary s;
    int failed = read_error(dirs[i], msg, sizeof msg);
    if (dpt_metrics_summarize(path, target, &s, err, sizeof err)) {
      fprintf(f, "| %s | failed: %s |||||||\n", runs[i].label, failed ? msg : err);
      continue;
    }
    char c[7][32];
    fmt_num(c[0], sizeof c[0], s.final_acc, "%.4f");
    fmt_num(c[1], sizeof c[1], s.best_acc, "%.4f");
    fmt_num(c[2], sizeof c[2], s.final_loss, "%.4f");
    fmt_num(c[3], sizeof c[3], s.best_loss, "%.4f");
    fmt_num(c[4], sizeof c[4], s.final_train_loss, "%.4f");
    fmt_num(c[5], sizeof c[5], s.seconds, "%.1f");
    if (s.steps_to_target >= 0)
      snprintf(c[6], sizeof c[6], "%ld", s.steps_to_target);
    else
      snprintf(c[6], sizeof c[6], "—");
    fprintf(f, "| %s%s | %s | %s | %s | %s | %s | %s | %ld | %s |\n", runs[i].label,
            failed ? " (failed)" : "", c[0], c[1], c[2], c[3], c[4], c[5], s.steps, c[6]);
  }
}

/* Rank 0, after every run: summary.md, the table on out, the plots. */
static int summarize(const dpt_train_opts *runs, char (*dirs)[1100], int nruns, double target,
                     const char *outdir, FILE *out, char *err, size_t errlen) {
  char path[1200];
  snprintf(path, sizeof path, "%s/summary.md", outdir);
  dpt_afile a;
  int rc = dpt_afile_open(&a, path, err, errlen);
  if (rc) return rc;
  write_table(a.f, runs, dirs, nruns, target);
  if ((rc = dpt_afile_commit(&a, err, errlen))) return rc;
  if (out) write_table(out, runs, dirs, nruns, target);
  /* plots of the runs that left metrics */
  const char **files = calloc((size_t)nruns, sizeof *files),
             **labels = calloc((size_t)nruns, sizeof *labels);
  char(*paths)[1200] = calloc((size_t)nruns, sizeof *paths);
  int n = 0;
  if (!files || !labels || !paths) {
    snprintf(err, errlen, "out of memory");
    rc = DPT_ENOMEM;
  }
  for (int i = 0; !rc && i < nruns; i++) {
    snprintf(paths[n], sizeof paths[n], "%s/metrics.jsonl", dirs[i]);
    if (access(paths[n], R_OK)) continue;
    files[n] = paths[n];
    labels[n++] = runs[i].label;
  }
  if (!rc) rc = dpt_plot_metrics(files, labels, n, outdir, err, errlen);
  free(files), free(labels), free(paths);
  return rc;
}

int dpt_compare_run(const dpt_train_opts *runs, int nruns, int group_ranks, double target_loss,
                    const char *outdir, MPI_Comm comm, FILE *out, char *err, size_t errlen) {
  int rank, size;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (nruns < 1) {
    snprintf(err, errlen, "compare: nothing to run");
    return DPT_EINVAL;
  }
  if (group_ranks > size || (group_ranks > 0 && size % group_ranks)) {
    snprintf(err, errlen, "--group-ranks %d: must divide the %d ranks", group_ranks, size);
    return DPT_EINVAL;
  }
  int g = group_size(group_ranks, size, nruns), ngroups = size / g, mine = rank / g;
  char(*dirs)[1100] = calloc((size_t)nruns, sizeof *dirs);
  int rc = dirs ? DPT_OK : DPT_ENOMEM;
  if (rc || dpt_comm_agree(comm, rc)) {
    free(dirs);
    snprintf(err, errlen, "out of memory");
    return DPT_ENOMEM;
  }
  for (int i = 0; i < nruns; i++) {
    char name[256];
    dir_name(runs[i].label, name, sizeof name);
    snprintf(dirs[i], sizeof dirs[i], "%s/%s", outdir, name);
  }
  if (rank == 0) {
    rc = dpt_mkdirs(outdir, "--out", err, errlen);
    for (int i = 0; i < nruns && !rc; i++) {
      char path[1200];
      snprintf(path, sizeof path, "%s/error.txt", dirs[i]);
      unlink(path); /* from an earlier compare into the same directory */
    }
    if (!rc && out)
      fprintf(out, "dpt compare: %d runs, %d group%s of %d rank%s\n", nruns, ngroups,
              ngroups > 1 ? "s" : "", g, g > 1 ? "s" : "");
  }
  if ((rc = dpt_comm_agree(comm, rc))) {
    dpt_comm_share_error(comm, rc, err, errlen);
    free(dirs);
    return rc;
  }
  MPI_Comm group;
  if (MPI_Comm_split(comm, mine, rank, &group) != MPI_SUCCESS) {
    free(dirs);
    snprintf(err, errlen, "compare: MPI_Comm_split failed");
    return DPT_EMPI;
  }
  int grank;
  MPI_Comm_rank(group, &grank);
  for (int i = mine; i < nruns; i += ngroups) {
    dpt_train_opts o = runs[i];
    snprintf(o.run_dir, sizeof o.run_dir, "%s", dirs[i]);
    o.metrics[0] = 0;
    dpt_train_result res;
    char rerr[DPT_ERR_LEN];
    int r = dpt_train_run(&o, group, &res, rerr, sizeof rerr);
    if (r && grank == 0) {
      dpt_mkdirs(dirs[i], "--out", err, errlen);
      write_error(dirs[i], rerr);
      dpt_log(DPT_LOG_ERROR, "%s failed: %s", runs[i].label, rerr);
    }
  }
  MPI_Comm_free(&group);
  if (MPI_Barrier(comm) != MPI_SUCCESS) { /* every run ended; the summary waits for all */
    free(dirs);
    snprintf(err, errlen, "MPI_Barrier after the runs failed");
    return DPT_EMPI;
  }
  if (rank == 0) rc = summarize(runs, dirs, nruns, target_loss, outdir, out, err, errlen);
  rc = dpt_comm_agree(comm, rc);
  if (rc) dpt_comm_share_error(comm, rc, err, errlen);
  free(dirs);
  return rc;
}
