/* test_stop_options.c — the options that stop a run on request: durations in seconds and in
 * SLURM's time format (as `squeue -o %L` prints the time left), signal lists, and their
 * rejection with a message naming the option. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <string.h>

#include "runtime.h"

static void test_durations(void **state) {
  (void)state;
  static const struct {
    const char *text;
    double secs;
  } ok[] = {
      {"", 0},
      {"UNLIMITED", 0},
      {"90", 90},
      {"1.5", 1.5},
      {"0:02", 2},
      {"59:30", 3570},
      {"45", 45},
      {"1:00:00", 3600},
      {"12:34:56", 45296},
      {"2-00:00:00", 172800},
      {"1-12", 129600},
      {"1-02:03", 93780},
      {"3-04:05:06", 273906},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    double s = -1;
    assert_int_equal(dpt_parse_duration(ok[i].text, &s), 0);
    assert_true(s == ok[i].secs);
  }
  static const char *const bad[] = {"abc",  "-5",    "0",   "1:2:3:4", "1-",  "-1:00",
                                    "1:xx", "1:00:", ":30", "nan",     "inf", "0:00"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    double s;
    assert_int_equal(dpt_parse_duration(bad[i], &s), -1);
  }
}

static void test_signals(void **state) {
  (void)state;
  unsigned m;
  char err[256];
  assert_int_equal(dpt_parse_signals("USR1,TERM", &m, err, sizeof err), 0);
  assert_int_equal(m, (1u << SIGUSR1) | (1u << SIGTERM));
  assert_int_equal(dpt_parse_signals("SIGUSR2", &m, err, sizeof err), 0);
  assert_int_equal(m, 1u << SIGUSR2);
  assert_int_equal(dpt_parse_signals("none", &m, err, sizeof err), 0);
  assert_int_equal(m, 0);
  assert_int_equal(dpt_parse_signals("USR1,KILL", &m, err, sizeof err), -1);
  assert_non_null(strstr(err, "--stop-signals: 'KILL'"));
}

/* the options go through the one setter and validator, with messages naming the flag */
static void test_validate(void **state) {
  (void)state;
  dpt_train_opts o;
  char err[DPT_ERR_LEN];
  dpt_train_defaults(&o);
  assert_string_equal(o.stop_signals, "USR1,TERM,INT");
  assert_string_equal(o.time_limit, "");
  assert_int_equal(dpt_train_set(&o, "data", "x.h5", err, sizeof err), 0);
  assert_int_equal(dpt_train_set(&o, "time_limit", "1-00:00:00", err, sizeof err), 0);
  assert_int_equal(dpt_train_validate(&o, err, sizeof err), 0);
  assert_int_equal(dpt_train_set(&o, "time_limit", "soon", err, sizeof err), 0);
  assert_int_equal(dpt_train_validate(&o, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "--time-limit: 'soon'"));
  assert_int_equal(dpt_train_set(&o, "time_limit", "", err, sizeof err), 0);
  assert_int_equal(dpt_train_set(&o, "stop_signals", "USR1,STOP", err, sizeof err), 0);
  assert_int_equal(dpt_train_validate(&o, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "'STOP'"));
  assert_int_equal(dpt_train_set(&o, "stop_margin", "-1", err, sizeof err), DPT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_signals),
      cmocka_unit_test(test_validate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
