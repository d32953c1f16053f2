/*
 * Multi-head self-attention core: per (sample b, head h),
 *   S = scale * Q K^T (T x T), P = softmax(S) by rows (keys after the query
 *   masked when causal), O = P V,
 * with Q, K, V the [T, hs] column slices of qkv [B, T, 3C] (q at columns
 * [0, C), k at [C, 2C), v at [2C, 3C), head h at h*hs .. h*hs + hs - 1 of
 * each) and O written to columns h*hs.. of out [B, T, C]. P is kept in
 * att [B, NH, T, T] for backward.
 *
 * Threading: the B*NH heads are split over OpenMP threads (static), and
 * each head's products are SINGLE-THREADED sgemm calls reading the strided
 * slices of qkv in place (lda = 3C), no copies. OpenBLAS (the pthread
 * build) would otherwise start its own threads inside each call, and with
 * two pools on the same cores they oversubscribe (or serialise on
 * OpenBLAS's lock). So OpenBLAS is set to one thread for the duration of
 * the call and restored afterwards (not thread-safe against another
 * thread calling BLAS at the same time; the training step never does).
 * Every head is computed by one thread in a fixed order, so the results
 * do not depend on the thread count.
 *
 * Measured with test/tools/bench_transformer --variants (2 cores, best of
 * 6, forward + backward of attention alone, ms ViT-B/16 B=8 / text B=40;
 * OpenBLAS 0.3.21 with SkylakeX kernels, and the Prescott ones it picks
 * on this CPU by itself):
 *                                               SkylakeX      Prescott
 *   heads over OpenMP, one-thread sgemm (this)   28.7 / 14.5   64 / 33
 *   heads in turn, OpenBLAS-threaded sgemm       51   / 35    136 / 74
 *   heads over OpenMP, plain C loops (no BLAS)  195   / 51    195 / 51
 * Small per-head GEMMs thread poorly, and between them the OpenMP workers
 * of the softmax spin while OpenBLAS's threads want the same cores.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "nn/nn_internal.h"

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                       int causal)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    const int hs = C / NH;
    const int C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const int nbh = B * NH;
    const int saved = aes_blas_serial_begin();
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < nbh; bh++) {
        const int b = bh / NH, h = bh % NH;
        const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
        const float *k = q + C;
        const float *v = q + 2 * C;
        float *p = att + (size_t)bh * T * T;
        float *o = out + (size_t)b * T * C + (size_t)h * hs;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, 0.0f,
                    p, T);
        for (int t = 0; t < T; t++) {
            float *row = p + (size_t)t * T;
            const int n = causal ? t + 1 : T; /* keys 0..n-1 are visible */
            float mx = -INFINITY;
            for (int j = 0; j < n; j++) mx = fmaxf(mx, row[j]);
            double sum = 0.0;
            for (int j = 0; j < n; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            const float inv = (float)(1.0 / sum);
            for (int j = 0; j < n; j++) row[j] *= inv;
            for (int j = n; j < T; j++) row[j] = 0.0f;
        }
        /* O = P V; masked probabilities are exact zeros. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v, C3, 0.0f,
                    o, C);
    }
    aes_blas_serial_end(saved);
}

/* Scratch floats PER THREAD: one T x T matrix (dP, turned into dS in
 * place). Callers pass omp_get_max_threads() times this to backward. */
size_t attention_scratch_floats(int T, int C, int NH)
{
    (void)C;
    (void)NH;
    return (size_t)T * T;
}

/* scratch: omp_get_max_threads() * attention_scratch_floats(T, C, NH)
 * floats; thread i uses the i-th slice. dqkv is accumulated (+=); each head
 * writes only its own columns of dqkv, so heads never race. */
void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, int B, int T, int C, int NH, int causal)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    const int hs = C / NH;
    const int C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const int nbh = B * NH;
    const size_t per = attention_scratch_floats(T, C, NH);
    const int saved = aes_blas_serial_begin();
#pragma omp parallel
    {
        float *ds = scratch + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(static)
        for (int bh = 0; bh < nbh; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + off, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + (size_t)bh * T * T;
            const float *dout_h = dout + (size_t)b * T * C + (size_t)h * hs;
            /* dP = dO V^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout_h, C, v, C3,
                        0.0f, ds, T);
            /* dV += P^T dO */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dout_h, C,
                        1.0f, dv, C3);
            /* dS = P * (dP - rowsum(dP * P)), times the logit scale so the
             * two products below give dQ and dK directly. */
            for (int t = 0; t < T; t++) {
                const float *pr = p + (size_t)t * T;
                float *dr = ds + (size_t)t * T;
                const int n = causal ? t + 1 : T;
                double dot = 0.0;
                for (int j = 0; j < n; j++) dot += (double)dr[j] * pr[j];
                const float fdot = (float)dot;
                for (int j = 0; j < n; j++) dr[j] = scale * pr[j] * (dr[j] - fdot);
                for (int j = n; j < T; j++) dr[j] = 0.0f;
            }
            /* dQ += dS K, dK += dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, k, C3,
                        1.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, q, C3,
                        1.0f, dk, C3);
        }
    }
    aes_blas_serial_end(saved);
}
