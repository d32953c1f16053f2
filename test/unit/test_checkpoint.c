/*
 * Checkpoints: a bit-exact round trip of parameters, moments, meta and
 * config text; pruning to keep_last and the `latest` link; the search for
 * the newest complete checkpoint past truncated and empty files; the exact
 * one-line message for each kind of bad input (run in a forked child that
 * exits through the default fatal path); and a write that hits a file size
 * limit, which must leave the previous checkpoint and `latest` untouched.
 * Also the HDF5 lock's bounded wait, which the way out of a failure uses.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "aesnet/checkpoint.h"
#include "aesnet/h5.h"
#include "check.h"

static char g_root[256];

static void path_join(char *out, size_t cap, const char *a, const char *b)
{
    snprintf(out, cap, "%s/%s", a, b);
}

/* ---- a small model ------------------------------------------------------ */

enum { BASE, WIDER_EMBEDDING, EXTRA_TENSOR, NO_LOGIT_SCALE, BIG };

static void build_table(aes_params *P, int variant)
{
    aes_params_init_table(P);
    int conv[4] = {4, 3, 3, 3}, bn[1] = {4}, emb[2] = {10, 6}, one[1] = {1};
    if (variant == WIDER_EMBEDDING) emb[0] = 12;
    aes_params_add(P, "image/stem/conv/weight", 4, conv, 1, 1, AES_INIT_NORMAL, 0.1f);
    if (variant == EXTRA_TENSOR)
        aes_params_add(P, "image/stem/conv/bias", 1, bn, 1, 0, AES_INIT_ZERO, 0);
    aes_params_add(P, "image/stem/bn/weight", 1, bn, 1, 0, AES_INIT_ONE, 0);
    aes_params_add(P, "text/token_embedding", 2, emb, 1, 1, AES_INIT_NORMAL, 0.02f);
    if (variant != NO_LOGIT_SCALE)
        aes_params_add(P, "logit_scale", 1, one, 1, 0, AES_INIT_CONST, 2.6592f);
    if (variant == BIG) {
        int big[2] = {256, 1024}; /* 1 MiB of floats */
        aes_params_add(P, "image/head/big", 2, big, 1, 1, AES_INIT_NORMAL, 0.01f);
    }
    aes_params_add(P, "image/stem/bn/running_mean", 1, bn, 0, 0, AES_INIT_ZERO, 0);
    aes_params_add(P, "image/stem/bn/running_var", 1, bn, 0, 0, AES_INIT_ONE, 0);
    aes_params_alloc(P);
    aes_params_initialize(P, 1234);
}

/* Values whose bits a lossy path would change: signed zero, a subnormal,
 * infinity and a NaN with a payload, among random normals. */
static void fill(float *x, size_t n, uint64_t key)
{
    aes_rng r;
    aes_rng_init(&r, key);
    for (size_t i = 0; i < n; i++) x[i] = aes_rng_normal(&r);
    static const uint32_t special[4] = {0x80000000u, 0x00000123u, 0x7f800000u, 0x7fc01234u};
    for (size_t i = 0; i < 4 && i < n; i++) memcpy(&x[i], &special[i], 4);
}

static const aes_ckpt_meta k_meta = {
    .step = 12345,
    .epoch = 3,
    .cursor = 12345LL * 96,
    .world_size = 4,
    .nonfinite = 2,
    .seed = 0xDEADBEEFCAFEBABEull, /* above 2^63: the int64 attribute keeps its bits */
};

static const char *k_config =
    "model = {\n  backbone = \"resnet18\";\n  fusion = \"mlp\";\n};\n# caf\xc3\xa9, na\xc3\xafve\n";

/* ---- children ------------------------------------------------------------ */

/* Run fn(arg) in a forked child with its stderr captured; returns the exit
 * status (128 + signal when killed). */
static int run_child(void (*fn)(void *), void *arg, char *err, size_t cap)
{
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        close(pfd[1]);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    close(pfd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(pfd[0], err + n, cap - 1 - n)) > 0) n += (size_t)r;
    err[n] = 0;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

typedef struct {
    const char *path;
    int variant;
    int with_moments;
} load_job;

static void child_load(void *arg)
{
    const load_job *j = arg;
    aes_params P;
    build_table(&P, j->variant);
    float *m = NULL, *v = NULL;
    if (j->with_moments) {
        m = calloc(P.n_trainable, sizeof(float));
        v = calloc(P.n_trainable, sizeof(float));
    }
    aes_ckpt_load(j->path, &P, m, v);
}

static void expect_load_error(const char *path, int variant, int with_moments, const char *msg)
{
    load_job j = {path, variant, with_moments};
    char err[2048], want[2048];
    int rc = run_child(child_load, &j, err, sizeof err);
    snprintf(want, sizeof want, "aesnet: error: %s: %s\n", path, msg);
    CHECK_MSG(rc == 1, "exit %d for %s", rc, msg);
    CHECK_MSG(strcmp(err, want) == 0, "got   \"%s\"\nwant  \"%s\"", err, want);
}

static void child_peek(void *arg)
{
    aes_ckpt_meta m;
    char *cfg;
    aes_ckpt_peek(arg, &m, &cfg);
}

/* ---- files -------------------------------------------------------------- */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    char *b = slurp(from, &n);
    FILE *f = fopen(to, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    free(b);
}

/* The names in dir, sorted, joined by spaces. */
static void list_dir(const char *dir, char *out, size_t cap)
{
    struct dirent **e;
    int n = scandir(dir, &e, NULL, alphasort);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (e[i]->d_name[0] != '.') {
            if (out[0]) strncat(out, " ", cap - strlen(out) - 1);
            strncat(out, e[i]->d_name, cap - strlen(out) - 1);
        }
        free(e[i]);
    }
    if (n >= 0) free(e);
}

static void read_link(const char *path, char *out, size_t cap)
{
    ssize_t n = readlink(path, out, cap - 1);
    out[n > 0 ? n : 0] = 0;
}

/* A small HDF5 file with a chosen format attribute (NULL: none) and
 * version, for the refusal messages. */
static void write_foreign(const char *path, const char *format, int64_t version, int with_config)
{
    aes_h5_lock();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (format) aes_h5_attr_write_str(f, "format", format);
    aes_h5_attr_write_i64(f, "format_version", version);
    aes_h5_attr_write_i64(f, "step", 1);
    if (with_config) {
        const char *s[1] = {"x = 1;"};
        aes_h5_write_strings(f, "config", s, 1);
    }
    H5Fclose(f);
    aes_h5_unlock();
}

/* A file that looks like a checkpoint but whose only tensor was created
 * and never written (no storage allocated). */
static void write_unwritten(const char *path)
{
    write_foreign(path, AES_CKPT_FORMAT, 1, 1);
    aes_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    aes_h5_attr_write_i64(f, "n_tensors", 1);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t dims[1] = {4};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/model/x", H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(lcpl);
    H5Fclose(f);
    aes_h5_unlock();
}

/* ---- tests ---------------------------------------------------------------- */

static void test_round_trip(void)
{
    char out[512], path[600], want[600];
    path_join(out, sizeof out, g_root, "rt");
    aes_params P;
    build_table(&P, BASE);
    fill(P.data, P.n_total, 1);
    float *m = malloc(P.n_trainable * sizeof(float)), *v = malloc(P.n_trainable * sizeof(float));
    fill(m, P.n_trainable, 2);
    fill(v, P.n_trainable, 3);
    aes_ckpt_save(out, &P, m, v, &k_meta, k_config, 3, path, sizeof path);
    snprintf(want, sizeof want, "%s/checkpoints/step_00012345.h5", out);
    CHECK_MSG(strcmp(path, want) == 0, "%s", path);
    char why[512];
    CHECK_MSG(aes_ckpt_check(path, why, sizeof why) == 0, "%s", why);

    aes_ckpt_meta got;
    memset(&got, 0x5a, sizeof got);
    char *cfg = NULL;
    aes_ckpt_peek(path, &got, &cfg);
    CHECK(got.step == k_meta.step && got.epoch == k_meta.epoch && got.cursor == k_meta.cursor);
    CHECK(got.world_size == k_meta.world_size && got.nonfinite == k_meta.nonfinite);
    CHECK_MSG(got.seed == k_meta.seed, "%llx", (unsigned long long)got.seed);
    CHECK(cfg && strcmp(cfg, k_config) == 0);
    free(cfg);

    aes_params Q;
    build_table(&Q, BASE); /* initialised differently from P's filled values */
    float *m2 = calloc(Q.n_trainable, sizeof(float)), *v2 = calloc(Q.n_trainable, sizeof(float));
    aes_ckpt_load(path, &Q, m2, v2);
    CHECK(Q.n_total == P.n_total && memcmp(Q.data, P.data, P.n_total * sizeof(float)) == 0);
    CHECK(memcmp(m2, m, P.n_trainable * sizeof(float)) == 0);
    CHECK(memcmp(v2, v, P.n_trainable * sizeof(float)) == 0);
    /* the buffers (running statistics) come back too */
    int k = aes_params_find(&Q, "image/stem/bn/running_var");
    CHECK(k >= 0 && memcmp(aes_params_data(&Q, k), aes_params_data(&P, k), 4 * sizeof(float)) == 0);

    /* Loading without moments is allowed. */
    aes_params R;
    build_table(&R, BASE);
    aes_ckpt_load(path, &R, NULL, NULL);
    CHECK(memcmp(R.data, P.data, P.n_total * sizeof(float)) == 0);

    /* Root attributes as another reader sees them. */
    aes_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char s[1024];
    int64_t i64 = 0;
    CHECK(aes_h5_attr_read_str(f, "format", s, sizeof s) == 0 && strcmp(s, AES_CKPT_FORMAT) == 0);
    CHECK(aes_h5_attr_read_i64(f, "format_version", &i64) == 0 && i64 == AES_CKPT_VERSION);
    CHECK(aes_h5_attr_read_i64(f, "n_tensors", &i64) == 0 && i64 == P.n);
    CHECK(aes_h5_attr_read_i64(f, "n_trainable_floats", &i64) == 0 &&
          i64 == (int64_t)P.n_trainable);
    CHECK(aes_h5_attr_read_str(f, "code_version", s, sizeof s) == 0 &&
          strncmp(s, "aesnet ", 7) == 0);
    CHECK(aes_h5_attr_read_str(f, "library_versions", s, sizeof s) == 0 && strstr(s, "HDF5: ") &&
          strstr(s, "MPI: ") && strstr(s, "BLAS: ") && strstr(s, "libconfig: ") &&
          strstr(s, "CUDA: "));
    CHECK(aes_h5_attr_read_str(f, "created", s, sizeof s) == 0 && strlen(s) == 20 && s[10] == 'T' &&
          s[19] == 'Z');
    CHECK(!aes_h5_exists(f, "/optim/m/image/stem/bn/running_mean"));
    CHECK(aes_h5_exists(f, "/optim/v/text/token_embedding"));
    H5Fclose(f);
    aes_h5_unlock();

    aes_params_free(&P);
    aes_params_free(&Q);
    aes_params_free(&R);
    free(m), free(v), free(m2), free(v2);
}

static void test_keep_last(void)
{
    char out[512], dir[600], names[1024], link[256], path[600];
    path_join(out, sizeof out, g_root, "keep/deeper");
    aes_params P;
    build_table(&P, BASE);
    aes_ckpt_meta meta = k_meta;
    for (int s = 1; s <= 5; s++) {
        meta.step = s;
        P.data[0] = (float)s;
        aes_ckpt_save(out, &P, NULL, NULL, &meta, "", 2, path, sizeof path);
    }
    path_join(dir, sizeof dir, out, "checkpoints");
    list_dir(dir, names, sizeof names);
    CHECK_MSG(strcmp(names, "latest step_00000004.h5 step_00000005.h5") == 0, "%s", names);
    char lp[700];
    path_join(lp, sizeof lp, dir, "latest");
    read_link(lp, link, sizeof link);
    CHECK_MSG(strcmp(link, "step_00000005.h5") == 0, "%s", link);
    /* the link resolves to the newest */
    aes_params Q;
    build_table(&Q, BASE);
    aes_ckpt_load(lp, &Q, NULL, NULL);
    CHECK(Q.data[0] == 5.0f);
    char found[700];
    CHECK(aes_ckpt_find_latest(out, found, sizeof found) == 1 && strcmp(found, path) == 0);
    aes_params_free(&P);
    aes_params_free(&Q);
}

static void child_find(void *arg)
{
    char found[1024];
    if (aes_ckpt_find_latest(arg, found, sizeof found))
        fprintf(stderr, "found %s\n", found);
    else
        fprintf(stderr, "none\n");
}

static void test_find_latest(void)
{
    char out[512], dir[600], good[700], p[700], why[512];
    path_join(out, sizeof out, g_root, "find");
    aes_params P;
    build_table(&P, BASE);
    aes_ckpt_meta meta = k_meta;
    meta.step = 3;
    aes_ckpt_save(out, &P, P.data, P.data, &meta, k_config, 0, good, sizeof good);
    path_join(dir, sizeof dir, out, "checkpoints");

    /* newer, but truncated: a copy cut in half */
    path_join(p, sizeof p, dir, "step_00000007.h5");
    copy_file(good, p);
    struct stat st;
    stat(good, &st);
    CHECK(truncate(p, st.st_size / 2) == 0);
    CHECK(aes_ckpt_check(p, why, sizeof why) == -1 &&
          strncmp(why, "cannot open (truncated or damaged): ", 36) == 0);
    /* cut by one byte only */
    path_join(p, sizeof p, dir, "step_00000008.h5");
    copy_file(good, p);
    CHECK(truncate(p, st.st_size - 1) == 0);
    CHECK(aes_ckpt_check(p, why, sizeof why) == -1);
    /* newer still, empty */
    path_join(p, sizeof p, dir, "step_00000009.h5");
    fclose(fopen(p, "w"));
    CHECK(aes_ckpt_check(p, why, sizeof why) == -1 && strcmp(why, "empty file") == 0);
    /* newest, never written */
    path_join(p, sizeof p, dir, "step_00000010.h5");
    write_unwritten(p);
    CHECK_MSG(aes_ckpt_check(p, why, sizeof why) == -1 &&
                  strcmp(why, "/model/x: 0 bytes stored, 16 expected") == 0,
              "%s", why);
    /* a complete file under a temporary name is not a checkpoint */
    path_join(p, sizeof p, dir, "step_00000011.h5.999.tmp");
    copy_file(good, p);

    char err[4096], want[4096];
    int rc = run_child(child_find, out, err, sizeof err);
    CHECK(rc == 0);
    snprintf(
        want, sizeof want,
        "aesnet: warning: skipping %s/step_00000010.h5: /model/x: 0 bytes stored, 16 expected\n"
        "aesnet: warning: skipping %s/step_00000009.h5: empty file\n"
        "aesnet: warning: skipping %s/step_00000008.h5: cannot open (truncated or damaged): ",
        dir, dir, dir);
    CHECK_MSG(strncmp(err, want, strlen(want)) == 0, "got \"%s\"", err);
    CHECK_MSG(strstr(err, "step_00000007.h5: cannot open (truncated or damaged): ") != NULL, "%s",
              err);
    snprintf(want, sizeof want, "found %s\n", good);
    size_t lw = strlen(want), le = strlen(err);
    CHECK_MSG(le >= lw && strcmp(err + le - lw, want) == 0, "got \"%s\"", err);
    CHECK_MSG(strstr(err, ".tmp") == NULL, "%s", err);

    /* nothing there at all */
    char none[600];
    path_join(none, sizeof none, g_root, "nothing");
    CHECK(aes_ckpt_find_latest(none, p, sizeof p) == 0);
    aes_params_free(&P);
}

static void test_bad_input(void)
{
    char out[512], path[600], nomoments[600], p[700];
    path_join(out, sizeof out, g_root, "bad");
    aes_params P;
    build_table(&P, BASE);
    aes_ckpt_meta meta = k_meta;
    meta.step = 1;
    aes_ckpt_save(out, &P, P.data, P.data, &meta, k_config, 0, path, sizeof path);
    meta.step = 2;
    aes_ckpt_save(out, &P, NULL, NULL, &meta, k_config, 0, nomoments, sizeof nomoments);

    expect_load_error(
        path, WIDER_EMBEDDING, 1,
        "/model/text/token_embedding: shape [10, 6] in the file, [12, 6] in the model");
    expect_load_error(path, EXTRA_TENSOR, 0, "/model/image/stem/conv/bias: missing");
    expect_load_error(path, NO_LOGIT_SCALE, 0, "/model/logit_scale: not a parameter of this model");
    expect_load_error(nomoments, BASE, 1,
                      "/optim: missing (the checkpoint has no optimizer state)");

    path_join(p, sizeof p, g_root, "dataset.h5");
    write_foreign(p, "aesnet-dataset", 1, 1);
    expect_load_error(p, BASE, 0,
                      "attribute format: \"aesnet-dataset\", expected \"aesnet-checkpoint\"");
    path_join(p, sizeof p, g_root, "noformat.h5");
    write_foreign(p, NULL, 1, 1);
    expect_load_error(p, BASE, 0, "attribute format: missing (not an aesnet checkpoint)");
    path_join(p, sizeof p, g_root, "v2.h5");
    write_foreign(p, AES_CKPT_FORMAT, 2, 1);
    expect_load_error(p, BASE, 0, "attribute format_version: 2, this build reads 1");
    path_join(p, sizeof p, g_root, "noconfig.h5");
    write_foreign(p, AES_CKPT_FORMAT, 1, 0);
    expect_load_error(p, BASE, 0, "/config: missing");

    path_join(p, sizeof p, g_root, "notes.txt");
    FILE *f = fopen(p, "w");
    fputs("step = 5\nthis is not an HDF5 file, however long it is...........................\n", f);
    fclose(f);
    expect_load_error(p, BASE, 0, "not an HDF5 file");
    path_join(p, sizeof p, g_root, "absent.h5");
    expect_load_error(p, BASE, 0, "cannot open: No such file or directory");
    expect_load_error(g_root, BASE, 0, "not a regular file");

    /* peek refuses the same way */
    char err[2048], want[2048];
    path_join(p, sizeof p, g_root, "notes.txt");
    int rc = run_child(child_peek, p, err, sizeof err);
    snprintf(want, sizeof want, "aesnet: error: %s: not an HDF5 file\n", p);
    CHECK(rc == 1);
    CHECK_MSG(strcmp(err, want) == 0, "got \"%s\"", err);
    aes_params_free(&P);
}

static void child_save_big(void *arg)
{
    struct rlimit rl = {256 * 1024, 256 * 1024};
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &rl);
    aes_params P;
    build_table(&P, BIG);
    aes_ckpt_meta meta = k_meta;
    meta.step = 2;
    aes_ckpt_save(arg, &P, NULL, NULL, &meta, k_config, 3, NULL, 0);
}

static void test_disk_full(void)
{
    char out[512], dir[600], first[700], names[1024], lp[700], link[256];
    path_join(out, sizeof out, g_root, "full");
    aes_params P;
    build_table(&P, BASE);
    aes_ckpt_meta meta = k_meta;
    meta.step = 1;
    aes_ckpt_save(out, &P, NULL, NULL, &meta, k_config, 3, first, sizeof first);
    size_t n0, n1;
    char *before = slurp(first, &n0);

    char err[2048], want[2048];
    int rc = run_child(child_save_big, out, err, sizeof err);
    path_join(dir, sizeof dir, out, "checkpoints");
    snprintf(want, sizeof want,
             "aesnet: error: %s/step_00000002.h5: cannot write the checkpoint: File too large\n",
             dir);
    CHECK_MSG(rc == 1, "exit %d", rc);
    CHECK_MSG(strcmp(err, want) == 0, "got \"%s\"", err);

    list_dir(dir, names, sizeof names);
    CHECK_MSG(strcmp(names, "latest step_00000001.h5") == 0, "%s", names);
    char *after = slurp(first, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    path_join(lp, sizeof lp, dir, "latest");
    read_link(lp, link, sizeof link);
    CHECK_MSG(strcmp(link, "step_00000001.h5") == 0, "%s", link);
    char why[512];
    CHECK_MSG(aes_ckpt_check(first, why, sizeof why) == 0, "%s", why);
    free(before);
    free(after);
    aes_params_free(&P);
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[1024];
            path_join(p, sizeof p, path, e->d_name);
            rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---- the HDF5 lock's bounded wait ---------------------------------------- */

static void *hold_lock(void *arg)
{
    aes_h5_lock();
    pthread_mutex_lock(arg); /* until the main thread lets go of it */
    pthread_mutex_unlock(arg);
    aes_h5_unlock();
    return NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void test_lock_within(void)
{
    /* Free, or already this thread's (the lock is recursive): at once. */
    CHECK(aes_h5_lock_within(0.0) == 0 && aes_h5_lock_within(0.0) == 0);
    aes_h5_unlock();
    aes_h5_unlock();
    /* Held by another thread: gives up after the time asked for. */
    pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&gate);
    pthread_t th;
    pthread_create(&th, NULL, hold_lock, &gate);
    while (aes_h5_lock_within(0.0) == 0) { /* until the thread has it */
        aes_h5_unlock();
        sched_yield();
    }
    double t0 = now_s();
    int rc = aes_h5_lock_within(0.3);
    double waited = now_s() - t0;
    CHECK_MSG(rc == -1 && waited >= 0.29 && waited < 5.0, "rc %d after %.3f s", rc, waited);
    pthread_mutex_unlock(&gate);
    pthread_join(th, NULL);
    CHECK(aes_h5_lock_within(1.5) == 0);
    aes_h5_unlock();
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/aesnet_ckpt_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_keep_last();
    test_find_latest();
    test_bad_input();
    test_disk_full();
    test_lock_within();
    if (!check_failed)
        rm_rf(g_root);
    else
        fprintf(stderr, "files kept in %s\n", g_root);
    return check_report();
}
