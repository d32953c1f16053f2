/*
 * HDF5 helpers: the process-wide lock, error capture, attributes and
 * string data sets.
 */
#define _GNU_SOURCE
#include "aesnet/h5.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t g_lock;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&g_lock, &a);
    pthread_mutexattr_destroy(&a);
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void aes_h5_init(void) { pthread_once(&g_once, init_once); }

void aes_h5_lock(void)
{
    aes_h5_init();
    pthread_mutex_lock(&g_lock);
}

int aes_h5_lock_within(double seconds)
{
    aes_h5_init();
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long long ns = (long long)t.tv_nsec + (long long)(seconds * 1e9);
    t.tv_sec += (time_t)(ns / 1000000000);
    t.tv_nsec = (long)(ns % 1000000000);
    return pthread_mutex_timedlock(&g_lock, &t) == 0 ? 0 : -1;
}

void aes_h5_unlock(void) { pthread_mutex_unlock(&g_lock); }

static _Thread_local char t_errmsg[512];

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)data;
    /* The innermost frame (n == 0) says what went wrong at the bottom. */
    if (n == 0 && e->desc) snprintf(t_errmsg, sizeof t_errmsg, "%s", e->desc);
    return 0;
}

const char *aes_h5_errmsg(void)
{
    t_errmsg[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, NULL);
    if (!t_errmsg[0]) snprintf(t_errmsg, sizeof t_errmsg, "unknown HDF5 error");
    return t_errmsg;
}

const char *aes_h5_write_reason(void)
{
    static _Thread_local char buf[256];
    const char *m = aes_h5_errmsg();
    const char *key = "error message = '";
    const char *p = strstr(m, key);
    if (!p) {
        snprintf(buf, sizeof buf, "%s", m);
        return buf;
    }
    p += strlen(key);
    const char *q = strchr(p, '\'');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

static void attr_write(hid_t obj, const char *name, hid_t type, const void *value)
{
    hid_t space = H5_CHECK(H5Screate(H5S_SCALAR));
    if (H5Aexists(obj, name) > 0) H5_CHECK(H5Adelete(obj, name));
    hid_t a = H5_CHECK(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT));
    H5_CHECK(H5Awrite(a, type, value));
    H5Aclose(a);
    H5Sclose(space);
}

void aes_h5_attr_write_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5_CHECK(H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
    attr_write(obj, name, t, &value);
    H5Tclose(t);
}

void aes_h5_attr_write_i64(hid_t obj, const char *name, int64_t value)
{
    attr_write(obj, name, H5T_NATIVE_INT64, &value);
}

void aes_h5_attr_write_f64(hid_t obj, const char *name, double value)
{
    attr_write(obj, name, H5T_NATIVE_DOUBLE, &value);
}

static hid_t attr_open(hid_t obj, const char *name, H5T_class_t want)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    hid_t s = H5Aget_space(a);
    int ok = t >= 0 && s >= 0 && H5Tget_class(t) == want && H5Sget_simple_extent_npoints(s) == 1;
    if (t >= 0) H5Tclose(t);
    if (s >= 0) H5Sclose(s);
    if (!ok) {
        H5Aclose(a);
        return -1;
    }
    return a;
}

int aes_h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap)
{
    hid_t a = attr_open(obj, name, H5T_STRING);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, H5Tget_cset(ft));
        char *s = NULL;
        if (H5Aread(a, t, &s) >= 0 && s) {
            snprintf(out, cap, "%s", s);
            H5free_memory(s);
            rc = 0;
        }
        H5Tclose(t);
    } else {
        size_t n = H5Tget_size(ft);
        char *buf = calloc(n + 1, 1);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, n + 1);
        H5Tset_cset(t, H5Tget_cset(ft));
        if (buf && H5Aread(a, t, buf) >= 0) {
            snprintf(out, cap, "%s", buf);
            rc = 0;
        }
        free(buf);
        H5Tclose(t);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

int aes_h5_attr_read_i64(hid_t obj, const char *name, int64_t *value)
{
    hid_t a = attr_open(obj, name, H5T_INTEGER);
    if (a < 0) return -1;
    int rc = H5Aread(a, H5T_NATIVE_INT64, value) >= 0 ? 0 : -1;
    H5Aclose(a);
    return rc;
}

int aes_h5_attr_read_f64(hid_t obj, const char *name, double *value)
{
    hid_t a = attr_open(obj, name, H5T_FLOAT);
    if (a < 0) {
        int64_t i;
        if (aes_h5_attr_read_i64(obj, name, &i) == 0) {
            *value = (double)i;
            return 0;
        }
        return -1;
    }
    int rc = H5Aread(a, H5T_NATIVE_DOUBLE, value) >= 0 ? 0 : -1;
    H5Aclose(a);
    return rc;
}

static hid_t vlen_str_type(void)
{
    hid_t t = H5_CHECK(H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
    return t;
}

void aes_h5_write_strings(hid_t loc, const char *name, const char *const *s, int64_t n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5_CHECK(H5Screate_simple(1, dims, NULL));
    hid_t t = vlen_str_type();
    hid_t d = H5_CHECK(H5Dcreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (n > 0) H5_CHECK(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s));
    H5Dclose(d);
    H5Tclose(t);
    H5Sclose(space);
}

char **aes_h5_read_strings(hid_t loc, const char *name, int64_t *n)
{
    if (!aes_h5_exists(loc, name)) return NULL;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t ft = H5Dget_type(d);
    hid_t space = H5Dget_space(d);
    char **out = NULL;
    if (ft >= 0 && space >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0 &&
        H5Sget_simple_extent_ndims(space) == 1) {
        hsize_t dims[1];
        H5Sget_simple_extent_dims(space, dims, NULL);
        char **tmp = aes_calloc(dims[0] ? dims[0] : 1, sizeof(char *), "strings");
        hid_t t = vlen_str_type();
        H5Tset_cset(t, H5Tget_cset(ft));
        if (dims[0] == 0 || H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) >= 0) {
            out = aes_calloc(dims[0] ? dims[0] : 1, sizeof(char *), "strings");
            for (hsize_t i = 0; i < dims[0]; i++) {
                out[i] = aes_strdup(tmp[i] ? tmp[i] : "");
                if (tmp[i]) H5free_memory(tmp[i]);
            }
            *n = (int64_t)dims[0];
        }
        free(tmp);
        H5Tclose(t);
    }
    if (ft >= 0) H5Tclose(ft);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    return out;
}

int aes_h5_exists(hid_t loc, const char *path)
{
    /* Check each component so a missing group is "absent", not an error. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            if (!c) return 1;
            *p = c;
        }
    }
}
