/*
 * The EMD fine-tune of aesnet eval (NIMA's protocol, Talebi and Milanfar,
 * IEEE TIP 2018): the image encoder and a new 10-way softmax head are
 * trained together on the train split's vote distributions with the EMD
 * loss (r = 2), the epoch with the lowest val EMD is kept, and test gets
 * EMD r=1 and r=2 and the metrics of the predicted mean score.
 *
 *   CDF_p(k) = sum_{j<=k} p_j,   k = 1..10
 *   EMD_r(p, q) = ( (1/10) sum_k |CDF_p(k) - CDF_q(k)|^r )^(1/r)
 *
 * with q the votes divided by their sum. The predicted score is the mean
 * of the predicted distribution, sum_k k p_k.
 *
 * One process; the encoder runs on all OpenMP threads. Batch norm uses the
 * batch's statistics while training (updating its running statistics) and
 * the running ones for val and test, as in pre-training with per-rank
 * statistics.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/eval.h"
#include "aesnet/nn.h"
#include "aesnet/optim.h"

/* ---- EMD ------------------------------------------------------------------ */

/* p = softmax(z) over the 10 bins (in double; one row). */
static void softmax10(const float *z, float *p)
{
    float mx = z[0];
    for (int k = 1; k < AES_NBINS; k++) mx = fmaxf(mx, z[k]);
    double e[AES_NBINS], sum = 0;
    for (int k = 0; k < AES_NBINS; k++) sum += e[k] = exp((double)z[k] - mx);
    for (int k = 0; k < AES_NBINS; k++) p[k] = (float)(e[k] / sum);
}

double aes_emd(const float *p, const float *q, int r)
{
    AES_CHECK(r == 1 || r == 2);
    double cp = 0, cq = 0, acc = 0;
    for (int k = 0; k < AES_NBINS; k++) {
        cp += p[k];
        cq += q[k];
        const double d = fabs(cp - cq);
        acc += r == 1 ? d : d * d;
    }
    acc /= AES_NBINS;
    return r == 1 ? acc : sqrt(acc);
}

/* d EMD_2 / d p_j for one row: with d_k = CDF_p(k) - CDF_q(k) and
 * E = sqrt(mean_k d_k^2), dE/dd_k = d_k / (10 E) and p_j enters every
 * d_k with k >= j. E = 0 (a perfect prediction) takes the subgradient 0. */
double aes_emd_loss(const float *logits, const float *target, int B, float *dlogits)
{
    double total = 0;
    for (int i = 0; i < B; i++) {
        const float *z = logits + (size_t)i * AES_NBINS, *q = target + (size_t)i * AES_NBINS;
        float p[AES_NBINS];
        softmax10(z, p);
        const double e = aes_emd(p, q, 2);
        total += e;
        if (!dlogits) continue;
        double d[AES_NBINS], cp = 0, cq = 0;
        for (int k = 0; k < AES_NBINS; k++) cp += p[k], cq += q[k], d[k] = cp - cq;
        double dp[AES_NBINS], tail = 0, dot = 0;
        for (int j = AES_NBINS - 1; j >= 0; j--) {
            tail += e > 0 ? d[j] / (AES_NBINS * e) : 0.0;
            dp[j] = tail / B;
            dot += dp[j] * p[j];
        }
        /* softmax: dz_j = p_j (dp_j - sum_k dp_k p_k) */
        for (int j = 0; j < AES_NBINS; j++)
            dlogits[(size_t)i * AES_NBINS + j] = (float)(p[j] * (dp[j] - dot));
    }
    return total / B;
}

/* ---- fine-tune ----------------------------------------------------------------- */

typedef struct {
    aes_embedder *e;
    const aes_finetune_cfg *c;
    int B, Fv;
    float *W, *b, *dW, *db;       /* head [10, Fv], [10] and gradients */
    float *logits, *dlogits, *dv; /* [B, 10], [B, 10], [B, Fv] */
    float *target;                /* [B, 10] */
} ft_state;

/* q [10] = the votes of row i normalised; 0 when it has none. */
static int target_of(const aes_dataset *ds, int64_t i, float *q)
{
    const float *v = ds->votes + (size_t)i * AES_NBINS;
    double s = 0;
    for (int k = 0; k < AES_NBINS; k++) s += isfinite(v[k]) && v[k] >= 0 ? v[k] : NAN;
    if (!(s > 0)) return 0;
    for (int k = 0; k < AES_NBINS; k++) q[k] = (float)(v[k] / s);
    return 1;
}

/* Predicted distributions [n, 10] of rows with the running statistics;
 * returns the mean EMD_r against their votes in emd[0..1] (r = 1, 2). */
static void predict(ft_state *s, const int64_t *rows, int64_t n, float *dist, double emd[2])
{
    aes_embedder *e = s->e;
    aes_model *m = e->m;
    m->image.train = 0;
    const int R = e->R;
    double acc[2] = {0, 0};
    for (int64_t i0 = 0; i0 < n; i0 += s->B) {
        const int B = (int)(n - i0 < s->B ? n - i0 : s->B);
        for (int b = 0; b < B; b++)
            aes_embedder_load(e, rows[i0 + b], 0, e->images + (size_t)b * 3 * R * R);
        const float *v = aes_encoder_forward(&m->image, e->images, B);
        linear_forward(s->logits, v, s->W, s->b, B, s->Fv, AES_NBINS);
        for (int b = 0; b < B; b++) {
            float *p = dist + (size_t)(i0 + b) * AES_NBINS;
            softmax10(s->logits + (size_t)b * AES_NBINS, p);
            float q[AES_NBINS];
            AES_CHECK(target_of(e->ds, rows[i0 + b], q));
            acc[0] += aes_emd(p, q, 1);
            acc[1] += aes_emd(p, q, 2);
        }
    }
    emd[0] = n ? acc[0] / n : NAN;
    emd[1] = n ? acc[1] / n : NAN;
}

/* The tensors the fine-tune changes: the image encoder's, trainable and
 * buffers (batch-norm running statistics). */
static int is_image(const aes_tensor *t) { return !strncmp(t->name, "image/", 6); }

static void copy_image(aes_params *P, float *dst, const float *src, int to_model)
{
    size_t o = 0;
    for (int k = 0; k < P->n; k++) {
        const aes_tensor *t = &P->t[k];
        if (!is_image(t)) continue;
        float *p = P->data + t->offset;
        if (to_model) memcpy(p, src + o, sizeof(float) * t->numel);
        else memcpy(dst + o, p, sizeof(float) * t->numel);
        o += t->numel;
    }
}

void aes_finetune_emd(aes_embedder *e, const aes_finetune_cfg *c, int64_t *const rows[3],
                      const int64_t n[3], float *test_dist, aes_finetune_result *out)
{
    aes_model *m = e->m;
    aes_dataset *ds = e->ds;
    AES_CHECK(ds->has_votes && c->epochs >= 1 && c->batch >= 2 && c->batch <= e->maxB);
    memset(out, 0, sizeof *out);
    const double t0 = aes_now();
    const int Fv = e->Fv, R = e->R;
    ft_state s = {.e = e, .c = c, .B = c->batch, .Fv = Fv};
    const int B = s.B;
    s.W = aes_malloc(sizeof(float) * AES_NBINS * Fv, "head");
    s.b = aes_malloc(sizeof(float) * AES_NBINS, "head bias");
    s.dW = aes_malloc(sizeof(float) * AES_NBINS * Fv, "head grad");
    s.db = aes_malloc(sizeof(float) * AES_NBINS, "head bias grad");
    s.logits = aes_malloc(sizeof(float) * (size_t)B * AES_NBINS, "logits");
    s.dlogits = aes_malloc(sizeof(float) * (size_t)B * AES_NBINS, "logit grads");
    s.dv = aes_malloc(sizeof(float) * (size_t)B * Fv, "feature grads");
    s.target = aes_malloc(sizeof(float) * (size_t)B * AES_NBINS, "targets");
    /* The head as torch.nn.Linear initialises: U(-1/sqrt(Fv), 1/sqrt(Fv)). */
    {
        aes_rng r;
        aes_rng_init(&r, aes_key(c->seed, 0, 0, AES_RNG_INIT));
        const float a = 1.0f / sqrtf((float)Fv);
        for (int k = 0; k < AES_NBINS * Fv; k++) s.W[k] = (float)(a * (2 * aes_rng_uniform(&r) - 1));
        for (int k = 0; k < AES_NBINS; k++) s.b[k] = (float)(a * (2 * aes_rng_uniform(&r) - 1));
    }
    for (int k = 0; k < 3; k++) out->n[k] = n[k];

    /* AdamW state: moments for the whole trainable table (offsets as the
     * parameters'), only the image encoder's are used; the head's own. */
    aes_params *P = &m->P;
    float *m1 = aes_calloc(P->n_trainable, sizeof(float), "adam m");
    float *m2 = aes_calloc(P->n_trainable, sizeof(float), "adam v");
    float *hm1 = aes_calloc((size_t)AES_NBINS * (Fv + 1), sizeof(float), "head adam m");
    float *hm2 = aes_calloc((size_t)AES_NBINS * (Fv + 1), sizeof(float), "head adam v");
    size_t nimg = 0;
    for (int k = 0; k < P->n; k++)
        if (is_image(&P->t[k])) nimg += P->t[k].numel;
    float *best = aes_malloc(sizeof(float) * (nimg ? nimg : 1), "best encoder");
    float *bestW = aes_malloc(sizeof(float) * AES_NBINS * (Fv + 1), "best head");
    float *vdist = aes_malloc(sizeof(float) * (size_t)(n[1] ? n[1] : 1) * AES_NBINS, "val dist");
    int64_t *order = aes_malloc(sizeof(int64_t) * (size_t)(n[0] ? n[0] : 1), "order");
    const aes_adamw opt = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                           .weight_decay = c->weight_decay};

    /* Whole batches only (batch norm's statistics need more than one
     * image); a train split smaller than a batch is one batch. */
    const int Bt = n[0] < B ? (int)n[0] : B;
    const int64_t per_epoch = n[0] / Bt, total = per_epoch * c->epochs;
    const int64_t warmup = per_epoch < total ? per_epoch : 0; /* one epoch */
    out->val_emd2 = INFINITY;
    int64_t step = 0;
    for (int ep = 0; ep < c->epochs; ep++) {
        const double te = aes_now();
        memcpy(order, rows[0], sizeof(int64_t) * (size_t)n[0]);
        aes_shuffle_i64(order, n[0], aes_key(c->seed, (uint64_t)ep, 0, AES_RNG_PERMUTE));
        double train_emd = 0;
        for (int64_t it = 0; it < per_epoch; it++, step++) {
            const int64_t *br = order + it * Bt;
            for (int b = 0; b < Bt; b++) {
                aes_rng fr;
                aes_rng_init(&fr, aes_key(c->seed, (uint64_t)ep, (uint64_t)br[b], AES_RNG_FLIP));
                aes_embedder_load(e, br[b], aes_rng_u64(&fr) & 1, e->images + (size_t)b * 3 * R * R);
                AES_CHECK(target_of(ds, br[b], s.target + (size_t)b * AES_NBINS));
            }
            m->image.train = 1;
            const float *v = aes_encoder_forward(&m->image, e->images, Bt);
            linear_forward(s.logits, v, s.W, s.b, Bt, Fv, AES_NBINS);
            const double loss = aes_emd_loss(s.logits, s.target, Bt, s.dlogits);
            if (!isfinite(loss))
                aes_user_error("eval --finetune: the EMD loss is %g at epoch %d, step %lld; lower "
                               "--ft-lr (now %g)",
                               loss, ep + 1, (long long)step, c->lr);
            train_emd += loss;
            for (int k = 0; k < P->n; k++)
                if (is_image(&P->t[k]) && P->t[k].trainable)
                    memset(P->grad + P->t[k].offset, 0, sizeof(float) * P->t[k].numel);
            memset(s.dW, 0, sizeof(float) * AES_NBINS * Fv);
            memset(s.db, 0, sizeof(float) * AES_NBINS);
            memset(s.dv, 0, sizeof(float) * (size_t)Bt * Fv);
            linear_backward(s.dv, s.dW, s.db, s.dlogits, v, s.W, Bt, Fv, AES_NBINS);
            aes_encoder_backward(&m->image, s.dv, Bt);
            const float lr = aes_lr_schedule(step, c->lr, warmup, total, 0.0f);
            const float hlr = aes_lr_schedule(step, c->head_lr, warmup, total, 0.0f);
            for (int k = 0; k < P->n; k++) {
                const aes_tensor *t = &P->t[k];
                if (is_image(t) && t->trainable)
                    aes_adamw_step(P->data + t->offset, P->grad + t->offset, m1 + t->offset,
                                   m2 + t->offset, t->numel, lr, &opt, t->decay, step + 1);
            }
            aes_adamw_step(s.W, s.dW, hm1, hm2, (size_t)AES_NBINS * Fv, hlr, &opt, 1, step + 1);
            aes_adamw_step(s.b, s.db, hm1 + AES_NBINS * Fv, hm2 + AES_NBINS * Fv, AES_NBINS, hlr,
                           &opt, 0, step + 1);
        }
        double vemd[2];
        predict(&s, rows[1], n[1], vdist, vemd);
        const int better = vemd[1] < out->val_emd2;
        if (better) {
            out->val_emd2 = vemd[1];
            out->best_epoch = ep + 1;
            copy_image(P, best, NULL, 0);
            memcpy(bestW, s.W, sizeof(float) * AES_NBINS * Fv);
            memcpy(bestW + AES_NBINS * Fv, s.b, sizeof(float) * AES_NBINS);
        }
        if (!c->quiet) /* progress, on stderr as the feature pass's */
            fprintf(stderr, "fine-tune epoch %d/%d: train EMD %.4f, val EMD %.4f%s (%.1f s)\n",
                    ep + 1, c->epochs, per_epoch ? train_emd / per_epoch : NAN, vemd[1],
                    better ? " best" : "", aes_now() - te);
    }
    copy_image(P, NULL, best, 1);
    memcpy(s.W, bestW, sizeof(float) * AES_NBINS * Fv);
    memcpy(s.b, bestW + AES_NBINS * Fv, sizeof(float) * AES_NBINS);

    double temd[2];
    predict(&s, rows[2], n[2], test_dist, temd);
    out->emd1 = temd[0];
    out->emd2 = temd[1];
    /* The baseline: the train rows' mean distribution for every test image. */
    float qmean[AES_NBINS] = {0}, q[AES_NBINS];
    for (int64_t k = 0; k < n[0]; k++) {
        AES_CHECK(target_of(ds, rows[0][k], q));
        for (int j = 0; j < AES_NBINS; j++) qmean[j] += q[j] / (float)n[0];
    }
    for (int64_t k = 0; k < n[2]; k++) {
        AES_CHECK(target_of(ds, rows[2][k], q));
        out->base_emd1 += aes_emd(qmean, q, 1) / (double)n[2];
        out->base_emd2 += aes_emd(qmean, q, 2) / (double)n[2];
    }
    double *pred = aes_malloc(sizeof(double) * (size_t)(n[2] ? n[2] : 1), "predicted scores");
    double *truth = aes_malloc(sizeof(double) * (size_t)(n[2] ? n[2] : 1), "scores");
    for (int64_t k = 0; k < n[2]; k++) {
        pred[k] = 0;
        for (int j = 0; j < AES_NBINS; j++) pred[k] += (j + 1) * (double)test_dist[k * AES_NBINS + j];
        truth[k] = ds->scores[rows[2][k]];
    }
    aes_regression_metrics(pred, truth, n[2], 0.5 * (ds->score_min + ds->score_max), &out->rm);
    out->seconds = aes_now() - t0;
    m->image.train = 0;

    free(pred), free(truth), free(order), free(vdist), free(best), free(bestW);
    free(m1), free(m2), free(hm1), free(hm2);
    free(s.W), free(s.b), free(s.dW), free(s.db), free(s.logits), free(s.dlogits), free(s.dv),
        free(s.target);
}
