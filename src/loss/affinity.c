/*
 * The semantic affinity loss (SA) in row-block form.
 *
 * Both feature sets are L2-normalised as torch.nn.functional.normalize
 * does (v / max(||v||, 1e-12)); this rank's B rows of cosine similarities
 * against all Bg columns, c (encoder) and r (frozen reference), are built
 * with two GEMMs; the diagonal j == i is left out. kl compares the
 * row-wise softmaxes at temperature tau, mse the similarities themselves.
 * The gradient reaches v through both the row and the column of each
 * c_ij and back through the normalisation; the reference gets none.
 * Normalised by the global Bg, so the ranks' shares add up exactly.
 * docs/method.md has the formulas.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/loss.h"

#define SA_EPS 1e-12

/* Scratch layout (floats): [2 B] per-row double partials (row loss), then
 * [Bg F] normalised v, [Bg Fr] normalised reference, [Bg] norms of v,
 * [B Bg] c (overwritten in place by dL/dc), [B Bg] r. The buffer must be
 * aligned for double (a malloc result is). */
size_t aes_sa_scratch_floats(int B, int Bg, int F, int Fr)
{
    return 2 * (size_t)B + (size_t)Bg * F + (size_t)Bg * Fr + (size_t)Bg +
           2 * (size_t)B * (size_t)Bg;
}

static void normalise_rows(const float *in, float *out, float *norm, int n, int F)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *p = in + (size_t)i * F;
        float *q = out + (size_t)i * F;
        double ss = 0.0;
        for (int k = 0; k < F; k++) ss += (double)p[k] * p[k];
        const double nr = sqrt(ss);
        const double inv = 1.0 / (nr > SA_EPS ? nr : SA_EPS);
        for (int k = 0; k < F; k++) q[k] = (float)(p[k] * inv);
        if (norm) norm[i] = (float)nr;
    }
}

double aes_sa_loss(const aes_sa_args *args, float *scratch, float *dv)
{
    const int Bg = args->Bg, B = args->B, row0 = args->row0, F = args->F, Fr = args->Fr;
    AES_CHECK(Bg >= 1 && F >= 1 && Fr >= 1);
    AES_CHECK(B >= 0 && row0 >= 0 && row0 + B <= Bg);
    AES_CHECK(args->v && args->ref);
    AES_CHECK(args->kind == AES_AFFINITY_KL || args->kind == AES_AFFINITY_MSE);
    AES_CHECK(args->kind != AES_AFFINITY_KL || args->tau > 0.0f);
    if (dv) memset(dv, 0, sizeof(float) * (size_t)Bg * F);
    /* With one image there is no pair j != i: the loss is empty. */
    if (Bg < 2 || B == 0) return 0.0;
    AES_CHECK(scratch != NULL && (uintptr_t)scratch % _Alignof(double) == 0);

    double *rowloss = (double *)(void *)scratch;
    float *vh = scratch + 2 * (size_t)B;
    float *rh = vh + (size_t)Bg * F;
    float *vn = rh + (size_t)Bg * Fr;
    float *C = vn + Bg;
    float *R = C + (size_t)B * Bg;

    normalise_rows(args->v, vh, vn, Bg, F);
    normalise_rows(args->ref, rh, NULL, Bg, Fr);
    const float *vh_loc = vh + (size_t)row0 * F;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, Bg, F, 1.0f, vh_loc, F, vh, F, 0.0f, C,
                Bg);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, Bg, Fr, 1.0f, rh + (size_t)row0 * Fr,
                Fr, rh, Fr, 0.0f, R, Bg);

    const int kl = args->kind == AES_AFFINITY_KL;
    const double norm = kl ? 1.0 / Bg : 1.0 / ((double)Bg * (Bg - 1));
    const double itau = kl ? 1.0 / args->tau : 0.0;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; i++) {
        float *c = C + (size_t)i * Bg;
        const float *r = R + (size_t)i * Bg;
        const int gi = row0 + i;
        double loss = 0.0;
        if (kl) {
            double mr = -INFINITY, mc = -INFINITY;
            for (int j = 0; j < Bg; j++) {
                if (j == gi) continue;
                if (r[j] * itau > mr) mr = r[j] * itau;
                if (c[j] * itau > mc) mc = c[j] * itau;
            }
            double sp = 0.0, sq = 0.0;
            for (int j = 0; j < Bg; j++) {
                if (j == gi) continue;
                sp += exp(r[j] * itau - mr);
                sq += exp(c[j] * itau - mc);
            }
            const double lsp = mr + log(sp), lsq = mc + log(sq);
            for (int j = 0; j < Bg; j++) {
                if (j == gi) {
                    c[j] = 0.0f;
                    continue;
                }
                const double lp = r[j] * itau - lsp, lq = c[j] * itau - lsq;
                const double p = exp(lp), q = exp(lq);
                loss += p * (lp - lq);
                /* d/dc_ij of -sum_k P_ik log Q_ik = (Q_ij - P_ij) / tau */
                c[j] = (float)(norm * itau * (q - p));
            }
        } else {
            for (int j = 0; j < Bg; j++) {
                if (j == gi) {
                    c[j] = 0.0f;
                    continue;
                }
                const double d = (double)c[j] - r[j];
                loss += d * d;
                c[j] = (float)(norm * 2.0 * d);
            }
        }
        rowloss[i] = loss;
    }
    double total = 0.0;
    for (int i = 0; i < B; i++) total += rowloss[i];
    if (!dv) return total * norm;

    /* dL/dvh: rows get H vh, columns H^T vh_loc (C now holds H = dL/dc). */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, F, Bg, 1.0f, C, Bg, vh, F, 1.0f,
                dv + (size_t)row0 * F, F);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Bg, F, B, 1.0f, C, Bg, vh_loc, F, 1.0f, dv,
                F);
    /* Back through vh = v / max(||v||, eps): (g - vh <vh, g>) / ||v||, or
     * g / eps where the norm was clamped. Linear in g, so shares add up. */
#pragma omp parallel for schedule(static)
    for (int j = 0; j < Bg; j++) {
        float *g = dv + (size_t)j * F;
        const float *u = vh + (size_t)j * F;
        if (vn[j] > SA_EPS) {
            double dot = 0.0;
            for (int k = 0; k < F; k++) dot += (double)u[k] * g[k];
            const double inv = 1.0 / vn[j];
            for (int k = 0; k < F; k++) g[k] = (float)((g[k] - u[k] * dot) * inv);
        } else {
            for (int k = 0; k < F; k++) g[k] = (float)(g[k] / SA_EPS);
        }
    }
    return total * norm;
}
