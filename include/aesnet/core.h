/*
 * core: errors and the fatal-error hook, check macros, logging, memory,
 * keyed random streams, timers and the temporary-file registry.
 *
 * Nothing below the command-line layer exits the process: failures go
 * through aes_fatal(), which calls the hook that cli/ installs (print one
 * line for bad user input, abort every rank for internal faults).
 */
#ifndef AESNET_CORE_H
#define AESNET_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define AES_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define AES_NORETURN __attribute__((noreturn))
#else
#define AES_PRINTF(a, b)
#define AES_NORETURN
#endif

/* ---- errors ---------------------------------------------------------- */

typedef enum {
    AES_ERR_USER = 1,     /* bad input: config, dataset, manifest, image, command line */
    AES_ERR_INTERNAL = 2, /* a library call failed, or an invariant broke */
} aes_err_kind;

/* The hook never returns: it exits or aborts. msg is one line, no newline. */
typedef void (*aes_fatal_hook)(aes_err_kind kind, const char *file, int line,
                                const char *func, const char *msg);

void aes_set_fatal_hook(aes_fatal_hook hook);
AES_NORETURN void aes_fatal(aes_err_kind kind, const char *file, int line, const char *func,
                            const char *fmt, ...) AES_PRINTF(5, 6);

/* Bad user input: message names the file and field. */
#define aes_user_error(...) aes_fatal(AES_ERR_USER, __FILE__, __LINE__, __func__, __VA_ARGS__)
/* Internal fault: the message gets rank, file, function and line. */
#define aes_internal_error(...) \
    aes_fatal(AES_ERR_INTERNAL, __FILE__, __LINE__, __func__, __VA_ARGS__)
/* Invariant that survives NDEBUG. */
#define AES_CHECK(cond)                                                       \
    do {                                                                      \
        if (!(cond)) aes_internal_error("check failed: %s", #cond);           \
    } while (0)

/* Whether a user error is found identically on every rank (checks before
 * work starts: each rank exits cleanly) or by one rank alone (during
 * training, e.g. a full disk under rank 0's checkpoint: all ranks must be
 * aborted or the others hang). Default 1. */
void aes_set_user_errors_collective(int collective);
int aes_user_errors_collective(void);

/* Rank for messages; set by whoever initialises MPI (-1: not distributed). */
void aes_set_rank(int rank);
int aes_rank(void);

/* An error message buffer for functions that report instead of failing. */
typedef struct {
    char msg[512];
} aes_err;
void aes_err_set(aes_err *e, const char *fmt, ...) AES_PRINTF(2, 3);

/* ---- temporary files ------------------------------------------------- */
/* Files registered here are unlinked by aes_fatal before the hook runs,
 * so a failed run leaves no half-written output behind. */
void aes_tmpfile_register(const char *path);
void aes_tmpfile_forget(const char *path);
void aes_tmpfile_unlink_all(void);

/* ---- memory ---------------------------------------------------------- */
void *aes_malloc(size_t n, const char *what);
void *aes_calloc(size_t n, size_t size, const char *what);
void *aes_realloc(void *p, size_t n, const char *what);
char *aes_strdup(const char *s);

/* ---- logging --------------------------------------------------------- */
typedef enum { AES_LOG_QUIET = 0, AES_LOG_INFO = 1, AES_LOG_DEBUG = 2 } aes_log_level;
void aes_log_set_level(aes_log_level level);
aes_log_level aes_log_get_level(void);
/* Info lines go to stdout on rank 0 (or when not distributed). */
void aes_log(const char *fmt, ...) AES_PRINTF(1, 2);
void aes_debug(const char *fmt, ...) AES_PRINTF(1, 2);
/* Warnings go to stderr on every rank. */
void aes_warn(const char *fmt, ...) AES_PRINTF(1, 2);

/* ---- random streams -------------------------------------------------- */
/* Every draw is keyed by (seed, epoch, global sample index, purpose), never
 * by rank, so a sample gets the same randomness on any number of ranks. */
typedef enum {
    AES_RNG_PERMUTE = 1,
    AES_RNG_CROP = 2,
    AES_RNG_FLIP = 3,
    AES_RNG_DESCRIPTION = 4,
    AES_RNG_SPLIT = 5,
    AES_RNG_SYNTH = 6,
    AES_RNG_INIT = 7,
    AES_RNG_FUSION_PARTNER = 8,
} aes_rng_purpose;

typedef struct {
    uint64_t s[4]; /* xoshiro256** state */
} aes_rng;

uint64_t aes_hash64(uint64_t x);                  /* splitmix64 finaliser */
uint64_t aes_key(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t purpose);
void aes_rng_init(aes_rng *r, uint64_t key);
uint64_t aes_rng_u64(aes_rng *r);
double aes_rng_uniform(aes_rng *r);              /* [0, 1) */
float aes_rng_normal(aes_rng *r);                /* standard normal */
uint64_t aes_rng_below(aes_rng *r, uint64_t n);  /* [0, n), unbiased */
/* Fisher-Yates shuffle of a[0..n) from the stream of key (from the last
 * element down): the same key gives the same order. */
void aes_shuffle_i64(int64_t *a, int64_t n, uint64_t key);

/* FNV-1a over bytes: content hashes (descriptions, files). */
uint64_t aes_fnv1a(const void *data, size_t n);

/* ---- time ------------------------------------------------------------ */
double aes_now(void); /* seconds, monotonic */

/* ---- files ----------------------------------------------------------- */
int aes_file_exists(const char *path);
/* path + "." + pid + ".tmp" next to the final name, so rename is atomic. */
void aes_tmp_name(const char *final_path, char *out, size_t cap);
/* fsync a file by path and its directory; 0 on success. */
int aes_fsync_path(const char *path);

#endif
