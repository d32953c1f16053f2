/*
 * Linear layer: out[N, OC] = inp[N, C] @ w[OC, C]^T + b[OC], through CBLAS
 * sgemm (OpenBLAS threads its own GEMMs; these calls are made outside any
 * OpenMP region so the two thread pools never run at once).
 */
#include <cblas.h>
#include <string.h>

#include "aesnet/nn.h"

/* Column block of the bias-gradient reduction: each block is one task, so
 * every db[o] is summed over rows in row order by a single thread (the
 * result does not depend on the thread count). 64 floats = 4 cache lines. */
#define COL_BLOCK 64

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int C,
                    int OC)
{
    float beta = 0.0f;
    if (b) {
        /* Seed the output with the bias and let the GEMM add onto it. */
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, beta, out,
                OC);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int N, int C, int OC)
{
    /* dinp[N, C] += dout[N, OC] @ w[OC, C] */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C,
                    1.0f, dinp, C);
    /* dw[OC, C] += dout^T @ inp */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
                dw, C);
    if (db) {
        const int nblk = (OC + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
        for (int k = 0; k < nblk; k++) {
            const int o0 = k * COL_BLOCK;
            const int wd = OC - o0 < COL_BLOCK ? OC - o0 : COL_BLOCK;
            double acc[COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *d = dout + (size_t)n * OC + o0;
                for (int j = 0; j < wd; j++) acc[j] += d[j];
            }
            for (int j = 0; j < wd; j++) db[o0 + j] += (float)acc[j];
        }
    }
}
