/*
 * Downstream evaluation: metrics, the ridge probe, retrieval recall and
 * the feature extractor shared by aesnet eval and aesnet embed (see
 * include/aesnet/eval.h).
 */
#include "aesnet/eval.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/checkpoint.h"
#include "aesnet/config.h"
#include "aesnet/core.h"
#include "aesnet/image.h"
#include "aesnet/nn.h"
#include "aesnet/restore.h"
#include "aesnet/tokenizer.h"

/* LAPACK, from OpenBLAS: Cholesky solve of a symmetric positive definite system. */
extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
                   double *b, const int *ldb, int *info);

/* ---- metrics ------------------------------------------------------------ */

static const double *sort_key;
static int cmp_index(const void *a, const void *b)
{
    double x = sort_key[*(const int64_t *)a], y = sort_key[*(const int64_t *)b];
    if (x < y) return -1;
    if (x > y) return 1;
    /* stable on equal values, so the result does not depend on qsort */
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return (i > j) - (i < j);
}

void aes_average_ranks(const double *x, int64_t n, double *ranks)
{
    int64_t *idx = aes_malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1), "rank index");
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    sort_key = x;
    qsort(idx, (size_t)n, sizeof(int64_t), cmp_index);
    for (int64_t s = 0; s < n;) {
        int64_t e = s + 1;
        while (e < n && x[idx[e]] == x[idx[s]]) e++;
        double r = 0.5 * (double)(s + 1 + e); /* mean of ranks s+1 .. e */
        for (int64_t k = s; k < e; k++) ranks[idx[k]] = r;
        s = e;
    }
    free(idx);
}

double aes_plcc(const double *x, const double *y, int64_t n)
{
    if (n < 2) return NAN;
    double mx = 0, my = 0;
    for (int64_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = x[i] - mx, b = y[i] - my;
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    if (sxx <= 0 || syy <= 0) return NAN;
    double r = sxy / sqrt(sxx * syy);
    return r > 1 ? 1 : r < -1 ? -1 : r;
}

double aes_srcc(const double *x, const double *y, int64_t n)
{
    if (n < 2) return NAN;
    double *rx = aes_malloc(sizeof(double) * (size_t)n, "ranks");
    double *ry = aes_malloc(sizeof(double) * (size_t)n, "ranks");
    aes_average_ranks(x, n, rx);
    aes_average_ranks(y, n, ry);
    double r = aes_plcc(rx, ry, n);
    free(rx);
    free(ry);
    return r;
}

void aes_regression_metrics(const double *pred, const double *truth, int64_t n, double mid,
                            aes_reg_metrics *out)
{
    out->srcc = aes_srcc(pred, truth, n);
    out->plcc = aes_plcc(pred, truth, n);
    double se = 0, ae = 0;
    int64_t hit = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = pred[i] - truth[i];
        se += d * d;
        ae += fabs(d);
        hit += (pred[i] > mid) == (truth[i] > mid);
    }
    out->acc = n ? (double)hit / (double)n : NAN;
    out->rmse = n ? sqrt(se / (double)n) : NAN;
    out->mae = n ? ae / (double)n : NAN;
}

/* ---- ridge regression ----------------------------------------------------- */

void aes_ridge_prepare(aes_ridge *r, const double *X, const double *y, int64_t n, int F)
{
    memset(r, 0, sizeof *r);
    r->F = F;
    r->n = n;
    r->mean = aes_calloc((size_t)F, sizeof(double), "ridge mean");
    r->scale = aes_calloc((size_t)F, sizeof(double), "ridge scale");
    r->G = aes_calloc((size_t)F * F, sizeof(double), "ridge gram");
    r->c = aes_calloc((size_t)F, sizeof(double), "ridge rhs");
    for (int64_t i = 0; i < n; i++) {
        r->ybar += y[i];
        for (int f = 0; f < F; f++) r->mean[f] += X[(size_t)i * F + f];
    }
    if (n > 0) {
        r->ybar /= (double)n;
        for (int f = 0; f < F; f++) r->mean[f] /= (double)n;
    }
    for (int64_t i = 0; i < n; i++)
        for (int f = 0; f < F; f++) {
            double d = X[(size_t)i * F + f] - r->mean[f];
            r->scale[f] += d * d;
        }
    for (int f = 0; f < F; f++) {
        double s = n > 0 ? sqrt(r->scale[f] / (double)n) : 0;
        r->scale[f] = s > 1e-12 ? s : 1.0;
    }
    double *Z = aes_malloc(sizeof(double) * (size_t)(n > 0 ? n : 1) * F, "ridge Z");
    for (int64_t i = 0; i < n; i++) {
        double yc = y[i] - r->ybar;
        for (int f = 0; f < F; f++) {
            double z = (X[(size_t)i * F + f] - r->mean[f]) / r->scale[f];
            Z[(size_t)i * F + f] = z;
            r->c[f] += z * yc;
        }
    }
    if (n > 0)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, F, (int)n, 1.0, Z, F, 0.0, r->G, F);
    for (int i = 0; i < F; i++)
        for (int j = 0; j < i; j++) r->G[(size_t)i * F + j] = r->G[(size_t)j * F + i];
    free(Z);
}

int aes_ridge_solve(const aes_ridge *r, double lam, double *w, double *b)
{
    const int F = r->F, one = 1;
    int info = 0;
    double *a = aes_malloc(sizeof(double) * (size_t)F * F, "ridge system");
    memcpy(a, r->G, sizeof(double) * (size_t)F * F);
    for (int f = 0; f < F; f++) a[(size_t)f * F + f] += lam;
    memcpy(w, r->c, sizeof(double) * (size_t)F);
    /* G is symmetric and full, so row- and column-major agree. */
    dposv_("U", &F, &one, a, &F, w, &F, &info);
    free(a);
    if (info != 0) return -1;
    double bb = r->ybar;
    for (int f = 0; f < F; f++) {
        w[f] /= r->scale[f];
        bb -= w[f] * r->mean[f];
    }
    *b = bb;
    for (int f = 0; f < F; f++)
        if (!isfinite(w[f])) return -1;
    return isfinite(bb) ? 0 : -1;
}

void aes_ridge_free(aes_ridge *r)
{
    free(r->mean);
    free(r->scale);
    free(r->G);
    free(r->c);
    memset(r, 0, sizeof *r);
}

void aes_ridge_predict(const double *X, int64_t n, int F, const double *w, double b, double *pred)
{
    for (int64_t i = 0; i < n; i++) {
        double s = b;
        for (int f = 0; f < F; f++) s += X[(size_t)i * F + f] * w[f];
        pred[i] = s;
    }
}

void aes_ridge_grid(double *grid)
{
    for (int k = 0; k < AES_RIDGE_GRID; k++) grid[k] = pow(10.0, -4.0 + 0.5 * k);
}

int aes_ridge_probe(const double *Xtr, const double *ytr, int64_t ntr, const double *Xva,
                    const double *yva, int64_t nva, int F, const double *grid, int ngrid, double *w,
                    double *b, double *penalty, double *val_rmse)
{
    aes_ridge r;
    aes_ridge_prepare(&r, Xtr, ytr, ntr, F);
    double *wk = aes_malloc(sizeof(double) * (size_t)F, "ridge w");
    double *pred = aes_malloc(sizeof(double) * (size_t)(nva > 0 ? nva : 1), "ridge pred");
    double best = INFINITY;
    int found = -1;
    for (int k = 0; k < ngrid; k++) {
        double bk;
        if (aes_ridge_solve(&r, grid[k], wk, &bk) != 0) continue;
        aes_ridge_predict(Xva, nva, F, wk, bk, pred);
        double se = 0;
        for (int64_t i = 0; i < nva; i++) se += (pred[i] - yva[i]) * (pred[i] - yva[i]);
        double rmse = nva > 0 ? sqrt(se / (double)nva) : 0;
        if (rmse < best) {
            best = rmse;
            found = k;
            memcpy(w, wk, sizeof(double) * (size_t)F);
            *b = bk;
        }
    }
    if (found >= 0) {
        *penalty = grid[found];
        *val_rmse = best;
    }
    free(wk);
    free(pred);
    aes_ridge_free(&r);
    return found >= 0 ? 0 : -1;
}

/* ---- retrieval --------------------------------------------------------- */

double aes_recall_at_k(const float *q, const float *k, int64_t n, int D, int K)
{
    if (n <= 0) return NAN;
    double *kn = aes_malloc(sizeof(double) * (size_t)n, "key norms");
    for (int64_t j = 0; j < n; j++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)k[(size_t)j * D + d] * k[(size_t)j * D + d];
        kn[j] = s > 0 ? sqrt(s) : 1;
    }
    int64_t hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : hits)
    for (int64_t i = 0; i < n; i++) {
        const float *qi = q + (size_t)i * D;
        /* The query's own norm scales every similarity alike: rank by
         * q.k / |k| alone. */
        double pos = 0;
        for (int d = 0; d < D; d++) pos += (double)qi[d] * k[(size_t)i * D + d];
        pos /= kn[i];
        int64_t above = 0;
        for (int64_t j = 0; j < n && above < K; j++) {
            if (j == i) continue;
            double s = 0;
            for (int d = 0; d < D; d++) s += (double)qi[d] * k[(size_t)j * D + d];
            if (s / kn[j] >= pos) above++;
        }
        hits += above < K;
    }
    free(kn);
    return (double)hits / (double)n;
}

/* ---- models and features ------------------------------------------------- */

void aes_eval_open_model(aes_model *m, const char *ckpt, const char *config, const aes_dataset *ds,
                         int maxB, int64_t *step_out)
{
    int64_t step = -1;
    if (!strcmp(ckpt, "random")) {
        if (!config)
            aes_user_error("--ckpt random needs --config CFG (the architecture to initialise)");
        aes_config cfg;
        aes_config_defaults(&cfg);
        aes_config_load(&cfg, config);
        int R = !strcmp(cfg.image, "vit") && cfg.image_size > 0 ? cfg.image_size : ds->S;
        aes_model_from_config(m, &cfg, ds, R, maxB);
    } else {
        aes_ckpt_meta meta;
        aes_config cfg;
        aes_ckpt_read_config(ckpt, &meta, &cfg);
        if (ds->A > 0 && ds->has_tokenizer && meta.tokenizer_hash != 0 &&
            aes_tokenizer_hash(&ds->tok) != meta.tokenizer_hash)
            aes_user_error("%s: made with another tokenizer than the training data of %s; rebuild "
                           "it with aesnet prep build --tokenizer TRAIN.h5",
                           ds->path, ckpt);
        int vit = !strcmp(cfg.image, "vit");
        aes_model_from_checkpoint(m, ckpt, vit ? 0 : ds->S, maxB, NULL);
        step = meta.step;
        if (ds->A > 0) {
            /* By parameter name: the checkpoint's head order need not be
             * the data set's attribute order. */
            for (int a = 0; a < ds->A; a++) {
                char n[AES_MAX_NAME];
                snprintf(n, sizeof n, "head/%s/image_proj", ds->attr_names[a]);
                if (aes_params_find(&m->P, n) < 0)
                    aes_user_error("%s: attribute '%s' has no head in the checkpoint %s", ds->path,
                                   ds->attr_names[a], ckpt);
            }
            if (ds->A != m->cfg.A)
                aes_user_error("%s: its %d attributes differ from the %d of the checkpoint %s",
                               ds->path, ds->A, m->cfg.A, ckpt);
            if (ds->L != m->cfg.text.context)
                aes_user_error("%s: context length %d differs from the checkpoint %s's %d", ds->path,
                               ds->L, ckpt, m->cfg.text.context);
        }
    }
    m->image.train = 0;
    if (step_out) *step_out = step;
}

void aes_embedder_init(aes_embedder *e, aes_model *m, aes_dataset *ds, int maxB)
{
    memset(e, 0, sizeof *e);
    AES_CHECK(maxB >= 1 && maxB <= m->maxB);
    e->m = m;
    e->ds = ds;
    e->maxB = maxB;
    e->R = m->cfg.image == AES_IMAGE_VIT ? m->cfg.vit.image_size : m->cfg.resnet.image_size;
    e->text = ds->A > 0 && ds->A == m->cfg.A;
    for (int a = 0; a < m->cfg.A; a++) {
        e->img_proj[a] = m->p_img_proj[a];
        e->txt_proj[a] = m->p_txt_proj[a];
    }
    for (int a = 0; e->text && a < ds->A; a++) {
        char n[AES_MAX_NAME];
        snprintf(n, sizeof n, "head/%s/image_proj", ds->attr_names[a]);
        e->img_proj[a] = aes_params_find(&m->P, n);
        snprintf(n, sizeof n, "head/%s/text_proj", ds->attr_names[a]);
        e->txt_proj[a] = aes_params_find(&m->P, n);
        AES_CHECK(e->img_proj[a] >= 0 && e->txt_proj[a] >= 0);
    }
    e->A = e->text ? ds->A : 0;
    e->D = m->cfg.D;
    e->Fv = m->Fv;
    const int S = ds->S, R = e->R, A = e->A, D = e->D;
    e->rgb = aes_malloc((size_t)S * S * 3, "rgb");
    e->hwc = aes_malloc(sizeof(float) * (size_t)S * S * 3, "hwc");
    e->rs = aes_malloc(sizeof(float) * (size_t)R * R * 3, "resized");
    e->images = aes_malloc(sizeof(float) * (size_t)maxB * 3 * R * R, "images");
    e->v = aes_malloc(sizeof(float) * (size_t)maxB * e->Fv, "features");
    if (A > 0) {
        e->tok_row = aes_malloc(sizeof(int32_t) * (size_t)A * ds->K * ds->L, "tokens");
        e->tok = aes_malloc(sizeof(int32_t) * (size_t)A * maxB * ds->L, "tokens");
        e->yp = aes_malloc(sizeof(float) * (size_t)A * maxB * D, "text proj");
        e->y = aes_malloc(sizeof(float) * (size_t)A * maxB * D, "text emb");
        e->mask = aes_malloc((size_t)A * maxB, "mask");
    }
    e->x = aes_malloc(sizeof(float) * (size_t)(A > 0 ? A : m->cfg.A) * maxB * D, "image emb");
    e->norm = aes_malloc(sizeof(float) * (size_t)(A > 0 ? A : m->cfg.A) * maxB, "norms");
}

void aes_embedder_load(aes_embedder *e, int64_t i, int flip, float *dst)
{
    const int S = e->ds->S, R = e->R;
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    aes_dataset_read_image(e->ds, i, e->rgb);
    for (size_t p = 0; p < (size_t)S * S * 3; p++) e->hwc[p] = (float)e->rgb[p] * (1.0f / 255.0f);
    const float *src = e->hwc;
    if (R != S) {
        aes_image_resample_f32(e->hwc, S, S, 3, 0, 0, S, S, e->rs, R, R);
        src = e->rs;
    }
    for (int c = 0; c < 3; c++) {
        const float is = 1.0f / std[c];
        float *d = dst + (size_t)c * R * R;
        for (int y = 0; y < R; y++)
            for (int x = 0; x < R; x++) {
                const int sx = flip ? R - 1 - x : x;
                d[(size_t)y * R + x] = (src[((size_t)y * R + sx) * 3 + c] - mean[c]) * is;
            }
    }
}

void aes_embedder_run(aes_embedder *e, int64_t i0, int B)
{
    AES_CHECK(B >= 1 && B <= e->maxB);
    aes_model *m = e->m;
    aes_dataset *ds = e->ds;
    const int R = e->R, Fv = e->Fv, D = e->D, A = e->A, MA = m->cfg.A;
    for (int b = 0; b < B; b++) aes_embedder_load(e, i0 + b, 0, e->images + (size_t)b * 3 * R * R);
    memcpy(e->v, aes_encoder_forward(&m->image, e->images, B), sizeof(float) * (size_t)B * Fv);
    /* Image embeddings without fusion: x_a = n(P_a v). */
    const int XA = A > 0 ? A : MA;
    for (int a = 0; a < XA; a++) {
        float *x = e->x + (size_t)a * B * D;
        linear_forward(x, e->v, aes_params_data(&m->P, e->img_proj[a]), NULL, B, Fv, D);
        l2norm_forward(x, e->norm, x, B, D);
    }
    if (A == 0) return;
    /* Description 0 of each present (attribute, row), attribute-major. */
    const int L = ds->L, K = ds->K;
    int n = 0, start[AES_MAX_ATTR + 1];
    for (int a = 0; a < A; a++) start[a] = 0;
    memset(e->mask, 0, (size_t)A * B);
    int32_t *tokA = aes_malloc(sizeof(int32_t) * (size_t)B * A * L, "token rows");
    for (int b = 0; b < B; b++) {
        int64_t i = i0 + b;
        int any = 0;
        for (int a = 0; a < A; a++) any |= ds->count[(size_t)i * A + a] > 0;
        if (!any) continue;
        aes_dataset_read_tokens(ds, i, e->tok_row);
        for (int a = 0; a < A; a++)
            if (ds->count[(size_t)i * A + a] > 0) {
                e->mask[(size_t)a * B + b] = 1;
                memcpy(tokA + ((size_t)b * A + a) * L, e->tok_row + (size_t)a * K * L,
                       sizeof(int32_t) * L);
            }
    }
    for (int a = 0; a < A; a++) {
        start[a] = n;
        for (int b = 0; b < B; b++)
            if (e->mask[(size_t)a * B + b])
                memcpy(e->tok + (size_t)n++ * L, tokA + ((size_t)b * A + a) * L, sizeof(int32_t) * L);
    }
    start[A] = n;
    free(tokA);
    for (size_t p = 0; p < (size_t)A * B * D; p++) e->y[p] = NAN;
    if (n == 0) return;
    m->text.tokens = e->tok;
    const float *u = aes_encoder_forward(&m->text, NULL, n);
    const int Ft = m->Ft;
    for (int a = 0; a < A; a++) {
        int na = start[a + 1] - start[a];
        if (na == 0) continue;
        float *yp = e->yp + (size_t)start[a] * D;
        linear_forward(yp, u + (size_t)start[a] * Ft, aes_params_data(&m->P, e->txt_proj[a]),
                       NULL, na, Ft, D);
        l2norm_forward(yp, e->norm, yp, na, D);
        int k = 0;
        for (int b = 0; b < B; b++)
            if (e->mask[(size_t)a * B + b])
                memcpy(e->y + ((size_t)a * B + b) * D, yp + (size_t)k++ * D, sizeof(float) * D);
    }
}

void aes_embedder_free(aes_embedder *e)
{
    free(e->rgb);
    free(e->hwc);
    free(e->rs);
    free(e->images);
    free(e->v);
    free(e->tok_row);
    free(e->tok);
    free(e->yp);
    free(e->y);
    free(e->mask);
    free(e->x);
    free(e->norm);
    memset(e, 0, sizeof *e);
}
