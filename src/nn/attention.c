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
 * each head's products are single-threaded: without AVX-512, sgemm calls
 * reading the strided slices of qkv in place (lda = 3C), no copies (with
 * it, the kernels of attention_x86.c, further below). OpenBLAS (the pthread
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
 * The softmax rows and the backward's row dot products then went to 16
 * lanes (below): attention's forward + backward in bench_transformer
 * 28.9 -> 17.8 ms (ViT-B/16 block) and 16.1 -> 12.4 ms (text block); the
 * scalar double sums were a chain of dependent adds, and expf a libm call
 * per element.
 *
 * Where the CPU has AVX-512 the six products go to kernels of our own
 * (attention_x86.c) that skip OpenBLAS's per-call packing and, for the
 * causal text heads, the masked half. Forward + backward of attention
 * alone (B = 8 ViT-B/16 heads, B = 40 text heads, 2 threads), against the
 * OpenBLAS calls in the same build: 15.4 against 16.6-16.9 ms (ViT-B/16),
 * 6.2-6.4 against 11.6-11.8 ms (text); in bench_transformer's blocks
 * 16.6-17.0 ms (ViT-B/16, 168-172 GFLOP/s, about 54% of the sgemm peak)
 * and 8.6-9.6 ms (text, was 12.4). PyTorch 1.13 on the same threads (matmul, softmax,
 * matmul, then backward): 48.7 and 35.5 ms. What keeps attention from the
 * linear layers' 90%: the products are 64 deep, the softmax and the dS
 * rows add passes over T x T floats per head, and P (15 MB for the ViT-B/16
 * batch) goes to memory between the forward and the backward.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "core/avx512.h"
#include "nn/nn_internal.h"

/* The row operations between the products: softmax forward, and the
 * row dot product of its backward. Scalar here; 16 lanes with AVX-512
 * (exp from glibc's libmvec where CMake found it) below, where the CPU
 * has it. Both sum in double; the vector ones in 16 lanes added up in a
 * fixed order, so results still repeat bit for bit on any thread count. */
static void softmax_row_scalar(float *row, int n, int T)
{
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

static double dot_scalar(const float *a, const float *b, int n)
{
    double dot = 0.0;
    for (int j = 0; j < n; j++) dot += (double)a[j] * b[j];
    return dot;
}

#ifdef AES_MVEC
#define TARGET __attribute__((target("avx512f")))

/* The exact products of 16 float pairs added into two double vectors. */
TARGET static inline void dot_add(__m512d *s0, __m512d *s1, __m512 a, __m512 b)
{
    *s0 = _mm512_fmadd_pd(aes_lo_pd(a), aes_lo_pd(b), *s0);
    *s1 = _mm512_fmadd_pd(aes_hi_pd(a), aes_hi_pd(b), *s1);
}

TARGET static void softmax_row_vec(float *row, int n, int T)
{
    __m512 vm = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16)
        vm = _mm512_mask_max_ps(vm, aes_lanes(n - j), vm,
                                _mm512_maskz_loadu_ps(aes_lanes(n - j), row + j));
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vm)), one = _mm512_set1_ps(1.0f);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int j = 0; j < n; j += 16) {
        const __mmask16 k = aes_lanes(n - j);
        const __m512 e = _mm512_maskz_mov_ps(
            k, _ZGVeN16v_expf(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), mx)));
        _mm512_mask_storeu_ps(row + j, k, e);
        dot_add(&s0, &s1, e, one);
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
    for (int j = 0; j < T; j += 16) {
        const __m512 r = _mm512_maskz_loadu_ps(aes_lanes(n - j), row + j);
        _mm512_mask_storeu_ps(row + j, aes_lanes(T - j), _mm512_mul_ps(r, inv));
    }
}

/* dr[j] = scale * pr[j] * (dr[j] - dot) for j < n, zero for n <= j < T. */
TARGET static void ds_row_vec(float *dr, const float *pr, int n, int T, float scale, float dot)
{
    const __m512 vs = _mm512_set1_ps(scale), vd = _mm512_set1_ps(dot);
    for (int j = 0; j < T; j += 16) {
        const __mmask16 k = aes_lanes(n - j);
        const __m512 d = _mm512_maskz_loadu_ps(k, dr + j), p = _mm512_maskz_loadu_ps(k, pr + j);
        _mm512_mask_storeu_ps(dr + j, aes_lanes(T - j),
                              _mm512_mul_ps(_mm512_mul_ps(vs, p), _mm512_sub_ps(d, vd)));
    }
}

TARGET static double dot_vec(const float *a, const float *b, int n)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int j = 0; j < n; j += 16)
        dot_add(&s0, &s1, _mm512_maskz_loadu_ps(aes_lanes(n - j), a + j),
                _mm512_maskz_loadu_ps(aes_lanes(n - j), b + j));
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

#endif

/* Whether the 16-lane row operations run on this CPU. */
static int row_vec(void)
{
#ifdef AES_MVEC
    return aes_avx512();
#else
    return 0;
#endif
}

static void softmax_row(float *row, int n, int T, int vec)
{
#ifdef AES_MVEC
    if (vec) {
        softmax_row_vec(row, n, T);
        return;
    }
#endif
    (void)vec;
    softmax_row_scalar(row, n, T);
}

static void ds_row(float *dr, const float *pr, int n, int T, float scale, float fdot, int vec)
{
#ifdef AES_MVEC
    if (vec) {
        ds_row_vec(dr, pr, n, T, scale, fdot);
        return;
    }
#endif
    (void)vec;
    for (int j = 0; j < n; j++) dr[j] = scale * pr[j] * (dr[j] - fdot);
    for (int j = n; j < T; j++) dr[j] = 0.0f;
}

static double dot_row(const float *a, const float *b, int n, int vec)
{
#ifdef AES_MVEC
    if (vec) return dot_vec(a, b, n);
#endif
    (void)vec;
    return dot_scalar(a, b, n);
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                       int causal)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    const int hs = C / NH;
    const int C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const int nbh = B * NH, vec = row_vec(), own = att_x86_available();
    const int saved = own ? 0 : aes_blas_serial_begin();
#pragma omp parallel
    {
        /* the kernels' packing buffer, one per thread (the forward has no
         * scratch argument; a few tens of KB) */
        float *buf = own ? aes_malloc(att_x86_floats(T, hs) * sizeof(float), "attention") : NULL;
#pragma omp for schedule(static)
        for (int bh = 0; bh < nbh; bh++) {
            const int b = bh / NH, h = bh % NH;
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *p = att + (size_t)bh * T * T;
            float *o = out + (size_t)b * T * C + (size_t)h * hs;
            if (own)
                att_x86_scores(p, buf, q, C3, k, C3, T, hs, scale, causal);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k,
                            C3, 0.0f, p, T);
            for (int t = 0; t < T; t++) /* keys 0..n-1 are visible */
                softmax_row(p + (size_t)t * T, causal ? t + 1 : T, T, vec);
            /* O = P V; masked probabilities are exact zeros. */
            if (own)
                att_x86_product(o, C, buf, p, 0, v, C3, T, hs, 0, causal);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v,
                            C3, 0.0f, o, C);
        }
        free(buf);
    }
    if (!own) aes_blas_serial_end(saved);
}

/* Scratch floats PER THREAD: one T x T matrix (dP, turned into dS in
 * place), and the AVX-512 kernels' packing buffer. Callers pass
 * omp_get_max_threads() times this to backward. */
size_t attention_scratch_floats(int T, int C, int NH)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    return (size_t)T * T + att_x86_floats(T, C / NH);
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
    const int nbh = B * NH, vec = row_vec(), own = att_x86_available();
    const size_t per = attention_scratch_floats(T, C, NH);
    const int saved = own ? 0 : aes_blas_serial_begin();
#pragma omp parallel
    {
        float *ds = scratch + (size_t)omp_get_thread_num() * per, *buf = ds + (size_t)T * T;
#pragma omp for schedule(static)
        for (int bh = 0; bh < nbh; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + off, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + (size_t)bh * T * T;
            const float *dout_h = dout + (size_t)b * T * C + (size_t)h * hs;
            if (own) {
                att_x86_scores(ds, buf, dout_h, C, v, C3, T, hs, 1.0f, causal); /* dP = dO V^T */
                att_x86_product(dv, C3, buf, p, 1, dout_h, C, T, hs, 1, causal); /* dV += P^T dO */
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout_h, C, v,
                            C3, 0.0f, ds, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dout_h,
                            C, 1.0f, dv, C3);
            }
            /* dS = P * (dP - rowsum(dP * P)), times the logit scale so the
             * two products below give dQ and dK directly. */
            for (int t = 0; t < T; t++) {
                const float *pr = p + (size_t)t * T;
                float *dr = ds + (size_t)t * T;
                const int n = causal ? t + 1 : T;
                const float fdot = (float)dot_row(dr, pr, n, vec);
                ds_row(dr, pr, n, T, scale, fdot, vec);
            }
            if (own) {
                att_x86_product(dq, C3, buf, ds, 0, k, C3, T, hs, 1, causal); /* dQ += dS K */
                att_x86_product(dk, C3, buf, ds, 1, q, C3, T, hs, 1, causal); /* dK += dS^T Q */
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, k,
                            C3, 1.0f, dq, C3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, q, C3,
                            1.0f, dk, C3);
            }
        }
    }
    if (!own) aes_blas_serial_end(saved);
}
