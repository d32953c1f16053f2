/*
 * Run configuration. One schema table (SCHEMA below) describes every key:
 * its libconfig type, default, allowed range or values, where it lives in
 * aes_config and a one-line meaning. Defaults, file reading, --set
 * overrides, validation, the text form stored in checkpoints, diffs and the
 * printed documentation are all loops over that table, so a key added there
 * is read, checked, written back and documented everywhere at once.
 *
 * libconfig 1.5 quirk handled here: an integer literal beyond 32 bits
 * without an L suffix is silently wrapped by its scanner (5000000000 reads
 * as 705032704), so every text is scanned for such literals first and they
 * are rejected with the fix spelled out.
 */
#include "aesnet/config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"

/* ---- the schema ------------------------------------------------------------ */

typedef enum {
    K_INT,    /* int or int64_t field; libconfig int or int64 */
    K_FLOAT,  /* double field; libconfig float or int */
    K_BOOL,   /* int field; true or false only */
    K_STRING, /* char[] field */
    K_ENUM,   /* char[] field holding one of choices */
    K_FLOATS, /* double[] field with an int count; array or list of numbers */
} key_type;

typedef enum { B_NONE = 0, B_INCL, B_EXCL } bound_kind;

typedef struct {
    const char *key; /* "group.name" */
    key_type type;
    size_t off, size;           /* the field in aes_config */
    size_t count_off;           /* K_FLOATS: the int holding the element count */
    int64_t idef;               /* default of K_INT, K_BOOL */
    double fdef;                /* default of K_FLOAT */
    const char *sdef;           /* default of K_STRING, K_ENUM */
    bound_kind lo_b, hi_b;      /* numeric range (of each element for K_FLOATS) */
    double lo, hi;
    const char *const *choices; /* K_ENUM: NULL-terminated */
    const int *ivals;           /* K_INT restricted to these values */
    int n_ivals;
    int required;               /* a non-empty string is needed at validate */
    const char *doc;
} key_spec;

#define FIELD(f) .off = offsetof(aes_config, f), .size = sizeof(((aes_config *)0)->f)
#define GE(x) .lo_b = B_INCL, .lo = (x)
#define GT(x) .lo_b = B_EXCL, .lo = (x)
#define LE(x) .hi_b = B_INCL, .hi = (x)
#define LT(x) .hi_b = B_EXCL, .hi = (x)
#define ONE_OF(...) .choices = (const char *const[]){__VA_ARGS__, NULL}
#define INT_IN(...)                                  \
    .ivals = (const int[]){__VA_ARGS__},             \
    .n_ivals = (int)(sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

static const char *const GROUPS[] = {"run", "data", "model", "loss", "train"};
#define N_GROUPS ((int)(sizeof GROUPS / sizeof GROUPS[0]))

static const key_spec SCHEMA[] = {
    /* run */
    {"run.out_dir", K_STRING, FIELD(out_dir), .sdef = "", .required = 1,
     .doc = "output directory: checkpoints, metrics and the resolved config (required)"},
    {"run.seed", K_INT, FIELD(seed), .idef = 0, GE(0),
     .doc = "seed of every random stream: data order, augmentation, descriptions, init"},
    /* data */
    {"data.train", K_STRING, FIELD(train_data), .sdef = "", .required = 1,
     .doc = "training data set, an aesnet-dataset HDF5 file (required)"},
    {"data.image_size", K_INT, FIELD(image_size), .idef = 0, GE(0),
     .doc = "side in pixels the images are cropped/resized to; 0 = the stored size"},
    {"data.augment", K_BOOL, FIELD(augment), .idef = 1,
     .doc = "random resized crop and horizontal flip of training images"},
    {"data.crop_scale_min", K_FLOAT, FIELD(crop_scale_min), .fdef = 0.6, GT(0), LE(1),
     .doc = "smallest crop area, as a fraction of the image"},
    {"data.crop_ratio_max", K_FLOAT, FIELD(crop_ratio_max), .fdef = 1.25, GE(1),
     .doc = "crop aspect ratio drawn within [1/r, r]"},
    {"data.flip_prob", K_FLOAT, FIELD(flip_prob), .fdef = 0.5, GE(0), LE(1),
     .doc = "probability of a horizontal flip"},
    {"data.workers", K_INT, FIELD(workers), .idef = 1, GE(1),
     .doc = "loader threads per rank (read, decode, augment)"},
    {"data.prefetch", K_INT, FIELD(prefetch), .idef = 2, GE(1),
     .doc = "batches the loader builds ahead of the step"},
    /* model */
    {"model.image", K_ENUM, FIELD(image), .sdef = "resnet", ONE_OF("resnet", "vit"),
     .doc = "image encoder f: ResNet (convolutions) or ViT"},
    {"model.resnet_depth", K_INT, FIELD(resnet_depth), .idef = 18, INT_IN(18, 34, 50),
     .doc = "ResNet depth: 18 and 34 use basic blocks, 50 bottlenecks"},
    {"model.resnet_width", K_FLOAT, FIELD(resnet_width), .fdef = 1.0, GT(0),
     .doc = "ResNet width multiplier of the stage widths 64, 128, 256, 512"},
    {"model.vit_patch", K_INT, FIELD(vit_patch), .idef = 16, GE(1),
     .doc = "ViT patch side in pixels (must divide data.image_size)"},
    {"model.vit_width", K_INT, FIELD(vit_width), .idef = 768, GE(1),
     .doc = "ViT token width"},
    {"model.vit_depth", K_INT, FIELD(vit_depth), .idef = 12, GE(1),
     .doc = "ViT transformer blocks"},
    {"model.vit_heads", K_INT, FIELD(vit_heads), .idef = 12, GE(1),
     .doc = "ViT attention heads (must divide model.vit_width)"},
    {"model.text_width", K_INT, FIELD(text_width), .idef = 512, GE(1),
     .doc = "text encoder g token width"},
    {"model.text_depth", K_INT, FIELD(text_depth), .idef = 12, GE(1),
     .doc = "text encoder transformer blocks"},
    {"model.text_heads", K_INT, FIELD(text_heads), .idef = 8, GE(1),
     .doc = "text encoder attention heads (must divide model.text_width)"},
    {"model.embed_dim", K_INT, FIELD(embed_dim), .idef = 512, GE(1),
     .doc = "width D of each attribute's joint embedding space"},
    {"model.fusion", K_ENUM, FIELD(fusion), .sdef = "mlp", ONE_OF("none", "mlp", "transformer"),
     .doc = "integration F of image and text features; none: h = v"},
    {"model.fusion_width", K_INT, FIELD(fusion_width), .idef = 512, GE(1),
     .doc = "fusion MLP hidden width, or the fusion transformer's token width"},
    {"model.fusion_heads", K_INT, FIELD(fusion_heads), .idef = 8, GE(1),
     .doc = "fusion transformer heads (must divide model.fusion_width)"},
    {"model.logit_scale", K_ENUM, FIELD(logit_scale), .sdef = "learned",
     ONE_OF("learned", "fixed"),
     .doc = "per-attribute logit scale: learned (as CLIP, clamped) or fixed"},
    {"model.temperature", K_FLOAT, FIELD(temperature), .fdef = 0.07, GT(0),
     .doc = "initial (or fixed) temperature: logits are cos / temperature"},
    /* loss */
    {"loss.attribute_weights", K_FLOATS, FIELD(weights), .count_off = offsetof(aes_config, n_weights),
     GE(0), .doc = "weight w_a of each attribute's loss, in the data set's order; [] = all 1"},
    {"loss.duplicates", K_ENUM, FIELD(duplicates), .sdef = "positive",
     ONE_OF("positive", "negative"),
     .doc = "repeated descriptions in a batch: extra positives, or plain InfoNCE"},
    {"loss.affinity", K_ENUM, FIELD(affinity), .sdef = "kl", ONE_OF("none", "kl", "mse"),
     .doc = "semantic affinity loss L_sa between affinity rows: off, KL or MSE"},
    {"loss.affinity_weight", K_FLOAT, FIELD(affinity_weight), .fdef = 1.0, GE(0),
     .doc = "lambda in L = L_mac + lambda * L_sa"},
    {"loss.affinity_tau", K_FLOAT, FIELD(affinity_tau), .fdef = 0.1, GT(0),
     .doc = "temperature t of the affinity softmax_j(cos(v_i, v_j) / t)"},
    {"loss.affinity_reference", K_ENUM, FIELD(affinity_reference), .sdef = "features",
     ONE_OF("features", "frozen"),
     .doc = "reference affinities: content features in the data set, or a frozen f"},
    /* train */
    {"train.steps", K_INT, FIELD(steps), .idef = 1000, GE(1),
     .doc = "optimizer steps of the whole run"},
    {"train.global_batch", K_INT, FIELD(global_batch), .idef = 64, GE(1),
     .doc = "images per step summed over all ranks (Bg)"},
    {"train.micro_batch", K_INT, FIELD(micro_batch), .idef = 0, GE(0),
     .doc = "images per accumulated chunk (must divide global_batch); 0 = none"},
    {"train.lr", K_FLOAT, FIELD(lr), .fdef = 1e-3, GT(0),
     .doc = "peak AdamW learning rate, reached at the end of the warm-up"},
    {"train.min_lr_ratio", K_FLOAT, FIELD(min_lr_ratio), .fdef = 0.1, GE(0), LE(1),
     .doc = "final learning rate of the cosine decay, as a fraction of train.lr"},
    {"train.warmup", K_INT, FIELD(warmup), .idef = 100, GE(0),
     .doc = "steps of linear learning-rate warm-up from 0 (at most train.steps)"},
    {"train.weight_decay", K_FLOAT, FIELD(weight_decay), .fdef = 0.1, GE(0),
     .doc = "AdamW decoupled weight decay"},
    {"train.beta1", K_FLOAT, FIELD(beta1), .fdef = 0.9, GE(0), LT(1),
     .doc = "AdamW first-moment decay"},
    {"train.beta2", K_FLOAT, FIELD(beta2), .fdef = 0.98, GE(0), LT(1),
     .doc = "AdamW second-moment decay"},
    {"train.eps", K_FLOAT, FIELD(eps), .fdef = 1e-6, GT(0),
     .doc = "AdamW epsilon"},
    {"train.clip", K_FLOAT, FIELD(clip), .fdef = 1.0, GE(0),
     .doc = "clip the global gradient norm to this; 0 = off"},
    {"train.ckpt_every", K_INT, FIELD(ckpt_every), .idef = 500, GE(0),
     .doc = "steps between checkpoints; 0 = only at the end"},
    {"train.keep_last", K_INT, FIELD(keep_last), .idef = 3, GE(1),
     .doc = "checkpoints kept on disk; older ones are deleted"},
    {"train.log_every", K_INT, FIELD(log_every), .idef = 10, GE(1),
     .doc = "steps between metric lines"},
    {"train.val_every", K_INT, FIELD(val_every), .idef = 100, GE(0),
     .doc = "steps between validation passes; 0 = never"},
    {"train.val_batch", K_INT, FIELD(val_batch), .idef = 64, GE(1),
     .doc = "images of the fixed validation batch (at most train.global_batch)"},
    {"train.max_walltime", K_FLOAT, FIELD(max_walltime), .fdef = 0.0, GE(0),
     .doc = "seconds after which the run checkpoints and stops; 0 = no limit"},
    {"train.batchnorm", K_ENUM, FIELD(batchnorm), .sdef = "global", ONE_OF("global", "local"),
     .doc = "batch-norm statistics over the global batch (all ranks) or each rank's"},
    {"train.device", K_ENUM, FIELD(device), .sdef = "cpu", ONE_OF("cpu", "cuda"),
     .doc = "where the step runs: CPU reference or one GPU per rank"},
    {"train.precision", K_ENUM, FIELD(precision), .sdef = "fp32", ONE_OF("fp32", "tf32", "bf16"),
     .doc = "matrix-product precision: fp32, TF32 tensor cores, or bf16"},
    {"train.threads", K_INT, FIELD(threads), .idef = 0, GE(0),
     .doc = "OpenMP threads per rank; 0 = the OpenMP default"},
    {"train.max_nonfinite", K_INT, FIELD(max_nonfinite), .idef = 10, GE(1),
     .doc = "steps in a row skipped for a non-finite loss or gradient before abort"},
};
#define N_KEYS ((int)(sizeof SCHEMA / sizeof SCHEMA[0]))

static const char *const RESUMABLE[] = {
    "train.steps", "train.ckpt_every", "train.keep_last", "train.log_every",
    "train.val_every", "train.max_walltime", "run.out_dir",
};

/* ---- field access ------------------------------------------------------------ */

static void *field(aes_config *c, const key_spec *k) { return (char *)c + k->off; }
static const void *cfield(const aes_config *c, const key_spec *k) { return (const char *)c + k->off; }

static int64_t get_int(const aes_config *c, const key_spec *k)
{
    if (k->size == sizeof(int64_t)) return *(const int64_t *)cfield(c, k);
    return *(const int *)cfield(c, k);
}

static void put_int(aes_config *c, const key_spec *k, int64_t v)
{
    if (k->size == sizeof(int64_t)) *(int64_t *)field(c, k) = v;
    else *(int *)field(c, k) = (int)v;
}

static double get_float(const aes_config *c, const key_spec *k) { return *(const double *)cfield(c, k); }
static const char *get_str(const aes_config *c, const key_spec *k) { return (const char *)cfield(c, k); }
static int *count_of(aes_config *c, const key_spec *k) { return (int *)((char *)c + k->count_off); }
static int ccount_of(const aes_config *c, const key_spec *k)
{
    return *(const int *)((const char *)c + k->count_off);
}
static int capacity_of(const key_spec *k) { return (int)(k->size / sizeof(double)); }

static const key_spec *find_key(const char *key)
{
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(SCHEMA[i].key, key) == 0) return &SCHEMA[i];
    return NULL;
}

static int is_group(const char *name)
{
    for (int g = 0; g < N_GROUPS; g++)
        if (strcmp(GROUPS[g], name) == 0) return 1;
    return 0;
}

/* ---- small text helpers ---------------------------------------------------- */

/* Shortest %.*g form that reads back to exactly v. */
static void fmt_double(char *out, size_t cap, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v) return;
    }
    snprintf(out, cap, "%.17g", v);
}

/* As fmt_double, but always a libconfig float literal (never an integer). */
static void fmt_float_literal(char *out, size_t cap, double v)
{
    fmt_double(out, cap, v);
    if (!strpbrk(out, ".eEn")) {
        size_t n = strlen(out);
        if (n + 3 <= cap) memcpy(out + n, ".0", 3);
    }
}

typedef struct {
    char *s;
    size_t n, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) AES_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    AES_CHECK(need >= 0);
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + (size_t)need + 1 > cap) cap *= 2;
        b->s = aes_realloc(b->s, cap, "config text");
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

static void sb_append(strbuf *b, const char *data, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        b->s = aes_realloc(b->s, cap, "config text");
        b->cap = cap;
    }
    memcpy(b->s + b->n, data, n);
    b->n += n;
    b->s[b->n] = 0;
}

/* A string as a libconfig literal, quotes included. */
static void sb_quoted(strbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sb_printf(b, "\\\""); break;
        case '\\': sb_printf(b, "\\\\"); break;
        case '\n': sb_printf(b, "\\n"); break;
        case '\r': sb_printf(b, "\\r"); break;
        case '\t': sb_printf(b, "\\t"); break;
        case '\f': sb_printf(b, "\\f"); break;
        default:
            if (*p < 0x20 || *p == 0x7f) sb_printf(b, "\\x%02x", *p);
            else sb_printf(b, "%c", *p);
        }
    }
    sb_printf(b, "\"");
}

/* Optimal string alignment distance (edits and adjacent swaps), for hints. */
static int edit_distance(const char *a, const char *b)
{
    int na = (int)strlen(a), nb = (int)strlen(b);
    if (na > 63 || nb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= na; i++) d[i][0] = i;
    for (int j = 0; j <= nb; j++) d[0][j] = j;
    for (int i = 1; i <= na; i++) {
        for (int j = 1; j <= nb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[na][nb];
}

static const char *last_part(const char *key)
{
    const char *dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

/* " (did you mean 'x.y'?)" for a key within 2 edits (fewer for short names), or one with the same
 * name in another group; "" when nothing is close. */
static void key_hint(const char *unknown, char *out, size_t cap)
{
    const char *best = NULL;
    int best_score = 99;
    for (int i = 0; i < N_KEYS; i++) {
        int score = edit_distance(unknown, SCHEMA[i].key);
        /* Two edits of a three-letter name is a different word. */
        if (score > 2 || 2 * score >= (int)strlen(last_part(unknown))) score = strcmp(last_part(unknown), last_part(SCHEMA[i].key)) == 0 ? 3 : 99;
        if (score < best_score) {
            best_score = score;
            best = SCHEMA[i].key;
        }
    }
    if (best) snprintf(out, cap, " (did you mean '%s'?)", best);
    else if (cap) out[0] = 0;
}

static void group_hint(const char *unknown, char *out, size_t cap)
{
    const char *best = NULL;
    int best_d = 3;
    for (int g = 0; g < N_GROUPS; g++) {
        int d = edit_distance(unknown, GROUPS[g]);
        if (d < best_d) {
            best_d = d;
            best = GROUPS[g];
        }
    }
    if (best) snprintf(out, cap, " (did you mean '%s'?)", best);
    else snprintf(out, cap, " (groups: run, data, model, loss, train)");
}

/* "> 0", ">= 1", "in [0, 1)", ... */
static void range_text(const key_spec *k, char *out, size_t cap)
{
    char lo[40], hi[40];
    fmt_double(lo, sizeof lo, k->lo);
    fmt_double(hi, sizeof hi, k->hi);
    if (k->lo_b && k->hi_b)
        snprintf(out, cap, "in %c%s, %s%c", k->lo_b == B_INCL ? '[' : '(', lo, hi,
                 k->hi_b == B_INCL ? ']' : ')');
    else if (k->lo_b)
        snprintf(out, cap, "%s %s", k->lo_b == B_INCL ? ">=" : ">", lo);
    else if (k->hi_b)
        snprintf(out, cap, "%s %s", k->hi_b == B_INCL ? "<=" : "<", hi);
    else if (cap)
        out[0] = 0;
}

static int in_range(const key_spec *k, double v)
{
    if (k->lo_b == B_INCL && !(v >= k->lo)) return 0;
    if (k->lo_b == B_EXCL && !(v > k->lo)) return 0;
    if (k->hi_b == B_INCL && !(v <= k->hi)) return 0;
    if (k->hi_b == B_EXCL && !(v < k->hi)) return 0;
    return 1;
}

static void choices_text(const key_spec *k, const char *sep, char *out, size_t cap)
{
    size_t n = 0;
    if (cap) out[0] = 0;
    if (k->choices) {
        for (int i = 0; k->choices[i]; i++)
            n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%s", i ? sep : "", k->choices[i]);
    } else {
        for (int i = 0; i < k->n_ivals; i++)
            n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%s%d", i ? sep : "", k->ivals[i]);
    }
}

/* ---- checks shared by files, overrides and validate --------------------------- */

/* Each returns 0 and fills msg (the part after "<where>: ") when v is bad. */

static int check_int(const key_spec *k, int64_t v, char *msg, size_t cap)
{
    if (k->n_ivals) {
        for (int i = 0; i < k->n_ivals; i++)
            if (v == k->ivals[i]) return 1;
        char ch[128];
        choices_text(k, ", ", ch, sizeof ch);
        snprintf(msg, cap, "%lld is not one of %s", (long long)v, ch);
        return 0;
    }
    if (!in_range(k, (double)v)) {
        char r[96];
        range_text(k, r, sizeof r);
        snprintf(msg, cap, "%lld is out of range (must be %s)", (long long)v, r);
        return 0;
    }
    if (k->size != sizeof(int64_t) && (v < INT_MIN || v > INT_MAX)) {
        snprintf(msg, cap, "%lld is out of range (must be <= %d)", (long long)v, INT_MAX);
        return 0;
    }
    return 1;
}

static int check_float(const key_spec *k, double v, char *msg, size_t cap)
{
    char s[40];
    fmt_double(s, sizeof s, v);
    if (!isfinite(v)) {
        snprintf(msg, cap, "%s is not a finite number", s);
        return 0;
    }
    if (!in_range(k, v)) {
        char r[96];
        range_text(k, r, sizeof r);
        snprintf(msg, cap, "%s is out of range (must be %s)", s, r);
        return 0;
    }
    return 1;
}

static int check_string(const key_spec *k, const char *v, char *msg, size_t cap)
{
    if (k->type == K_ENUM) {
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(v, k->choices[i]) == 0) return 1;
        char ch[128];
        choices_text(k, ", ", ch, sizeof ch);
        snprintf(msg, cap, "'%s' is not one of %s", v, ch);
        return 0;
    }
    size_t n = strlen(v);
    if (n >= k->size) {
        snprintf(msg, cap, "the value is %zu bytes long (at most %zu)", n, k->size - 1);
        return 0;
    }
    return 1;
}

/* ---- applying libconfig settings ---------------------------------------------- */

static const char *type_phrase(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "nothing";
    }
}

static const char *expected_phrase(const key_spec *k)
{
    switch (k->type) {
    case K_INT: return "an integer";
    case K_FLOAT: return "a number";
    case K_BOOL: return "true or false";
    case K_STRING:
    case K_ENUM: return "a string";
    case K_FLOATS: return "a list of numbers";
    }
    return "?";
}

static int is_int_setting(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static int is_number_setting(const config_setting_t *s)
{
    return is_int_setting(s) || config_setting_type(s) == CONFIG_TYPE_FLOAT;
}

static double number_of(const config_setting_t *s)
{
    if (is_int_setting(s)) return (double)config_setting_get_int64(s);
    return config_setting_get_float(s);
}

/* Checks setting s against key k and stores it; where prefixes messages. */
static void apply_setting(aes_config *c, const key_spec *k, const config_setting_t *s,
                          const char *where)
{
    char msg[512];
    int ok = 1;
    int t = config_setting_type(s);
    switch (k->type) {
    case K_INT:
        if (!is_int_setting(s)) goto wrong_type;
        ok = check_int(k, config_setting_get_int64(s), msg, sizeof msg);
        if (ok) put_int(c, k, config_setting_get_int64(s));
        break;
    case K_FLOAT:
        if (!is_number_setting(s)) goto wrong_type;
        ok = check_float(k, number_of(s), msg, sizeof msg);
        if (ok) *(double *)field(c, k) = number_of(s);
        break;
    case K_BOOL:
        if (t != CONFIG_TYPE_BOOL) goto wrong_type;
        *(int *)field(c, k) = config_setting_get_bool(s) ? 1 : 0;
        break;
    case K_STRING:
    case K_ENUM:
        if (t != CONFIG_TYPE_STRING) goto wrong_type;
        ok = check_string(k, config_setting_get_string(s), msg, sizeof msg);
        if (ok) strcpy((char *)field(c, k), config_setting_get_string(s));
        break;
    case K_FLOATS: {
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) goto wrong_type;
        int n = config_setting_length(s);
        if (n > capacity_of(k)) {
            snprintf(msg, sizeof msg, "%d values is too many (at most %d)", n, capacity_of(k));
            ok = 0;
            break;
        }
        double v[AES_CFG_MAX_ATTR];
        for (int i = 0; i < n && ok; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (!is_number_setting(e)) {
                snprintf(msg, sizeof msg, "element %d: expected a number, got %s", i + 1,
                         type_phrase(e));
                ok = 0;
                break;
            }
            v[i] = number_of(e);
            char m[256];
            if (!check_float(k, v[i], m, sizeof m)) {
                snprintf(msg, sizeof msg, "element %d: %s", i + 1, m);
                ok = 0;
            }
        }
        if (ok) {
            memcpy(field(c, k), v, (size_t)n * sizeof(double));
            *count_of(c, k) = n;
        }
        break;
    }
    }
    if (!ok) aes_user_error("%s: %s", where, msg);
    return;
wrong_type:
    aes_user_error("%s: expected %s, got %s", where, expected_phrase(k), type_phrase(s));
}

/* Walks every setting of a parsed text: groups must be known, keys in the
 * schema, values of the right type and range. origin names the text. */
static void apply_root(aes_config *c, const config_t *cfg, const char *origin)
{
    const config_setting_t *root = config_root_setting(cfg);
    char where[4200], hint[128];
    for (int i = 0; i < config_setting_length(root); i++) {
        const config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
        const char *gname = config_setting_name(g);
        const char *gfile = config_setting_source_file(g) ? config_setting_source_file(g) : origin;
        int gline = config_setting_source_line(g);
        if (!is_group(gname)) {
            if (config_setting_is_group(g)) {
                group_hint(gname, hint, sizeof hint);
                aes_user_error("%s:%d: unknown group '%s'%s", gfile, gline, gname, hint);
            }
            key_hint(gname, hint, sizeof hint);
            aes_user_error("%s:%d: unknown key '%s'%s", gfile, gline, gname, hint);
        }
        if (!config_setting_is_group(g))
            aes_user_error("%s:%d: %s: expected a group (%s = { ... };), got %s", gfile, gline,
                           gname, gname, type_phrase(g));
        for (int j = 0; j < config_setting_length(g); j++) {
            const config_setting_t *s = config_setting_get_elem(g, (unsigned)j);
            const char *file = config_setting_source_file(s) ? config_setting_source_file(s) : origin;
            int line = config_setting_source_line(s);
            char key[256];
            snprintf(key, sizeof key, "%s.%s", gname, config_setting_name(s));
            const key_spec *k = find_key(key);
            if (!k) {
                key_hint(key, hint, sizeof hint);
                aes_user_error("%s:%d: unknown key '%s'%s", file, line, key, hint);
            }
            snprintf(where, sizeof where, "%s:%d: %s", file, line, key);
            apply_setting(c, k, s, where);
        }
    }
}

/* libconfig 1.5 wraps integer literals beyond 32 bits unless they carry an
 * L suffix; find such a literal (outside strings and comments) in text and
 * report it. where: "FILE" (the line is appended) or an override. */
static void check_wide_integers(const char *text, const char *where, int add_line)
{
    int line = 1;
    const char *p = text;
    while (*p) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (*p && *p != '\n') p++;
        } else if (p[0] == '/' && p[1] == '*') {
            p += 2;
            while (*p && !(p[0] == '*' && p[1] == '/')) line += *p++ == '\n';
            if (*p) p += 2;
        } else if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                line += *p++ == '\n';
            }
            if (*p) p++;
        } else if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '*') {
            while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '*')
                p++;
        } else if ((*p >= '0' && *p <= '9') || *p == '.' ||
                   ((*p == '-' || *p == '+') && ((p[1] >= '0' && p[1] <= '9') || p[1] == '.'))) {
            const char *start = p;
            if (*p == '-' || *p == '+') p++;
            if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
                p += 2;
                const char *digits = p;
                while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))
                    p++;
                int wide = (p - digits > 8) || (p - digits == 8 && *digits >= '8');
                if (*p == 'L') {
                    while (*p == 'L') p++;
                } else if (wide) {
                    goto report;
                }
                continue;
            }
            while (*p >= '0' && *p <= '9') p++;
            if (*p == '.' || *p == 'e' || *p == 'E') { /* a float */
                while ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                       ((*p == '-' || *p == '+') && (p[-1] == 'e' || p[-1] == 'E')))
                    p++;
                continue;
            }
            if (*p == 'L') {
                while (*p == 'L') p++;
                continue;
            }
            errno = 0;
            long long v = strtoll(start, NULL, 10);
            if (errno == ERANGE || v < INT_MIN || v > INT_MAX) goto report;
            continue;
        report: {
            int n = (int)(p - start);
            if (add_line)
                aes_user_error("%s:%d: integer %.*s does not fit in 32 bits: write it as %.*sL",
                               where, line, n, start, n, start);
            aes_user_error("%s: integer %.*s does not fit in 32 bits: write it as %.*sL", where, n,
                           start, n, start);
        }
        } else {
            p++;
        }
    }
}

/* Parses text in full as origin ("FILE" in messages) and applies it to c. */
static void apply_text(aes_config *c, const char *text, const char *origin, const char *include_dir)
{
    check_wide_integers(text, origin, 1);
    config_t cfg;
    config_init(&cfg);
    if (include_dir) config_set_include_dir(&cfg, include_dir);
    if (config_read_string(&cfg, text) != CONFIG_TRUE) {
        char msg[1024];
        const char *etext = config_error_text(&cfg) ? config_error_text(&cfg) : "syntax error";
        const char *efile = config_error_file(&cfg) ? config_error_file(&cfg) : origin;
        if (strcmp(etext, "syntax error") == 0)
            snprintf(msg, sizeof msg, "%s:%d: syntax error", efile, config_error_line(&cfg));
        else
            snprintf(msg, sizeof msg, "%s:%d: syntax error: %s", efile, config_error_line(&cfg),
                     etext);
        config_destroy(&cfg);
        aes_user_error("%s", msg);
    }
    apply_root(c, &cfg, origin);
    config_destroy(&cfg);
}

/* ---- the API --------------------------------------------------------------- */

void aes_config_defaults(aes_config *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &SCHEMA[i];
        switch (k->type) {
        case K_INT: put_int(c, k, k->idef); break;
        case K_BOOL: *(int *)field(c, k) = (int)k->idef; break;
        case K_FLOAT: *(double *)field(c, k) = k->fdef; break;
        case K_STRING:
        case K_ENUM: snprintf((char *)field(c, k), k->size, "%s", k->sdef); break;
        case K_FLOATS: *count_of(c, k) = 0; break;
        }
    }
}

void aes_config_load(aes_config *c, const char *path)
{
    aes_config_defaults(c);
    if (strlen(path) >= sizeof c->path) aes_user_error("%s: the path is too long", path);
    FILE *f = fopen(path, "rb");
    if (!f) aes_user_error("%s: cannot open the config file: %s", path, strerror(errno));
    strbuf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) sb_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b.s);
        aes_user_error("%s: cannot read the config file", path);
    }
    sb_append(&b, "", 0);
    if (strlen(b.s) != b.n) {
        free(b.s);
        aes_user_error("%s: not a text file (contains a NUL byte)", path);
    }
    /* @include "x.cfg" resolves next to the including file. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = 0;
    else snprintf(dir, sizeof dir, ".");
    apply_text(c, b.s, path, dir);
    free(b.s);
    snprintf(c->path, sizeof c->path, "%s", path);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

void aes_config_set(aes_config *c, const char *assignment)
{
    /* buf is not freed on the error paths: the messages use it and the
     * error ends the process. */
    char *buf = aes_strdup(assignment);
    char *eq = strchr(buf, '=');
    if (!eq) {
        aes_user_error("--set %s: expected key=value", assignment);
    }
    *eq = 0;
    char *key = trim(buf), *value = trim(eq + 1);
    char where[4400];
    snprintf(where, sizeof where, "--set %s=%s", key, value);
    const key_spec *k = find_key(key);
    if (!k) {
        char hint[128];
        key_hint(key, hint, sizeof hint);
        aes_user_error("%s: unknown key '%s'%s", where, key, hint);
    }
    if (!*value) {
        aes_user_error("%s: expected %s, got nothing", where, expected_phrase(k));
    }
    /* Strings may be given bare (--set model.image=vit): the shell would eat
     * the quotes anyway. */
    if ((k->type == K_STRING || k->type == K_ENUM) && value[0] != '"') {
        char msg[512];
        if (!check_string(k, value, msg, sizeof msg)) aes_user_error("%s: %s", where, msg);
        strcpy((char *)field(c, k), value);
        free(buf);
        return;
    }
    check_wide_integers(value, where, 0);
    size_t n = strlen(value) + 16;
    char *text = aes_malloc(n, "override");
    snprintf(text, n, "v = %s;", value);
    config_t cfg;
    config_init(&cfg);
    int ok = config_read_string(&cfg, text) == CONFIG_TRUE;
    free(text);
    const config_setting_t *root = config_root_setting(&cfg);
    if (!ok || config_setting_length(root) != 1) {
        config_destroy(&cfg);
        aes_user_error("%s: '%s' is not a libconfig value (like 5, 1e-3, \"text\", true, [1.0, 2.0])",
                       where, value);
    }
    apply_setting(c, k, config_setting_get_elem(root, 0), where);
    config_destroy(&cfg);
    free(buf);
}

void aes_config_validate(const aes_config *c)
{
    const char *p = c->path[0] ? c->path : "config";
    char msg[512];
    /* Every key again: fields may have been set by code, not by a file. */
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &SCHEMA[i];
        int ok = 1;
        switch (k->type) {
        case K_INT: ok = check_int(k, get_int(c, k), msg, sizeof msg); break;
        case K_FLOAT: ok = check_float(k, get_float(c, k), msg, sizeof msg); break;
        case K_BOOL:
            ok = get_int(c, k) == 0 || get_int(c, k) == 1;
            if (!ok) snprintf(msg, sizeof msg, "expected true or false");
            break;
        case K_STRING:
        case K_ENUM:
            ok = memchr(get_str(c, k), 0, k->size) != NULL;
            if (!ok) snprintf(msg, sizeof msg, "the value is not terminated");
            else ok = check_string(k, get_str(c, k), msg, sizeof msg);
            if (ok && k->required && !get_str(c, k)[0])
                aes_user_error("%s: %s is required", p, k->key);
            break;
        case K_FLOATS: {
            int n = ccount_of(c, k);
            if (n < 0 || n > capacity_of(k)) {
                snprintf(msg, sizeof msg, "%d values (at most %d)", n, capacity_of(k));
                ok = 0;
                break;
            }
            const double *v = cfield(c, k);
            double sum = 0;
            for (int j = 0; j < n && ok; j++) {
                char m[256];
                if (!check_float(k, v[j], m, sizeof m)) {
                    snprintf(msg, sizeof msg, "element %d: %s", j + 1, m);
                    ok = 0;
                }
                sum += v[j];
            }
            if (ok && n > 0 && !(sum > 0)) {
                snprintf(msg, sizeof msg, "at least one weight must be > 0");
                ok = 0;
            }
            break;
        }
        }
        if (!ok) aes_user_error("%s: %s: %s", p, k->key, msg);
    }
    if (c->micro_batch > 0 && c->global_batch % c->micro_batch != 0)
        aes_user_error("%s: train.micro_batch (%lld) must divide train.global_batch (%lld)", p,
                       (long long)c->micro_batch, (long long)c->global_batch);
    if (c->warmup > c->steps)
        aes_user_error("%s: train.warmup (%lld) must not exceed train.steps (%lld)", p,
                       (long long)c->warmup, (long long)c->steps);
    if (strcmp(c->image, "vit") == 0) {
        if (c->vit_width % c->vit_heads != 0)
            aes_user_error("%s: model.vit_width (%d) must be divisible by model.vit_heads (%d)", p,
                           c->vit_width, c->vit_heads);
        if (c->image_size > 0 && c->image_size % c->vit_patch != 0)
            aes_user_error("%s: data.image_size (%d) must be a multiple of model.vit_patch (%d)", p,
                           c->image_size, c->vit_patch);
    }
    if (c->text_width % c->text_heads != 0)
        aes_user_error("%s: model.text_width (%d) must be divisible by model.text_heads (%d)", p,
                       c->text_width, c->text_heads);
    if (strcmp(c->fusion, "transformer") == 0 && c->fusion_width % c->fusion_heads != 0)
        aes_user_error(
            "%s: model.fusion_width (%d) must be divisible by model.fusion_heads (%d) for "
            "model.fusion = \"transformer\"",
            p, c->fusion_width, c->fusion_heads);
}

/* One key's value as a libconfig literal. */
static void sb_value(strbuf *b, const aes_config *c, const key_spec *k)
{
    char num[40];
    switch (k->type) {
    case K_INT: {
        int64_t v = get_int(c, k);
        sb_printf(b, "%lld%s", (long long)v, (v < INT_MIN || v > INT_MAX) ? "L" : "");
        break;
    }
    case K_FLOAT:
        fmt_float_literal(num, sizeof num, get_float(c, k));
        sb_printf(b, "%s", num);
        break;
    case K_BOOL: sb_printf(b, "%s", get_int(c, k) ? "true" : "false"); break;
    case K_STRING:
    case K_ENUM: sb_quoted(b, get_str(c, k)); break;
    case K_FLOATS: {
        const double *v = cfield(c, k);
        sb_printf(b, "[");
        for (int i = 0; i < ccount_of(c, k); i++) {
            fmt_float_literal(num, sizeof num, v[i]);
            sb_printf(b, "%s%s", i ? ", " : "", num);
        }
        sb_printf(b, "]");
        break;
    }
    }
}

char *aes_config_to_text(const aes_config *c)
{
    strbuf b = {0};
    sb_printf(&b, "# aesnet configuration, every key resolved");
    if (c->path[0]) {
        sb_printf(&b, " (read from ");
        for (const char *q = c->path; *q; q++) sb_printf(&b, "%c", (*q == '\n' || *q == '\r') ? '?' : *q);
        sb_printf(&b, ")");
    }
    sb_printf(&b, "\n");
    for (int g = 0; g < N_GROUPS; g++) {
        size_t glen = strlen(GROUPS[g]);
        sb_printf(&b, "%s = {\n", GROUPS[g]);
        for (int i = 0; i < N_KEYS; i++) {
            const key_spec *k = &SCHEMA[i];
            if (strncmp(k->key, GROUPS[g], glen) != 0 || k->key[glen] != '.') continue;
            sb_printf(&b, "  %s = ", k->key + glen + 1);
            sb_value(&b, c, k);
            sb_printf(&b, ";\n");
        }
        sb_printf(&b, "};\n");
    }
    return b.s;
}

void aes_config_from_text(aes_config *c, const char *text, const char *origin)
{
    aes_config_defaults(c);
    apply_text(c, text, origin, NULL);
    snprintf(c->path, sizeof c->path, "%s", origin);
}

static int key_differs(const aes_config *a, const aes_config *b, const key_spec *k)
{
    switch (k->type) {
    case K_INT:
    case K_BOOL: return get_int(a, k) != get_int(b, k);
    case K_FLOAT: return get_float(a, k) != get_float(b, k);
    case K_STRING:
    case K_ENUM: return strncmp(get_str(a, k), get_str(b, k), k->size) != 0;
    case K_FLOATS: {
        int n = ccount_of(a, k);
        if (n != ccount_of(b, k)) return 1;
        const double *va = cfield(a, k), *vb = cfield(b, k);
        for (int i = 0; i < n && i < capacity_of(k); i++)
            if (va[i] != vb[i]) return 1;
        return 0;
    }
    }
    return 0;
}

int aes_config_diff(const aes_config *a, const aes_config *b, char *out, size_t cap)
{
    int count = 0;
    size_t n = 0;
    if (out && cap) out[0] = 0;
    for (int i = 0; i < N_KEYS; i++) {
        if (!key_differs(a, b, &SCHEMA[i])) continue;
        if (out && n < cap) {
            int w = snprintf(out + n, cap - n, "%s%s", count ? ", " : "", SCHEMA[i].key);
            n += w > 0 ? (size_t)w : 0;
        }
        count++;
    }
    return count;
}

int aes_config_key_resumable(const char *key)
{
    for (size_t i = 0; i < sizeof RESUMABLE / sizeof RESUMABLE[0]; i++)
        if (strcmp(RESUMABLE[i], key) == 0) return 1;
    return 0;
}

static const char *type_name(const key_spec *k)
{
    switch (k->type) {
    case K_INT: return "int";
    case K_FLOAT: return "float";
    case K_BOOL: return "bool";
    case K_STRING: return "string";
    case K_ENUM: return "string";
    case K_FLOATS: return "float[]";
    }
    return "?";
}

static void allowed_text(const key_spec *k, char *out, size_t cap)
{
    if (k->type == K_ENUM || k->n_ivals) choices_text(k, " | ", out, cap);
    else if (k->type == K_FLOATS) {
        char r[64];
        range_text(k, r, sizeof r);
        snprintf(out, cap, "each %s, at most %d", r, capacity_of(k));
    } else if (k->type == K_STRING)
        snprintf(out, cap, "%s", k->required ? "non-empty" : "");
    else if (k->type == K_BOOL)
        snprintf(out, cap, "true | false");
    else
        range_text(k, out, cap);
}

void aes_config_print_doc(void *file)
{
    FILE *f = file ? (FILE *)file : stdout;
    aes_config d;
    aes_config_defaults(&d);
    int wk = 3, wt = 4, wd = 7, wa = 7;
    char def[N_KEYS][64], allowed[N_KEYS][96];
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &SCHEMA[i];
        strbuf b = {0};
        sb_value(&b, &d, k);
        snprintf(def[i], sizeof def[i], "%s", b.s);
        free(b.s);
        allowed_text(k, allowed[i], sizeof allowed[i]);
        int n;
        if ((n = (int)strlen(k->key)) > wk) wk = n;
        if ((n = (int)strlen(type_name(k))) > wt) wt = n;
        if ((n = (int)strlen(def[i])) > wd) wd = n;
        if ((n = (int)strlen(allowed[i])) > wa) wa = n;
    }
    fprintf(f, "%-*s  %-*s  %-*s  %-*s  %s\n", wk, "key", wt, "type", wd, "default", wa, "allowed",
            "meaning");
    const char *prev = "";
    size_t prev_len = 0;
    for (int i = 0; i < N_KEYS; i++) {
        const key_spec *k = &SCHEMA[i];
        size_t glen = (size_t)(strchr(k->key, '.') - k->key);
        if (glen != prev_len || strncmp(k->key, prev, glen) != 0) fprintf(f, "\n");
        prev = k->key;
        prev_len = glen;
        fprintf(f, "%-*s  %-*s  %-*s  %-*s  %s\n", wk, k->key, wt, type_name(k), wd, def[i], wa,
                allowed[i], k->doc);
    }
}
