/*
 * The multi-attribute contrastive loss (MAC) in row-block form.
 *
 * For each attribute a (one at a time, so the scratch stays O(B Bg)) the
 * two directions of the symmetric InfoNCE are computed for this rank's B
 * rows against all Bg gathered columns:
 *   image -> text  l_ij  = s_a <x_ai, y_aj>   (rows x_loc, columns y)
 *   text -> image  l'_ij = s_a <y_ai, x_aj>   (rows y_loc, columns x)
 * Each row's softmax runs over the valid columns; its loss is the
 * cross-entropy against its target minus the target's entropy, i.e.
 * KL(t_i || p_i): for one-hot targets that is the plain cross-entropy, for
 * spread targets (duplicates as positives) it takes away the constant
 * log |G_i| so a perfect model scores 0, with the same gradient. The loss is
 * normalised by the GLOBAL counts (n_a, sum of weights), which every rank
 * computes from the gathered mask, so the ranks' shares add up to the
 * one-rank loss and gradient. docs/method.md has the formulas.
 *
 * Determinism: per-row partial sums land in a per-row buffer and are added
 * in row order afterwards; no atomics, static OpenMP schedules.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/loss.h"

/* Scratch layout (floats): [4 B] two per-row double partials (row loss,
 * sum_j (p_ij - t_ij) l_ij), then [B Bg] logits, overwritten in place by
 * their gradient. The doubles come first, so the buffer must be aligned
 * for double (a malloc result is). */
size_t aes_mac_scratch_floats(int B, int Bg)
{
    return 4 * (size_t)B + (size_t)B * (size_t)Bg;
}

/* Softmax, KL against the target, and dL/dl for the B rows of one
 * direction of one attribute. L holds the logits on entry and
 * coef * (p_ij - t_ij) on return (0 for masked rows and columns) when
 * write_grad is set. rowloss[i] gets KL(t_i || p_i), rowgl[i] gets
 * sum_j (p_ij - t_ij) l_ij (for d/dlogscale). */
static void mac_rows(float *L, int B, int Bg, int row0, const uint8_t *mask, const uint64_t *hash,
                     int dup, double coef, int write_grad, double *rowloss, double *rowgl)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B; i++) {
        float *l = L + (size_t)i * Bg;
        const int gi = row0 + i;
        if (!mask[gi]) {
            if (write_grad) memset(l, 0, sizeof(float) * (size_t)Bg);
            rowloss[i] = 0.0;
            rowgl[i] = 0.0;
            continue;
        }
        const uint64_t h = hash[gi];
        float m = -INFINITY;
        for (int j = 0; j < Bg; j++)
            if (mask[j] && l[j] > m) m = l[j];
        /* One pass: sum of exp, sum of exp * l (for E_p[l]), and the
         * target's mean logit; l[j] is replaced by exp(l_j - m). */
        double se = 0.0, sel = 0.0, tl = 0.0;
        int cnt = 0;
        for (int j = 0; j < Bg; j++) {
            if (!mask[j]) continue;
            const float lj = l[j];
            const float e = expf(lj - m);
            se += e;
            sel += (double)e * lj;
            if (dup ? hash[j] == h : j == gi) {
                cnt++;
                tl += lj;
            }
            l[j] = e;
        }
        /* cnt >= 1: the row's own column is valid and matches itself. */
        const double lse = m + log(se);
        const double tw = 1.0 / cnt;
        rowloss[i] = lse - tl * tw - log((double)cnt);
        rowgl[i] = sel / se - tl * tw;
        if (!write_grad) continue;
        const double inv_se = 1.0 / se;
        for (int j = 0; j < Bg; j++) {
            if (!mask[j]) {
                l[j] = 0.0f;
                continue;
            }
            const double t = (dup ? hash[j] == h : j == gi) ? tw : 0.0;
            l[j] = (float)(coef * (l[j] * inv_se - t));
        }
    }
}

double aes_mac_loss(const aes_mac_args *args, float *scratch, double *loss_a, float *dx, float *dy,
                    float *dlogscale)
{
    const int A = args->A, D = args->D, Bg = args->Bg, B = args->B, row0 = args->row0;
    AES_CHECK(A >= 1 && D >= 1 && Bg >= 1);
    AES_CHECK(B >= 0 && row0 >= 0 && row0 + B <= Bg);
    AES_CHECK(args->x && args->y && args->mask && args->hash && args->logscale && args->weights);
    AES_CHECK(B == 0 || scratch != NULL);
    AES_CHECK((uintptr_t)scratch % _Alignof(double) == 0);
    AES_CHECK((dx == NULL) == (dy == NULL));
    const int grad = dx != NULL;
    const size_t slab = (size_t)Bg * D;
    if (grad) {
        memset(dx, 0, sizeof(float) * slab * A);
        memset(dy, 0, sizeof(float) * slab * A);
    }
    if (dlogscale) memset(dlogscale, 0, sizeof(float) * A);

    /* The global normaliser: weights of the attributes with a valid row. */
    double wsum = 0.0;
    for (int a = 0; a < A; a++) {
        const uint8_t *ma = args->mask + (size_t)a * Bg;
        int n = 0;
        for (int j = 0; j < Bg; j++) n += ma[j] != 0;
        if (n > 0) wsum += args->weights[a];
    }

    double *rowloss = (double *)(void *)scratch;
    double *rowgl = rowloss + B;
    float *L = scratch + 4 * (size_t)B;
    double total = 0.0;
    for (int a = 0; a < A; a++) {
        const uint8_t *ma = args->mask + (size_t)a * Bg;
        const uint64_t *ha = args->hash + (size_t)a * Bg;
        int n = 0;
        for (int j = 0; j < Bg; j++) n += ma[j] != 0;
        if (loss_a) loss_a[a] = 0.0;
        if (n == 0 || B == 0) continue;
        const float s = expf(args->logscale[a]);
        /* dL_mac/dl_ij = w_a / (wsum 2 n_a) (p_ij - t_ij) */
        const double coef = wsum != 0.0 ? args->weights[a] / (wsum * 2.0 * n) : 0.0;
        const int write_grad = grad && coef != 0.0;
        const float *xa = args->x + (size_t)a * slab, *ya = args->y + (size_t)a * slab;
        double kl = 0.0, gl = 0.0;
        for (int dir = 0; dir < 2; dir++) {
            /* dir 0: rows are images, columns texts; dir 1 the transpose. */
            const float *rows = dir ? ya : xa, *cols = dir ? xa : ya;
            const float *rows_loc = rows + (size_t)row0 * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, Bg, D, s, rows_loc, D, cols, D,
                        0.0f, L, Bg);
            mac_rows(L, B, Bg, row0, ma, ha, args->duplicates_positive, coef, write_grad, rowloss,
                     rowgl);
            for (int i = 0; i < B; i++) {
                kl += rowloss[i];
                gl += rowgl[i];
            }
            if (!write_grad) continue;
            float *drows = (dir ? dy : dx) + (size_t)a * slab;
            float *dcols = (dir ? dx : dy) + (size_t)a * slab;
            /* rows' gradient: s G cols; columns' gradient: s G^T rows_loc */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, Bg, s, L, Bg, cols, D,
                        1.0f, drows + (size_t)row0 * D, D);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Bg, D, B, s, L, Bg, rows_loc, D,
                        1.0f, dcols, D);
        }
        const double la = kl / (2.0 * n);
        if (loss_a) loss_a[a] = la;
        if (wsum != 0.0) total += args->weights[a] * la;
        /* d/dlogscale = s dL/ds = sum_ij dL/dl_ij l_ij */
        if (dlogscale) dlogscale[a] = (float)(coef * gl);
    }
    return wsum != 0.0 ? total / wsum : 0.0;
}
