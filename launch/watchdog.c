/* watchdog.c — the `dpt train` watchdog: a job never hangs for ever.
 *
 * A rank that stops answering (stopped, swapped out, a lost link) leaves its peers blocked in a
 * collective for ever. A thread of every rank watches the trainer's published progress; when
 * one collective has blocked for the limit it prints one line naming the step, the collective
 * and the last good checkpoint, and ends the process: it cannot call MPI from its thread, and
 * the launcher (mpirun; srun with --kill-on-bad-exit) then ends the whole job, stopped ranks
 * included.
 *
 * The limit: --watchdog S, or by default (auto) the larger of DPT_WATCHDOG_FLOOR_S and
 * DPT_WATCHDOG_FACTOR times the slowest step seen (a step's time counts everything between two
 * steps: checkpoint writes and evaluations included); --watchdog 0 turns it off.
 *
 * It covers the whole job: it starts before MPI_Init (the options are parsed first), and the
 * phases the trainer does not publish count as one wait each: MPI's set-up, the start-up until
 * the trainer's first collective of step 1 (dataset open, checkpoint load, the set-up
 * agreements), and the exit (MPI_Finalize).
 *
 * When a link is cut, Open MPI's own daemons can block too: mpirun waits for the cut node's
 * daemon to confirm that its ranks are gone, and that daemon for orders from mpirun, until TCP
 * keepalive gives up (Open MPI's default: 300 s + 9 x 20 s). So when the watchdog fires under an
 * Open MPI daemon (the rank's parent is mpirun or orted), a small guardian process outlives the
 * rank and kills that daemon if it is still there DPT_WATCHDOG_GRACE_S later; the daemons of the
 * reachable nodes then see their lifeline close and end their ranks. (The batch scripts also set
 * OOB keepalive, which ends such a job sooner: README "When things go wrong".) */
#define _GNU_SOURCE /* snprintf of paths */
#include "launch.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The default limit's floor: long enough for an MPI start-up on a loaded cluster and a first
 * checkpoint of a few GiB, short enough that a hung job is gone within a minute (a stopped rank:
 * the floor plus the guardian's grace). */
#define DPT_WATCHDOG_FLOOR_S 45.0
/* ... or this many times the slowest step seen: a step can be a few times slower than the
 * slowest so far (a bigger checkpoint, a busier file system) without being hung. */
#define DPT_WATCHDOG_FACTOR 4.0
/* How long the guardian leaves the launcher's daemon to end the job by itself (mpirun ends a
 * job within ≈ 4 s of a rank's exit when its daemons answer). */
#define DPT_WATCHDOG_GRACE_S 5

typedef struct {
  double timeout;              /* > 0: fixed (--watchdog S); < 0: auto */
  char ckpt_dir[1100];         /* where `latest` names the last good checkpoint ("": none) */
  _Atomic int rank;            /* for the line */
  _Atomic(const char *) phase; /* what main is in, when the trainer publishes nothing */
  _Atomic double phase_since;  /* since when (dpt_clock) */
  _Atomic int phase_final;     /* the exit: counts whatever the trainer published */
} watchdog_cfg;

static watchdog_cfg g_wd;

void dpt_launch_watchdog_phase(const char *what, int final) {
  g_wd.phase_since = dpt_clock();
  g_wd.phase_final = final;
  g_wd.phase = what;
}

void dpt_launch_watchdog_rank(int rank) {
  g_wd.rank = rank;
}

/* The last good checkpoint as the line names it: the file `latest` names, or why there is none. */
static void last_checkpoint(const char *dir, char *buf, size_t len) {
  if (!dir[0]) {
    snprintf(buf, len, "none (checkpoints are off)");
    return;
  }
  char path[1200], name[256] = "";
  snprintf(path, sizeof path, "%s/latest", dir);
  FILE *f = fopen(path, "r");
  if (f) {
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
  }
  name[strcspn(name, "\r\n")] = 0;
  if (name[0])
    snprintf(buf, len, "%s/%s", dir, name);
  else
    snprintf(buf, len, "none yet in %s", dir);
}

/* 1 if pid is one of Open MPI's launchers or daemons (its /proc comm). */
static int is_mpi_daemon(pid_t pid) {
  static const char *names[] = {"mpirun", "mpiexec", "orterun", "orted", "prterun", "prted"};
  char path[64], comm[32] = "";
  snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
  fclose(f);
  comm[strcspn(comm, "\n")] = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcmp(comm, names[i])) return 1;
  return 0;
}

/* A process that kills the daemon if it has not ended the job DPT_WATCHDOG_GRACE_S from now.
 * Only async-signal-safe calls after the fork (the rank is multi-threaded); it closes every
 * descriptor so that the daemon does not wait for its output pipes. */
static void start_guardian(void) {
  pid_t daemon = getppid();
  if (daemon <= 1 || !is_mpi_daemon(daemon)) return;
  pid_t g = fork();
  if (g != 0) return; /* the rank (or a failed fork: nothing to do) */
  setsid();           /* not in the rank's process group: the daemon's signals to it miss us */
  for (int fd = 0; fd < 1024; fd++) close(fd);
  for (int s = 0; s < DPT_WATCHDOG_GRACE_S * 5; s++) {
    struct timespec t = {0, 200 * 1000 * 1000};
    nanosleep(&t, NULL);
    if (kill(daemon, 0) != 0) _exit(0); /* the daemon ended the job */
  }
  kill(daemon, SIGKILL);
  _exit(0);
}

/* A launcher that ends a job (mpirun when a rank died or a node was lost) sends every rank TERM
 * and, a second later (Open MPI's odls_base_sigkill_timeout), KILL: a rank blocked in a
 * collective cannot stop at a step, so the watchdog says what it was doing and where the last
 * good checkpoint is, once, while it can: within DPT_WATCHDOG_TERM_S of the signal plus a tick,
 * which leaves the launcher most of that second to forward the line (one CI run ended without
 * it when the line came 0.4-0.8 s after the signal, or two slowest steps after it). */
#define DPT_WATCHDOG_TERM_S 0.25 /* blocked this long since the signal was seen */
#define DPT_WATCHDOG_TICK_MS 50

static void *watchdog_main(void *arg) {
  watchdog_cfg *w = arg;
  struct timespec tick = {0, DPT_WATCHDOG_TICK_MS * 1000 * 1000};
  long last_step = -1;
  double last_step_at = dpt_clock(), slowest = 0, signal_seen = 0;
  int told = 0;
  for (;;) {
    nanosleep(&tick, NULL);
    dpt_progress p;
    dpt_progress_get(&p);
    double now = dpt_clock();
    int stop_sig = dpt_stop_signal_pending();
    if (!told && p.waiting_in && stop_sig) {
      if (signal_seen == 0) signal_seen = now;
      /* blocked since before the signal: DPT_WATCHDOG_TERM_S. A wait begun after it (the rank
       * was computing when the signal came, then entered a collective its dead peer never
       * joins) is told too: after the same time for TERM (the launcher's KILL follows), else
       * once it has lasted twice the slowest step (USR1 or Ctrl-C: a peer may still be
       * finishing its step on the way to a graceful stop); the stop's own checkpoint write is
       * never told */
      double after = now - (p.since > signal_seen ? p.since : signal_seen);
      double bound = p.since < signal_seen || stop_sig == SIGTERM ? DPT_WATCHDOG_TERM_S
                     : 2 * slowest > DPT_WATCHDOG_TERM_S          ? 2 * slowest
                                                                  : DPT_WATCHDOG_TERM_S;
      if (after >= bound &&
          (p.since < signal_seen || strcmp(p.waiting_in, "the checkpoint write"))) {
        char ckpt[1400];
        last_checkpoint(w->ckpt_dir, ckpt, sizeof ckpt);
        const char *sig = dpt_stop_signal_name();
        fprintf(stderr,
                "dpt[rank %d]: %s at step %ld while blocked %.0f s in %s: the job is being "
                "ended (a peer died or its link is lost); last good checkpoint: %s\n",
                w->rank, sig ? sig : "a stop signal", p.step, now - p.since, p.waiting_in, ckpt);
        fflush(stderr);
        told = 1;
      }
    }
    if (p.step != last_step) { /* a step began: the previous one took now - last_step_at */
      if (last_step >= 1 && now - last_step_at > slowest) slowest = now - last_step_at;
      last_step = p.step;
      last_step_at = now;
    }
    double limit = w->timeout;
    if (limit < 0) {
      limit = DPT_WATCHDOG_FACTOR * slowest;
      if (limit < DPT_WATCHDOG_FLOOR_S) limit = DPT_WATCHDOG_FLOOR_S;
    }
    const char *what = p.waiting_in, *phase = w->phase;
    double since = p.since;
    /* before the trainer's first collective (since 0), and at the exit, main's phase counts */
    if (phase && (w->phase_final || (!what && p.since == 0))) {
      what = phase;
      since = w->phase_since;
    }
    double waited = now - since;
    if (what && waited >= limit) {
      char ckpt[1400], how[64];
      last_checkpoint(w->ckpt_dir, ckpt, sizeof ckpt);
      if (w->timeout < 0)
        snprintf(how, sizeof how, "--watchdog auto: %.0f s", limit);
      else
        snprintf(how, sizeof how, "--watchdog %g", w->timeout);
      fprintf(stderr,
              "dpt[rank %d]: watchdog: step %ld: blocked %.0f s in %s (%s); a peer stopped "
              "answering or its link is lost; last good checkpoint: %s; ending the job\n",
              w->rank, p.step, waited, what, how, ckpt);
      fflush(stderr);
      start_guardian();
      _exit(DPT_EXIT_HUNG);
    }
  }
  return NULL;
}

void dpt_launch_watchdog_start(const dpt_train_opts *o, int rank) {
  if (o->watchdog == 0) return;
  g_wd.timeout = o->watchdog;
  g_wd.rank = rank;
  /* the checkpoint directory as the trainer resolves it (runtime/train.c) */
  int saving = o->ckpt || o->ckpt_every > 0 || o->ckpt_epochs > 0 || o->ckpt_dir[0];
  const char *job = getenv("SLURM_JOB_ID"), *array = getenv("SLURM_ARRAY_JOB_ID"),
             *task = getenv("SLURM_ARRAY_TASK_ID");
  char run_dir[1100];
  if (o->run_dir[0])
    snprintf(run_dir, sizeof run_dir, "%s", o->run_dir);
  else if (array && task && *array && *task)
    snprintf(run_dir, sizeof run_dir, "runs/slurm-%s_%s", array, task);
  else if (job && *job)
    snprintf(run_dir, sizeof run_dir, "runs/slurm-%s", job);
  else
    snprintf(run_dir, sizeof run_dir, "runs/dpt");
  if (!saving)
    g_wd.ckpt_dir[0] = 0;
  else if (o->ckpt_dir[0])
    snprintf(g_wd.ckpt_dir, sizeof g_wd.ckpt_dir, "%s", o->ckpt_dir);
  else
    snprintf(g_wd.ckpt_dir, sizeof g_wd.ckpt_dir, "%.1000s/ckpt", run_dir);
  dpt_launch_watchdog_phase("the MPI set-up (MPI_Init)", 0);
  pthread_t wt;
  if (pthread_create(&wt, NULL, watchdog_main, &g_wd) == 0) pthread_detach(wt);
}
