/* model.c — `dpt model show|torch|presets|cat`: parse the words and flags, call runtime's model
 * file functions, print their text. No MPI: one process reads the model file (and the
 * dataset's metadata). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch.h"
#include "runtime.h"

static const char k_usage[] =
    "usage: dpt model show MODEL [--data FILE [--context T]] [--loss ce|mse] [--activation A]\n"
    "         the layers with their output shapes and parameter counts\n"
    "       dpt model torch MODEL [--data FILE [--context T]] [--loss ce|mse] [--activation A]\n"
    "         a PyTorch 1.13 module (Python source) whose state_dict has the model's names\n"
    "         and shapes, with load_dpt_checkpoint() for dpt checkpoints\n"
    "       dpt model presets\n"
    "         the presets compiled in (--model cnn:NAME)\n"
    "       dpt model cat PRESET\n"
    "         a preset's model file, to copy and edit\n"
    "  MODEL is file:PATH, a PATH ending in .ini, a preset (cnn:tiny) or mlp:IN-...-OUT\n"
    "  (with --activation); --data gives the sample shape and the number of classes (needed\n"
    "  when the file has no [model] input); --context T reads a token dataset (dpt data\n"
    "  import-text) in windows of T tokens, as dpt train --context does\n";

/* The description line of a preset's text ("description = ..."), into buf. */
static const char *description(const char *text, char *buf, size_t len) {
  buf[0] = 0;
  for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (!strncmp(p, "description", 11)) {
      const char *v = strchr(p, '=');
      const char *end = strchr(p, '\n');
      if (v && (!end || v < end)) {
        v++;
        while (*v == ' ') v++;
        snprintf(buf, len, "%.*s", (int)(end ? (size_t)(end - v) : strlen(v)), v);
      }
      break;
    }
  }
  return buf;
}

static void list_preset(void *ctx, const char *spec, const char *text) {
  (void)ctx;
  char d[256];
  printf("  %-16s %s\n", spec, description(text, d, sizeof d));
}

typedef struct {
  const char *want;
  const char *text;
} find_ctx;
static void find_preset(void *ctx, const char *spec, const char *text) {
  find_ctx *f = ctx;
  if (!strcmp(spec, f->want)) f->text = text;
}

int dpt_launch_model(int argc, char **argv) {
  for (int i = 2; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("%s", k_usage);
      return 0;
    }
  char err[DPT_ERR_LEN] = "";
  kv_list l = {.take_args = 1};
  const char *data = NULL, *loss = "ce", *act = "relu", *context = NULL;
  int rc = dpt_launch_collect(argc, argv, 2, &l, err, sizeof err);
  for (int i = 0; !rc && i < l.n; i++) {
    const kv *e = &l.items[i];
    if (strcmp(e->key, "data") && strcmp(e->key, "loss") && strcmp(e->key, "activation") &&
        strcmp(e->key, "context")) {
      snprintf(err, sizeof err,
               "unknown option '--%s' (expected --data FILE, --context T, --loss ce|mse, "
               "--activation A)",
               e->key);
      rc = DPT_EXIT_USAGE;
    } else if (e->bare) {
      snprintf(err, sizeof err, "--%s: needs a value", e->key);
      rc = DPT_EXIT_USAGE;
    } else if (e->key[0] == 'd') {
      data = e->value;
    } else if (e->key[0] == 'c') {
      context = e->value;
    } else if (e->key[0] == 'a') {
      act = e->value;
    } else {
      loss = e->value;
    }
  }
  const char *sub = !rc && l.nargs > 0 ? l.args[0] : NULL;
  int want_model = sub && (!strcmp(sub, "show") || !strcmp(sub, "torch") || !strcmp(sub, "cat"));
  if (!rc && (!sub || (!want_model && strcmp(sub, "presets")) || l.nargs != (want_model ? 2 : 1))) {
    snprintf(err, sizeof err,
             "expected show MODEL, torch MODEL, presets or cat PRESET (see dpt "
             "model --help)");
    rc = DPT_EXIT_USAGE;
  }
  if (rc) {
    fprintf(stderr, "dpt model: %s\n", err);
    dpt_launch_kv_free(&l);
    return rc;
  }
  if (!strcmp(sub, "presets")) {
    printf("Presets (--model NAME; dpt model cat NAME prints the file):\n");
    dpt_model_presets(list_preset, NULL);
    dpt_launch_kv_free(&l);
    return 0;
  }
  const char *spec = l.args[1];
  if (!strcmp(sub, "cat")) {
    find_ctx f = {spec, NULL};
    dpt_model_presets(find_preset, &f);
    if (f.text)
      printf("%s", f.text);
    else
      fprintf(stderr, "dpt model: '%s' is not a preset (dpt model presets lists them)\n", spec);
    dpt_launch_kv_free(&l);
    return f.text ? 0 : DPT_EXIT_USAGE;
  }
  dpt_model_data d;
  long long t = 0;
  char tail = 0;
  if (context && (sscanf(context, "%lld%c", &t, &tail) != 1 || t < 1 || !data)) {
    fprintf(stderr, "dpt model: --context %s: %s\n", context,
            data ? "expected a positive number of tokens" : "needs --data FILE (a token dataset)");
    dpt_launch_kv_free(&l);
    return DPT_EXIT_USAGE;
  }
  if (data && (context ? dpt_model_data_read_tokens(data, t, &d, err, sizeof err)
                       : dpt_model_data_read(data, &d, err, sizeof err))) {
    char ignored[DPT_ERR_LEN];
    int tokens = !context && !dpt_model_data_read_tokens(data, 1, &d, ignored, sizeof ignored);
    if (tokens)
      fprintf(stderr,
              "dpt model: --data: %s is a token dataset: give --context T (tokens per "
              "window)\n",
              data);
    else
      fprintf(stderr, "dpt model: --data: %s\n", err);
    dpt_launch_kv_free(&l);
    return tokens ? DPT_EXIT_USAGE : DPT_EXIT_RUN;
  }
  char *text = NULL;
  const dpt_model_data *dp = data ? &d : NULL;
  rc = !strcmp(sub, "show") ? dpt_model_show(spec, act, loss, dp, &text, err, sizeof err)
                            : dpt_model_torch(spec, act, loss, dp, &text, err, sizeof err);
  dpt_launch_kv_free(&l);
  if (rc) {
    fprintf(stderr, "dpt model: %s\n", err);
    return rc == DPT_ENOMEM ? DPT_EXIT_RUN : DPT_EXIT_USAGE;
  }
  fputs(text, stdout);
  free(text);
  return 0;
}
