/*
 * The data-parallel AesNet training step and loop. One step on each rank:
 * load this rank's slice of the global batch, forward, all-gather the
 * embeddings (and what the affinity loss needs), the local-rows losses,
 * reduce-scatter the gathered columns' gradients to their owners,
 * backward with the gradient all-reduce overlapped in buckets, AdamW.
 */
#define _GNU_SOURCE
#include "aesnet/train.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aesnet/checkpoint.h"
#include "aesnet/core.h"
#include "train/train_gpu.h"
#include "aesnet/loss.h"
#include "aesnet/optim.h"
#include "aesnet/restore.h"

#define GRAD_BUCKET_FLOATS ((size_t)4 << 20) /* 16 MiB per all-reduce bucket */

/* ---- stop requests (set from the signal handler the command installs) - */

static volatile sig_atomic_t g_stop_signal;
void aes_train_request_stop(int sig);
void aes_train_request_stop(int sig) { g_stop_signal = sig; }

/* ---- set-up ---------------------------------------------------------- */


static void loader_cfg_from(aes_loader_cfg *lc, const aes_config *c, const aes_dist *d, int R)
{
    aes_loader_cfg_defaults(lc);
    lc->seed = (uint64_t)c->seed;
    lc->global_batch = c->global_batch;
    lc->rank = d->rank;
    lc->world = d->world;
    lc->split = AES_SPLIT_TRAIN;
    lc->out_size = R;
    lc->augment = c->augment;
    lc->crop_scale_min = (float)c->crop_scale_min;
    lc->crop_ratio_max = (float)c->crop_ratio_max;
    lc->flip_prob = (float)c->flip_prob;
    lc->workers = c->workers;
    lc->prefetch = c->prefetch;
}

void aes_trainer_init(aes_trainer *t, const aes_config *cfg, const char *resume_path, MPI_Comm comm)
{
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    const aes_config *c = &t->cfg;
    aes_dist_init(&t->dist, comm);
    if (c->threads > 0) omp_set_num_threads(c->threads);
    if (c->global_batch % t->dist.world != 0)
        aes_user_error("%s: train.global_batch = %lld does not divide by the %d ranks", c->path,
                       (long long)c->global_batch, t->dist.world);

    if (!aes_file_exists(c->train_data))
        aes_user_error("%s: data.train = \"%s\": no such file", c->path, c->train_data);
    aes_dataset_open(&t->ds, c->train_data);
    const aes_dataset *ds = &t->ds;
    if (ds->A == 0 || !ds->has_tokenizer)
        aes_user_error("%s: data.train = %s has no descriptions: pre-training needs a data set "
                       "built with descriptions", c->path, c->train_data);
    if (c->n_weights != 0 && c->n_weights != ds->A)
        aes_user_error("%s: loss.attribute_weights has %d values, the data set has %d attributes",
                       c->path, c->n_weights, ds->A);
    t->affinity = !strcmp(c->affinity, "kl") ? 1 : !strcmp(c->affinity, "mse") ? 2 : 0;
    t->ref_features = t->affinity && !strcmp(c->affinity_reference, "features");
    if (t->ref_features && ds->F == 0)
        aes_user_error("%s: loss.affinity_reference = \"features\" but %s has no content features "
                       "(/content/features); use \"frozen\" or loss.affinity = \"none\"",
                       c->path, c->train_data);
    const int R = c->image_size > 0 ? c->image_size : ds->S;
    if (!strcmp(c->image, "vit") && R % c->vit_patch)
        aes_user_error("%s: model.vit_patch = %d does not divide the image size %d", c->path,
                       c->vit_patch, R);

    t->A = ds->A;
    t->Bg = (int)c->global_batch;
    t->B = t->Bg / t->dist.world;
    for (int a = 0; a < t->A; a++) t->weights[a] = c->n_weights ? (float)c->weights[a] : 1.0f;

    t->mb = c->micro_batch > 0 && c->micro_batch < t->B ? (int)c->micro_batch : t->B;
    if (t->B % t->mb)
        aes_user_error("%s: train.micro_batch = %lld does not divide the %d rows per rank "
                       "(train.global_batch %lld over %d ranks)", c->path, (long long)c->micro_batch,
                       t->B, (long long)c->global_batch, t->dist.world);
    aes_model_cfg mc;
    aes_model_cfg_from_config(&mc, c, R, ds->tok.vocab_size, ds->L, ds->A, ds->attr_names);
    /* Training also needs the frozen reference when the affinity loss uses it. */
    mc.frozen_reference = t->affinity && !t->ref_features;
    t->D = mc.D;
    aes_model_build(&t->model, &mc, t->mb);
    if (!strcmp(c->batchnorm, "global")) t->model.image.red = &t->dist.bn;
    t->m1 = aes_calloc(t->model.P.n_trainable, sizeof(float), "AdamW m");
    t->m2 = aes_calloc(t->model.P.n_trainable, sizeof(float), "AdamW v");
    if (resume_path) {
        aes_ckpt_meta meta;
        char *text = NULL;
        aes_ckpt_peek(resume_path, &meta, &text);
        free(text);
        aes_ckpt_load(resume_path, &t->model.P, t->m1, t->m2);
        t->step = meta.step;
        t->nonfinite_total = meta.nonfinite;
    }

    if (strcmp(c->device, "cuda") && strcmp(c->precision, "fp32"))
        aes_user_error("%s: train.precision = \"%s\" needs train.device = \"cuda\" (the CPU "
                       "computes in fp32)",
                       c->path, c->precision);

    /* Refused before the reader starts: no GPU, no driver, no CUDA build. */
    if (!strcmp(c->device, "cuda")) aes_train_gpu_check(t);

    aes_loader_cfg lc;
    loader_cfg_from(&lc, c, &t->dist, R);
    lc.start_step = t->step;
    t->loader = aes_loader_open(&t->ds, &lc);

    const int A = t->A, Bg = t->Bg, B = t->B, D = t->D, Fv = t->model.Fv;
    const int Fr = t->ref_features ? ds->F : Fv;
    t->x_all = aes_malloc(sizeof(float) * A * Bg * D, "x");
    t->y_all = aes_malloc(sizeof(float) * A * Bg * D, "y");
    t->dx_all = aes_malloc(sizeof(float) * A * Bg * D, "dx");
    t->dy_all = aes_malloc(sizeof(float) * A * Bg * D, "dy");
    t->dx = aes_malloc(sizeof(float) * A * B * D, "dx");
    t->dy = aes_malloc(sizeof(float) * A * B * D, "dy");
    t->v_all = aes_malloc(sizeof(float) * Bg * Fv, "v");
    t->dv_all = aes_malloc(sizeof(float) * Bg * Fv, "dv");
    t->dv = aes_malloc(sizeof(float) * B * Fv, "dv");
    t->ref_all = aes_malloc(sizeof(float) * Bg * Fr, "reference");
    t->mask_all = aes_malloc((size_t)A * Bg, "mask");
    t->xl = aes_malloc(sizeof(float) * A * B * D, "x");
    t->yl = aes_malloc(sizeof(float) * A * B * D, "y");
    t->vl = aes_malloc(sizeof(float) * B * Fv, "v");
    t->vrefl = aes_malloc(sizeof(float) * B * Fv, "reference features");
    t->mtok = aes_malloc(sizeof(int32_t) * A * t->mb * ds->L, "micro-batch tokens");
    t->mmask = aes_malloc((size_t)A * t->mb, "micro-batch mask");
    t->mdx = aes_malloc(sizeof(float) * A * t->mb * D, "micro-batch dx");
    t->mdy = aes_malloc(sizeof(float) * A * t->mb * D, "micro-batch dy");
    t->bufsave = aes_malloc(sizeof(float) * (t->model.P.n_total - t->model.P.n_trainable + 1), "buffers");
    t->hash_all = aes_malloc(sizeof(uint64_t) * A * Bg, "hashes");
    t->scratch = aes_malloc(sizeof(float) * (aes_mac_scratch_floats(B, Bg) + aes_sa_scratch_floats(B, Bg, Fv, Fr)), "loss scratch");
    /* After the host buffers exist: the GPU path pins those it stages through. */
    if (!strcmp(c->device, "cuda")) aes_train_gpu_init(t);

    /* The fixed validation batch: the first val_batch rows of the val split. */
    if (c->val_every > 0) {
        int64_t nval = 0;
        for (int64_t i = 0; i < ds->N; i++) nval += ds->split[i] == AES_SPLIT_VAL;
        /* At most the global batch (the gathered buffers' size) and the
         * val split, in whole rows per rank. */
        int64_t vb = c->val_batch < Bg ? c->val_batch : Bg;
        if (vb > nval) vb = nval;
        vb -= vb % t->dist.world;
        if (vb >= 2 * t->dist.world) {
            aes_loader_cfg vc = lc;
            vc.split = AES_SPLIT_VAL;
            vc.shuffle = 0;
            vc.augment = 0;
            vc.global_batch = vb;
            vc.start_step = 0;
            vc.workers = 1;
            vc.prefetch = 1;
            aes_loader *vl = aes_loader_open(&t->ds, &vc);
            aes_batch_copy(&t->val, aes_loader_next(vl));
            aes_loader_close(vl);
            t->has_val = 1;
            t->Bv = (int)(vb / t->dist.world);
        } else if (t->dist.rank == 0) {
            aes_warn("%s: the val split has %lld rows, too few for a validation batch on %d "
                     "ranks: no validation loss", c->train_data, (long long)nval, t->dist.world);
        }
    }
}

void aes_trainer_free(aes_trainer *t)
{
    aes_train_gpu_free(t);
    aes_loader_close(t->loader);
    aes_model_free(&t->model);
    aes_dataset_close(&t->ds);
    if (t->has_val) aes_batch_free(&t->val);
    float *f[] = {t->m1, t->m2, t->x_all, t->y_all, t->dx_all, t->dy_all, t->dx, t->dy,
                  t->v_all, t->dv_all, t->dv, t->ref_all, t->scratch, t->xl, t->yl, t->vl,
                  t->vrefl, t->mdx, t->mdy, t->bufsave};
    free(t->mtok);
    free(t->mmask);
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++) free(f[k]);
    free(t->mask_all);
    free(t->hash_all);
    aes_dist_free(&t->dist);
}

/* ---- the step --------------------------------------------------------- */

static void grad_ready(void *ctx, size_t lo) { aes_dist_grads_ready(ctx, lo); }

/* Rows [i0, i0 + n) of a batch as model input: images and rows are
 * contiguous; tokens [A, B, L] and mask [A, B] are copied per attribute. */
void aes_trainer_micro_forward(aes_trainer *t, const aes_batch *b, int B, int i0, int n,
                               int64_t step)
{
    const int A = t->A, L = t->ds.L;
    for (int a = 0; a < A; a++) {
        memcpy(t->mtok + (size_t)a * n * L, b->tokens + ((size_t)a * B + i0) * L, sizeof(int32_t) * (size_t)n * L);
        memcpy(t->mmask + (size_t)a * n, b->mask + (size_t)a * B + i0, (size_t)n);
    }
    const size_t img = (size_t)3 * b->R * b->R;
    aes_model_forward(&t->model, b->images + (size_t)i0 * img, t->mtok, t->mmask, b->row + i0, step, n);
}

/* Forward every local row, micro-batch by micro-batch, keeping only the
 * embeddings (the GradCache scheme: no activations kept across
 * micro-batches). */
static void embed_all(aes_trainer *t, const aes_batch *b, int B, int64_t step)
{
    aes_model *m = &t->model;
    const int A = t->A, D = t->D, Fv = m->Fv;
    for (int i0 = 0; i0 < B; i0 += t->mb) {
        int n = B - i0 < t->mb ? B - i0 : t->mb;
        aes_trainer_micro_forward(t, b, B, i0, n, step);
        for (int a = 0; a < A; a++) {
            memcpy(t->xl + ((size_t)a * B + i0) * D, m->x + (size_t)a * n * D, sizeof(float) * (size_t)n * D);
            memcpy(t->yl + ((size_t)a * B + i0) * D, m->y + (size_t)a * n * D, sizeof(float) * (size_t)n * D);
        }
        memcpy(t->vl + (size_t)i0 * Fv, m->v, sizeof(float) * (size_t)n * Fv);
        if (m->cfg.frozen_reference) memcpy(t->vrefl + (size_t)i0 * Fv, m->vref, sizeof(float) * (size_t)n * Fv);
    }
}

/* Forward, gather and losses for a batch of B local rows (B * world
 * global); with want_grad, the local rows' loss gradients in t->dx, dy, dv.
 * Returns the total loss; parts into st. */
static double forward_loss(aes_trainer *t, const aes_batch *b, int B, int64_t step, int want_grad,
                           aes_step_stats *st)
{
    if (t->gpu) return aes_train_gpu_forward_loss(t, b, B, step, want_grad, st);
    aes_dist *d = &t->dist;
    aes_model *m = &t->model;
    const int A = t->A, D = t->D, Fv = m->Fv, W = d->world, Bg = B * W;
    double t0 = aes_now(), c0 = d->comm_seconds;
    embed_all(t, b, B, step);
    double t1 = aes_now();
    aes_dist_allgather_rows(d, t->xl, t->x_all, A, B, D, sizeof(float));
    aes_dist_allgather_rows(d, t->yl, t->y_all, A, B, D, sizeof(float));
    aes_dist_allgather_rows(d, b->mask, t->mask_all, A, B, 1, 1);
    aes_dist_allgather_rows(d, b->hash, t->hash_all, A, B, 1, sizeof(uint64_t));
    float ls[AES_MAX_ATTR];
    for (int a = 0; a < A; a++) ls[a] = aes_model_log_scale(m, a);
    aes_mac_args ma = {.A = A, .D = D, .Bg = Bg, .B = B, .row0 = d->rank * B, .x = t->x_all,
                       .y = t->y_all, .mask = t->mask_all, .hash = t->hash_all, .logscale = ls,
                       .weights = t->weights,
                       .duplicates_positive = !strcmp(t->cfg.duplicates, "positive")};
    double parts[2 + AES_MAX_ATTR] = {0};
    parts[0] = aes_mac_loss(&ma, t->scratch, parts + 2, want_grad ? t->dx_all : NULL,
                            want_grad ? t->dy_all : NULL, want_grad ? t->dls : NULL);
    if (t->affinity) {
        aes_dist_allgather_rows(d, t->vl, t->v_all, 1, B, Fv, sizeof(float));
        int Fr = Fv;
        if (t->ref_features) {
            Fr = t->ds.F;
            aes_dist_allgather_rows(d, b->features, t->ref_all, 1, B, Fr, sizeof(float));
        } else {
            aes_dist_allgather_rows(d, t->vrefl, t->ref_all, 1, B, Fv, sizeof(float));
        }
        aes_sa_args sa = {.Bg = Bg, .B = B, .row0 = d->rank * B, .F = Fv, .Fr = Fr, .v = t->v_all,
                          .ref = t->ref_all, .tau = (float)t->cfg.affinity_tau,
                          .kind = t->affinity == 2 ? AES_AFFINITY_MSE : AES_AFFINITY_KL};
        parts[1] = aes_sa_loss(&sa, t->scratch, want_grad ? t->dv_all : NULL);
    }
    aes_dist_allreduce_sum_f64(d, parts, 2 + A);
    if (want_grad) {
        aes_dist_reduce_scatter_rows(d, t->dx_all, t->dx, A, B, D);
        aes_dist_reduce_scatter_rows(d, t->dy_all, t->dy, A, B, D);
        if (t->affinity) {
            aes_dist_reduce_scatter_rows(d, t->dv_all, t->dv, 1, B, Fv);
            aes_scale(t->dv, (size_t)B * Fv, (float)t->cfg.affinity_weight);
        }
    }
    return aes_trainer_loss_stats(t, parts, t0, t1, c0, st);
}

double aes_trainer_loss_stats(aes_trainer *t, const double *parts, double t0, double t1, double c0,
                              aes_step_stats *st)
{
    st->mac = parts[0];
    st->sa = parts[1];
    for (int a = 0; a < t->A; a++) st->loss_a[a] = parts[2 + a];
    st->loss = parts[0] + t->cfg.affinity_weight * parts[1];
    st->t_forward = t1 - t0;
    st->t_loss = aes_now() - t1;
    st->t_comm = t->dist.comm_seconds - c0;
    return st->loss;
}

/* Backward of every local row from the loss gradients: with one
 * micro-batch straight from the forward just done; with several, each is
 * run forward again (same inputs, same draws) and then backward, the
 * parameter gradients accumulating. Batch-norm running statistics were
 * updated by the first pass: the re-runs put them back. */
static void backward_all(aes_trainer *t, const aes_batch *b)
{
    aes_model *m = &t->model;
    aes_dist *d = &t->dist;
    const int A = t->A, D = t->D, B = t->B, Fv = m->Fv;
    const size_t nbuf = m->P.n_total - m->P.n_trainable;
    const int several = t->mb < B;
    aes_params_zero_grad(&m->P);
    aes_dist_grads_begin(d, m->P.grad, m->P.n_trainable, 4u << 20);
    for (int i0 = 0; i0 < B; i0 += t->mb) {
        const int n = t->mb, last = i0 + n >= B;
        if (several) {
            memcpy(t->bufsave, m->P.data + m->P.n_trainable, sizeof(float) * nbuf);
            aes_trainer_micro_forward(t, b, B, i0, n, t->step);
            memcpy(m->P.data + m->P.n_trainable, t->bufsave, sizeof(float) * nbuf);
        }
        for (int a = 0; a < A; a++) {
            memcpy(t->mdx + (size_t)a * n * D, t->dx + ((size_t)a * B + i0) * D, sizeof(float) * (size_t)n * D);
            memcpy(t->mdy + (size_t)a * n * D, t->dy + ((size_t)a * B + i0) * D, sizeof(float) * (size_t)n * D);
        }
        /* The all-reduce may only start once the last micro-batch has
         * added its share. */
        m->grad_ready = last ? grad_ready : NULL;
        m->grad_ctx = d;
        float dls0[AES_MAX_ATTR] = {0};
        aes_model_backward(m, t->mdx, t->mdy, t->affinity ? t->dv + (size_t)i0 * Fv : NULL,
                           i0 == 0 ? t->dls : dls0);
    }
    aes_dist_grads_end(d);
}

int aes_trainer_decide(aes_trainer *t, aes_step_stats *st)
{
    const aes_config *c = &t->cfg;
    st->lr = aes_lr_schedule(t->step, (float)c->lr, c->warmup, c->steps, (float)c->min_lr_ratio);
    if (isfinite(st->loss) && isfinite(st->grad_norm)) {
        t->nonfinite_run = 0;
        return 1;
    }
    st->skipped = 1;
    t->nonfinite_run++;
    t->nonfinite_total++;
    if (t->nonfinite_run >= c->max_nonfinite) {
        /* Every rank holds the same gradient and reaches this together. */
        aes_set_user_errors_collective(1);
        aes_user_error("training diverged: %lld steps in a row with a non-finite loss or "
                       "gradient, the last at step %lld (lower train.lr, or raise train.clip)",
                       (long long)t->nonfinite_run, (long long)t->step + 1);
    }
    return 0;
}

void aes_trainer_step(aes_trainer *t, aes_step_stats *st)
{
    memset(st, 0, sizeof *st);
    aes_model *m = &t->model;
    aes_dist *d = &t->dist;
    double w0 = aes_loader_wait_seconds(t->loader);
    const aes_batch *b = aes_loader_next(t->loader);
    st->t_data = aes_loader_wait_seconds(t->loader) - w0;
    AES_CHECK(b->step == t->step);
    forward_loss(t, b, t->B, t->step, 1, st);
    if (t->gpu) {
        aes_train_gpu_backward_update(t, b, st);
        t->step++;
        return;
    }

    double t2 = aes_now(), c0 = d->comm_seconds;
    backward_all(t, b);
    double t3 = aes_now();
    st->t_comm += d->comm_seconds - c0;
    st->t_backward = t3 - t2 - (d->comm_seconds - c0);

    /* Every rank holds the same summed gradient: the same decisions. */
    st->grad_norm = sqrt(aes_sumsq(m->P.grad, m->P.n_trainable));
    const aes_config *c = &t->cfg;
    if (aes_trainer_decide(t, st)) {
        /* Clipping is folded into the update (P.grad stays unclipped). */
        const float clip = aes_clip_factor(st->grad_norm, (float)c->clip);
        const aes_adamw opt = {.beta1 = (float)c->beta1, .beta2 = (float)c->beta2,
                               .eps = (float)c->eps, .weight_decay = (float)c->weight_decay};
        for (int k = 0; k < m->P.n; k++) {
            const aes_tensor *p = &m->P.t[k];
            if (p->trainable)
                aes_adamw_step_scaled(m->P.data + p->offset, m->P.grad + p->offset, clip,
                                      t->m1 + p->offset, t->m2 + p->offset, p->numel, st->lr,
                                      &opt, p->decay, t->step + 1 - t->nonfinite_total);
        }
        aes_model_clamp_scales(m);
    }
    st->t_update = aes_now() - t3;
    t->step++;
}

double aes_trainer_val_loss(aes_trainer *t)
{
    if (!t->has_val) return NAN;
    aes_step_stats st;
    memset(&st, 0, sizeof st);
    /* Batch norm from its running statistics, as at evaluation. */
    int saved = t->model.image.train;
    t->model.image.train = 0;
    double loss = forward_loss(t, &t->val, t->Bv, 0, 0, &st);
    t->model.image.train = saved;
    return loss;
}

/* ---- the loop ---------------------------------------------------------- */

static void fmt_time(double s, char *out, size_t cap)
{
    if (!(s >= 0) || s > 1e8) snprintf(out, cap, "?");
    else if (s < 60) snprintf(out, cap, "%.0fs", s);
    else if (s < 3600) snprintf(out, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(out, cap, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* metrics.csv: a header, one row per logged step. On resume, rows after
 * the checkpoint's step are dropped (they belong to a run that was lost). */
static FILE *open_metrics(aes_trainer *t)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/metrics.csv", t->cfg.out_dir);
    if (t->step > 0 && aes_file_exists(path)) {
        FILE *in = fopen(path, "r");
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *out = fopen(tmp, "w");
        if (!in || !out) aes_user_error("%s: cannot rewrite: %s", path, strerror(errno));
        char *line = NULL;
        size_t cap = 0;
        int first = 1;
        while (getline(&line, &cap, in) > 0) {
            if (!first && atoll(line) > t->step) continue;
            fputs(line, out);
            first = 0;
        }
        free(line);
        fclose(in);
        if (fclose(out) != 0 || rename(tmp, path) != 0)
            aes_user_error("%s: cannot rewrite: %s", path, strerror(errno));
        FILE *f = fopen(path, "a");
        if (!f) aes_user_error("%s: cannot append: %s", path, strerror(errno));
        return f;
    }
    FILE *f = fopen(path, "w");
    if (!f) aes_user_error("%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "step,epoch,loss,mac,affinity");
    for (int a = 0; a < t->A; a++) fprintf(f, ",loss_%s", t->ds.attr_names[a]);
    for (int a = 0; a < t->A; a++) fprintf(f, ",scale_%s", t->ds.attr_names[a]);
    fprintf(f, ",lr,grad_norm,images_per_s,data_s,compute_s,comm_s,val_loss,skipped\n");
    fflush(f);
    return f;
}

static void mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(buf, 0777);
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        aes_user_error("run.out_dir = %s: cannot create: %s", dir, strerror(errno));
}

int aes_trainer_run(aes_trainer *t, const char *config_text)
{
    aes_dist *d = &t->dist;
    const aes_config *c = &t->cfg;
    const int root = d->rank == 0;
    FILE *metrics = NULL;
    if (root) {
        mkdir_p(c->out_dir);
        metrics = open_metrics(t);
        aes_log("aesnet train: %d rank(s) x %d threads, global batch %d (%d per rank), %lld steps "
                "(%lld per epoch of %lld train rows), %.2f M parameters, starting at step %lld",
                d->world, omp_get_max_threads(), t->Bg, t->B, (long long)c->steps,
                (long long)aes_loader_steps_per_epoch(t->loader), (long long)aes_loader_rows(t->loader),
                t->model.P.n_trainable / 1e6, (long long)t->step);
    }
    /* From here on a user error may be one rank's alone (a full disk under
     * the checkpoint, a bad row the others did not read). */
    aes_set_user_errors_collective(0);
    const double t_start = aes_now();
    double acc_data = 0, acc_comp = 0, acc_comm = 0, acc_time = 0, step_avg = 0;
    int64_t acc_n = 0, first_step = t->step;
    int stop = 0, exit_code = 0;
    char stopfile[4200];
    snprintf(stopfile, sizeof stopfile, "%s/STOP", c->out_dir);
    while (t->step < c->steps && !stop) {
        aes_step_stats st;
        double s0 = aes_now();
        aes_trainer_step(t, &st);
        double el = aes_now() - s0;
        acc_data += st.t_data;
        acc_comm += st.t_comm;
        acc_comp += el - st.t_data - st.t_comm;
        acc_time += el;
        acc_n++;
        step_avg = (aes_now() - t_start) / (double)(t->step - first_step);
        double val = NAN;
        if (c->val_every > 0 && t->step % c->val_every == 0) val = aes_trainer_val_loss(t);
        if (root && (t->step % c->log_every == 0 || t->step == c->steps || !isnan(val) || st.skipped)) {
            int64_t spe = aes_loader_steps_per_epoch(t->loader);
            double ips = acc_time > 0 ? (double)t->Bg * acc_n / acc_time : 0;
            char eta[32], line[2048];
            fmt_time(step_avg * (double)(c->steps - t->step), eta, sizeof eta);
            int o = snprintf(line, sizeof line, "step %lld/%lld ep %lld | loss %.4f |",
                             (long long)t->step, (long long)c->steps, (long long)((t->step - 1) / spe),
                             st.loss);
            for (int a = 0; a < t->A && o < (int)sizeof line; a++)
                o += snprintf(line + o, sizeof line - (size_t)o, " %s %.3f (s %.1f)", t->ds.attr_names[a],
                              st.loss_a[a], exp(aes_model_log_scale(&t->model, a)));
            if (o < (int)sizeof line)
                o += snprintf(line + o, sizeof line - (size_t)o,
                              " | sa %.4f | lr %.2e | gnorm %.3f | %.1f img/s | data %.0f%% comp %.0f%% comm %.0f%% | ETA %s%s",
                              st.sa, st.lr, st.grad_norm, ips, 100 * acc_data / acc_time,
                              100 * acc_comp / acc_time, 100 * acc_comm / acc_time, eta,
                              st.skipped ? " | SKIPPED (non-finite)" : "");
            aes_log("%s", line);
            if (!isnan(val)) aes_log("step %lld: validation loss %.4f", (long long)t->step, val);
            fprintf(metrics, "%lld,%lld,%.8g,%.8g,%.8g", (long long)t->step,
                    (long long)((t->step - 1) / spe), st.loss, st.mac, st.sa);
            for (int a = 0; a < t->A; a++) fprintf(metrics, ",%.8g", st.loss_a[a]);
            for (int a = 0; a < t->A; a++) fprintf(metrics, ",%.8g", exp(aes_model_log_scale(&t->model, a)));
            fprintf(metrics, ",%.8g,%.8g,%.6g,%.6g,%.6g,%.6g,", st.lr, st.grad_norm, ips,
                    acc_data / acc_n, acc_comp / acc_n, acc_comm / acc_n);
            if (!isnan(val)) fprintf(metrics, "%.8g", val);
            fprintf(metrics, ",%d\n", st.skipped);
            fflush(metrics);
            acc_data = acc_comp = acc_comm = acc_time = 0;
            acc_n = 0;
        }
        /* Rank 0 decides whether to stop; everyone follows. */
        int decision = 0;
        if (root) {
            if (g_stop_signal) decision = 1;
            else if (c->max_walltime > 0 && aes_now() - t_start + 2 * step_avg > c->max_walltime) decision = 2;
            else if (aes_file_exists(stopfile)) decision = 3;
        }
        decision = aes_dist_bcast_int(d, decision);
        stop = decision != 0;
        int save = t->step == c->steps || stop || (c->ckpt_every > 0 && t->step % c->ckpt_every == 0);
        if (save) {
            if (root) {
                aes_ckpt_meta meta = {.step = t->step,
                                      .epoch = t->step / aes_loader_steps_per_epoch(t->loader),
                                      .cursor = t->step * c->global_batch,
                                      .world_size = d->world,
                                      .nonfinite = t->nonfinite_total,
                                      .seed = (uint64_t)c->seed,
                                      .tokenizer_hash = aes_tokenizer_hash(&t->ds.tok)};
                char path[4200];
                double k0 = aes_now();
                if (t->gpu) aes_train_gpu_to_host(t);
                aes_ckpt_save(c->out_dir, &t->model.P, t->m1, t->m2, &meta, config_text,
                              (int)c->keep_last, path, sizeof path);
                aes_log("step %lld: checkpoint %s (%.1f s)", (long long)t->step, path, aes_now() - k0);
            }
            MPI_Barrier(d->comm);
        }
        if (stop) {
            const char *why[] = {"", "a signal", "the walltime limit", "a STOP file"};
            if (root)
                aes_log("stopping at step %lld on %s; resume with --resume auto", (long long)t->step,
                        why[decision]);
            exit_code = decision == 3 ? 0 : AES_EXIT_REQUEUE;
            if (decision == 3 && root) unlink(stopfile);
        }
    }
    if (root) {
        fclose(metrics);
        if (!stop) aes_log("done: %lld steps in %.1f s", (long long)t->step, aes_now() - t_start);
    }
    return exit_code;
}
