/*
 * Small services every module uses: checked allocation, logging, keyed
 * random streams, hashing, a monotonic clock and file helpers.
 */
#define _GNU_SOURCE
#include "aesnet/core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- memory ---------------------------------------------------------- */

void *aes_malloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p) aes_internal_error("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *aes_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) aes_internal_error("out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void *aes_realloc(void *q, size_t n, const char *what)
{
    void *p = realloc(q, n ? n : 1);
    if (!p) aes_internal_error("out of memory reallocating %zu bytes for %s", n, what);
    return p;
}

char *aes_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = aes_malloc(n, "string");
    memcpy(p, s, n);
    return p;
}

/* ---- logging --------------------------------------------------------- */

static aes_log_level g_level = AES_LOG_INFO;
void aes_log_set_level(aes_log_level level) { g_level = level; }
aes_log_level aes_log_get_level(void) { return g_level; }

static void vlog(FILE *f, const char *prefix, const char *fmt, va_list ap)
{
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    fprintf(f, "%s%s\n", prefix, buf);
    fflush(f);
}

void aes_log(const char *fmt, ...)
{
    if (g_level < AES_LOG_INFO || aes_rank() > 0) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(stdout, "", fmt, ap);
    va_end(ap);
}

void aes_debug(const char *fmt, ...)
{
    if (g_level < AES_LOG_DEBUG) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, "debug: ", fmt, ap);
    va_end(ap);
}

void aes_warn(const char *fmt, ...)
{
    char prefix[64];
    if (aes_rank() >= 0)
        snprintf(prefix, sizeof prefix, "aesnet: warning (rank %d): ", aes_rank());
    else
        snprintf(prefix, sizeof prefix, "aesnet: warning: ");
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, prefix, fmt, ap);
    va_end(ap);
}

/* ---- random streams -------------------------------------------------- */

uint64_t aes_hash64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t aes_key(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t purpose)
{
    uint64_t k = aes_hash64(seed);
    k = aes_hash64(k ^ epoch);
    k = aes_hash64(k ^ index);
    return aes_hash64(k ^ purpose);
}

void aes_rng_init(aes_rng *r, uint64_t key)
{
    uint64_t x = key;
    for (int i = 0; i < 4; i++) {
        x = aes_hash64(x);
        r->s[i] = x;
    }
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t aes_rng_u64(aes_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double aes_rng_uniform(aes_rng *r) { return (double)(aes_rng_u64(r) >> 11) * 0x1.0p-53; }

float aes_rng_normal(aes_rng *r)
{
    double u1 = aes_rng_uniform(r), u2 = aes_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t aes_rng_below(aes_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = aes_rng_u64(r);
    while (x >= limit);
    return x % n;
}

void aes_shuffle_i64(int64_t *a, int64_t n, uint64_t key)
{
    aes_rng r;
    aes_rng_init(&r, key);
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)aes_rng_below(&r, (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

uint64_t aes_fnv1a(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---- time and files -------------------------------------------------- */

double aes_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int aes_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

void aes_tmp_name(const char *final_path, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s.%ld.tmp", final_path, (long)getpid());
    if (n < 0 || (size_t)n >= cap) aes_user_error("%s: path too long", final_path);
}

int aes_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return -1;
    char *dup = aes_strdup(path);
    int dfd = open(dirname(dup), O_RDONLY | O_DIRECTORY);
    free(dup);
    if (dfd >= 0) {
        /* Some file systems refuse fsync on directories; the data is safe. */
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}
