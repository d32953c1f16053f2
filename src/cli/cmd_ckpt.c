/*
 * aesnet ckpt: look inside checkpoints and hand the image encoder on.
 *   info C          what wrote it, where the run was, parameter counts and
 *                   L2 norms per module, the stored config
 *   diff A B        relative change of every /model tensor from A to B
 *   export C --out  the image encoder alone (docs/export-format.md), with a
 *                   reference batch that another implementation can match
 * info and diff read the tensors straight from the file (any checkpoint,
 * no model needed); export rebuilds the model to run the reference batch.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aesnet/checkpoint.h"
#include "aesnet/config.h"
#include "aesnet/core.h"
#include "aesnet/h5.h"
#include "aesnet/loader.h"
#include "aesnet/restore.h"
#include "aesnet_build_info.h"
#include "cli/cli.h"

#define EXPORT_FORMAT "aesnet-image-encoder"
#define EXPORT_VERSION 1
#define CHECK_B 4

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet ckpt info CKPT.h5\n"
            "       aesnet ckpt diff A.h5 B.h5\n"
            "       aesnet ckpt export CKPT.h5 --out ENCODER.h5 [--size R] [--force]\n"
            "\n"
            "info    step, epoch, world size, when and by which code and libraries it was\n"
            "        written, trainable parameter counts and L2 norms per module (image/,\n"
            "        text/, fusion/, head/ and one level below), and the stored config.\n"
            "diff    for every /model tensor in both files ||b - a|| / ||a||, by name (so by\n"
            "        module), the tensors found in one file only, and a summary per module.\n"
            "export  the image encoder alone in the layout of docs/export-format.md, with a\n"
            "        reference batch (/check/input, /check/features) computed in eval mode.\n"
            "        --size R: the reference input's side (default: the config's\n"
            "        data.image_size, else the training data's if readable, else 224; a ViT\n"
            "        takes only its own). --force replaces an existing output.\n");
}

/* ---- the tensors of /model, read without a model ---------------------- */

typedef struct {
    char name[AES_MAX_NAME];
    int ndim, trainable;
    hsize_t shape[4];
    size_t n;
    float *x;
} tensor;

typedef struct {
    tensor *t;
    int n, cap;
    const char *path;
} tensor_set;

static herr_t read_cb(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    tensor_set *s = data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) aes_user_error("%s: /model/%s: cannot open: %s", s->path, name, aes_h5_errmsg());
    if (H5Iget_type(o) != H5I_DATASET) {
        H5Oclose(o);
        return 0;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->t = aes_realloc(s->t, sizeof(tensor) * (size_t)s->cap, "tensor list");
    }
    tensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    if (strlen(name) >= sizeof t->name) aes_user_error("%s: /model/%s: name too long", s->path, name);
    snprintf(t->name, sizeof t->name, "%s", name);
    hid_t sp = H5_CHECK(H5Dget_space(o));
    t->ndim = H5Sget_simple_extent_ndims(sp);
    if (t->ndim < 0 || t->ndim > 4)
        aes_user_error("%s: /model/%s: %d dimensions (at most 4)", s->path, name, t->ndim);
    H5Sget_simple_extent_dims(sp, t->shape, NULL);
    t->n = (size_t)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    t->x = aes_malloc(sizeof(float) * (t->n ? t->n : 1), "tensor");
    if (H5Dread(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->x) < 0)
        aes_user_error("%s: /model/%s: cannot read: %s", s->path, name, aes_h5_errmsg());
    int64_t tr = 1;
    if (aes_h5_attr_read_i64(o, "trainable", &tr) != 0) tr = 1;
    t->trainable = tr != 0;
    H5Oclose(o);
    return 0;
}

/* Modules in the model's order (image, text, fusion, head, then any other
 * alphabetically), names within a module alphabetically. */
static int module_rank(const char *name)
{
    static const char *order[] = {"image/", "text/", "fusion/", "head/"};
    for (int k = 0; k < 4; k++)
        if (!strncmp(name, order[k], strlen(order[k]))) return k;
    return 4;
}

static int tensor_cmp(const char *a, const char *b)
{
    int ra = module_rank(a), rb = module_rank(b);
    return ra != rb ? ra - rb : strcmp(a, b);
}

static int by_name(const void *a, const void *b)
{
    return tensor_cmp(((const tensor *)a)->name, ((const tensor *)b)->name);
}

/* Every data set under /model of a checkpoint that aes_ckpt_peek accepts,
 * sorted by name. */
static void read_tensors(const char *path, tensor_set *s)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    aes_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) aes_user_error("%s: cannot open: %s", path, aes_h5_errmsg());
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    if (g < 0) aes_user_error("%s: /model: not a group", path);
    if (H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, read_cb, s) < 0)
        aes_user_error("%s: /model: cannot list: %s", path, aes_h5_errmsg());
    H5Gclose(g);
    H5Fclose(f);
    aes_h5_unlock();
    qsort(s->t, (size_t)s->n, sizeof(tensor), by_name);
}

static void free_tensors(tensor_set *s)
{
    for (int i = 0; i < s->n; i++) free(s->t[i].x);
    free(s->t);
}

static double sumsq(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* The module of a tensor at depth 1 ("image") or 2 ("image/stage1"; a
 * tensor right below the top, such as text/token_embedding, is its own). */
static void module_of(const char *name, int depth, char *out, size_t cap)
{
    const char *p = name;
    for (int d = 0; d < depth; d++) {
        const char *q = strchr(p, '/');
        if (!q) {
            snprintf(out, cap, "%s", name);
            return;
        }
        p = q + 1;
    }
    size_t len = (size_t)(p - name - 1);
    if (len >= cap) len = cap - 1;
    memcpy(out, name, len);
    out[len] = 0;
}

static const char *str_attr(hid_t f, const char *name, char *buf, size_t cap)
{
    if (aes_h5_attr_read_str(f, name, buf, cap) != 0) snprintf(buf, cap, "(not recorded)");
    return buf;
}

/* ---- info ---------------------------------------------------------------- */

typedef struct {
    char name[AES_MAX_NAME];
    int tensors;
    size_t floats;
    double ss;
} module_sum;

static int info(const char *path)
{
    aes_ckpt_meta meta;
    char *config = NULL;
    aes_ckpt_peek(path, &meta, &config);
    char created[64], code[512], btype[64], flags[1024], libs[2048];
    aes_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) aes_user_error("%s: cannot open: %s", path, aes_h5_errmsg());
    str_attr(f, "created", created, sizeof created);
    str_attr(f, "code_version", code, sizeof code);
    str_attr(f, "build_type", btype, sizeof btype);
    str_attr(f, "build_flags", flags, sizeof flags);
    str_attr(f, "library_versions", libs, sizeof libs);
    int has_optim = aes_h5_exists(f, "optim");
    H5Fclose(f);
    aes_h5_unlock();

    tensor_set s;
    read_tensors(path, &s);
    size_t n_train = 0, n_buf = 0;
    for (int i = 0; i < s.n; i++) {
        if (s.t[i].trainable) n_train += s.t[i].n;
        else n_buf += s.t[i].n;
    }
    printf("checkpoint     %s (%s v%d)\n", path, AES_CKPT_FORMAT, AES_CKPT_VERSION);
    printf("step           %lld\n", (long long)meta.step);
    printf("epoch          %lld\n", (long long)meta.epoch);
    printf("cursor         %lld samples\n", (long long)meta.cursor);
    printf("world size     %lld\n", (long long)meta.world_size);
    printf("seed           %llu\n", (unsigned long long)meta.seed);
    printf("skipped steps  %lld\n", (long long)meta.nonfinite);
    printf("created        %s\n", created);
    printf("code version   %s\n", code);
    printf("build          %s, flags: %s\n", btype, flags);
    printf("libraries      %s\n", libs);
    printf("tensors        %d (%zu trainable floats, %zu buffer floats)\n", s.n, n_train, n_buf);
    printf("optimizer      %s\n", has_optim ? "AdamW moments stored" : "none stored");

    /* Modules at depth 1 and 2, in name order, so each top-level module is
     * followed by its parts. Counts and norms over trainable tensors. */
    module_sum *ms = aes_calloc((size_t)2 * s.n + 1, sizeof(module_sum), "modules");
    int nm = 0;
    for (int i = 0; i < s.n; i++) {
        if (!s.t[i].trainable) continue;
        for (int depth = 1; depth <= 2; depth++) {
            char key[AES_MAX_NAME];
            module_of(s.t[i].name, depth, key, sizeof key);
            int k = 0;
            while (k < nm && strcmp(ms[k].name, key)) k++;
            if (k == nm) snprintf(ms[nm++].name, AES_MAX_NAME, "%s", key);
            ms[k].tensors++;
            ms[k].floats += s.t[i].n;
            ms[k].ss += sumsq(s.t[i].x, s.t[i].n);
        }
    }
    printf("\nparameters per module (trainable tensors; batch-norm statistics excluded):\n");
    printf("  %-36s %8s %12s %14s\n", "module", "tensors", "params", "L2 norm");
    for (int k = 0; k < nm; k++) {
        if (strchr(ms[k].name, '/')) continue;
        printf("  %-36s %8d %12zu %14.6g\n", ms[k].name, ms[k].tensors, ms[k].floats,
               sqrt(ms[k].ss));
        for (int j = 0; j < nm; j++) {
            size_t L = strlen(ms[k].name);
            if (!strncmp(ms[j].name, ms[k].name, L) && ms[j].name[L] == '/')
                printf("    %-34s %8d %12zu %14.6g\n", ms[j].name, ms[j].tensors, ms[j].floats,
                       sqrt(ms[j].ss));
        }
    }
    printf("\nconfig:\n");
    const char *p = config;
    while (*p) {
        const char *e = strchr(p, '\n');
        int len = e ? (int)(e - p) : (int)strlen(p);
        printf("  %.*s\n", len, p);
        p += len + (e != NULL);
    }
    free(ms);
    free_tensors(&s);
    free(config);
    return 0;
}

/* ---- diff ---------------------------------------------------------------- */

static void shape_str(const tensor *t, char *out, size_t cap)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < t->ndim && k < cap; d++)
        k += (size_t)snprintf(out + k, cap - k, "%s%llu", d ? ", " : "",
                              (unsigned long long)t->shape[d]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

static double rel(double dd, double aa)
{
    if (aa > 0) return sqrt(dd) / sqrt(aa);
    return dd > 0 ? INFINITY : 0.0;
}

static int diff(const char *pa, const char *pb)
{
    aes_ckpt_meta ma, mb;
    aes_ckpt_peek(pa, &ma, NULL);
    aes_ckpt_peek(pb, &mb, NULL);
    tensor_set A, B;
    read_tensors(pa, &A);
    read_tensors(pb, &B);
    printf("A  %s (step %lld)\nB  %s (step %lld)\n\n", pa, (long long)ma.step, pb,
           (long long)mb.step);
    printf("%-52s %14s %14s %14s\n", "tensor", "||b-a||/||a||", "||a||", "||b-a||");
    module_sum *ms = aes_calloc((size_t)A.n + 1, sizeof(module_sum), "modules");
    double *mmax = aes_calloc((size_t)A.n + 1, sizeof(double), "modules");
    double *mda = aes_calloc((size_t)A.n + 1, sizeof(double), "modules");
    int nm = 0, only_a = 0, only_b = 0, shape_diff = 0;
    for (int i = 0, j = 0; i < A.n || j < B.n;) {
        int c = i == A.n ? 1 : j == B.n ? -1 : tensor_cmp(A.t[i].name, B.t[j].name);
        if (c < 0) {
            printf("%-52s only in A\n", A.t[i++].name);
            only_a++;
            continue;
        }
        if (c > 0) {
            printf("%-52s only in B\n", B.t[j++].name);
            only_b++;
            continue;
        }
        const tensor *a = &A.t[i++], *b = &B.t[j++];
        if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof a->shape)) {
            char sa[96], sb[96];
            shape_str(a, sa, sizeof sa);
            shape_str(b, sb, sizeof sb);
            printf("%-52s shape %s in A, %s in B\n", a->name, sa, sb);
            shape_diff++;
            continue;
        }
        double aa = 0, dd = 0;
        for (size_t k = 0; k < a->n; k++) {
            double d = (double)b->x[k] - a->x[k];
            aa += (double)a->x[k] * a->x[k];
            dd += d * d;
        }
        double r = rel(dd, aa);
        printf("%-52s %14.6e %14.6e %14.6e\n", a->name, r, sqrt(aa), sqrt(dd));
        char key[AES_MAX_NAME];
        module_of(a->name, 1, key, sizeof key);
        int k = 0;
        while (k < nm && strcmp(ms[k].name, key)) k++;
        if (k == nm) snprintf(ms[nm++].name, AES_MAX_NAME, "%s", key);
        ms[k].tensors++;
        ms[k].floats += a->n;
        ms[k].ss += aa;
        mda[k] += dd;
        if (r > mmax[k]) mmax[k] = r;
    }
    printf("\nsummary per module (tensors in both; relative change of all of them together):\n");
    printf("  %-20s %8s %12s %14s %14s\n", "module", "tensors", "floats", "||b-a||/||a||",
           "max tensor");
    for (int k = 0; k < nm; k++)
        printf("  %-20s %8d %12zu %14.6e %14.6e\n", ms[k].name, ms[k].tensors, ms[k].floats,
               rel(mda[k], ms[k].ss), mmax[k]);
    printf("tensors only in A: %d, only in B: %d, of another shape: %d\n", only_a, only_b,
           shape_diff);
    free(ms);
    free(mmax);
    free(mda);
    free_tensors(&A);
    free_tensors(&B);
    return 0;
}

/* ---- export -------------------------------------------------------------- */

static void put_f64_array(hid_t obj, const char *name, const double *v, hsize_t n)
{
    hid_t s = H5_CHECK(H5Screate_simple(1, &n, NULL));
    hid_t a = H5_CHECK(H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT));
    H5_CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, v));
    H5Aclose(a);
    H5Sclose(s);
}

static hid_t put_f32(hid_t f, const char *path, int ndim, const hsize_t *dims, const float *x)
{
    hid_t lcpl = H5_CHECK(H5Pcreate(H5P_LINK_CREATE));
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
    hid_t s = H5_CHECK(H5Screate_simple(ndim, dims, NULL));
    hid_t d = H5_CHECK(H5Dcreate2(f, path, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT));
    H5_CHECK(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x));
    H5Sclose(s);
    H5Pclose(lcpl);
    return d;
}

/* The side a ResNet was trained at when its config says "the data set's":
 * the training data's image_size if that file is still readable, else 224. */
static int trained_size(const aes_config *cfg)
{
    int64_t S = 0;
    if (!cfg->train_data[0] || access(cfg->train_data, R_OK) != 0) return 224;
    aes_h5_lock();
    hid_t f = H5Fopen(cfg->train_data, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
        if (aes_h5_attr_read_i64(f, "image_size", &S) != 0) S = 0;
        H5Fclose(f);
    }
    aes_h5_unlock();
    return S > 0 && S <= 4096 ? (int)S : 224;
}

static int export_encoder(const char *path, const char *out, int size, int force)
{
    if (!force && access(out, F_OK) == 0)
        aes_user_error("%s: exists (use --force to replace it)", out);
    aes_ckpt_meta meta;
    aes_ckpt_peek(path, &meta, NULL);
    char code[512];
    aes_h5_lock();
    hid_t src = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (src < 0) aes_user_error("%s: cannot open: %s", path, aes_h5_errmsg());
    str_attr(src, "code_version", code, sizeof code);
    H5Fclose(src);
    aes_h5_unlock();

    aes_config cfg;
    aes_config_defaults(&cfg);
    {
        /* The default side comes from the stored config; a ViT has its own. */
        char *text = NULL;
        aes_ckpt_peek(path, NULL, &text);
        aes_config_from_text(&cfg, text, path);
        free(text);
    }
    int vit = !strcmp(cfg.image, "vit");
    int R = size > 0 ? size : vit ? 0 : cfg.image_size > 0 ? cfg.image_size : trained_size(&cfg);
    aes_model m;
    aes_model_from_checkpoint(&m, path, R, CHECK_B, &cfg);
    R = vit ? m.cfg.vit.image_size : m.cfg.resnet.image_size;
    const int Fv = m.Fv;

    /* The reference batch: normal draws keyed by the run's seed, the
     * encoder in eval mode (batch norm from its running statistics). */
    size_t nin = (size_t)CHECK_B * 3 * R * R;
    float *input = aes_malloc(sizeof(float) * nin, "reference input");
    aes_rng rng;
    aes_rng_init(&rng, aes_key(meta.seed, 0, 0, 0x6578706f7274ULL /* "export" */));
    for (size_t i = 0; i < nin; i++) input[i] = aes_rng_normal(&rng);
    m.image.train = 0;
    const float *feat = aes_encoder_forward(&m.image, input, CHECK_B);
    for (size_t i = 0; i < (size_t)CHECK_B * Fv; i++)
        if (!isfinite(feat[i]))
            aes_user_error("%s: the image encoder gives non-finite features on the reference batch",
                           path);

    char tmp[4200];
    aes_tmp_name(out, tmp, sizeof tmp);
    aes_h5_lock();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) aes_user_error("%s: cannot create: %s", out, aes_h5_errmsg());
    aes_tmpfile_register(tmp);
    aes_h5_attr_write_str(f, "format", EXPORT_FORMAT);
    aes_h5_attr_write_i64(f, "format_version", EXPORT_VERSION);
    aes_h5_attr_write_str(f, "architecture", vit ? "vit" : "resnet");
    if (vit) {
        aes_h5_attr_write_i64(f, "vit_patch", m.cfg.vit.patch);
        aes_h5_attr_write_i64(f, "vit_width", m.cfg.vit.width);
        aes_h5_attr_write_i64(f, "vit_depth", m.cfg.vit.depth);
        aes_h5_attr_write_i64(f, "vit_heads", m.cfg.vit.heads);
    } else {
        aes_h5_attr_write_i64(f, "resnet_depth", m.cfg.resnet.depth);
        aes_h5_attr_write_f64(f, "resnet_width", m.cfg.resnet.width);
    }
    aes_h5_attr_write_i64(f, "input_size", R);
    aes_loader_cfg lc;
    aes_loader_cfg_defaults(&lc);
    double mean[3], std[3];
    for (int c = 0; c < 3; c++) mean[c] = lc.mean[c], std[c] = lc.std[c];
    put_f64_array(f, "mean", mean, 3);
    put_f64_array(f, "std", std, 3);
    aes_h5_attr_write_i64(f, "feature_width", Fv);
    aes_h5_attr_write_str(f, "source_checkpoint", path);
    aes_h5_attr_write_i64(f, "source_step", meta.step);
    aes_h5_attr_write_str(f, "source_code_version", code);
    char ver[512];
    snprintf(ver, sizeof ver, "aesnet %s (git %s)", AESNET_VERSION, AESNET_GIT_REV);
    aes_h5_attr_write_str(f, "code_version", ver);

    int n_params = 0;
    for (int k = 0; k < m.P.n; k++) {
        const aes_tensor *t = &m.P.t[k];
        if (strncmp(t->name, "image/", 6)) continue;
        char p[AES_MAX_NAME + 16];
        snprintf(p, sizeof p, "params/%s", t->name + 6);
        hsize_t dims[4];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        hid_t d = put_f32(f, p, t->ndim, dims, aes_params_data(&m.P, k));
        aes_h5_attr_write_i64(d, "trainable", t->trainable);
        H5Dclose(d);
        n_params++;
    }
    hsize_t din[4] = {CHECK_B, 3, (hsize_t)R, (hsize_t)R}, dout[2] = {CHECK_B, (hsize_t)Fv};
    H5Dclose(put_f32(f, "check/input", 4, din, input));
    H5Dclose(put_f32(f, "check/features", 2, dout, feat));
    if (H5Fclose(f) < 0) aes_user_error("%s: cannot write: %s", out, aes_h5_errmsg());
    aes_h5_unlock();
    if (aes_fsync_path(tmp) != 0)
        aes_user_error("%s: cannot write: %s", out, strerror(errno));
    if (rename(tmp, out) != 0)
        aes_user_error("%s: cannot rename the finished file into place: %s", out, strerror(errno));
    aes_tmpfile_forget(tmp);
    printf("exported the %s image encoder of %s (step %lld): %d tensors, %zu floats, "
           "%d features at %d px, to %s\n",
           vit ? "ViT" : "ResNet", path, (long long)meta.step, n_params,
           aes_params_count(&m.P, "image/"), Fv, R, out);
    free(input);
    aes_model_free(&m);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

int cmd_ckpt(int argc, char **argv)
{
    aes_h5_init();
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    char *pos[2] = {NULL, NULL};
    int npos = 0, force = 0, size = 0;
    const char *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--out") && !strcmp(sub, "export")) {
            out = cli_need_value(argc, argv, &i);
        } else if (!strcmp(argv[i], "--size") && !strcmp(sub, "export")) {
            size = (int)cli_parse_long("--size", cli_need_value(argc, argv, &i), 1, 4096);
        } else if (!strcmp(argv[i], "--force") && !strcmp(sub, "export")) {
            force = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            aes_user_error("ckpt %s: unknown option '%s' (try --help)", sub, argv[i]);
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            aes_user_error("ckpt %s: unexpected argument '%s' (try --help)", sub, argv[i]);
        }
    }
    if (!strcmp(sub, "info")) {
        if (npos != 1) aes_user_error("ckpt info: which checkpoint? (aesnet ckpt info CKPT.h5)");
        return info(pos[0]);
    }
    if (!strcmp(sub, "diff")) {
        if (npos != 2) aes_user_error("ckpt diff: needs two checkpoints (aesnet ckpt diff A.h5 B.h5)");
        return diff(pos[0], pos[1]);
    }
    if (!strcmp(sub, "export")) {
        if (npos != 1)
            aes_user_error("ckpt export: which checkpoint? (aesnet ckpt export CKPT.h5 --out F.h5)");
        if (!out) aes_user_error("ckpt export: --out F.h5 is required");
        return export_encoder(pos[0], out, size, force);
    }
    aes_user_error("ckpt: unknown subcommand '%s' (info, diff, export; try --help)", sub);
}
