/*
 * Linear layer: out[N, OC] = inp[N, C] @ w[OC, C]^T + b[OC], through CBLAS
 * sgemm. The GEMMs are split over the OpenMP threads (rows of the output,
 * or its columns when there are few rows), each running a single-threaded
 * sgemm: one thread pool, not OpenMP's and OpenBLAS's spinning against each
 * other on the same cores (measured: 2 threads of each on 2 cores ran the
 * demo model 25% slower than one thread). Every output element is computed
 * by one thread in one sgemm: a run repeats bit for bit on the same thread
 * count.
 */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "aesnet/nn.h"
#include "nn/nn_internal.h"

/* Column block of the bias-gradient reduction: each block is one task, so
 * every db[o] is summed over rows in row order by a single thread (the
 * result does not depend on the thread count). 64 floats = 4 cache lines. */
#define COL_BLOCK 64
/* Below this many multiply-adds a GEMM is not worth splitting. */
#define SPLIT_MIN 2000000.0

static int threads_for(double madds)
{
    if (omp_in_parallel() || madds < SPLIT_MIN) return 1;
    return omp_get_max_threads();
}

/* Part t of T of [0, n), in multiples of 16 where possible (whole kernel
 * panels). */
static void part(int n, int t, int T, int *lo, int *hi)
{
    int step = ((n + T - 1) / T + 15) / 16 * 16;
    *lo = t * step < n ? t * step : n;
    *hi = *lo + step < n ? *lo + step : n;
}

/* C[M, N] = beta C + A[M, K] @ op(B), split over M (or over N when M is
 * small); lda/ldb/ldc as for cblas row-major. */
static void gemm_split(CBLAS_TRANSPOSE tb, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    const int T = threads_for((double)M * N * K);
    if (T <= 1) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int saved = aes_blas_serial_begin();
    const int by_rows = M >= 16 * T;
#pragma omp parallel num_threads(T)
    {
        int lo, hi;
        part(by_rows ? M : N, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo) {
            if (by_rows)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, hi - lo, N, K, 1.0f, A + (size_t)lo * lda,
                            lda, B, ldb, beta, C + (size_t)lo * ldc, ldc);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, hi - lo, K, 1.0f, A, lda,
                            tb == CblasTrans ? B + (size_t)lo * ldb : B + lo, ldb, beta, C + lo, ldc);
        }
    }
    aes_blas_serial_end(saved);
}

void linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int C,
                    int OC)
{
    float beta = 0.0f;
    if (b) {
        /* Seed the output with the bias and let the GEMM add onto it. */
#pragma omp parallel for schedule(static) if (threads_for((double)N * OC * C) > 1)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    gemm_split(CblasTrans, N, OC, C, inp, C, w, C, beta, out, OC);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int N, int C, int OC)
{
    /* dinp[N, C] += dout[N, OC] @ w[OC, C] */
    if (dinp) gemm_split(CblasNoTrans, N, C, OC, dout, OC, w, C, 1.0f, dinp, C);
    /* dw[OC, C] += dout^T @ inp: split over the rows of dw, each thread
     * summing over all N for its rows. */
    const int T = threads_for((double)OC * C * N);
    if (T <= 1) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
                    dw, C);
    } else {
        const int saved = aes_blas_serial_begin();
        const int by_rows = OC >= 16 * T;
#pragma omp parallel num_threads(T)
        {
            int lo, hi;
            part(by_rows ? OC : C, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            if (hi > lo) {
                if (by_rows)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, C, N, 1.0f, dout + lo,
                                OC, inp, C, 1.0f, dw + (size_t)lo * C, C);
                else
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, hi - lo, N, 1.0f, dout, OC,
                                inp + lo, C, 1.0f, dw + lo, C);
            }
        }
        aes_blas_serial_end(saved);
    }
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
