/* file.c — files every module writes (base.h): mkdir -p, and the one atomic commit (write to a
 * temporary file, fsync, rename over the target, fsync the directory) behind datasets,
 * checkpoints, `latest`, metrics summaries and charts. */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int errf(char *err, size_t errlen, int rc, const char *what, const char *path, int e) {
  snprintf(err, errlen, "%s'%s': %s", what, path, strerror(e));
  return rc;
}

int dpt_mkdirs(const char *path, const char *what, char *err, size_t errlen) {
  size_t n = strlen(path);
  char *buf = malloc(n + 1);
  if (!buf) return snprintf(err, errlen, "out of memory"), DPT_ENOMEM;
  memcpy(buf, path, n + 1);
  int rc = DPT_OK;
  for (char *p = buf + 1; n && rc == DPT_OK; p++) {
    if (*p != '/' && *p) continue;
    char c = *p;
    *p = 0;
    struct stat st;
    if (mkdir(buf, 0777) && errno != EEXIST) {
      snprintf(err, errlen, "%s: cannot create '%s': %s", what, buf, strerror(errno));
      rc = DPT_EIO;
    } else if (stat(buf, &st) == 0 && !S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "%s: '%s' exists and is not a directory", what, buf);
      rc = DPT_EIO;
    }
    if (!c) break;
    *p = c;
  }
  free(buf);
  return rc;
}

int dpt_mkdirs_parent(const char *path, const char *what, char *err, size_t errlen) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path) return DPT_OK;
  size_t n = (size_t)(slash - path);
  char *dir = malloc(n + 1);
  if (!dir) return snprintf(err, errlen, "out of memory"), DPT_ENOMEM;
  memcpy(dir, path, n);
  dir[n] = 0;
  int rc = dpt_mkdirs(dir, what, err, errlen);
  free(dir);
  return rc;
}

/* fsync of the directory that holds path, so a rename in it is durable. */
static int fsync_parent(const char *path) {
  char *copy = strdup(path);
  if (!copy) return ENOMEM;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  free(copy);
  if (fd < 0) return errno;
  int e = fsync(fd) ? errno : 0;
  close(fd);
  /* some file systems cannot fsync a directory; the rename is still atomic there */
  return e == EINVAL || e == EROFS ? 0 : e;
}

int dpt_file_commit(const char *tmp, const char *path, char *err, size_t errlen) {
  int fd = open(tmp, O_RDONLY);
  int e = fd < 0 ? errno : 0;
  if (fd >= 0) {
    if (fsync(fd)) e = errno;
    close(fd);
  }
  if (!e && rename(tmp, path)) e = errno;
  if (e) {
    unlink(tmp);
    return errf(err, errlen, DPT_EIO, "cannot write ", path, e);
  }
  if ((e = fsync_parent(path))) return errf(err, errlen, DPT_EIO, "cannot write ", path, e);
  return DPT_OK;
}

int dpt_check_regular(const char *path, const char *what, char *err, size_t errlen) {
  struct stat st;
  if (stat(path, &st) != 0 || S_ISREG(st.st_mode)) return DPT_OK;
  snprintf(err, errlen, "%s: '%s' is not a regular file (%s)", what, path,
           S_ISDIR(st.st_mode)    ? "a directory"
           : S_ISFIFO(st.st_mode) ? "a FIFO"
                                  : "a special file");
  return DPT_EINVAL;
}

void dpt_afile_abort(dpt_afile *a) {
  if (a->f) fclose(a->f);
  if (a->tmp) unlink(a->tmp);
  free(a->path);
  free(a->tmp);
  a->f = NULL, a->path = a->tmp = NULL;
}

int dpt_afile_open(dpt_afile *a, const char *path, char *err, size_t errlen) {
  size_t n = strlen(path);
  a->f = NULL;
  a->path = strdup(path);
  a->tmp = malloc(n + 5);
  if (!a->path || !a->tmp) {
    dpt_afile_abort(a);
    return snprintf(err, errlen, "out of memory"), DPT_ENOMEM;
  }
  memcpy(a->tmp, path, n);
  memcpy(a->tmp + n, ".tmp", 5);
  int rc = dpt_check_regular(path, "cannot write", err, errlen);
  if (rc) {
    free(a->tmp), a->tmp = NULL; /* nothing of ours to remove */
    dpt_afile_abort(a);
    return rc;
  }
  if (!(a->f = fopen(a->tmp, "w"))) {
    rc = errf(err, errlen, DPT_EIO, "cannot write ", a->tmp, errno);
    free(a->tmp), a->tmp = NULL;
    dpt_afile_abort(a);
    return rc;
  }
  return DPT_OK;
}

int dpt_afile_commit(dpt_afile *a, char *err, size_t errlen) {
  int e = 0;
  if (fflush(a->f) != 0 || ferror(a->f)) e = errno ? errno : EIO;
  if (fclose(a->f) != 0 && !e) e = errno;
  a->f = NULL;
  int rc = DPT_OK;
  if (e)
    rc = errf(err, errlen, DPT_EIO, "cannot write ", a->path, e);
  else
    rc = dpt_file_commit(a->tmp, a->path, err, errlen);
  if (!rc) free(a->tmp), a->tmp = NULL; /* renamed: nothing to remove */
  dpt_afile_abort(a);
  return rc;
}
