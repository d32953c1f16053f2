/*
 * Layer norm over the last dimension, as torch.nn.functional.layer_norm:
 * out = (x - mean) * rstd * w + b with the biased variance; mean and rstd
 * [N] are kept for backward. Row statistics are summed in double.
 */
#include <math.h>

#include "aesnet/nn.h"

/* Column block of the dw/db reductions (see linear.c): one task per block,
 * rows summed in order, so the result does not depend on the thread count. */
#define COL_BLOCK 64

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        const double m = s / C;
        /* Two passes: the one-pass E[x^2] - m^2 cancels badly when |m| >> std. */
        double v = 0.0;
        for (int c = 0; c < C; c++) {
            const double d = x[c] - m;
            v += d * d;
        }
        const float fm = (float)m;
        const float rs = (float)(1.0 / sqrt(v / C + (double)eps));
        mean[n] = fm;
        rstd[n] = rs;
        for (int c = 0; c < C; c++) y[c] = (x[c] - fm) * rs * w[c] + b[c];
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int N, int C)
{
    /* Parameter gradients: column sums over rows of dout * xhat and dout. */
    const int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nblk; k++) {
        const int c0 = k * COL_BLOCK;
        const int wd = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
        double aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C + c0;
            const float *d = dout + (size_t)n * C + c0;
            const float m = mean[n], rs = rstd[n];
            for (int j = 0; j < wd; j++) {
                aw[j] += d[j] * ((x[j] - m) * rs);
                ab[j] += d[j];
            }
        }
        for (int j = 0; j < wd; j++) {
            dw[c0 + j] += (float)aw[j];
            db[c0 + j] += (float)ab[j];
        }
    }

    /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *d = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        const float m = mean[n], rs = rstd[n];
        double sg = 0.0, sgx = 0.0;
        for (int c = 0; c < C; c++) {
            const float g = d[c] * w[c];
            sg += g;
            sgx += g * ((x[c] - m) * rs);
        }
        const float mg = (float)(sg / C), mgx = (float)(sgx / C);
        for (int c = 0; c < C; c++) {
            const float xh = (x[c] - m) * rs;
            dx[c] += rs * (d[c] * w[c] - mg - xh * mgx);
        }
    }
}
