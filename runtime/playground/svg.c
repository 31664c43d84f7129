/* svg.c — line charts and contour plots as standalone SVG files (see svg.h).
 *
 * Invariants:
 * - Every number written is finite: points that cannot be drawn (non-finite, or <= 0 on a log
 *   axis) break their line and are never mapped; axis ranges are finite with hi > lo; pixel
 *   coordinates are clamped to +-PX_LIMIT.
 * - The plot rectangle does not depend on the legend: the legend goes into a corner of the plot
 *   that no line or marker crosses, else to the right of the plot and the canvas grows, so the
 *   legend never hides data.
 * - Text is XML-escaped and valid UTF-8 (other bytes become '?'), so any label gives valid XML.
 * - Output goes to "<path>.tmp", is flushed and fsync'ed, then renamed over path.
 */
#include "playground.h"
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- look: sizes in px --- */
#define SVG_W 720 /* canvas without an outside legend */
#define SVG_H 440
#define FONT_PX 12 /* ticks, legend, axis labels */
#define TITLE_PX 15
#define CAPTION_PX 11
/* Average glyph advance of DejaVu Sans / Helvetica in em (measured ~0.55-0.6): sizes the
 * margins and the legend box, so it errs wide. */
#define GLYPH_EM 0.6
#define MARGIN_TOP 40    /* title */
#define CAPTION_H 16     /* a caption line under the title */
#define MARGIN_BOTTOM 50 /* x tick labels and the x label */
#define MARGIN_RIGHT 24
#define TICK_PX 5
#define TICK_GAP 12   /* least free space between neighbouring tick labels */
#define X_TICK_PX 100 /* wanted spacing of x ticks */
#define Y_TICK_PX 60
#define LEGEND_ROW 18
#define LEGEND_PAD 8
#define LEGEND_SAMPLE 24 /* length of a legend's line sample */
#define LEGEND_INSET 8   /* legend inside the plot: distance from its edges */
#define LINE_W 1.8
#define FAINT_W 1.0
#define FAINT_OPACITY 0.3
#define MARKER_R 2.8
#define MARKER_MIN_DIST MARKER_R /* a marker within its radius of the last one adds nothing */
#define PX_LIMIT 1e6             /* clamp for points far outside a contour window */
#define Y_MARGIN 0.04            /* fraction of the data span added below and above on the y axis */
/* The same on the x axis when markers are drawn (else lines end at the frame). */
#define X_MARGIN 0.02
#define MAX_TICKS 64
#define CONTOUR_CELL_PX 4   /* grid spacing of the marching squares */
#define CONTOUR_DECADES 4.0 /* levels span this many decades above min f */
#define CONTOUR_LEVELS 12   /* default nlevels */
#define CONTOUR_MAX_LEVELS 100

/* Okabe & Ito's colour-blind-safe palette, yellow left out (unreadable on white); after seven
 * series the colours repeat with a dash pattern. */
static const char *const PALETTE[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                      "#E69F00", "#56B4E9", "#000000"};
#define NCOLOURS 7
static const char *const DASHES[] = {NULL, "7 4", "2 3", "8 3 2 3"};
#define NDASHES 4

/* --- text --- */

/* Length of the valid UTF-8 sequence at s (1-4), 0 if s does not start one. */
static int utf8_len(const unsigned char *s) {
  if (s[0] < 0x80) return 1;
  int n = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
          : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
          : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                         : 0;
  for (int i = 1; i < n; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
      (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F) ||
      (s[0] == 0xEF && s[1] == 0xBF && s[2] >= 0xBE))
    return 0; /* overlong, surrogate, beyond U+10FFFF, U+FFFE/U+FFFF (not XML characters) */
  return n;
}

/* Writes s as XML character data: markup characters escaped, control characters and bytes that
 * are not UTF-8 replaced by '?'. */
static void put_text(FILE *f, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = utf8_len(p);
    if (n == 0 || (*p < 0x20 && *p != '\t'))
      fputc('?', f), n = 1;
    else if (*p == '&')
      fputs("&amp;", f);
    else if (*p == '<')
      fputs("&lt;", f);
    else if (*p == '>')
      fputs("&gt;", f);
    else if (*p == '"')
      fputs("&quot;", f);
    else if (*p == '\'')
      fputs("&apos;", f);
    else
      fwrite(p, 1, (size_t)n, f);
    p += n;
  }
}

/* Estimated width of s in px at font size px. */
static double text_w(const char *s, double px) {
  size_t chars = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) chars += (*p & 0xC0) != 0x80;
  return (double)chars * px * GLYPH_EM;
}

/* "1e+06" -> "1e6", "2e-05" -> "2e-5". */
static void tidy_exponent(char *s) {
  char *e = strchr(s, 'e');
  if (!e) return;
  char *d = e + 1, *src = e + 1;
  if (*src == '+')
    src++;
  else if (*src == '-')
    *d++ = *src++;
  while (*src == '0' && src[1]) src++;
  memmove(d, src, strlen(src) + 1);
}

/* --- axes and ticks --- */

typedef struct {
  double lo, hi; /* shown range in data units: hi > lo, both > 0 on a log axis */
  int log;
  double p0, p1; /* pixels of lo and hi */
  int nticks, nminor;
  double tick[MAX_TICKS], minor[MAX_TICKS];
  char label[MAX_TICKS][32];
} axis;

static double clamp_px(double v) {
  return v > PX_LIMIT ? PX_LIMIT : v < -PX_LIMIT ? -PX_LIMIT : v;
}

static double axis_px(const axis *a, double v) {
  double t = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo))
                    : (v - a->lo) / (a->hi - a->lo);
  return clamp_px(a->p0 + t * (a->p1 - a->p0));
}

/* Linear axis over [lo, hi] plus margin * span on both sides; a zero span is widened. */
static void axis_fit_linear(axis *a, double lo, double hi, double margin) {
  double big = fmax(fabs(lo), fabs(hi));
  if (!(hi - lo > 1e-9 * big)) { /* one value: +-10% of it, or +-1 around 0 */
    double d = big > 0 ? 0.1 * big : 1;
    lo -= d, hi += d;
  } else {
    double m = (hi - lo) * margin;
    lo -= m, hi += m;
  }
  if (!isfinite(hi - lo)) lo = -1e307, hi = 1e307;
  a->lo = lo, a->hi = hi, a->log = 0;
}

/* Log axis over [lo, hi] (both > 0) plus margin of the log span; a zero span is widened. */
static void axis_fit_log(axis *a, double lo, double hi, double margin) {
  double l0 = log10(lo), l1 = log10(hi);
  if (l1 - l0 < 1e-9)
    l0 -= 0.1, l1 += 0.1;
  else {
    double m = (l1 - l0) * margin;
    l0 -= m, l1 += m;
  }
  l0 = fmax(l0, -307), l1 = fmin(l1, 307);
  a->lo = pow(10, l0), a->hi = pow(10, l1), a->log = 1;
}

/* The 1, 2 or 5 times a power of ten nearest to raw on a log scale (as d3's ticks), so a
 * range gets between about 0.7 and 1.4 times the ticks asked for. */
static double nice_step(double raw) {
  double p = pow(10, floor(log10(raw))), m = raw / p;
  return (m >= sqrt(50) ? 10 : m >= sqrt(10) ? 5 : m >= sqrt(2) ? 2 : 1) * p;
}

static void add_tick(axis *a, double v, const char *label) {
  if (a->nticks == MAX_TICKS) return;
  a->tick[a->nticks] = v;
  snprintf(a->label[a->nticks++], sizeof a->label[0], "%s", label);
}

/* Ticks at multiples of a 1-2-5 step, about `target` of them. Labels show as many
 * decimals as the step needs; very large or small values go to exponent notation. */
static void linear_ticks(axis *a, int target) {
  double step = nice_step((a->hi - a->lo) / target);
  if (!(step > 0) || !isfinite(step)) return; /* a range too small for doubles: no ticks */
  double k0 = ceil(a->lo / step - 1e-9), k1 = floor(a->hi / step + 1e-9);
  int e = (int)floor(log10(step) + 1e-9);
  double big = fmax(fabs(a->lo), fabs(a->hi));
  int digits = (int)floor(log10(big)) - e + 1;
  digits = digits < 1 ? 1 : digits > 15 ? 15 : digits;
  for (double k = k0; k <= k1 && a->nticks < MAX_TICKS; k++) {
    double v = k * step;
    if (fabs(v) < 1e-6 * step) v = 0; /* no "-0" */
    char buf[32];
    if (big < 1e6 && e >= -5)
      snprintf(buf, sizeof buf, "%.*f", e < 0 ? -e : 0, v);
    else
      snprintf(buf, sizeof buf, "%.*g", digits, v), tidy_exponent(buf);
    add_tick(a, v, buf);
  }
}

/* Log axis ticks: linear ticks under 0.75 decade (a 1-2-5 grid would leave one label); else
 * 1, 2 and 5, or 1 and 3, times powers of ten, the densest that gives at most 1.5 x target
 * labels; else decades (every stride-th, at most 1.5 x target too). Unlabelled grid lines at
 * 2..9 when the decades are few. */
static void log_ticks(axis *a, int target) {
  double l0 = log10(a->lo), l1 = log10(a->hi), span = l1 - l0;
  if (span < 0.75) {
    linear_ticks(a, target);
    return;
  }
  static const double M125[] = {1, 2, 5}, M13[] = {1, 3}, M1[] = {1};
  const double *M = span * 3 <= 1.5 * target ? M125 : span * 2 <= 1.5 * target ? M13 : M1;
  int nm = M == M125 ? 3 : M == M13 ? 2 : 1;
  int stride = M == M1 ? (int)ceil(span / (1.5 * (target > 1 ? target : 1))) : 1;
  for (int e = (int)floor(l0); e <= (int)ceil(l1); e++) {
    double p = pow(10, e);
    for (int i = 0; i < nm && ((e % stride) + stride) % stride == 0; i++) {
      double v = M[i] * p;
      if (v < a->lo * (1 - 1e-9) || v > a->hi * (1 + 1e-9)) continue;
      char buf[32];
      snprintf(buf, sizeof buf, "%g", v), tidy_exponent(buf);
      add_tick(a, v, buf);
    }
    for (int m = 2; m <= 9 && span <= 6 && stride == 1; m++) {
      int labelled = 0;
      for (int i = 0; i < nm; i++) labelled |= M[i] == m;
      if (!labelled && m * p > a->lo && m * p < a->hi && a->nminor < MAX_TICKS)
        a->minor[a->nminor++] = m * p;
    }
  }
}

/* Ticks spaced about every px_per_tick pixels, fewer while neighbouring labels would touch
 * (label extent: its width along x, the font height along y). */
static void axis_ticks(axis *a, double px_per_tick, int horizontal) {
  int target = (int)(fabs(a->p1 - a->p0) / px_per_tick);
  for (target = target < 2 ? 2 : target;; target = target * 2 / 3) {
    a->nticks = a->nminor = 0;
    if (a->log)
      log_ticks(a, target);
    else
      linear_ticks(a, target);
    int fits = 1;
    for (int i = 1; i < a->nticks && fits; i++) {
      double gap = fabs(axis_px(a, a->tick[i]) - axis_px(a, a->tick[i - 1]));
      double need = horizontal
                        ? (text_w(a->label[i], FONT_PX) + text_w(a->label[i - 1], FONT_PX)) / 2
                        : FONT_PX;
      fits = gap >= need + TICK_GAP;
    }
    if (fits || target <= 1) return;
  }
}

/* --- layout --- */

typedef struct {
  int w, h;                        /* canvas */
  double left, right, top, bottom; /* plot rectangle, px (top < bottom) */
  axis x, y;
} frame;

/* Places the plot rectangle (margins sized by the y tick labels) and computes both axes' ticks.
 * x and y must have their ranges set. */
static void frame_layout(frame *fr, int caption) {
  fr->w = SVG_W, fr->h = SVG_H;
  fr->top = MARGIN_TOP + (caption ? CAPTION_H : 0);
  fr->bottom = SVG_H - MARGIN_BOTTOM;
  fr->y.p0 = fr->bottom, fr->y.p1 = fr->top;
  axis_ticks(&fr->y, Y_TICK_PX, 0);
  double wy = 0;
  for (int i = 0; i < fr->y.nticks; i++) wy = fmax(wy, text_w(fr->y.label[i], FONT_PX));
  fr->left = 10 + FONT_PX + 10 + wy + TICK_PX + 4; /* y label, gap, tick labels, ticks */
  fr->right = SVG_W - MARGIN_RIGHT;
  fr->x.p0 = fr->left, fr->x.p1 = fr->right;
  axis_ticks(&fr->x, X_TICK_PX, 1);
  if (fr->x.nticks) { /* the last x label must fit on the canvas */
    double over = axis_px(&fr->x, fr->x.tick[fr->x.nticks - 1]) +
                  text_w(fr->x.label[fr->x.nticks - 1], FONT_PX) / 2 + 4 - SVG_W;
    if (over > 0) fr->w += (int)ceil(over);
  }
}

/* --- output file: <path>.tmp, renamed when complete --- */

typedef dpt_afile svg_out;

static int out_open(svg_out *o, const char *path, int w, int h, char *err, size_t errlen) {
  int rc = dpt_afile_open(o, path, err, errlen);
  if (rc) return rc;
  fprintf(o->f,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
          "font-size=\"%d\">\n<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
          w, h, w, h, FONT_PX, w, h);
  return DPT_OK;
}

/* Finishes the file and renames it over the path; on failure removes it. */
static int out_close(svg_out *o, char *err, size_t errlen) {
  fputs("</svg>\n", o->f);
  return dpt_afile_commit(o, err, errlen);
}

/* --- frame drawing: grid, ticks, labels, title --- */

/* Centre of a text of width w over the plot, moved to stay on the canvas. */
static double centred(const frame *fr, double w) {
  double x = (fr->left + fr->right) / 2;
  if (x + w / 2 > fr->w - 4) x = fr->w - 4 - w / 2;
  return x - w / 2 < 4 ? 4 + w / 2 : x;
}

static void draw_frame(FILE *f, const frame *fr, const char *title, const char *caption,
                       const char *xlabel, const char *ylabel) {
  double l = fr->left, r = fr->right, t = fr->top, b = fr->bottom;
  fputs("<g class=\"grid\" stroke-width=\"1\" shape-rendering=\"crispEdges\">\n", f);
  for (int i = 0; i < fr->y.nminor; i++)
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>\n", l,
            axis_px(&fr->y, fr->y.minor[i]), r, axis_px(&fr->y, fr->y.minor[i]));
  for (int i = 0; i < fr->x.nticks; i++) {
    double x = axis_px(&fr->x, fr->x.tick[i]);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", x, t,
            x, b);
  }
  for (int i = 0; i < fr->y.nticks; i++) {
    double y = axis_px(&fr->y, fr->y.tick[i]);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", l, y,
            r, y);
  }
  fprintf(f,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
          "stroke=\"#808080\"/>\n</g>\n",
          l, t, r - l, b - t);
  fputs("<g class=\"ticks\" fill=\"#333333\">\n", f);
  for (int i = 0; i < fr->x.nticks; i++) {
    double x = axis_px(&fr->x, fr->x.tick[i]);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#808080\"/>"
            "<text class=\"xtick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
            x, b, x, b + TICK_PX, x, b + TICK_PX + FONT_PX + 2, fr->x.label[i]);
  }
  for (int i = 0; i < fr->y.nticks; i++) {
    double y = axis_px(&fr->y, fr->y.tick[i]);
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#808080\"/>"
            "<text class=\"ytick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
            l - TICK_PX, y, l, y, l - TICK_PX - 3, y + 0.35 * FONT_PX, fr->y.label[i]);
  }
  fputs("</g>\n", f);
  if (xlabel) {
    fprintf(f, "<text class=\"xlabel\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (l + r) / 2,
            b + TICK_PX + 2 * FONT_PX + 14);
    put_text(f, xlabel), fputs("</text>\n", f);
  }
  if (ylabel) {
    fprintf(f,
            "<text class=\"ylabel\" transform=\"translate(%d,%.1f) rotate(-90)\" "
            "text-anchor=\"middle\">",
            10 + FONT_PX, (t + b) / 2);
    put_text(f, ylabel), fputs("</text>\n", f);
  }
  if (title) {
    fprintf(f,
            "<text class=\"title\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"%d\" "
            "font-weight=\"bold\">",
            centred(fr, text_w(title, TITLE_PX)), 24, TITLE_PX);
    put_text(f, title), fputs("</text>\n", f);
  }
  if (caption) {
    fprintf(f,
            "<text class=\"caption\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" "
            "font-size=\"%d\" fill=\"#555555\">",
            centred(fr, text_w(caption, CAPTION_PX)), 24 + CAPTION_H + 2, CAPTION_PX);
    put_text(f, caption), fputs("</text>\n", f);
  }
}

/* --- series in pixels --- */

/* A series' points that will be drawn, in pixels; brk[i] = 1 where a new piece of line starts. */
typedef struct {
  int n;
  double *x, *y;
  unsigned char *brk;
} pline;

static int drawable(const dpt_series *s, int i, int logy) {
  return isfinite(s->x[i]) && isfinite(s->y[i]) && (!logy || s->y[i] > 0);
}

static void pline_push(pline *p, double x, double y, int brk) {
  p->x[p->n] = x, p->y[p->n] = y, p->brk[p->n++] = (unsigned char)brk;
}

/* Thins s for drawing. With markers: drops points within MARKER_MIN_DIST of the last kept one.
 * Without: keeps, per run of points in one pixel column, the first, lowest, highest and last
 * (in their order), which draws the same picture as all of them. Returns 0 or DPT_ENOMEM. */
static int pline_build(pline *p, const dpt_series *s, const frame *fr, int logy) {
  size_t n = s->n > 0 ? (size_t)s->n : 1;
  p->n = 0;
  p->x = malloc(n * sizeof *p->x), p->y = malloc(n * sizeof *p->y), p->brk = malloc(n);
  if (!p->x || !p->y || !p->brk) return DPT_ENOMEM;
  int piece = 1, have = 0, first = 0, lo = 0, hi = 0, last = 0;
  long col = 0;
  for (int i = 0; i <= s->n; i++) {
    int ok = i < s->n && drawable(s, i, logy);
    double px = ok ? axis_px(&fr->x, s->x[i]) : 0, py = ok ? axis_px(&fr->y, s->y[i]) : 0;
    if (ok && s->markers) {
      if (piece || hypot(px - p->x[p->n - 1], py - p->y[p->n - 1]) >= MARKER_MIN_DIST)
        pline_push(p, px, py, piece), piece = 0;
      continue;
    }
    if (ok && have && (long)floor(px) == col) {
      if (py < axis_px(&fr->y, s->y[lo])) lo = i;
      if (py > axis_px(&fr->y, s->y[hi])) hi = i;
      last = i;
      continue;
    }
    if (have) { /* flush the column: first, then min and max in index order, then last */
      int idx[4] = {first, lo < hi ? lo : hi, lo < hi ? hi : lo, last}, prev = -1;
      for (int k = 0; k < 4; k++)
        if (idx[k] != prev) {
          pline_push(p, axis_px(&fr->x, s->x[idx[k]]), axis_px(&fr->y, s->y[idx[k]]), piece);
          piece = 0, prev = idx[k];
        }
    }
    have = ok;
    if (ok)
      col = (long)floor(px), first = lo = hi = last = i;
    else
      piece = 1;
  }
  return DPT_OK;
}

static void pline_free(pline *p) {
  free(p->x), free(p->y), free(p->brk);
}

/* Whether segment a-b meets rectangle [x0,x1] x [y0,y1] (Liang-Barsky clipping). */
static int seg_hits(double ax, double ay, double bx, double by, double x0, double y0, double x1,
                    double y1) {
  double dx = bx - ax, dy = by - ay, t0 = 0, t1 = 1;
  double p[4] = {-dx, dx, -dy, dy}, q[4] = {ax - x0, x1 - ax, ay - y0, y1 - ay};
  for (int k = 0; k < 4; k++) {
    if (p[k] == 0) {
      if (q[k] < 0) return 0;
      continue;
    }
    double r = q[k] / p[k];
    if (p[k] < 0 && r > t0) t0 = r;
    if (p[k] > 0 && r < t1) t1 = r;
    if (t0 > t1) return 0;
  }
  return 1;
}

static int plines_hit(const pline *pl, int np, double x0, double y0, double x1, double y1) {
  double pad = MARKER_R + LINE_W;
  for (int s = 0; s < np; s++)
    for (int i = 0; i < pl[s].n; i++) {
      int j = pl[s].brk[i] ? i : i - 1;
      if (seg_hits(pl[s].x[j], pl[s].y[j], pl[s].x[i], pl[s].y[i], x0 - pad, y0 - pad, x1 + pad,
                   y1 + pad))
        return 1;
    }
  return 0;
}

/* --- series and legend drawing --- */

/* The colour number of series k: how many series before it are not faint (so a faint series
 * shares the colour of the one after it). */
static int colour_of(const dpt_series *s, int k) {
  int c = 0;
  for (int i = 0; i < k; i++) c += !s[i].faint;
  return c;
}

static void series_style(FILE *f, int c) {
  const char *dash = DASHES[(c / NCOLOURS) % NDASHES];
  fprintf(f, "stroke=\"%s\"", PALETTE[c % NCOLOURS]);
  if (dash) fprintf(f, " stroke-dasharray=\"%s\"", dash);
}

/* Series in colour c: its line, and markers unless faint. */
static void draw_series(FILE *f, const pline *p, int c, int markers, int faint) {
  fprintf(f, "<g class=\"%s\" fill=\"none\" ", faint ? "series faint" : "series");
  series_style(f, c);
  if (faint) fprintf(f, " stroke-opacity=\"%.2f\"", FAINT_OPACITY), markers = 0;
  fprintf(f, " stroke-width=\"%.1f\" stroke-linejoin=\"round\" stroke-linecap=\"round\">\n",
          faint ? FAINT_W : LINE_W);
  if (p->n) {
    fputs("<path class=\"line\" d=\"", f);
    for (int i = 0; i < p->n; i++) {
      if (p->brk[i])
        fprintf(f, "M%.1f %.1f", p->x[i], p->y[i]);
      else
        fprintf(f, "%c%.1f %.1f", p->brk[i - 1] ? 'L' : ' ', p->x[i], p->y[i]);
      if (p->brk[i] && (i + 1 == p->n || p->brk[i + 1])) fputs("h0", f); /* a lone point */
    }
    fputs("\"/>\n", f);
  }
  if (markers && p->n) {
    fprintf(f,
            "<g class=\"markers\" fill=\"%s\" stroke=\"white\" stroke-width=\"0.6\" "
            "stroke-dasharray=\"none\">\n",
            PALETTE[c % NCOLOURS]);
    for (int i = 0; i < p->n; i++)
      fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\"/>\n", p->x[i], p->y[i], MARKER_R);
    fputs("</g>\n", f);
  }
  fputs("</g>\n", f);
}

static const char *series_label(const dpt_series *s, int k, char *buf, size_t len) {
  if (s->label) return s->label;
  snprintf(buf, len, "series %d", k + 1);
  return buf;
}

#define NO_DATA "(no data)" /* after the legend text of a series with nothing to draw */

/* Legend box size for the series that are not faint; 0 entries: 0 x 0. */
static void legend_size(const dpt_series *s, const pline *pl, int n, double *w, double *h) {
  double tw = 0;
  int rows = 0;
  char buf[32];
  for (int k = 0; k < n; k++)
    if (!s[k].faint)
      rows++, tw = fmax(tw, text_w(series_label(&s[k], k, buf, sizeof buf), FONT_PX) +
                                (pl[k].n ? 0 : text_w(" " NO_DATA, FONT_PX)));
  *w = rows ? 2 * LEGEND_PAD + LEGEND_SAMPLE + 6 + tw : 0;
  *h = rows ? 2 * LEGEND_PAD + rows * LEGEND_ROW - 4 : 0;
}

/* Picks the legend's place: the first plot corner (top right, top left, bottom right, bottom
 * left) no line crosses, else right of the plot, growing the canvas. Sets *x, *y (top left). */
static void legend_place(frame *fr, const pline *pl, int np, double w, double h, double *x,
                         double *y) {
  double in = LEGEND_INSET;
  double xs[4] = {fr->right - in - w, fr->left + in, fr->right - in - w, fr->left + in};
  double ys[4] = {fr->top + in, fr->top + in, fr->bottom - in - h, fr->bottom - in - h};
  for (int c = 0; c < 4; c++) {
    if (xs[c] < fr->left + in || ys[c] < fr->top + in) break; /* does not fit inside */
    if (!plines_hit(pl, np, xs[c], ys[c], xs[c] + w, ys[c] + h)) {
      *x = xs[c], *y = ys[c];
      return;
    }
  }
  *x = fr->right + 16, *y = fr->top;
  if (*x + w + 12 > fr->w) fr->w = (int)ceil(*x + w + 12);
  if (*y + h + 12 > fr->h) fr->h = (int)ceil(*y + h + 12);
}

static void draw_legend(FILE *f, const dpt_series *s, const pline *pl, int n, int force_markers,
                        double x, double y, double w, double h) {
  fprintf(f,
          "<g class=\"legend\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
          "rx=\"3\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbbbbb\"/>\n",
          x, y, w, h);
  char buf[32];
  for (int k = 0, row = 0; k < n; k++) {
    if (s[k].faint) continue;
    int c = row;
    double ly = y + LEGEND_PAD + row++ * LEGEND_ROW + LEGEND_ROW / 2.0 - 2;
    double lx = x + LEGEND_PAD;
    fprintf(f,
            "<g class=\"legend-entry\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
            "stroke-width=\"%.1f\" ",
            lx, ly, lx + LEGEND_SAMPLE, ly, LINE_W);
    series_style(f, c);
    fputs("/>", f);
    if (s[k].markers || force_markers)
      fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>",
              lx + LEGEND_SAMPLE / 2.0, ly, MARKER_R, PALETTE[c % NCOLOURS]);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", lx + LEGEND_SAMPLE + 6, ly + 0.35 * FONT_PX);
    put_text(f, series_label(&s[k], k, buf, sizeof buf));
    if (!pl[k].n)
      fprintf(f, "<tspan dx=\"%.1f\" fill=\"#808080\">" NO_DATA "</tspan>", FONT_PX * GLYPH_EM);
    fputs("</text></g>\n", f);
  }
  fputs("</g>\n", f);
}

/* --- shared by both chart kinds: the series over a laid-out frame --- */

static int check_series(const dpt_series *s, int n, const char *what, char *err, size_t errlen) {
  if (n < 0 || (n > 0 && !s)) {
    snprintf(err, errlen, "chart: %d %s but no array of them", n, what);
    return DPT_EINVAL;
  }
  for (int k = 0; k < n; k++)
    if (s[k].n < 0 || (s[k].n > 0 && (!s[k].x || !s[k].y))) {
      snprintf(err, errlen, "chart: %s %d ('%s') has n = %d and x or y missing", what, k + 1,
               s[k].label ? s[k].label : "", s[k].n);
      return DPT_EINVAL;
    }
  return DPT_OK;
}

/* Thins every series, places the legend, opens the file; the caller then draws its background
 * (grid, contours) and calls finish_chart. On success *pl holds n plines for finish_chart. */
typedef struct {
  pline *pl;
  double lx, ly, lw, lh;
} chart_draw;

static int start_chart(svg_out *o, const char *path, frame *fr, const dpt_series *s, int n,
                       int logy, int force_markers, chart_draw *d, char *err, size_t errlen) {
  d->pl = calloc(n > 0 ? (size_t)n : 1, sizeof *d->pl);
  int rc = d->pl ? DPT_OK : DPT_ENOMEM;
  for (int k = 0; k < n && !rc; k++) {
    dpt_series t = s[k];
    t.markers = (t.markers || force_markers) && !t.faint;
    rc = pline_build(&d->pl[k], &t, fr, logy);
  }
  if (rc) {
    snprintf(err, errlen, "chart '%s': out of memory", path);
    return rc;
  }
  legend_size(s, d->pl, n, &d->lw, &d->lh);
  if (d->lw > 0) legend_place(fr, d->pl, n, d->lw, d->lh, &d->lx, &d->ly);
  return out_open(o, path, fr->w, fr->h, err, errlen);
}

static void free_chart(chart_draw *d, int n) {
  for (int k = 0; d->pl && k < n; k++) pline_free(&d->pl[k]);
  free(d->pl);
}

static int finish_chart(svg_out *o, const frame *fr, const dpt_series *s, int n, int force_markers,
                        const chart_draw *d, char *err, size_t errlen) {
  FILE *f = o->f;
  int any = 0;
  for (int k = 0; k < n; k++) any |= d->pl[k].n > 0;
  /* lines may reach a little past the plot (a marker at the edge), never far */
  fprintf(f,
          "<clipPath id=\"plotarea\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
          "height=\"%.1f\"/></clipPath>\n<g clip-path=\"url(#plotarea)\">\n",
          fr->left - MARKER_R - 1, fr->top - MARKER_R - 1, fr->right - fr->left + 2 * MARKER_R + 2,
          fr->bottom - fr->top + 2 * MARKER_R + 2);
  for (int pass = 0; pass < 2; pass++) /* faint series first, under the others */
    for (int k = 0; k < n; k++)
      if (s[k].faint == !pass)
        draw_series(f, &d->pl[k], colour_of(s, k), s[k].markers || force_markers, s[k].faint);
  fputs("</g>\n", f);
  if (!any)
    fprintf(f,
            "<text class=\"nodata\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
            "fill=\"#808080\">no data</text>\n",
            (fr->left + fr->right) / 2, (fr->top + fr->bottom) / 2);
  if (d->lw > 0) draw_legend(f, s, d->pl, n, force_markers, d->lx, d->ly, d->lw, d->lh);
  return out_close(o, err, errlen);
}

/* --- line charts --- */

/* Range of the drawable points' x (which = 0) or y (1); 0 if there are none. */
static int data_range(const dpt_series *s, int n, int which, int logy, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int k = 0; k < n; k++)
    for (int i = 0; i < s[k].n; i++)
      if (drawable(&s[k], i, logy)) {
        double v = which ? s[k].y[i] : s[k].x[i];
        *lo = fmin(*lo, v), *hi = fmax(*hi, v);
      }
  return *lo <= *hi;
}

int dpt_svg_chart(const char *path, const dpt_chart *c, char *err, size_t errlen) {
  if (!path || !c) {
    snprintf(err, errlen, "chart: no %s given", path ? "chart" : "path");
    return DPT_EINVAL;
  }
  int rc = check_series(c->series, c->nseries, "series", err, errlen);
  if (rc) return rc;
  frame fr;
  memset(&fr, 0, sizeof fr);
  double lo, hi;
  int markers = 0;
  for (int k = 0; k < c->nseries; k++) markers |= c->series[k].markers && !c->series[k].faint;
  if (data_range(c->series, c->nseries, 0, c->logy, &lo, &hi))
    axis_fit_linear(&fr.x, lo, hi, markers ? X_MARGIN : 0);
  else
    axis_fit_linear(&fr.x, 0, 1, 0);
  int have_y = data_range(c->series, c->nseries, 1, c->logy, &lo, &hi);
  if (c->ylo < c->yhi && isfinite(c->ylo) && isfinite(c->yhi) && (!c->logy || c->ylo > 0))
    lo = c->ylo, hi = c->yhi, have_y = 1; /* the caller's range: the rest leaves the plot */
  if (c->logy)
    axis_fit_log(&fr.y, have_y ? lo : 1, have_y ? hi : 10, Y_MARGIN);
  else
    axis_fit_linear(&fr.y, have_y ? lo : 0, have_y ? hi : 1, Y_MARGIN);
  frame_layout(&fr, 0);
  svg_out o;
  chart_draw d;
  rc = start_chart(&o, path, &fr, c->series, c->nseries, c->logy, 0, &d, err, errlen);
  if (!rc) {
    draw_frame(o.f, &fr, c->title, NULL, c->xlabel, c->ylabel);
    rc = finish_chart(&o, &fr, c->series, c->nseries, 0, &d, err, errlen);
  }
  free_chart(&d, c->nseries);
  return rc;
}

/* --- contour plots --- */

/* Crossing of level v on the grid edge from corner a to corner b (values fa, fb), in px. */
static void crossing(double v, double ax, double ay, double fa, double bx, double by, double fb,
                     double *x, double *y) {
  double t = (v - fa) / (fb - fa);
  *x = ax + t * (bx - ax), *y = ay + t * (by - ay);
}

/* Marching squares for level v over the grid g[(nx+1) x (ny+1)] (row j at y_j): one path of
 * segments, omitted when the level does not cross the grid. Saddles are split by the mean of
 * the cell's corners. */
static void draw_level(FILE *f, const frame *fr, const double *g, int nx, int ny, double v,
                       const char *colour) {
  double cw = (fr->right - fr->left) / nx, ch = (fr->bottom - fr->top) / ny;
  int started = 0;
  for (int j = 0; j < ny; j++)
    for (int i = 0; i < nx; i++) {
      /* corners counter-clockwise from bottom left; edge e runs from corner e to e+1 */
      double fc[4] = {g[j * (nx + 1) + i], g[j * (nx + 1) + i + 1], g[(j + 1) * (nx + 1) + i + 1],
                      g[(j + 1) * (nx + 1) + i]};
      double x0 = fr->left + i * cw, y0 = fr->bottom - j * ch;
      double cx[4] = {x0, x0 + cw, x0 + cw, x0}, cy[4] = {y0, y0, y0 - ch, y0 - ch};
      if (!isfinite(fc[0] + fc[1] + fc[2] + fc[3])) continue;
      double px[4], py[4]; /* crossings, by edge */
      int m = 0;
      for (int k = 0; k < 4; k++) {
        int k1 = (k + 1) % 4;
        if ((fc[k] >= v) != (fc[k1] >= v)) {
          crossing(v, cx[k], cy[k], fc[k], cx[k1], cy[k1], fc[k1], &px[m], &py[m]);
          m++;
        }
      }
      if (m < 2) continue;
      if (!started) {
        fprintf(f,
                "<path class=\"contour\" fill=\"none\" stroke=\"%s\" stroke-width=\"1\" "
                "stroke-linecap=\"round\" d=\"",
                colour);
        started = 1;
      }
      if (m == 2) {
        fprintf(f, "M%.1f %.1fL%.1f %.1f", px[0], py[0], px[1], py[1]);
        continue;
      }
      /* saddle: corners 0 and 2 on one side, 1 and 3 on the other. If the centre is on corner
       * 0's side, 0 and 2 connect through it and corners 1 and 3 are cut off (edges 0-1, 2-3);
       * else corners 0 and 2 are (edges 3-0, 1-2). */
      double centre = (fc[0] + fc[1] + fc[2] + fc[3]) / 4;
      if ((fc[0] >= v) == (centre >= v))
        fprintf(f, "M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f", px[0], py[0], px[1], py[1], px[2],
                py[2], px[3], py[3]);
      else
        fprintf(f, "M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f", px[3], py[3], px[0], py[0], px[1],
                py[1], px[2], py[2]);
    }
  if (started) fputs("\"/>\n", f);
}

/* Level colours: dark slate near the minimum to light grey-blue far above it. */
static void level_colour(int i, int n, char *buf, size_t len) {
  double t = n > 1 ? (double)i / (n - 1) : 0;
  int r = (int)(40 + t * (185 - 40)), g = (int)(60 + t * (195 - 60)),
      b = (int)(90 + t * (210 - 90));
  snprintf(buf, len, "#%02x%02x%02x", r, g, b);
}

static void fmt_short(char *buf, size_t len, double v) {
  snprintf(buf, len, "%.2g", v);
  tidy_exponent(buf);
}

int dpt_svg_contour(const char *path, const dpt_contour_chart *c, char *err, size_t errlen) {
  if (!path || !c || !c->f) {
    snprintf(err, errlen, "contour chart: no %s given", !path ? "path" : !c ? "chart" : "function");
    return DPT_EINVAL;
  }
  if (!(c->xmax > c->xmin) || !(c->ymax > c->ymin) || !isfinite(c->xmax - c->xmin) ||
      !isfinite(c->ymax - c->ymin)) {
    snprintf(err, errlen, "contour chart '%s': empty window [%g, %g] x [%g, %g]", path, c->xmin,
             c->xmax, c->ymin, c->ymax);
    return DPT_EINVAL;
  }
  int rc = check_series(c->paths, c->nseries, "path", err, errlen);
  if (rc) return rc;
  int nlev = c->nlevels <= 0 ? CONTOUR_LEVELS : c->nlevels;
  if (nlev > CONTOUR_MAX_LEVELS) nlev = CONTOUR_MAX_LEVELS;
  frame fr;
  memset(&fr, 0, sizeof fr);
  fr.x.lo = c->xmin, fr.x.hi = c->xmax, fr.y.lo = c->ymin, fr.y.hi = c->ymax;
  frame_layout(&fr, 1);
  int nx = (int)((fr.right - fr.left) / CONTOUR_CELL_PX),
      ny = (int)((fr.bottom - fr.top) / CONTOUR_CELL_PX);
  double *g = malloc((size_t)(nx + 1) * (size_t)(ny + 1) * sizeof *g);
  if (!g) {
    snprintf(err, errlen, "contour chart '%s': out of memory", path);
    return DPT_ENOMEM;
  }
  double flo = INFINITY, fhi = -INFINITY;
  for (int j = 0; j <= ny; j++)
    for (int i = 0; i <= nx; i++) {
      double x = c->xmin + (c->xmax - c->xmin) * i / nx, y = c->ymin + (c->ymax - c->ymin) * j / ny;
      double v = c->f(x, y, c->ctx);
      g[j * (nx + 1) + i] = v;
      if (isfinite(v)) flo = fmin(flo, v), fhi = fmax(fhi, v);
    }
  double span = fhi - flo; /* -inf when f is nowhere finite */
  char caption[160] = "", a[16], b[16];
  int levels = isfinite(span) && span > 0;
  if (levels) {
    fmt_short(a, sizeof a, span * pow(10, -CONTOUR_DECADES));
    fmt_short(b, sizeof b, span * pow(10, -CONTOUR_DECADES / nlev));
    snprintf(caption, sizeof caption, "contours at min f + %s \xe2\x80\xa6 %s, \xc3\x97%.3g apart",
             a, b, pow(10, CONTOUR_DECADES / nlev));
  } else {
    snprintf(caption, sizeof caption, "f is %s on the window: no contours",
             isfinite(span) ? "constant" : "nowhere finite");
  }
  svg_out o;
  chart_draw d;
  rc = start_chart(&o, path, &fr, c->paths, c->nseries, 0, 1, &d, err, errlen);
  if (!rc) {
    draw_frame(o.f, &fr, c->title, caption, c->xlabel, c->ylabel);
    fputs("<g class=\"contours\">\n", o.f);
    for (int i = 0; i < nlev && levels; i++) {
      char colour[8];
      level_colour(i, nlev, colour, sizeof colour);
      draw_level(o.f, &fr, g, nx, ny, flo + span * pow(10, -CONTOUR_DECADES * (nlev - i) / nlev),
                 colour);
    }
    fputs("</g>\n", o.f);
    rc = finish_chart(&o, &fr, c->paths, c->nseries, 1, &d, err, errlen);
  }
  free_chart(&d, c->nseries);
  free(g);
  return rc;
}
