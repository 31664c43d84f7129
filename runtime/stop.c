/* stop.c — stopping on request: a signal, or the time limit.
 * A handler only records the signal; each step's reduction tells every rank whether any rank
 * wants to stop, so all stop after the same step, write a checkpoint and return DPT_ESTOPPED.
 * Ctrl-C (SIGINT, a stop signal by default) stops the same way; a second Ctrl-C ends the
 * process at once, as users expect of a second one. */
#include <signal.h>
#include <string.h>

#include "train_internal.h"

static volatile sig_atomic_t g_stop_signal; /* the last stop signal received (0: none) */

static void on_stop_signal(int sig) {
  if (sig == SIGINT && g_stop_signal) { /* the second Ctrl-C: now (async-signal-safe calls) */
    signal(SIGINT, SIG_DFL);
    raise(SIGINT);
    return;
  }
  g_stop_signal = sig;
}

int dpt_stop_signal_pending(void) {
  return g_stop_signal;
}

const char *dpt_stop_signal_name(void) {
  switch (g_stop_signal) {
  case SIGUSR1: return "SIGUSR1";
  case SIGUSR2: return "SIGUSR2";
  case SIGTERM: return "SIGTERM";
  case SIGINT: return "SIGINT (Ctrl-C)";
  case SIGHUP: return "SIGHUP";
  }
  return NULL;
}

void dpt_stop_handlers_install(stop_handlers *h, unsigned mask) {
  g_stop_signal = 0;
  h->mask = mask;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s = 1; s < 32; s++)
    if (mask & (1u << s)) sigaction(s, &sa, &h->old[s]);
}

void dpt_stop_handlers_restore(const stop_handlers *h) {
  for (int s = 1; s < 32; s++)
    if (h->mask & (1u << s)) sigaction(s, &h->old[s], NULL);
}

int dpt_out_of_time(const run *r, const dpt_train_opts *o) {
  if (r->time_limit <= 0) return 0;
  double need = r->slowest_step + r->slowest_ckpt + o->stop_margin;
  return dpt_now() - r->t_start + need >= r->time_limit;
}
