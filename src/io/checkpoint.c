/*
 * Checkpoints (HDF5, format "aesnet-checkpoint"): the writer (temporary
 * name, fsync, rename, `latest` link, pruning), the validating readers and
 * the search for the newest complete one. The layout is documented in
 * docs/checkpoint-format.md; keep the two in step.
 */
#define _GNU_SOURCE
#include "aesnet/checkpoint.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aesnet/h5.h"
#include "aesnet_build_info.h"

char *openblas_get_config(void); /* OpenBLAS's own, not in every cblas.h */

#define CKPT_DIR "checkpoints"

/* ---- small helpers ----------------------------------------------------- */


static void shape_str(int rank, const hsize_t *d, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < rank && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
}

/* "step_<digits>.h5" exactly: temporary files (".h5.<pid>.tmp") and
 * anything else in the directory do not match. */
static int parse_step_name(const char *name, long long *step)
{
    if (strncmp(name, "step_", 5) != 0) return 0;
    const char *p = name + 5, *q = p;
    while (isdigit((unsigned char)*q)) q++;
    if (q == p || q - p > 18 || strcmp(q, ".h5") != 0) return 0;
    *step = strtoll(p, NULL, 10);
    return 1;
}

typedef struct {
    long long step;
    char name[64];
} step_file;

static int by_step_desc(const void *a, const void *b)
{
    const step_file *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? 1 : -1;
    return strcmp(y->name, x->name);
}

/* The step_*.h5 files of dir, newest first; NULL (and *n = 0) when the
 * directory cannot be read. */
static step_file *list_steps(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    int cap = 16;
    step_file *s = aes_malloc(sizeof *s * (size_t)cap, "checkpoint list");
    struct dirent *e;
    while ((e = readdir(d))) {
        long long st;
        size_t len = strlen(e->d_name);
        if (!parse_step_name(e->d_name, &st) || len >= sizeof s->name) continue;
        if (*n == cap) {
            cap *= 2;
            s = aes_realloc(s, sizeof *s * (size_t)cap, "checkpoint list");
        }
        s[*n].step = st;
        memcpy(s[*n].name, e->d_name, len + 1);
        (*n)++;
    }
    closedir(d);
    qsort(s, (size_t)*n, sizeof *s, by_step_desc);
    return s;
}

static void mkdir_p(const char *dir)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        aes_user_error("%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            aes_user_error("%s: cannot create the directory: %s", buf, strerror(errno));
        *p = c;
        if (!c) break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        aes_user_error("%s: cannot create the directory: it exists and is not a directory", dir);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd); /* some file systems refuse it for directories */
    close(fd);
}

/* One line naming every library that shaped the numbers: what runs now
 * where the library says (MPI, HDF5, OpenBLAS), what was built in where it
 * does not (libconfig's headers, the CUDA toolkit). */
static void library_versions(char *out, size_t cap)
{
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
    int len = 0;
    MPI_Get_library_version(mpi, &len); /* allowed before MPI_Init */
    mpi[strcspn(mpi, ",\n")] = 0;       /* Open MPI appends a long build note */
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    char blas[256];
    snprintf(blas, sizeof blas, "%s", openblas_get_config());
    for (size_t n = strlen(blas); n > 0 && isspace((unsigned char)blas[n - 1]); n--)
        blas[n - 1] = 0;
    snprintf(out, cap,
             "MPI: %s (MPI %d.%d); HDF5: %u.%u.%u; libconfig: %d.%d.%d; BLAS: %s; "
             "CUDA: %s (AESNET_CUDA=%s)",
             mpi, MPI_VERSION, MPI_SUBVERSION, maj, min, rel, LIBCONFIG_VER_MAJOR,
             LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION, blas, AESNET_BUILT_CUDA_VERSION,
             AESNET_BUILD_CUDA);
}

/* ---- writer ------------------------------------------------------------ */

typedef struct {
    const char *final_path;
    hid_t file, str_type, lcpl;
} writer;

/* Anything that can touch the disk fails as a user error naming the file
 * (a full disk, a quota, a file size limit), never as an internal fault. */
#define WCHECK(w, call)                                                                            \
    do {                                                                                           \
        if ((call) < 0)                                                                            \
            aes_user_error("%s: cannot write the checkpoint: %s", (w)->final_path,                 \
                           aes_h5_write_reason());                                                        \
    } while (0)

/* Attribute writes may flush metadata to disk, so they are checked like
 * data writes (h5.h's helpers would report an internal fault). */
static herr_t put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t space = H5_CHECK(H5Screate(H5S_SCALAR));
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    H5Sclose(space);
    return rc;
}

static void put_i64(writer *w, hid_t obj, const char *name, int64_t v)
{
    WCHECK(w, put_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v));
}

static void put_str(writer *w, hid_t obj, const char *name, const char *v)
{
    WCHECK(w, put_attr(obj, name, w->str_type, w->str_type, &v));
}

static void put_tensor(writer *w, const char *path, const aes_tensor *t, const float *x,
                       int with_trainable)
{
    hsize_t dims[4];
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
    hid_t space = H5_CHECK(H5Screate_simple(t->ndim, dims, NULL));
    hid_t d = H5Dcreate2(w->file, path, H5T_IEEE_F32LE, space, w->lcpl, H5P_DEFAULT, H5P_DEFAULT);
    WCHECK(w, d);
    WCHECK(w, H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x));
    if (with_trainable) put_i64(w, d, "trainable", t->trainable ? 1 : 0);
    WCHECK(w, H5Dclose(d));
    H5Sclose(space);
}

static void write_file(writer *w, const char *tmp_path, const aes_params *P, const float *m,
                       const float *v, const aes_ckpt_meta *meta, const char *config_text)
{
    w->file = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    WCHECK(w, w->file);
    w->str_type = H5_CHECK(H5Tcopy(H5T_C_S1));
    H5_CHECK(H5Tset_size(w->str_type, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(w->str_type, H5T_CSET_UTF8));
    w->lcpl = H5_CHECK(H5Pcreate(H5P_LINK_CREATE));
    H5_CHECK(H5Pset_create_intermediate_group(w->lcpl, 1));
    H5_CHECK(H5Pset_char_encoding(w->lcpl, H5T_CSET_UTF8));

    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char libs[1024];
    library_versions(libs, sizeof libs);

    put_str(w, w->file, "format", AES_CKPT_FORMAT);
    put_i64(w, w->file, "format_version", AES_CKPT_VERSION);
    put_i64(w, w->file, "step", meta->step);
    put_i64(w, w->file, "epoch", meta->epoch);
    put_i64(w, w->file, "cursor", meta->cursor);
    put_i64(w, w->file, "world_size", meta->world_size);
    put_i64(w, w->file, "nonfinite", meta->nonfinite);
    put_i64(w, w->file, "seed", (int64_t)meta->seed); /* the same 64 bits */
    put_i64(w, w->file, "tokenizer_hash", (int64_t)meta->tokenizer_hash);
    put_str(w, w->file, "created", created);
    put_str(w, w->file, "code_version", "aesnet " AESNET_VERSION " (git " AESNET_GIT_REV ")");
    put_str(w, w->file, "build_type", AESNET_BUILD_TYPE);
    put_str(w, w->file, "build_flags", AESNET_BUILD_FLAGS);
    put_str(w, w->file, "library_versions", libs);
    put_i64(w, w->file, "n_tensors", P->n);
    put_i64(w, w->file, "n_trainable_floats", (int64_t)P->n_trainable);

    hid_t scalar = H5_CHECK(H5Screate(H5S_SCALAR));
    hid_t d =
        H5Dcreate2(w->file, "config", w->str_type, scalar, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    WCHECK(w, d);
    const char *cfg = config_text ? config_text : "";
    WCHECK(w, H5Dwrite(d, w->str_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &cfg));
    WCHECK(w, H5Dclose(d));
    H5Sclose(scalar);

    /* The groups exist even for an empty table, so a reader can tell "no
     * parameters" from "not a checkpoint". */
    hid_t g = H5Gcreate2(w->file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    WCHECK(w, g);
    WCHECK(w, H5Gclose(g));
    char path[AES_MAX_NAME + 32];
    for (int k = 0; k < P->n; k++) {
        const aes_tensor *t = &P->t[k];
        snprintf(path, sizeof path, "/model/%s", t->name);
        put_tensor(w, path, t, P->data + t->offset, 1);
    }
    if (m) {
        for (int k = 0; k < P->n; k++) {
            const aes_tensor *t = &P->t[k];
            if (!t->trainable) continue;
            snprintf(path, sizeof path, "/optim/m/%s", t->name);
            put_tensor(w, path, t, m + t->offset, 0);
            snprintf(path, sizeof path, "/optim/v/%s", t->name);
            put_tensor(w, path, t, v + t->offset, 0);
        }
        if (!aes_h5_exists(w->file, "/optim")) { /* no trainable tensor: still say "with moments" */
            g = H5Gcreate2(w->file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            WCHECK(w, g);
            WCHECK(w, H5Gclose(g));
        }
    }

    H5Pclose(w->lcpl);
    H5Tclose(w->str_type);
    WCHECK(w, H5Fflush(w->file, H5F_SCOPE_GLOBAL));
    WCHECK(w, H5Fclose(w->file));
    w->file = -1;
}

/* Point dir/latest at name by renaming a fresh link over it: a reader sees
 * the old target or the new one, never no link. */
static void update_latest(const char *dir, const char *name)
{
    char tmp[4200], fin[4200];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp.%ld", dir, (long)getpid());
    snprintf(fin, sizeof fin, "%s/latest", dir);
    unlink(tmp); /* a leftover of a killed run with our pid */
    if (symlink(name, tmp) != 0 || rename(tmp, fin) != 0) {
        /* The checkpoint is safe; the link is a convenience (the search
         * for the newest checkpoint does not use it). */
        aes_warn("%s: cannot point it at %s: %s", fin, name, strerror(errno));
        unlink(tmp);
    }
}

static void prune(const char *dir, const char *keep_name, int keep_last)
{
    if (keep_last <= 0) return;
    int n;
    step_file *s = list_steps(dir, &n);
    for (int i = keep_last; i < n; i++) {
        if (strcmp(s[i].name, keep_name) == 0) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, s[i].name);
        if (unlink(p) != 0 && errno != ENOENT)
            aes_warn("%s: cannot remove an old checkpoint: %s", p, strerror(errno));
    }
    free(s);
}

void aes_ckpt_save(const char *out_dir, const aes_params *P, const float *m, const float *v,
                   const aes_ckpt_meta *meta, const char *config_text, int keep_last,
                   char *path_out, size_t cap)
{
    AES_CHECK(P && meta && (P->data || P->n_total == 0) && meta->step >= 0);
    AES_CHECK((m == NULL) == (v == NULL));
    char dir[4096], name[64], final_path[4200], tmp_path[4300];
    if (snprintf(dir, sizeof dir, "%s/%s", out_dir, CKPT_DIR) >= (int)sizeof dir)
        aes_user_error("%s: path too long", out_dir);
    mkdir_p(dir);
    snprintf(name, sizeof name, "step_%08lld.h5", (long long)meta->step);
    snprintf(final_path, sizeof final_path, "%s/%s", dir, name);
    aes_tmp_name(final_path, tmp_path, sizeof tmp_path);
    aes_tmpfile_register(tmp_path); /* a failure below removes it */

    writer w = {.final_path = final_path, .file = -1};
    aes_h5_lock();
    write_file(&w, tmp_path, P, m, v, meta, config_text);
    aes_h5_unlock();
    if (aes_fsync_path(tmp_path) != 0)
        aes_user_error("%s: cannot write the checkpoint: %s", final_path, strerror(errno));
    if (rename(tmp_path, final_path) != 0)
        aes_user_error("%s: cannot rename the finished checkpoint into place: %s", final_path,
                       strerror(errno));
    aes_tmpfile_forget(tmp_path);

    update_latest(dir, name);
    prune(dir, name, keep_last);
    fsync_dir(dir);
    if (path_out && cap) snprintf(path_out, cap, "%s", final_path);
}

/* ---- validation shared by check, peek and load ----------------------------- */

/* Whether the file carries HDF5's signature where a superblock may start
 * (offset 0, or 512, 1024, ... after a user block). */
static int has_hdf5_signature(const char *path, off_t size)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    int found = 0;
    for (off_t at = 0; !found && at + 8 <= size; at = at ? 2 * at : 512) {
        unsigned char b[8];
        found = pread(fd, b, 8, at) == 8 && memcmp(b, sig, 8) == 0;
    }
    close(fd);
    return found;
}

/* Open path read-only and check that it is an aesnet checkpoint of this
 * version with the step attribute, /config and /model. Returns the file,
 * or -1 with the reason in why. Never exits. The lock is held. */
static hid_t open_valid(const char *path, char *why, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, cap, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, cap, "not a regular file");
        return -1;
    }
    if (st.st_size == 0) {
        snprintf(why, cap, "empty file");
        return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* Closing the file closes whatever an early return left open. */
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    const char *err = f < 0 ? aes_h5_errmsg() : "";
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) {
        if (!has_hdf5_signature(path, st.st_size))
            snprintf(why, cap, "not an HDF5 file");
        else
            snprintf(why, cap, "cannot open (truncated or damaged): %s", err);
        return -1;
    }
    char fmt[128];
    int64_t ver, step;
    if (aes_h5_attr_read_str(f, "format", fmt, sizeof fmt) != 0)
        snprintf(why, cap, "attribute format: missing (not an aesnet checkpoint)");
    else if (strcmp(fmt, AES_CKPT_FORMAT) != 0)
        snprintf(why, cap, "attribute format: \"%s\", expected \"%s\"", fmt, AES_CKPT_FORMAT);
    else if (aes_h5_attr_read_i64(f, "format_version", &ver) != 0)
        snprintf(why, cap, "attribute format_version: missing or not an integer");
    else if (ver != AES_CKPT_VERSION)
        snprintf(why, cap, "attribute format_version: %lld, this build reads %d", (long long)ver,
                 AES_CKPT_VERSION);
    else if (aes_h5_attr_read_i64(f, "step", &step) != 0)
        snprintf(why, cap, "attribute step: missing or not an integer");
    else if (!aes_h5_exists(f, "/config"))
        snprintf(why, cap, "/config: missing");
    else if (!aes_h5_exists(f, "/model"))
        snprintf(why, cap, "/model: missing");
    else
        return f;
    H5Fclose(f);
    return -1;
}

/* Visiting the data sets below a group: count them, or find the first one
 * that is incomplete (check) or not a tensor of the model (load). */
typedef struct {
    const aes_params *P; /* load: the model; check: NULL */
    int need_trainable;  /* load of /optim: the tensor must be trainable */
    int64_t count;
    char bad[256], why[256];
} visit_ctx;

static herr_t visit_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    visit_ctx *c = data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) {
        snprintf(c->bad, sizeof c->bad, "%s", name);
        snprintf(c->why, sizeof c->why, "cannot open: %s", aes_h5_errmsg());
        return 1;
    }
    int stop = 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        c->count++;
        if (c->P) {
            int k = aes_params_find(c->P, name);
            if (k < 0 || (c->need_trainable && !c->P->t[k].trainable)) {
                snprintf(c->bad, sizeof c->bad, "%s", name);
                snprintf(c->why, sizeof c->why, "not a %sparameter of this model",
                         c->need_trainable ? "trainable " : "");
                stop = 1;
            }
        } else {
            /* Complete: every byte the data set needs is allocated in the
             * file (a data set that was created but never written has none). */
            hid_t t = H5Dget_type(o), s = H5Dget_space(o);
            hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
            size_t tsize = t >= 0 ? H5Tget_size(t) : 0;
            hsize_t stored = H5Dget_storage_size(o);
            if (t < 0 || s < 0 || np < 0 || H5Tget_class(t) != H5T_FLOAT || tsize != 4) {
                snprintf(c->why, sizeof c->why, "not a float32 data set");
                stop = 1;
            } else if (stored != (hsize_t)np * tsize) {
                snprintf(c->why, sizeof c->why, "%llu bytes stored, %llu expected",
                         (unsigned long long)stored, (unsigned long long)np * tsize);
                stop = 1;
            }
            if (stop) snprintf(c->bad, sizeof c->bad, "%s", name);
            if (t >= 0) H5Tclose(t);
            if (s >= 0) H5Sclose(s);
        }
    }
    H5Oclose(o);
    return stop;
}

static herr_t visit(hid_t f, const char *group, visit_ctx *c)
{
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    if (g < 0) {
        snprintf(c->why, sizeof c->why, "not a group");
        return 1;
    }
    herr_t rc = H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, visit_cb, c);
    if (rc < 0) snprintf(c->why, sizeof c->why, "cannot list: %s", aes_h5_errmsg());
    H5Gclose(g);
    return rc;
}

/* "GROUP/NAME: WHY" for what visit stopped at. */
static const char *visit_msg(const char *group, const visit_ctx *c)
{
    static _Thread_local char buf[800];
    snprintf(buf, sizeof buf, "%s%s%s: %s", group, c->bad[0] ? "/" : "", c->bad, c->why);
    return buf;
}

int aes_ckpt_check(const char *path, char *why, size_t cap)
{
    char tmp[512];
    if (!why || !cap) why = tmp, cap = sizeof tmp;
    aes_h5_lock();
    hid_t f = open_valid(path, why, cap);
    if (f < 0) {
        aes_h5_unlock();
        return -1;
    }
    int rc = 0;
    int64_t n_tensors;
    visit_ctx c = {0};
    if (visit(f, "/model", &c) != 0) {
        snprintf(why, cap, "%s", visit_msg("/model", &c));
        rc = -1;
    } else if (aes_h5_attr_read_i64(f, "n_tensors", &n_tensors) != 0) {
        snprintf(why, cap, "attribute n_tensors: missing or not an integer");
        rc = -1;
    } else if (n_tensors != c.count) {
        snprintf(why, cap, "/model: %lld data sets, attribute n_tensors says %lld",
                 (long long)c.count, (long long)n_tensors);
        rc = -1;
    } else if (aes_h5_exists(f, "/optim")) {
        visit_ctx o = {0};
        if (visit(f, "/optim", &o) != 0) {
            snprintf(why, cap, "%s", visit_msg("/optim", &o));
            rc = -1;
        }
    }
    H5Fclose(f);
    aes_h5_unlock();
    return rc;
}

/* ---- readers ----------------------------------------------------------- */

static hid_t open_or_die(const char *path)
{
    char why[512];
    hid_t f = open_valid(path, why, sizeof why);
    if (f < 0) aes_user_error("%s: %s", path, why);
    return f;
}

static int64_t need_i64(hid_t f, const char *path, const char *name)
{
    int64_t v;
    if (aes_h5_attr_read_i64(f, name, &v) != 0)
        aes_user_error("%s: attribute %s: missing or not an integer", path, name);
    return v;
}

static char *read_config(hid_t f, const char *path)
{
    hid_t d = H5Dopen2(f, "config", H5P_DEFAULT);
    if (d < 0) aes_user_error("%s: /config: not a data set", path);
    hid_t ft = H5_CHECK(H5Dget_type(d));
    hid_t s = H5_CHECK(H5Dget_space(d));
    if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_npoints(s) != 1)
        aes_user_error("%s: /config: expected one string", path);
    hid_t mt = H5_CHECK(H5Tcopy(H5T_C_S1));
    char *out;
    if (H5Tis_variable_str(ft) > 0) {
        H5_CHECK(H5Tset_size(mt, H5T_VARIABLE));
        char *vs = NULL;
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &vs) < 0)
            aes_user_error("%s: /config: cannot read: %s", path, aes_h5_errmsg());
        out = aes_strdup(vs ? vs : "");
        if (vs) H5free_memory(vs);
    } else {
        size_t n = H5Tget_size(ft);
        H5_CHECK(H5Tset_size(mt, n + 1));
        out = aes_calloc(n + 1, 1, "config text");
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            aes_user_error("%s: /config: cannot read: %s", path, aes_h5_errmsg());
    }
    H5Tclose(mt);
    H5Sclose(s);
    H5Tclose(ft);
    H5Dclose(d);
    return out;
}

void aes_ckpt_peek(const char *path, aes_ckpt_meta *meta, char **config_text)
{
    aes_h5_lock();
    hid_t f = open_or_die(path);
    if (meta) {
        meta->step = need_i64(f, path, "step");
        meta->epoch = need_i64(f, path, "epoch");
        meta->cursor = need_i64(f, path, "cursor");
        meta->world_size = need_i64(f, path, "world_size");
        meta->nonfinite = need_i64(f, path, "nonfinite");
        meta->seed = (uint64_t)need_i64(f, path, "seed");
        int64_t th = 0;
        meta->tokenizer_hash = aes_h5_attr_read_i64(f, "tokenizer_hash", &th) == 0 ? (uint64_t)th : 0;
    }
    if (config_text) *config_text = read_config(f, path);
    H5Fclose(f);
    aes_h5_unlock();
}

/* Open ds (prefix + tensor name) and check it is float32 of t's shape. */
static hid_t open_tensor(hid_t f, const char *path, const char *ds, const aes_tensor *t)
{
    if (!aes_h5_exists(f, ds)) aes_user_error("%s: %s: missing", path, ds);
    hid_t d = H5Dopen2(f, ds, H5P_DEFAULT);
    if (d < 0) aes_user_error("%s: %s: not a data set", path, ds);
    hid_t ty = H5_CHECK(H5Dget_type(d));
    int is_f32 = H5Tget_class(ty) == H5T_FLOAT && H5Tget_size(ty) == 4;
    H5Tclose(ty);
    if (!is_f32) aes_user_error("%s: %s: not float32 in the file", path, ds);
    hid_t s = H5_CHECK(H5Dget_space(d));
    int r = H5Sget_simple_extent_ndims(s);
    hsize_t got[H5S_MAX_RANK] = {0}, want[4];
    if (r > 0) H5Sget_simple_extent_dims(s, got, NULL);
    H5Sclose(s);
    int same = r == t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        want[i] = (hsize_t)t->shape[i];
        same = same && got[i] == want[i];
    }
    if (!same) {
        char a[128], b[128];
        shape_str(r > 0 ? r : 0, got, a, sizeof a);
        shape_str(t->ndim, want, b, sizeof b);
        aes_user_error("%s: %s: shape %s in the file, %s in the model", path, ds, a, b);
    }
    return d;
}

static void read_tensor(hid_t f, const char *path, const char *ds, const aes_tensor *t, float *x)
{
    hid_t d = open_tensor(f, path, ds, t);
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        aes_user_error("%s: %s: cannot read: %s", path, ds, aes_h5_errmsg());
    H5Dclose(d);
}

static void no_extras(hid_t f, const char *path, const char *group, const aes_params *P,
                      int need_trainable)
{
    visit_ctx c = {.P = P, .need_trainable = need_trainable};
    if (visit(f, group, &c) != 0) aes_user_error("%s: %s", path, visit_msg(group, &c));
}

void aes_ckpt_load(const char *path, aes_params *P, float *m, float *v)
{
    AES_CHECK(P && (P->data || P->n_total == 0) && (m == NULL) == (v == NULL));
    static const char *const moment[2] = {"/optim/m", "/optim/v"};
    char ds[AES_MAX_NAME + 32];
    aes_h5_lock();
    hid_t f = open_or_die(path);

    /* Everything is checked before anything is read, so a bad file leaves
     * the model as it was. */
    for (int k = 0; k < P->n; k++) {
        snprintf(ds, sizeof ds, "/model/%s", P->t[k].name);
        H5Dclose(open_tensor(f, path, ds, &P->t[k]));
    }
    no_extras(f, path, "/model", P, 0);
    if (m) {
        if (!aes_h5_exists(f, "/optim"))
            aes_user_error("%s: /optim: missing (the checkpoint has no optimizer state)", path);
        for (int j = 0; j < 2; j++) {
            for (int k = 0; k < P->n; k++) {
                if (!P->t[k].trainable) continue;
                snprintf(ds, sizeof ds, "%s/%s", moment[j], P->t[k].name);
                H5Dclose(open_tensor(f, path, ds, &P->t[k]));
            }
            if (aes_h5_exists(f, moment[j])) no_extras(f, path, moment[j], P, 1);
        }
    }

    for (int k = 0; k < P->n; k++) {
        const aes_tensor *t = &P->t[k];
        snprintf(ds, sizeof ds, "/model/%s", t->name);
        read_tensor(f, path, ds, t, P->data + t->offset);
        if (!m || !t->trainable) continue;
        snprintf(ds, sizeof ds, "/optim/m/%s", t->name);
        read_tensor(f, path, ds, t, m + t->offset);
        snprintf(ds, sizeof ds, "/optim/v/%s", t->name);
        read_tensor(f, path, ds, t, v + t->offset);
    }
    H5Fclose(f);
    aes_h5_unlock();
}

/* ---- the newest complete checkpoint --------------------------------------- */

int aes_ckpt_find_latest(const char *out_dir, char *path, size_t cap)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, CKPT_DIR);
    int n, found = 0;
    step_file *s = list_steps(dir, &n);
    for (int i = 0; i < n && !found; i++) {
        char p[4200], why[512];
        snprintf(p, sizeof p, "%s/%s", dir, s[i].name);
        if (aes_ckpt_check(p, why, sizeof why) == 0) {
            snprintf(path, cap, "%s", p);
            found = 1;
        } else {
            aes_warn("skipping %s: %s", p, why);
        }
    }
    free(s);
    return found;
}
