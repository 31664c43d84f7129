/* error.c — error messages, and descriptions of the codes of base.h generated from the same
 * table. */
#include "base.h"

#include <stdarg.h>
#include <stdio.h>

int dpt_errf(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

const char *dpt_strerror(int rc) {
  switch (rc) {
  case DPT_OK: return "success";
#define DPT_ERRNO_DESC(name, value, desc)                                                          \
  case DPT_##name: return desc;
    DPT_ERRNO_MAP(DPT_ERRNO_DESC)
#undef DPT_ERRNO_DESC
  }
  return "unknown error";
}

const char *dpt_err_name(int rc) {
  switch (rc) {
  case DPT_OK: return "OK";
#define DPT_ERRNO_NAME(name, value, desc)                                                          \
  case DPT_##name: return #name;
    DPT_ERRNO_MAP(DPT_ERRNO_NAME)
#undef DPT_ERRNO_NAME
  }
  return "unknown";
}
