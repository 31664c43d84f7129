/* eval.c — evaluation on the test split, the same result for every rank count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "train_internal.h"

/* Mean loss and accuracy on the test split, in fixed chunks of EVAL_CHUNK samples dealt out
 * round-robin; each chunk's sums travel in their own slots and are added in chunk order, so
 * the result is the same for every W. */
int dpt_train_evaluate(run *r, double *loss, double *acc, char *err, size_t errlen) {
  dpt_model *m = r->model;
  const int64_t EVAL_CHUNK = (int64_t)r->eval_chunk;
  int64_t n = r->test.n, nchunks = (n + EVAL_CHUNK - 1) / EVAL_CHUNK;
  double *slot = calloc(2 * (size_t)nchunks + 1, sizeof *slot); /* losses, correct, failure */
  int rc = slot ? DPT_OK : DPT_ENOMEM;
  if (!slot) snprintf(err, errlen, "out of memory for %lld evaluation chunks", (long long)nchunks);
  if ((rc = dpt_comm_agree_error(r->comm, rc, err, errlen))) { /* before any other collective */
    free(slot);
    return rc;
  }
  /* stage 3: each layer's parameters gathered before its forward, in rounds of one chunk per
   * rank (a rank without a chunk in the last round, or whose read failed, joins the round's
   * gathers); a model without evaluate_pass gets the whole parameters for the duration */
  int layered = r->zero == 3 && m->evaluate_pass;
  float *params = r->params;
  if (r->zero == 3 && !layered) {
    params = malloc((m->nparams ? m->nparams : 1) * sizeof *params);
    rc = params ? DPT_OK
                : dpt_errf(err, errlen, DPT_ENOMEM,
                           "out of memory for the evaluation's whole copy of %zu parameters (ZeRO "
                           "stage 3 gathers them to evaluate)",
                           m->nparams);
    if ((rc = dpt_comm_agree_error(r->comm, rc, err, errlen)) ||
        (rc = dpt_zero_gather_all(r, params, err, errlen))) {
      free(params);
      free(slot);
      return rc;
    }
  }
  dpt_layer_pass pass = {.train = 0, .nseg = 1, .params_at = dpt_zero_params_at, .params_ctx = r};
  int64_t rounds = (nchunks + r->size - 1) / r->size;
  char ioerr[DPT_ERR_LEN];
  r->rows_rc = DPT_OK;
  for (int64_t k = 0; k < rounds && (layered || !rc); k++) {
    int64_t c = k * r->size + r->rank;
    if (layered) dpt_zero_gather_begin(r, 0);
    if (c < nchunks && !rc) {
      int64_t i = c * EVAL_CHUNK;
      size_t cnt = (size_t)(n - i < EVAL_CHUNK ? n - i : EVAL_CHUNK);
      /* a token dataset's test samples: its consecutive windows, starting at j * T */
      for (size_t j = 0; j < cnt; j++)
        r->idx[j] = (i + (int64_t)j) * (int64_t)(r->tokens ? r->lps : 1);
      if (r->tokens ? dpt_io_tokens_read(r->tokens, DPT_SPLIT_TEST, r->idx, cnt, (int64_t)r->lps,
                                         r->x, r->labels, ioerr, sizeof ioerr)
                    : dpt_io_dataset_read(r->data, DPT_SPLIT_TEST, r->idx, cnt, r->x,
                                          m->wants_labels ? r->labels : NULL,
                                          m->wants_labels ? NULL : r->y, ioerr, sizeof ioerr)) {
        snprintf(err, errlen, "%s", ioerr);
        rc = DPT_EIO;
      } else {
        int64_t correct = 0;
        rc = layered ? m->evaluate_pass(m, NULL, r->x, r->labels, r->y, cnt, &slot[c], &correct,
                                        &pass, err, errlen)
                     : m->evaluate(m, params, r->x, r->labels, r->y, cnt, &slot[c], &correct, err,
                                   errlen);
        slot[nchunks + c] = (double)correct;
      }
    }
    if (layered) dpt_zero_gather_end(r);
  }
  if (!rc && r->rows_rc) { /* a failed gather */
    snprintf(err, errlen, "%s", r->rows_err);
    rc = r->rows_rc;
  }
  if (params != r->params) free(params);
  size_t nred = 2 * (size_t)nchunks + 1;
  slot[nred - 1] = rc ? 1 : 0;
  char cerr[DPT_ERR_LEN];
  dpt_progress_wait(r->pos.step, "the evaluation reduction");
  int wrc = dpt_comm_sum(r->comm, slot, (int)nred, cerr, sizeof cerr);
  dpt_progress_done();
  if (wrc) {
    snprintf(err, errlen, "%s", cerr);
    free(slot);
    return DPT_EMPI;
  }
  if (slot[nred - 1] > 0) {
    free(slot);
    return dpt_train_shared_failure(r, rc, err, errlen);
  }
  double l = 0, k = 0;
  for (int64_t c = 0; c < nchunks; c++) l += slot[c], k += slot[nchunks + c];
  free(slot);
  *loss = l / (double)n;
  *acc = m->wants_labels ? k / ((double)n * (double)r->lps) : NAN; /* per position */
  return DPT_OK;
}
