/* fuzz_util.h — what the libFuzzer harnesses share: a reader that takes typed values off the
 * fuzz input (in the spirit of LLVM's FuzzedDataProvider: never fails, yields zeros once the
 * input is used up), and a private scratch directory for the files the code under test opens
 * by path.
 *
 * Invariants: the scratch directory is created once per process (mkdtemp under $TMPDIR, else
 * /tmp) and removed with its files at exit; harnesses only write file names they choose. */
#ifndef DPT_FUZZ_UTIL_H
#define DPT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t *p;
  size_t n;
} fz_in;

uint8_t fz_u8(fz_in *in);
uint32_t fz_u32(fz_in *in);
uint64_t fz_u64(fz_in *in);
/* A value in [lo, hi] (inclusive) from as few bytes as the range needs. */
int64_t fz_range(fz_in *in, int64_t lo, int64_t hi);
double fz_double(fz_in *in); /* any bit pattern, NaN and infinities included */
int fz_bool(fz_in *in);
/* Up to max bytes: a length byte pair, then that many bytes (fewer at the end of the input).
 * *len gets the count; the pointer stays inside the input. */
const uint8_t *fz_bytes(fz_in *in, size_t max, size_t *len);

/* The scratch directory, "<dir>/" + name into buf (which must hold 4096 bytes). */
const char *fz_path(char *buf, const char *name);
/* Writes n bytes to path (truncating); aborts on failure (a harness bug, not a finding). */
void fz_write(const char *path, const void *data, size_t n);

/* Aborts (a finding) if any HDF5 object is still open: every dpt call under test must close
 * what it opened, on success and on every error path. `what` names the call. */
void fz_check_no_open_hdf5(const char *what);

/* Quietens Open MPI, OpenBLAS and HDF5 for the fuzzer: call from LLVMFuzzerInitialize. */
void fz_init(void);

/* The HDF5 harnesses' switches: *raw = 0 when DPT_FUZZ_RAW=0 (inputs starting with the HDF5
 * signature are then built like any other, not taken as files), *verbose = 1 when
 * DPT_FUZZ_VERBOSE is set (print what each input led to). */
void fz_hdf5_flags(int *raw, int *verbose);

/* Bytes of n points of a type of tsize bytes, or 0 when there are none or more than max. */
size_t fz_bytes_upto(long long n, size_t tsize, size_t max);

#endif
