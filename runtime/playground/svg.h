/* svg.h — standalone SVG charts (internal to the playground).
 *
 * Line charts, contour plots with trajectories, and the standard plots of dpt metrics files.
 * Every file written is one self-contained SVG (no scripts, fonts or links) with explicit
 * width, height and viewBox, written atomically (tmp + rename): a reader never sees half a chart.
 * Degenerate input (no points, one point, all values equal, all NaN) still gives a valid chart.
 * Functions return 0 or a negative DPT_E* code (base.h) with a message in err[errlen].
 */
#ifndef DPT_PLAYGROUND_SVG_H
#define DPT_PLAYGROUND_SVG_H

#include <stddef.h>

/* --- line charts --- */

typedef struct {
  const char *label; /* legend text (NULL: "series <k>") */
  int n;
  const double *x, *y; /* n points; a non-finite y (or y <= 0 on a log axis) breaks the line */
  int markers;         /* also draw a dot at each point */
  int faint;           /* (added) background data, e.g. raw values behind their moving
                          average: thin and translucent, no markers, no legend entry, in the
                          colour of the next series that is not faint */
} dpt_series;

typedef struct {
  const char *title;
  const char *xlabel, *ylabel; /* include units, e.g. "wall time (s)" */
  int logy;                    /* log10 y axis */
  int nseries;
  const dpt_series *series;
  /* The y range to show, when ylo < yhi (both finite, > 0 on a log axis): points outside it
   * leave the plot at its edge. Else (0, 0) the range of the data. */
  double ylo, yhi;
} dpt_chart;

/* Writes a line chart to path (atomically: tmp + rename). Axes span the data, or the given y
 * range (with a small margin: y always, x when there are markers) and carry 1-2-5 ticks, 1-2-5, 1-3
 * or decades on a log axis; each series that is not faint gets its own colour (Okabe-Ito; dashed
 * after the seventh) and a legend entry; faint series are drawn first. Long series are thinned to
 * at most a few points per pixel column, keeping each column's first, lowest, highest and last
 * point, so the drawing is unchanged and the file stays small. Borrows c for the duration of the
 * call. */
int dpt_svg_chart(const char *path, const dpt_chart *c, char *err, size_t errlen);

/* --- contour plots --- */

typedef struct {
  const char *title, *xlabel, *ylabel;
  double xmin, xmax, ymin, ymax;
  double (*f)(double x, double y, void *ctx); /* the function whose contours are drawn */
  void *ctx;
  int nlevels; /* contour levels, spaced geometrically above min f on the grid */
  int nseries;
  const dpt_series *paths; /* trajectories drawn over the contours, with markers */
} dpt_contour_chart;

/* Contour plot (marching squares on a grid) with trajectories on top. For a 1-D function use
 * dpt_svg_chart instead (function curve as one series, the iterates as another with markers).
 * f is evaluated on a grid of about one point per 4 pixels over [xmin, xmax] x [ymin, ymax];
 * levels are min + span * 10^(-4 (nlevels - i) / nlevels), i = 0 .. nlevels-1 (span = max - min
 * on the grid; nlevels <= 0 means 12). Non-finite values of f leave their cells empty. Paths
 * are clipped to the plotted window. */
int dpt_svg_contour(const char *path, const dpt_contour_chart *c, char *err, size_t errlen);

/* --- metrics (plot.c); dpt_plot_metrics is public: playground.h --- */

/* One run's figures from its metrics file: the last and best test accuracy (fraction) and test
 * loss over the epochs (NAN when never evaluated), the training loss at the end (its moving
 * average when plots smooth it), wall time, steps, and the first step whose (smoothed) training
 * loss is <= target_loss (-1: never, or target_loss not finite). */
typedef struct {
  double final_acc, best_acc, final_loss, best_loss, final_train_loss;
  double seconds;
  long steps_to_target, steps;
} dpt_metrics_summary;
int dpt_metrics_summarize(const char *file, double target_loss, dpt_metrics_summary *out, char *err,
                          size_t errlen);

#endif
