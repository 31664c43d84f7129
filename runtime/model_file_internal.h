/* model_file_internal.h — what model_file_read.c (reading a model description), model_file.c
 * (building its net) and model_show.c (`dpt model show` and `dpt model torch`) share, and the
 * presets that runtime/models/embed.cmake compiles in. Private to runtime/.
 *
 * Invariants:
 * - A description (dpt_mfile) is the file's text as read: sections in order, each option with
 *   its line, so that every error after parsing still names the file and the line.
 * - A built description (dpt_mfile_built) holds the net and, for each layer, the section it
 *   came from (layer i of the net is section i of the file).
 */
#ifndef DPT_MODEL_FILE_INTERNAL_H
#define DPT_MODEL_FILE_INTERNAL_H

#include "runtime.h"

/* A preset: runtime/models/<family>-<name>.ini compiled in (`--model <family>:<name>`). */
typedef struct {
  const char *family; /* "cnn" */
  const char *name;   /* "tiny" */
  const char *text;   /* the file's text */
} dpt_model_preset;
extern const dpt_model_preset dpt_model_presets_builtin[]; /* generated (embed.cmake) */
extern const int dpt_model_npresets_builtin;

typedef struct {
  char *key, *value;
  int line;
} dpt_mfile_opt;

typedef struct {
  char *name; /* the section's name: the layer's name */
  int line;   /* of its [name] header */
  char *kind; /* NULL when missing */
  int kind_line;
  dpt_mfile_opt *opts;
  int nopts, cap;
} dpt_mfile_layer;

typedef struct {
  char where[512]; /* "path/x.ini" or "cnn:tiny": what errors name before ":LINE" */
  int model_line;  /* of the [model] header (0: none) */
  char *loss;      /* [model] loss, or NULL: the caller's (--loss) */
  int loss_line;
  char *smoothing; /* [model] label_smoothing text, or NULL */
  int smoothing_line;
  char *per_position; /* [model] per_position text (ce over each position of [T, V]), or NULL */
  int per_position_line;
  dpt_shape input; /* [model] input (rank 0: not given) */
  int input_line;
  char *description; /* [model] description, or NULL */
  dpt_mfile_layer *layers;
  int nlayers, cap;
} dpt_mfile;

typedef struct {
  dpt_mfile desc;
  dpt_net *net;
  dpt_shape sample;       /* the dataset's sample shape ({0}: none given) */
  const char *input_from; /* how the input shape was chosen, for show */
  const char *loss;       /* the loss used (static or desc's) */
  char identity[32];      /* "net:<16 hex>", the model's m->kind */
} dpt_mfile_built;

/* Reads the description spec names (model_file_read.c): "file:PATH", a PATH ending in ".ini",
 * "FAMILY:NAME" of a preset, or "mlp:IN-...-OUT" as the file the MLP would be (activation
 * between its layers; loss only checks the spec). Errors name the file and line; on error d
 * holds nothing. dpt_mfile_free frees it. */
int dpt_mfile_read(const char *spec, const char *activation, const char *loss, dpt_mfile *d,
                   char *err, size_t errlen);

void dpt_mfile_free(dpt_mfile *d);

/* Reads and builds the model spec names: "file:PATH", a PATH ending in ".ini", "FAMILY:NAME"
 * of a preset, or (for show and torch) "mlp:IN-...-OUT" with activation, described as the file
 * the MLP would be. loss is --loss (used when the file has none); data may be NULL (then the
 * file must give [model] input). Errors name the file and line, and the layer. */
int dpt_mfile_build(const char *spec, const char *activation, const char *loss,
                    const dpt_model_data *data, dpt_mfile_built *b, char *err, size_t errlen);
void dpt_mfile_built_free(dpt_mfile_built *b);

/* The value of option key of layer section l, or NULL. */
const char *dpt_mfile_opt_get(const dpt_mfile_layer *l, const char *key);

#endif /* DPT_MODEL_FILE_INTERNAL_H */
