/*
 * Sharded prefetching loader: a ring of batch slots filled by worker
 * threads in step order, consumed by the training loop.
 */
#define _GNU_SOURCE
#include "aesnet/loader.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/image.h"

enum { SLOT_FREE, SLOT_BUSY, SLOT_READY };

typedef struct {
    int state;
    int bad;     /* a row of this batch failed its check: err says which */
    aes_err err;
    aes_batch b;
} slot;

struct aes_loader {
    aes_dataset *ds;
    aes_loader_cfg cfg;
    int B;                 /* local batch */
    int64_t n_rows, *rows; /* rows of the split, file order */
    int64_t steps_per_epoch;
    int64_t *perm;         /* permutation of the current epoch (workers) */
    int64_t perm_epoch;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slot *slots;
    int nslots;
    int64_t next_produce;  /* next step a worker may take */
    int64_t next_consume;  /* step the consumer gets next */
    int stop;
    pthread_t *threads;
    double wait_s;
};

void aes_loader_cfg_defaults(aes_loader_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 0;
    c->world = 1;
    c->split = AES_SPLIT_TRAIN;
    c->shuffle = 1;
    c->augment = 1;
    c->crop_scale_min = 0.6f;
    c->crop_ratio_max = 1.25f;
    c->flip_prob = 0.5f;
    /* CLIP's image statistics */
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(c->mean, mean, sizeof mean);
    memcpy(c->std, std, sizeof std);
    c->workers = 1;
    c->prefetch = 2;
}

/* Permutation of the split for an epoch: Fisher-Yates on a stream keyed by
 * (seed, epoch) alone. Rank-independent by construction. */
static void epoch_perm(const aes_loader *ld, int64_t epoch, int64_t *perm)
{
    memcpy(perm, ld->rows, sizeof(int64_t) * (size_t)ld->n_rows);
    if (!ld->cfg.shuffle) return;
    aes_shuffle_i64(perm, ld->n_rows, aes_key(ld->cfg.seed, (uint64_t)epoch, 0, AES_RNG_PERMUTE));
}

void aes_loader_global_rows(const aes_loader *ld, int64_t step, int64_t *rows)
{
    int64_t epoch = step / ld->steps_per_epoch, p = step % ld->steps_per_epoch;
    int64_t *perm = aes_malloc(sizeof(int64_t) * (size_t)ld->n_rows, "permutation");
    epoch_perm(ld, epoch, perm);
    memcpy(rows, perm + p * ld->cfg.global_batch, sizeof(int64_t) * (size_t)ld->cfg.global_batch);
    free(perm);
}

static void batch_alloc(aes_loader *ld, aes_batch *b)
{
    const aes_dataset *ds = ld->ds;
    const size_t B = (size_t)ld->B, A = (size_t)ds->A, L = (size_t)ds->L, R = (size_t)ld->cfg.out_size;
    b->B = ld->B;
    b->A = ds->A;
    b->L = ds->L;
    b->R = ld->cfg.out_size;
    b->F = ds->F;
    b->row = aes_malloc(sizeof(int64_t) * B, "batch rows");
    b->images = aes_malloc(sizeof(float) * B * 3 * R * R, "batch images");
    b->tokens = aes_malloc(sizeof(int32_t) * (A * B * L + 1), "batch tokens");
    b->mask = aes_malloc(A * B + 1, "batch mask");
    b->hash = aes_malloc(sizeof(uint64_t) * (A * B + 1), "batch hashes");
    b->scores = aes_malloc(sizeof(float) * B, "batch scores");
    b->labels = aes_malloc(sizeof(int32_t) * B, "batch labels");
    b->features = ds->F ? aes_malloc(sizeof(float) * B * (size_t)ds->F, "batch features") : NULL;
}

void aes_batch_free(aes_batch *b)
{
    free(b->row);
    free(b->images);
    free(b->tokens);
    free(b->mask);
    free(b->hash);
    free(b->scores);
    free(b->labels);
    free(b->features);
}

void aes_batch_copy(aes_batch *dst, const aes_batch *src)
{
    *dst = *src;
    const size_t B = (size_t)src->B, A = (size_t)src->A, L = (size_t)src->L, R = (size_t)src->R;
#define DUP(field, n)                                                   \
    do {                                                                \
        dst->field = aes_malloc(sizeof(*src->field) * (n) + 1, #field); \
        memcpy(dst->field, src->field, sizeof(*src->field) * (n));      \
    } while (0)
    DUP(row, B);
    DUP(images, B * 3 * R * R);
    DUP(tokens, A * B * L);
    DUP(mask, A * B);
    DUP(hash, A * B);
    DUP(scores, B);
    DUP(labels, B);
    if (src->features) DUP(features, B * (size_t)src->F);
#undef DUP
}

/* Per-worker scratch buffers. */
typedef struct {
    uint8_t *rgb;   /* [S, S, 3] */
    float *hwc;     /* [S, S, 3] */
    float *out;     /* [R, R, 3] */
    int32_t *tok;   /* [A, K, L] */
    int64_t *perm;  /* [n_rows] */
    int64_t perm_epoch;
} scratch;

/* Augmented, normalised image of one sample into dst [3, R, R]. */
static void make_image(aes_loader *ld, scratch *sc, int64_t epoch, int64_t row, float *dst)
{
    const aes_dataset *ds = ld->ds;
    const int S = ds->S, R = ld->cfg.out_size;
    aes_dataset_read_image(ld->ds, row, sc->rgb);
    for (size_t i = 0; i < (size_t)S * S * 3; i++) sc->hwc[i] = (float)sc->rgb[i] * (1.0f / 255.0f);
    double x0 = 0, y0 = 0, cw = S, ch = S;
    int flip = 0;
    if (ld->cfg.augment) {
        aes_rng r;
        aes_rng_init(&r, aes_key(ld->cfg.seed, (uint64_t)epoch, (uint64_t)row, AES_RNG_CROP));
        double smin = ld->cfg.crop_scale_min, lr = log(ld->cfg.crop_ratio_max);
        double area = smin + (1.0 - smin) * aes_rng_uniform(&r);
        double ratio = exp(lr * (2.0 * aes_rng_uniform(&r) - 1.0));
        cw = S * sqrt(area * ratio);
        ch = S * sqrt(area / ratio);
        if (cw > S) cw = S;
        if (ch > S) ch = S;
        x0 = (S - cw) * aes_rng_uniform(&r);
        y0 = (S - ch) * aes_rng_uniform(&r);
        aes_rng f;
        aes_rng_init(&f, aes_key(ld->cfg.seed, (uint64_t)epoch, (uint64_t)row, AES_RNG_FLIP));
        flip = aes_rng_uniform(&f) < ld->cfg.flip_prob;
    }
    const float *src = sc->hwc;
    if (!(R == S && cw == S && ch == S)) {
        aes_image_resample_f32(sc->hwc, S, S, 3, x0, y0, cw, ch, sc->out, R, R);
        src = sc->out;
    }
    for (int c = 0; c < 3; c++) {
        const float m = ld->cfg.mean[c], is = 1.0f / ld->cfg.std[c];
        float *d = dst + (size_t)c * R * R;
        for (int y = 0; y < R; y++)
            for (int x = 0; x < R; x++) {
                int sx = flip ? R - 1 - x : x;
                d[(size_t)y * R + x] = (src[((size_t)y * R + sx) * 3 + c] - m) * is;
            }
    }
}

/* Returns -1 with err set when a row is bad: workers must not exit, the
 * consumer reports it. */
static int make_batch(aes_loader *ld, scratch *sc, int64_t step, aes_batch *b, aes_err *err)
{
    aes_dataset *ds = ld->ds;
    const int B = ld->B, A = ds->A, K = ds->K, L = ds->L, R = ld->cfg.out_size;
    int64_t epoch = step / ld->steps_per_epoch, p = step % ld->steps_per_epoch;
    if (sc->perm_epoch != epoch) {
        epoch_perm(ld, epoch, sc->perm);
        sc->perm_epoch = epoch;
    }
    b->step = step;
    b->epoch = epoch;
    const int64_t *g = sc->perm + p * ld->cfg.global_batch + (int64_t)ld->cfg.rank * B;
    for (int i = 0; i < B; i++) {
        int64_t row = g[i];
        b->row[i] = row;
        make_image(ld, sc, epoch, row, b->images + (size_t)i * 3 * R * R);
        b->scores[i] = ds->scores[row];
        b->labels[i] = ds->labels ? ds->labels[row] : -1;
        if (ds->F) aes_dataset_read_feature(ds, row, b->features + (size_t)i * ds->F);
        if (A == 0) continue;
        aes_dataset_read_tokens_raw(ds, row, sc->tok);
        if (aes_dataset_check_tokens(ds, row, sc->tok, err) != 0) return -1;
        aes_rng r;
        aes_rng_init(&r, aes_key(ld->cfg.seed, (uint64_t)epoch, (uint64_t)row, AES_RNG_DESCRIPTION));
        for (int a = 0; a < A; a++) {
            int n = ds->count[row * A + a];
            int32_t *dst = b->tokens + ((size_t)a * B + i) * L;
            /* One draw per attribute whether or not it is present, so the
             * choice for one attribute does not depend on another's count. */
            uint64_t u = aes_rng_u64(&r);
            if (n == 0) {
                memset(dst, 0, sizeof(int32_t) * (size_t)L);
                b->mask[(size_t)a * B + i] = 0;
                b->hash[(size_t)a * B + i] = 0;
                continue;
            }
            int k = (int)(u % (uint64_t)n);
            memcpy(dst, sc->tok + ((size_t)a * K + k) * L, sizeof(int32_t) * (size_t)L);
            b->mask[(size_t)a * B + i] = 1;
            b->hash[(size_t)a * B + i] = aes_tokens_hash(dst, L);
        }
    }
    return 0;
}

static void *worker_main(void *arg)
{
    aes_loader *ld = arg;
    const aes_dataset *ds = ld->ds;
    const size_t S = (size_t)ds->S, R = (size_t)ld->cfg.out_size;
    scratch sc;
    sc.rgb = aes_malloc(S * S * 3, "loader scratch");
    sc.hwc = aes_malloc(sizeof(float) * S * S * 3, "loader scratch");
    sc.out = aes_malloc(sizeof(float) * R * R * 3, "loader scratch");
    sc.tok = aes_malloc(sizeof(int32_t) * ((size_t)ds->A * ds->K * ds->L + 1), "loader scratch");
    sc.perm = aes_malloc(sizeof(int64_t) * (size_t)ld->n_rows, "loader scratch");
    sc.perm_epoch = -1;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        int64_t s = ld->next_produce;
        slot *sl = &ld->slots[s % ld->nslots];
        while (!ld->stop && (s != ld->next_produce || sl->state != SLOT_FREE ||
                             s >= ld->next_consume + ld->nslots)) {
            pthread_cond_wait(&ld->cv, &ld->mu);
            s = ld->next_produce;
            sl = &ld->slots[s % ld->nslots];
        }
        if (ld->stop) break;
        sl->state = SLOT_BUSY;
        ld->next_produce = s + 1;
        pthread_mutex_unlock(&ld->mu);
        sl->bad = make_batch(ld, &sc, s, &sl->b, &sl->err) != 0;
        sl->b.step = s;
        pthread_mutex_lock(&ld->mu);
        sl->state = SLOT_READY;
        pthread_cond_broadcast(&ld->cv);
    }
    pthread_mutex_unlock(&ld->mu);
    free(sc.rgb);
    free(sc.hwc);
    free(sc.out);
    free(sc.tok);
    free(sc.perm);
    return NULL;
}

aes_loader *aes_loader_open(aes_dataset *ds, const aes_loader_cfg *cfg)
{
    if (cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world)
        aes_internal_error("rank %d of %d", cfg->rank, cfg->world);
    if (cfg->global_batch < 1) aes_user_error("global batch %lld must be positive", (long long)cfg->global_batch);
    if (cfg->global_batch % cfg->world != 0)
        aes_user_error("the global batch %lld does not divide by the %d ranks",
                       (long long)cfg->global_batch, cfg->world);
    aes_loader *ld = aes_calloc(1, sizeof *ld, "loader");
    ld->ds = ds;
    ld->cfg = *cfg;
    if (ld->cfg.out_size <= 0) ld->cfg.out_size = ds->S;
    if (ld->cfg.workers < 1) ld->cfg.workers = 1;
    if (ld->cfg.prefetch < 1) ld->cfg.prefetch = 1;
    ld->B = (int)(cfg->global_batch / cfg->world);
    ld->rows = aes_malloc(sizeof(int64_t) * (size_t)ds->N, "split rows");
    for (int64_t i = 0; i < ds->N; i++)
        if (ds->split[i] == cfg->split) ld->rows[ld->n_rows++] = i;
    if (ld->n_rows < cfg->global_batch)
        aes_user_error("%s: the %s split has %lld rows, fewer than one global batch of %lld",
                       ds->path, aes_split_names[cfg->split], (long long)ld->n_rows,
                       (long long)cfg->global_batch);
    ld->steps_per_epoch = ld->n_rows / cfg->global_batch;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv, NULL);
    /* One slot being consumed, `prefetch` ready ahead, and room for every
     * worker to build one at once. */
    ld->nslots = 1 + ld->cfg.prefetch + ld->cfg.workers - 1;
    ld->slots = aes_calloc((size_t)ld->nslots, sizeof(slot), "loader slots");
    for (int k = 0; k < ld->nslots; k++) batch_alloc(ld, &ld->slots[k].b);
    ld->next_produce = ld->next_consume = cfg->start_step;
    ld->threads = aes_calloc((size_t)ld->cfg.workers, sizeof(pthread_t), "loader threads");
    for (int t = 0; t < ld->cfg.workers; t++)
        if (pthread_create(&ld->threads[t], NULL, worker_main, ld) != 0)
            aes_internal_error("cannot start loader thread %d", t);
    return ld;
}

int64_t aes_loader_rows(const aes_loader *ld) { return ld->n_rows; }
int64_t aes_loader_steps_per_epoch(const aes_loader *ld) { return ld->steps_per_epoch; }
double aes_loader_wait_seconds(const aes_loader *ld) { return ld->wait_s; }

const aes_batch *aes_loader_next(aes_loader *ld)
{
    double t0 = aes_now();
    pthread_mutex_lock(&ld->mu);
    /* The previous batch is no longer in use: hand its slot back. */
    if (ld->next_consume > ld->cfg.start_step) {
        slot *prev = &ld->slots[(ld->next_consume - 1) % ld->nslots];
        prev->state = SLOT_FREE;
        pthread_cond_broadcast(&ld->cv);
    }
    slot *sl = &ld->slots[ld->next_consume % ld->nslots];
    while (sl->state != SLOT_READY || sl->b.step != ld->next_consume)
        pthread_cond_wait(&ld->cv, &ld->mu);
    ld->next_consume++;
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&ld->mu);
    if (sl->bad) aes_user_error("%s", sl->err.msg);
    ld->wait_s += aes_now() - t0;
    return &sl->b;
}

void aes_loader_close(aes_loader *ld)
{
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->cfg.workers; t++) pthread_join(ld->threads[t], NULL);
    for (int k = 0; k < ld->nslots; k++) aes_batch_free(&ld->slots[k].b);
    free(ld->slots);
    free(ld->threads);
    free(ld->rows);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv);
    free(ld);
}
