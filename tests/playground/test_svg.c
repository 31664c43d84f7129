/* test_svg.c — unit tests of runtime/playground/svg.c and plot.c: line charts (ticks for known
 * ranges, log axes, breaks, degenerate data, escaping, thinning of long series), contour plots
 * of Rosenbrock with a descent path, and dpt_plot_metrics on hand-written metrics files.
 * Every chart goes to DPT_TEST_TMP/svg, which check_svg.py then parses as XML (ctest fixture). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "playground.h"
#include "svg.h"

#define OUT DPT_TEST_TMP "/svg"

static char *out_path(char *buf, size_t len, const char *name) {
  mkdir(OUT, 0777);
  snprintf(buf, len, "%s/%s", OUT, name);
  return buf;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = 0;
  fclose(f);
  return s;
}

static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

/* The tick labels of class cls ("xtick", "ytick"), joined by '|'. */
static void ticks(const char *svg, const char *cls, char *buf, size_t len) {
  char key[32];
  snprintf(key, sizeof key, "class=\"%s\"", cls);
  buf[0] = 0;
  for (const char *p = strstr(svg, key); p; p = strstr(p + 1, key)) {
    const char *a = strchr(p, '>') + 1, *b = strchr(a, '<');
    size_t at = strlen(buf);
    snprintf(buf + at, len - at, "%s%.*s", at ? "|" : "", (int)(b - a), a);
  }
}

/* Checks what every chart must be: a complete SVG document, sized, with no NaN or Inf written,
 * and no temporary file left. Returns the text (free it). */
static char *check_chart(const char *path) {
  char *s = slurp(path);
  assert_non_null(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\""));
  assert_non_null(strstr(s, "viewBox=\"0 0 "));
  assert_non_null(strstr(s, "</svg>\n"));
  assert_null(strstr(s, "nan"));
  assert_null(strstr(s, "inf"));
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_int_not_equal(access(tmp, F_OK), 0);
  return s;
}

/* ---- line charts ---------------------------------------------------------------------------- */

static void test_chart_has_series_legend_and_nice_ticks(void **state) {
  (void)state;
  double x[11], y1[11], y2[11], y3[11];
  for (int i = 0; i <= 10; i++)
    x[i] = i, y1[i] = i / 10.0, y2[i] = 1 - i / 10.0, y3[i] = 0.5 + 0.3 * sin(i);
  dpt_series s[3] = {
      {"rising", 11, x, y1, 0, 0}, {"falling", 11, x, y2, 1, 0}, {NULL, 11, x, y3, 0, 0}};
  dpt_chart c = {"Three lines", "step", "value (units)", 0, 3, s, 0, 0};
  char path[1024], err[DPT_ERR_LEN], buf[1024];
  assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, "lines.svg"), &c, err, sizeof err), 0);
  char *svg = check_chart(path);
  assert_int_equal(count(svg, "class=\"series\""), 3);
  assert_int_equal(count(svg, "class=\"line\""), 3);
  assert_int_equal(count(svg, "class=\"legend-entry\""), 3);
  assert_int_equal(count(svg, "<circle"), 11 + 1);  /* falling's markers and its legend dot */
  assert_non_null(strstr(svg, ">series 3</text>")); /* a NULL label gets a name */
  assert_non_null(strstr(svg, ">Three lines</text>"));
  assert_non_null(strstr(svg, ">value (units)</text>"));
  ticks(svg, "xtick", buf, sizeof buf);
  assert_string_equal(buf, "0|2|4|6|8|10");
  ticks(svg, "ytick", buf, sizeof buf);
  assert_string_equal(buf, "0.0|0.2|0.4|0.6|0.8|1.0");
  free(svg);
}

static void test_log_axis_has_decades_and_breaks_at_nonpositive(void **state) {
  (void)state;
  enum { N = 1000 };
  static double x[N], y[N], z[N];
  for (int i = 0; i < N; i++) {
    x[i] = i + 1;
    y[i] = 10.0 * pow(1e-4, i / (double)(N - 1)); /* 10 down to 0.001 */
    z[i] = i == 500 ? 0 : i == 700 ? NAN : 0.5;   /* two breaks: three pieces */
  }
  dpt_series s[2] = {{"decay", N, x, y, 0, 0}, {"flat with gaps", N, x, z, 0, 0}};
  dpt_chart c = {"Log axis", "step", "loss", 1, 2, s, 0, 0};
  char path[1024], err[DPT_ERR_LEN], buf[1024];
  assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, "log.svg"), &c, err, sizeof err), 0);
  char *svg = check_chart(path);
  ticks(svg, "ytick", buf, sizeof buf);
  assert_string_equal(buf, "0.001|0.01|0.1|1|10");
  ticks(svg, "xtick", buf, sizeof buf);
  assert_string_equal(buf, "200|400|600|800|1000");
  assert_true(count(svg, "stroke=\"#f0f0f0\"") >= 30); /* 2..9 in each decade */
  const char *gaps = strstr(svg, "class=\"line\"");
  gaps = strstr(gaps + 1, "class=\"line\""); /* the second series' path */
  const char *end = strstr(gaps, "/>");
  int pieces = 0;
  for (const char *p = gaps; p < end; p++) pieces += *p == 'M';
  assert_int_equal(pieces, 3);
  free(svg);
}

static void test_narrow_log_range_gets_linear_ticks(void **state) {
  (void)state;
  double x[2] = {0, 1}, y[2] = {0.3, 0.9};
  dpt_series s = {"narrow", 2, x, y, 0, 0};
  dpt_chart c = {"Narrow log", "x", "y", 1, 1, &s, 0, 0};
  char path[1024], err[DPT_ERR_LEN], buf[1024];
  assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, "lognarrow.svg"), &c, err, sizeof err),
                   0);
  char *svg = check_chart(path);
  ticks(svg, "ytick", buf, sizeof buf);
  assert_string_equal(buf, "0.3|0.4|0.5|0.6|0.7|0.8|0.9");
  free(svg);
}

static void test_degenerate_data_gives_valid_charts(void **state) {
  (void)state;
  double one_x = 5, one_y = 3, xs[4] = {1, 2, 3, 4}, flat[4] = {2, 2, 2, 2};
  double nan[4] = {NAN, NAN, NAN, NAN}, zero[4] = {0, 0, 0, 0}, big[2] = {1e300, -1e300};
  struct {
    const char *name;
    int logy, nseries;
    dpt_series s;
    const char *ylabels; /* expected y ticks, or NULL */
  } cases[] = {
      {"one_point.svg", 0, 1, {"one", 1, &one_x, &one_y, 1, 0}, "2.7|2.8|2.9|3.0|3.1|3.2|3.3"},
      {"flat.svg", 0, 1, {"flat", 4, xs, flat, 0, 0}, NULL},
      {"flat_log.svg", 1, 1, {"flat", 4, xs, flat, 0, 0}, NULL},
      {"zero.svg", 0, 1, {"zero", 4, xs, zero, 0, 0}, "-1.0|-0.5|0.0|0.5|1.0"},
      {"empty.svg", 0, 1, {"empty", 0, NULL, NULL, 0, 0}, NULL},
      {"all_missing.svg", 0, 1, {"missing", 4, xs, nan, 0, 0}, NULL},
      {"zero_log.svg", 1, 1, {"zero", 4, xs, zero, 0, 0}, NULL},
      {"no_series.svg", 0, 0, {0}, NULL},
      {"huge.svg", 0, 1, {"huge", 2, xs, big, 0, 0}, NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    dpt_chart c = {cases[k].name, "x", "y", cases[k].logy, cases[k].nseries, &cases[k].s, 0, 0};
    char path[1024], err[DPT_ERR_LEN], buf[1024];
    assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, cases[k].name), &c, err, sizeof err),
                     0);
    char *svg = check_chart(path);
    int empty = cases[k].s.n == 0 || cases[k].s.y == nan || (cases[k].logy && cases[k].s.y == zero);
    assert_int_equal(count(svg, "class=\"nodata\""), empty || cases[k].nseries == 0);
    assert_int_equal(count(svg, "class=\"legend-entry\""), cases[k].nseries);
    ticks(svg, "ytick", buf, sizeof buf);
    assert_true(strlen(buf) > 0);
    if (cases[k].ylabels) assert_string_equal(buf, cases[k].ylabels);
    free(svg);
  }
}

static void test_labels_are_escaped(void **state) {
  (void)state;
  double x[2] = {0, 1}, y[2] = {1, 2};
  dpt_series s = {"a<b & \"c\" 'd'>", 2, x, y, 0, 0};
  dpt_chart c = {"T&C <x>\xff", "time </text> (s)", "y", 0, 1, &s, 0, 0};
  char path[1024], err[DPT_ERR_LEN];
  assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, "escape.svg"), &c, err, sizeof err),
                   0);
  char *svg = check_chart(path);
  assert_non_null(strstr(svg, ">a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;</text>"));
  assert_non_null(strstr(svg, ">T&amp;C &lt;x&gt;?</text>")); /* the stray byte is not UTF-8 */
  assert_non_null(strstr(svg, ">time &lt;/text&gt; (s)</text>"));
  assert_null(strstr(svg, "a<b"));
  free(svg);
}

static void test_long_series_are_thinned(void **state) {
  (void)state;
  enum { N = 10000, S = 4 };
  static double x[N], y[S][N];
  unsigned r = 1;
  for (int i = 0; i < N; i++) {
    x[i] = i + 1;
    for (int k = 0; k < S; k++) {
      r = r * 1103515245u + 12345u;
      y[k][i] = (2.0 + k) / sqrt(i + 1.0) * (1 + 0.3 * ((r >> 8) % 1000) / 1000.0);
    }
  }
  dpt_series s[S];
  for (int k = 0; k < S; k++) s[k] = (dpt_series){"noisy", N, x, y[k], 0, 0};
  dpt_chart c = {"Long", "step", "loss", 1, S, s, 0, 0};
  char path[1024], err[DPT_ERR_LEN];
  assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, "long.svg"), &c, err, sizeof err), 0);
  char *svg = check_chart(path);
  assert_true(strlen(svg) < 400000); /* 4 x 10k points: well under 1 MB */
  int points = 0;                    /* "Mx y", "Lx y" and " x y" in the lines' d attributes */
  for (const char *p = strstr(svg, "class=\"line\" d=\""); p;
       p = strstr(p + 1, "class=\"line\" d=\""))
    for (const char *q = p + 17; *q != '"'; q++) points += *q == ' ' || *q == 'M' || *q == 'L';
  points /= 2;
  assert_true(points > S * 500);      /* noisy: about 4 per pixel column kept */
  assert_true(points <= S * 4 * 720); /* first, lowest, highest, last per column */
  assert_int_equal(count(svg, "class=\"line\""), S);
  free(svg);
}

static void test_chart_errors(void **state) {
  (void)state;
  double x[2] = {0, 1};
  dpt_series s = {"bad", 2, x, NULL, 0, 0};
  dpt_chart c = {"t", "x", "y", 0, 1, &s, 0, 0};
  char path[1024], err[DPT_ERR_LEN];
  assert_int_equal(dpt_svg_chart(out_path(path, sizeof path, "bad.svg"), &c, err, sizeof err),
                   DPT_EINVAL);
  assert_non_null(strstr(err, "bad"));
  s.y = x;
  assert_int_equal(dpt_svg_chart(DPT_TEST_TMP "/no/such/dir/x.svg", &c, err, sizeof err), DPT_EIO);
  assert_non_null(strstr(err, "no/such/dir/x.svg"));
}

/* ---- contour plots -------------------------------------------------------------------------- */

static double rosenbrock(double x, double y, void *ctx) {
  (void)ctx;
  return (1 - x) * (1 - x) + 100 * (y - x * x) * (y - x * x);
}

static void test_contour_of_rosenbrock_with_path(void **state) {
  (void)state;
  enum { N = 1000 };
  static double px[N], py[N], mx[N], my[N];
  double x = -1.5, y = 2.0, vx = 0, vy = 0;
  for (int i = 0; i < N; i++) { /* heavy-ball descent and plain descent from the same start */
    px[i] = x, py[i] = y;
    double gx = -2 * (1 - x) - 400 * x * (y - x * x), gy = 200 * (y - x * x);
    vx = 0.9 * vx - 1e-3 * gx, vy = 0.9 * vy - 1e-3 * gy;
    x += vx, y += vy;
  }
  x = -1.5, y = 2.0;
  for (int i = 0; i < N; i++) {
    mx[i] = x, my[i] = y;
    double gx = -2 * (1 - x) - 400 * x * (y - x * x), gy = 200 * (y - x * x);
    x -= 1.5e-3 * gx, y -= 1.5e-3 * gy;
  }
  dpt_series s[2] = {{"momentum 0.9, lr 1e-3", N, px, py, 0, 0},
                     {"gd, lr 1.5e-3", N, mx, my, 0, 0}};
  dpt_contour_chart c = {"Rosenbrock", "x", "y", -2, 2, -1, 3, rosenbrock, NULL, 14, 2, s};
  char path[1024], err[DPT_ERR_LEN], buf[1024];
  assert_int_equal(
      dpt_svg_contour(out_path(path, sizeof path, "rosenbrock.svg"), &c, err, sizeof err), 0);
  char *svg = check_chart(path);
  assert_true(count(svg, "class=\"contour\"") >= 12);
  assert_int_equal(count(svg, "class=\"series\""), 2);
  assert_int_equal(count(svg, "class=\"legend-entry\""), 2);
  int markers = count(svg, "<circle");
  assert_true(markers > 40 && markers < N); /* paths carry markers, not where they overlap */
  assert_non_null(strstr(svg, "class=\"caption\""));
  ticks(svg, "xtick", buf, sizeof buf);
  assert_string_equal(buf, "-2.0|-1.5|-1.0|-0.5|0.0|0.5|1.0|1.5|2.0");
  ticks(svg, "ytick", buf, sizeof buf);
  assert_string_equal(buf, "-1|0|1|2|3");
  free(svg);
}

static double constant(double x, double y, void *ctx) {
  (void)x, (void)y, (void)ctx;
  return 1;
}

static double nowhere(double x, double y, void *ctx) {
  (void)x, (void)y, (void)ctx;
  return NAN;
}

static void test_contour_degenerate_and_errors(void **state) {
  (void)state;
  char path[1024], err[DPT_ERR_LEN];
  dpt_contour_chart c = {"Constant", "x", "y", 0, 1, 0, 1, constant, NULL, 0, 0, NULL};
  assert_int_equal(
      dpt_svg_contour(out_path(path, sizeof path, "contour_const.svg"), &c, err, sizeof err), 0);
  char *svg = check_chart(path);
  assert_int_equal(count(svg, "class=\"contour\""), 0);
  free(svg);
  c.f = nowhere;
  assert_int_equal(
      dpt_svg_contour(out_path(path, sizeof path, "contour_nan.svg"), &c, err, sizeof err), 0);
  free(check_chart(path));
  c.xmax = c.xmin;
  assert_int_equal(dpt_svg_contour(path, &c, err, sizeof err), DPT_EINVAL);
  assert_non_null(strstr(err, "window"));
  c.xmax = 1, c.f = NULL;
  assert_int_equal(dpt_svg_contour(path, &c, err, sizeof err), DPT_EINVAL);
}

/* ---- metrics plots -------------------------------------------------------------------------- */

static const char *PLOT_FILES[] = {"loss_step.svg", "loss_time.svg", "accuracy_step.svg",
                                   "accuracy_time.svg", "lr_step.svg"};

static FILE *create(const char *path) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) /* mkdir -p */
    *p = 0, mkdir(dir, 0777), *p = '/';
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  return f;
}

static void write_text(const char *path, const char *text) {
  FILE *f = create(path);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

/* A run of `steps` steps in epochs of 4 as report.c writes it (plus a field and a record type
 * the reader does not know), test accuracy null when !acc. */
static void write_run(const char *path, const char *label, int steps, int acc) {
  FILE *f = create(path);
  if (label)
    fprintf(f, "{\"type\":\"run\",\"ranks\":1,\"label\":\"%s\"}\n", label);
  else
    fprintf(f, "{\"type\":\"run\",\"ranks\":2,\"zero\":1,\"params\":596}\n");
  for (int s = 1; s <= steps; s++) {
    fprintf(f,
            "{\"type\":\"step\",\"step\":%d,\"epoch\":%d,\"loss\":%.6g,\"lr\":%.6g,"
            "\"grad_norm\":0.5,\"samples_per_s\":1e5,\"comm_wait_s\":1e-6,\"time\":%.6f,"
            "\"future_field\":[1,2]}\n",
            s, (s - 1) / 4, (2.0 + (s % 3)) / s, 1e-3 / (1 + s / 40.0), 0.01 * s);
    if (s % 4) continue;
    fprintf(f, "{\"type\":\"epoch\",\"epoch\":%d,\"step\":%d,\"train_loss\":1,", s / 4, s);
    if (acc)
      fprintf(f, "\"test_loss\":1.2,\"test_accuracy\":%.3f,", 0.5 + s / 100.0);
    else
      fprintf(f, "\"test_loss\":null,\"test_accuracy\":null,");
    fprintf(f, "\"lr\":0.001,\"time\":%.6f}\n", 0.01 * s);
  }
  fprintf(f, "{\"type\":\"new_kind\",\"x\":1}\n\n");
  assert_int_equal(fclose(f), 0);
}

static void test_plot_metrics_writes_five_charts(void **state) {
  (void)state;
  write_run(OUT "/runs/a/metrics.jsonl", NULL, 20, 1);
  write_run(OUT "/runs/b/metrics.jsonl", NULL, 16, 1);
  write_run(OUT "/runs/c/metrics.jsonl", "adam/cosine", 12, 0);
  const char *files[] = {OUT "/runs/a/metrics.jsonl", OUT "/runs/b/metrics.jsonl",
                         OUT "/runs/c/metrics.jsonl"};
  char err[DPT_ERR_LEN], path[1024];
  assert_int_equal(dpt_plot_metrics(files, NULL, 3, OUT "/plots", err, sizeof err), 0);
  for (int p = 0; p < 5; p++) {
    snprintf(path, sizeof path, "%s/plots/%s", OUT, PLOT_FILES[p]);
    char *svg = check_chart(path);
    assert_int_equal(count(svg, "class=\"legend-entry\""), 3);
    assert_non_null(strstr(svg, ">a/metrics</text>")); /* same file name: parent kept */
    assert_non_null(strstr(svg, ">b/metrics</text>"));
    assert_non_null(strstr(svg, ">adam/cosine<"));
    assert_int_equal(count(svg, "(no data)"), p == 2 || p == 3); /* named in the legend */
    /* c has no accuracies: its accuracy series has no line */
    assert_int_equal(count(svg, "class=\"line\""), p == 2 || p == 3 ? 2 : 3);
    free(svg);
  }
  char *svg = slurp(OUT "/plots/accuracy_step.svg");
  assert_non_null(strstr(svg, ">test accuracy (%)</text>"));
  char buf[1024];
  ticks(svg, "xtick", buf, sizeof buf);
  assert_string_equal(buf, "4|6|8|10|12|14|16|18|20");
  free(svg);
  const char *labels[] = {"first", NULL, "third"};
  assert_int_equal(dpt_plot_metrics(files, labels, 3, OUT "/plots_labelled", err, sizeof err), 0);
  svg = slurp(OUT "/plots_labelled/loss_step.svg");
  assert_non_null(strstr(svg, ">first</text>"));
  assert_non_null(strstr(svg, ">metrics</text>")); /* no clash left among the file names */
  assert_non_null(strstr(svg, ">third</text>"));
  free(svg);
}

static void test_plot_metrics_null_accuracy_only(void **state) {
  (void)state;
  write_run(OUT "/runs/noacc.jsonl", NULL, 8, 0);
  const char *files[] = {OUT "/runs/noacc.jsonl"};
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_plot_metrics(files, NULL, 1, OUT "/plots_noacc", err, sizeof err), 0);
  char *svg = check_chart(OUT "/plots_noacc/accuracy_time.svg");
  assert_int_equal(count(svg, "class=\"nodata\""), 1);
  assert_non_null(strstr(svg, ">noacc<tspan dx=\"7.2\" fill=\"#808080\">(no data)</tspan></text>"));
  free(svg);
  svg = check_chart(OUT "/plots_noacc/loss_step.svg");
  assert_int_equal(count(svg, "class=\"line\""), 1);
  free(svg);
}

static void test_plot_metrics_smooths_long_losses(void **state) {
  (void)state;
  write_run(OUT "/runs/long/a.jsonl", NULL, 600, 1);
  write_run(OUT "/runs/long/b.jsonl", NULL, 150, 1); /* short: drawn as it is */
  const char *files[] = {OUT "/runs/long/a.jsonl", OUT "/runs/long/b.jsonl"};
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_plot_metrics(files, NULL, 2, OUT "/plots_long", err, sizeof err), 0);
  const char *loss[] = {OUT "/plots_long/loss_step.svg", OUT "/plots_long/loss_time.svg"};
  for (int i = 0; i < 2; i++) {
    char *svg = check_chart(loss[i]);
    assert_int_equal(count(svg, "class=\"series faint\""), 1); /* a's raw losses */
    assert_int_equal(count(svg, "class=\"series\""), 2);       /* a smoothed, b */
    assert_int_equal(count(svg, "class=\"legend-entry\""), 2);
    assert_non_null(strstr(svg, "moving average"));
    /* the faint series shares a's colour, and is drawn first */
    const char *faint = strstr(svg, "class=\"series faint\""),
               *bold = strstr(svg, "class=\"series\"");
    assert_true(faint < bold);
    assert_memory_equal(strstr(faint, "stroke="), strstr(bold, "stroke="), 17);
    free(svg);
  }
  char *svg = check_chart(OUT "/plots_long/lr_step.svg");
  assert_int_equal(count(svg, "faint"), 0);
  free(svg);
}

/* ---- plots that one run cannot spoil ------------------------------------------------------- */

/* The y pixel of the y tick labelled label (-1 if none). */
static double ytick_y(const char *svg, const char *label) {
  char key[64];
  snprintf(key, sizeof key, ">%s</text>", label);
  for (const char *p = strstr(svg, "class=\"ytick\""); p; p = strstr(p + 1, "class=\"ytick\"")) {
    const char *end = strchr(p, '<');
    const char *k = strstr(p, key);
    double x, y;
    if (k && k < end + 1 + strlen(key) &&
        sscanf(p, "class=\"ytick\" x=\"%lf\" y=\"%lf\"", &x, &y) == 2)
      return y;
  }
  return -1;
}

/* The largest y tick value. */
static double top_ytick(const char *svg) {
  char buf[1024];
  ticks(svg, "ytick", buf, sizeof buf);
  const char *last = strrchr(buf, '|');
  return atof(last ? last + 1 : buf);
}

/* The points of the k-th line path (class="line"), at most max; returns how many. */
static int path_points(const char *svg, int k, double *x, double *y, int max) {
  const char *p = strstr(svg, "class=\"line\" d=\"");
  for (int i = 0; i < k && p; i++) p = strstr(p + 1, "class=\"line\" d=\"");
  assert_non_null(p);
  p += strlen("class=\"line\" d=\"");
  int n = 0;
  while (*p != '"') {
    while (*p == 'M' || *p == 'L' || *p == ' ' || *p == 'h' || (p[-1] == 'h' && *p == '0')) p++;
    if (*p == '"') break;
    char *end;
    double a = strtod(p, &end);
    assert_true(end > p);
    double b = strtod(end, &end);
    if (n < max) x[n] = a, y[n] = b;
    n++;
    p = end;
  }
  return n;
}

/* A run of steps records with loss(s) and lr(s) as given by kind, no epochs. */
static void write_curve(const char *path, const char *label, int steps, int kind) {
  FILE *f = create(path);
  fprintf(f, "{\"type\":\"run\",\"label\":\"%s\"}\n", label);
  for (int s = 1; s <= steps; s++) {
    double loss = 2.0 / (1 + 0.05 * s), lr = 1e-2;
    if (kind == 1) loss = 2.0 * pow(10, 30.0 * (s - 1) / (steps - 1)); /* 2 up to 2e30 */
    if (kind == 2) lr = 1e-3;
    if (kind == 3) lr = 1e-4;
    if (kind == 4) lr = 1e-2 * pow(1e-10, (s - 1.0) / (steps - 1)); /* to 1e-12 */
    if (kind == 5) lr = 1e-3 * (1 + 4.0 * (s - 1) / (steps - 1));   /* 1e-3 to 5e-3 */
    fprintf(f, "{\"type\":\"step\",\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"time\":%.3f}\n", s, loss,
            lr, 0.01 * s);
  }
  if (kind == 6) /* ends in a NaN loss (--on-nonfinite skip writes null) */
    fprintf(f, "{\"type\":\"step\",\"step\":%d,\"loss\":null,\"lr\":0.01,\"time\":9}\n", steps + 1);
  assert_int_equal(fclose(f), 0);
}

static void test_plot_lr_goes_on_a_log_axis_when_rates_span_a_decade(void **state) {
  (void)state;
  const char *files[] = {OUT "/runs/lr/sgd.jsonl", OUT "/runs/lr/adam.jsonl",
                         OUT "/runs/lr/lion.jsonl"};
  write_curve(files[0], "sgd", 50, 0);
  write_curve(files[1], "adam", 50, 2);
  write_curve(files[2], "lion", 50, 3);
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_plot_metrics(files, NULL, 3, OUT "/plots_lr", err, sizeof err), 0);
  char *svg = check_chart(OUT "/plots_lr/lr_step.svg");
  /* 1e-4, 1e-3 and 1e-2 a decade apart: equally spaced */
  double a = ytick_y(svg, "0.0001"), b = ytick_y(svg, "0.001"), c = ytick_y(svg, "0.01");
  assert_true(a > b && b > c && c > 0);
  assert_true(fabs((a - b) - (b - c)) < 0.2);
  free(svg);
  /* less than a decade (1e-3 to 5e-3): a linear axis, ticks equally spaced in value */
  write_curve(files[0], "ramp", 50, 5);
  assert_int_equal(dpt_plot_metrics(files, NULL, 1, OUT "/plots_lr_lin", err, sizeof err), 0);
  svg = check_chart(OUT "/plots_lr_lin/lr_step.svg");
  a = ytick_y(svg, "0.001"), b = ytick_y(svg, "0.002"), c = ytick_y(svg, "0.004");
  double d = ytick_y(svg, "0.005");
  assert_true(a > 0 && b > 0 && c > 0 && d > 0);
  assert_true(fabs((a - b) - (c - d)) < 0.2);
  free(svg);
  /* a rate that decays to 1e-12 does not stretch the axis: it stops 3 decades below the
   * smallest peak (adam's 1e-3) */
  write_curve(files[0], "decay", 50, 4);
  assert_int_equal(dpt_plot_metrics(files, NULL, 2, OUT "/plots_lr_decay", err, sizeof err), 0);
  svg = check_chart(OUT "/plots_lr_decay/lr_step.svg");
  char buf[1024];
  ticks(svg, "ytick", buf, sizeof buf);
  double lowest = atof(buf);
  assert_true(lowest >= 0.5e-6 && lowest <= 1e-5);
  free(svg);
}

static void test_plot_diverged_run_does_not_squash_the_others(void **state) {
  (void)state;
  const char *files[] = {OUT "/runs/div/good.jsonl", OUT "/runs/div/bad.jsonl",
                         OUT "/runs/div/skip.jsonl"};
  write_curve(files[0], "good", 50, 0);
  write_curve(files[1], "bad", 50, 1);
  write_curve(files[2], "skip", 50, 6);
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_plot_metrics(files, NULL, 3, OUT "/plots_div", err, sizeof err), 0);
  const char *charts[] = {OUT "/plots_div/loss_step.svg", OUT "/plots_div/loss_time.svg"};
  for (int k = 0; k < 2; k++) {
    char *svg = check_chart(charts[k]);
    assert_non_null(strstr(svg, ">good</text>"));
    assert_non_null(strstr(svg, ">bad (diverged)</text>"));
    assert_non_null(strstr(svg, ">skip (diverged)</text>"));
    /* the axis spans the good run (2 down to 0.3), not 2e30 */
    double top = top_ytick(svg);
    assert_true(top >= 1 && top <= 3);
    /* the diverged run is drawn up to where it leaves the plot at the top */
    double clip_y, xs[64], ys[64];
    const char *clip = strstr(svg, "<clipPath id=\"plotarea\"><rect x=\"");
    assert_non_null(clip);
    assert_int_equal(sscanf(strstr(clip, "y=\""), "y=\"%lf\"", &clip_y), 1);
    int n = path_points(svg, 1, xs, ys, 64);
    assert_int_equal(n, 50);
    assert_true(ys[0] > clip_y);  /* it starts inside */
    assert_true(ys[49] < clip_y); /* and ends above the plot */
    free(svg);
  }
  char *svg = check_chart(OUT "/plots_div/lr_step.svg"); /* named so in every legend */
  assert_non_null(strstr(svg, ">bad (diverged)</text>"));
  free(svg);
}

static void test_plot_legend_labels_are_unique(void **state) {
  (void)state;
  const char *files[] = {OUT "/runs/dup/a.jsonl", OUT "/runs/dup/b.jsonl", OUT "/runs/dup/c.jsonl",
                         OUT "/runs/dup/d.jsonl"};
  for (int i = 0; i < 4; i++) write_run(files[i], "sgd", 8, 1);
  const char *labels[] = {NULL, NULL, NULL, "sgd #2"};
  char err[DPT_ERR_LEN];
  assert_int_equal(dpt_plot_metrics(files, labels, 4, OUT "/plots_dup", err, sizeof err), 0);
  for (int p = 0; p < 5; p++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/plots_dup/%s", OUT, PLOT_FILES[p]);
    char *svg = check_chart(path);
    assert_int_equal(count(svg, "class=\"legend-entry\""), 4);
    /* the same points as a later run: drawn under it, and the legend says so */
    assert_int_equal(count(svg, ">sgd (same as sgd #2)</text>"), 1);
    assert_int_equal(count(svg, ">sgd #3 (same as sgd #2)</text>"), 1);
    assert_int_equal(count(svg, ">sgd #4 (same as sgd #2)</text>"), 1);
    assert_int_equal(count(svg, ">sgd #2</text>"), 1);
    free(svg);
  }
}

/* A run that crashed after step 10 and resumed from its checkpoint of step 6: steps 7-10 are
 * written twice, and the resumed run's clock restarted at 0 (as older trainers did). */
static void test_plot_resumed_run_keeps_the_last_record_per_step(void **state) {
  (void)state;
  const char *file = OUT "/runs/resumed.jsonl";
  FILE *f = create(file);
  fprintf(f, "{\"type\":\"run\",\"label\":\"resumed\"}\n");
  for (int s = 1; s <= 10; s++) {
    fprintf(f, "{\"type\":\"step\",\"step\":%d,\"loss\":1,\"lr\":0.1,\"time\":%.2f}\n", s, 0.1 * s);
    if (s % 5 == 0)
      fprintf(f,
              "{\"type\":\"epoch\",\"step\":%d,\"test_accuracy\":0.5,\"test_loss\":1,"
              "\"time\":%.2f}\n",
              s, 0.1 * s + 0.05);
  }
  fprintf(f, "{\"type\":\"run\",\"label\":\"resumed\"}\n");
  for (int s = 7; s <= 14; s++) {
    fprintf(f, "{\"type\":\"step\",\"step\":%d,\"loss\":0.5,\"lr\":0.1,\"time\":%.2f}\n", s,
            0.01 * (s - 6));
    if (s == 10)
      fprintf(f, "{\"type\":\"epoch\",\"step\":10,\"test_accuracy\":0.9,\"test_loss\":0.4,"
                 "\"time\":0.045}\n");
  }
  assert_int_equal(fclose(f), 0);
  char err[DPT_ERR_LEN];
  dpt_metrics_summary sum;
  assert_int_equal(dpt_metrics_summarize(file, 0.6, &sum, err, sizeof err), 0);
  assert_int_equal(sum.steps, 14);
  assert_int_equal(sum.steps_to_target, 7); /* the resumed run's loss from step 7 on */
  assert_true(fabs(sum.final_acc - 0.9) < 1e-12 && fabs(sum.best_acc - 0.9) < 1e-12);
  assert_true(fabs(sum.final_loss - 0.4) < 1e-12); /* epoch 10's record superseded */
  /* time continues from the last record kept (step 6 at 0.6 s, after epoch 5 at 0.55 s) */
  assert_true(fabs(sum.seconds - (0.6 + 0.08)) < 1e-9);
  const char *files[] = {file};
  assert_int_equal(dpt_plot_metrics(files, NULL, 1, OUT "/plots_resumed", err, sizeof err), 0);
  const char *charts[] = {OUT "/plots_resumed/loss_step.svg", OUT "/plots_resumed/loss_time.svg",
                          OUT "/plots_resumed/accuracy_time.svg"};
  int want[] = {14, 14, 2};
  for (int k = 0; k < 3; k++) {
    char *svg = check_chart(charts[k]);
    double xs[64], ys[64];
    assert_int_equal(path_points(svg, 0, xs, ys, 64), want[k]);       /* each step once */
    for (int i = 1; i < want[k]; i++) assert_true(xs[i] > xs[i - 1]); /* never backwards */
    free(svg);
  }
}

static void test_plot_metrics_errors_name_file_and_line(void **state) {
  (void)state;
  char err[DPT_ERR_LEN];
  struct {
    const char *text, *expect;
  } bad[] = {
      {"{\"type\":\"run\"}\n{\"type\":\"step\",\"st\n{\"type\":\"step\",\"step\":1,\"loss\":1}\n",
       "bad.jsonl:2:"},
      {"{\"type\":\"step\",\"step\":1,\"loss\":\"high\"}\n", "bad.jsonl:1: field \"loss\""},
      {"\n[1,2]\n", "bad.jsonl:2: not a JSON object"},
      {"{\"type\":\"epoch\",\"epoch\":1}\n", "bad.jsonl:1: epoch record without \"step\""},
      {"{\"type\":\"run\",\"label\":3}\n", "bad.jsonl:1: field \"label\""},
  };
  const char *files[] = {OUT "/runs/a/metrics.jsonl", OUT "/runs/bad.jsonl"};
  write_run(files[0], NULL, 4, 1);
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    write_text(files[1], bad[k].text);
    assert_int_equal(dpt_plot_metrics(files, NULL, 2, OUT "/plots_bad", err, sizeof err),
                     DPT_EINVAL);
    assert_non_null(strstr(err, bad[k].expect));
    assert_int_not_equal(access(OUT "/plots_bad", F_OK), 0); /* nothing written */
  }
  /* a crash's torn last line (no newline) is left out; the rest is drawn */
  write_text(files[1], "{\"type\":\"step\",\"step\":1,\"loss\":1,\"time\":0.1}\n"
                       "{\"type\":\"step\",\"step\":2,\"loss\":0.5,\"time\":0.2}\n{\"type\":\"st");
  assert_int_equal(dpt_plot_metrics(files, NULL, 2, OUT "/plots_torn", err, sizeof err), DPT_OK);
  assert_int_equal(access(OUT "/plots_torn/loss_step.svg", F_OK), 0);
  const char *missing[] = {OUT "/runs/missing.jsonl"};
  assert_int_equal(dpt_plot_metrics(missing, NULL, 1, OUT "/plots_bad", err, sizeof err), DPT_EIO);
  assert_non_null(strstr(err, "runs/missing.jsonl"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chart_has_series_legend_and_nice_ticks),
      cmocka_unit_test(test_log_axis_has_decades_and_breaks_at_nonpositive),
      cmocka_unit_test(test_narrow_log_range_gets_linear_ticks),
      cmocka_unit_test(test_degenerate_data_gives_valid_charts),
      cmocka_unit_test(test_labels_are_escaped),
      cmocka_unit_test(test_long_series_are_thinned),
      cmocka_unit_test(test_chart_errors),
      cmocka_unit_test(test_contour_of_rosenbrock_with_path),
      cmocka_unit_test(test_contour_degenerate_and_errors),
      cmocka_unit_test(test_plot_metrics_writes_five_charts),
      cmocka_unit_test(test_plot_metrics_null_accuracy_only),
      cmocka_unit_test(test_plot_metrics_smooths_long_losses),
      cmocka_unit_test(test_plot_metrics_errors_name_file_and_line),
      cmocka_unit_test(test_plot_lr_goes_on_a_log_axis_when_rates_span_a_decade),
      cmocka_unit_test(test_plot_diverged_run_does_not_squash_the_others),
      cmocka_unit_test(test_plot_legend_labels_are_unique),
      cmocka_unit_test(test_plot_resumed_run_keeps_the_last_record_per_step),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
