/* parse.c — the one parser of option values (base.h): booleans and numbers, blanks around
 * them ignored, nothing else left over. */
#include "base.h"

#include <ctype.h>
#include <stdio.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* [*b, *e) is text without the blanks around it. */
static void trim(const char *text, const char **b, const char **e) {
  const char *s = text, *t = text + strlen(text);
  while (s < t && isspace((unsigned char)*s)) s++;
  while (t > s && isspace((unsigned char)t[-1])) t--;
  *b = s, *e = t;
}

static int word_is(const char *b, const char *e, const char *w) {
  size_t n = strlen(w);
  return (size_t)(e - b) == n && strncasecmp(b, w, n) == 0;
}

int dpt_parse_bool(const char *text, int *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                              "off"};
  const char *b, *e;
  if (!text) return DPT_EINVAL;
  trim(text, &b, &e);
  for (int i = 0; i < 4; i++) {
    if (word_is(b, e, yes[i])) return *out = 1, DPT_OK;
    if (word_is(b, e, no[i])) return *out = 0, DPT_OK;
  }
  return DPT_EINVAL;
}

/* strtod over [b, e) only: 0 and *v, or -1. */
static int read_double(const char *b, const char *e, double *v) {
  char buf[128];
  size_t n = (size_t)(e - b);
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, b, n);
  buf[n] = 0;
  if (isspace((unsigned char)buf[0])) return -1;
  char *end;
  errno = 0;
  double x = strtod(buf, &end);
  if (*end || errno == ERANGE || !isfinite(x)) return -1;
  *v = x;
  return 0;
}

int dpt_parse_double(const char *text, double *out) {
  const char *b, *e;
  double v;
  if (!text) return DPT_EINVAL;
  trim(text, &b, &e);
  if (read_double(b, e, &v)) return DPT_EINVAL;
  *out = v;
  return DPT_OK;
}

int dpt_parse_long(const char *text, long *out) {
  const char *b, *e;
  if (!text) return DPT_EINVAL;
  trim(text, &b, &e);
  const char *d = b + (b < e && (*b == '-' || *b == '+'));
  int digits = d < e;
  for (const char *p = d; p < e; p++) digits &= isdigit((unsigned char)*p) != 0;
  if (digits) { /* exact, whatever the size */
    char buf[32];
    size_t n = (size_t)(e - b);
    if (n >= sizeof buf) return DPT_EINVAL;
    memcpy(buf, b, n);
    buf[n] = 0;
    errno = 0;
    long v = strtol(buf, NULL, 10);
    if (errno == ERANGE) return DPT_EINVAL;
    *out = v;
    return DPT_OK;
  }
  /* "1e6", "2.0": whole and exactly representable (|v| <= 2^53) */
  double v;
  if (read_double(b, e, &v) || v != floor(v) || fabs(v) > 9007199254740992.0) return DPT_EINVAL;
  *out = (long)v;
  return DPT_OK;
}

void dpt_format_double(char *buf, size_t len, double v) {
  for (int digits = 6; digits <= 17; digits++) {
    snprintf(buf, len, "%.*g", digits, v);
    if (strtod(buf, NULL) == v) return;
  }
}
