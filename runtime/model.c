/* model.c — helpers shared by every dpt_model, built-in or the user's.
 * Invariant: tensors are looked up by their state_dict name; nothing here owns memory. */
#include <string.h>

#include "runtime.h"

const dpt_tensor *dpt_model_tensor(const dpt_model *m, const char *name) {
  if (!m || !name) return NULL;
  for (int i = 0; i < m->ntensors && i < DPT_MAX_TENSORS; i++)
    if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
  return NULL;
}
