/*
 * HDF5 access shared by the data set and (later) checkpoint code.
 *
 * Debian's parallel HDF5 is not thread-safe, so every HDF5 call of the
 * process sits between aes_h5_lock() and aes_h5_unlock() (a recursive
 * lock: helpers may nest). H5_CHECK turns a failed call into an internal
 * error carrying HDF5's own innermost message.
 */
#ifndef AESNET_H5_H
#define AESNET_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "aesnet/core.h"

void aes_h5_init(void); /* silence HDF5's own stack printing; idempotent */
void aes_h5_lock(void);
void aes_h5_unlock(void);
/* The lock, waiting at most this long (0 if taken, -1 if not): for the way
 * out, where its holder may be a thread that will never let it go. */
int aes_h5_lock_within(double seconds);
/* HDF5's innermost error message for the last failure (thread-local copy). */
const char *aes_h5_errmsg(void);
/* For a failed write: the system's reason inside HDF5's message ("No space
 * left on device", "File too large"), or the whole message. */
const char *aes_h5_write_reason(void);

#define H5_CHECK(call)                                                                     \
    ({                                                                                    \
        __typeof__(call) h5check_rc_ = (call);                                            \
        if (h5check_rc_ < 0) aes_internal_error("HDF5: %s: %s", #call, aes_h5_errmsg()); \
        h5check_rc_;                                                                      \
    })

/* Attributes on an object (root group, data set). */
void aes_h5_attr_write_str(hid_t obj, const char *name, const char *value);
void aes_h5_attr_write_i64(hid_t obj, const char *name, int64_t value);
void aes_h5_attr_write_f64(hid_t obj, const char *name, double value);
/* Readers return 0 on success, -1 if absent or of the wrong kind. */
int aes_h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap);
int aes_h5_attr_read_i64(hid_t obj, const char *name, int64_t *value);
int aes_h5_attr_read_f64(hid_t obj, const char *name, double *value);

/* A 1-D data set of variable-length UTF-8 strings. */
void aes_h5_write_strings(hid_t loc, const char *name, const char *const *s, int64_t n);
/* Returns n strings (caller frees each and the array), or NULL if absent. */
char **aes_h5_read_strings(hid_t loc, const char *name, int64_t *n);

/* Whether a link (path) exists below loc. */
int aes_h5_exists(hid_t loc, const char *path);

#endif
