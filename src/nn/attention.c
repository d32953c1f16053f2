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
 * 6.2-6.4 against 11.6-11.8 ms (text). PyTorch 1.13 on the same threads
 * (matmul, softmax, matmul, then backward): 48.7 and 35.5 ms.
 *
 * Then each head went a strip of ATT_X86_MR query rows at a time, the
 * strip's softmax (forward) or dS rows (backward) computed while its rows
 * are in L1, between the products that make and use them, with the rows
 * of a strip side by side (one row alone was a chain of dependent
 * maxima and sums), exp inlined (aes_exp_ps: the libmvec call spilled
 * every live register around it) and the row sums in float lanes; and the
 * backward reads P by rows before its transposed product (cold, by
 * columns, that product ran at half speed). Per ViT-B/16 head on one core,
 * everything in cache: forward 107-111 -> 94 us (the softmax 33 -> 16 us
 * of it), backward 158-164 -> 156 us. Attention alone: 13.9-14.0 ms
 * (ViT-B/16), 5.7 ms (text); in bench_transformer's blocks 15.2-15.7 ms
 * (ViT-B/16, 182-188 GFLOP/s, 58-60% of the sgemm peak; was 16.6-17.0)
 * and 6.9-7.1 ms (text; was 8.6-9.6). Software prefetch of the next
 * head's rows, tried again, made no difference or worse.
 *
 * What keeps attention from the linear layers' 90%: per ViT-B/16 head
 * (one core, the whole batch) the products take about 190 us of 270 and
 * run at 140-160 GFLOP/s when their operands are in cache; the softmax
 * and dS rows take 25 us, packing the operands 15-20 us (their rows lie
 * 3C floats apart in qkv and come from L3), and the products whose
 * operands come from L3 another 25-30 us.
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
 * row dot product of its backward; both sum in double. Scalar here, for
 * the BLAS path; the AVX-512 path (below) does a strip of rows at a
 * time. */
static void softmax_row(float *row, int n, int T)
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

/* dr[j] = scale * pr[j] * (dr[j] - sum_j dr[j] pr[j]) for j < n, zero for
 * n <= j < T. */
static void ds_row(float *dr, const float *pr, int n, int T, float scale)
{
    double dot = 0.0;
    for (int j = 0; j < n; j++) dot += (double)dr[j] * pr[j];
    const float fdot = (float)dot;
    for (int j = 0; j < n; j++) dr[j] = scale * pr[j] * (dr[j] - fdot);
    for (int j = n; j < T; j++) dr[j] = 0.0f;
}

#ifdef AES_X86
#define TARGET __attribute__((target("avx512f")))
#define MR ATT_X86_MR

/* Where row r of a strip starts (rows past mr, whose loads are all
 * masked off, point at row 0 rather than past the end of the array). */
static inline size_t row_at(int r, int mr, int T) { return (size_t)(r < mr ? r : 0) * T; }

/* n[r]: how many keys row r of the strip from query i0 sees (0 past
 * mr); returns the most of them. */
static inline int visible(int n[MR], int mr, int i0, int T, int causal)
{
    for (int r = 0; r < MR; r++) n[r] = r >= mr ? 0 : causal ? i0 + r + 1 : T;
    return causal ? i0 + mr : T;
}

/* Softmax of the mr <= MR rows of a strip, p (row stride T) from query
 * i0: the visible keys' probabilities, zeros past them. The rows go
 * side by side, 16 lanes of each in turn: one row alone was a chain of
 * dependent maxima and sums (a third of a ViT-B/16 head's forward, as
 * long as either of its products). Each row sums its exponentials in 16
 * float lanes in j order (the scalar path sums in double) and adds the
 * lanes up the same way on any strip height. */
TARGET static void softmax_strip(float *p, int mr, int i0, int T, int causal)
{
    int n[MR];
    const int nmax = visible(n, mr, i0, T, causal);
    __m512 mx[MR], sf[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) mx[r] = _mm512_set1_ps(-INFINITY), sf[r] = _mm512_setzero_ps();
    for (int j = 0; j < nmax; j += 16)
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __mmask16 k = aes_lanes(n[r] - j);
            mx[r] = _mm512_mask_max_ps(mx[r], k, mx[r],
                                       _mm512_maskz_loadu_ps(k, p + row_at(r, mr, T) + j));
        }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(mx[r]));
    for (int j = 0; j < nmax; j += 16)
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __mmask16 k = aes_lanes(n[r] - j);
            float *pr = p + row_at(r, mr, T) + j;
            const __m512 e = _mm512_maskz_mov_ps(
                k, aes_exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, pr), mx[r])));
            _mm512_mask_storeu_ps(pr, k, e);
            sf[r] = _mm512_add_ps(sf[r], e);
        }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sf[r]));
        float *pr = p + (size_t)r * T;
        for (int j = 0; j < T; j += 16)
            _mm512_mask_storeu_ps(
                pr + j, aes_lanes(T - j),
                _mm512_mul_ps(_mm512_maskz_loadu_ps(aes_lanes(n[r] - j), pr + j), inv));
    }
}

/* What ds_row does, for the mr <= MR rows of a strip (dS and P row stride
 * T), side by side as in softmax_strip, the row dot product in 16 float
 * lanes. */
TARGET static void ds_strip(float *ds, const float *p, int mr, int i0, int T, int causal,
                            float scale)
{
    int n[MR];
    const int nmax = visible(n, mr, i0, T, causal);
    __m512 sd[MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) sd[r] = _mm512_setzero_ps();
    for (int j = 0; j < nmax; j += 16)
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __mmask16 k = aes_lanes(n[r] - j);
            const size_t at = row_at(r, mr, T) + j;
            sd[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, ds + at),
                                    _mm512_maskz_loadu_ps(k, p + at), sd[r]);
        }
    const __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        if (r >= mr) break;
        const __m512 vd = _mm512_set1_ps(_mm512_reduce_add_ps(sd[r]));
        for (int j = 0; j < T; j += 16) {
            const __mmask16 k = aes_lanes(n[r] - j);
            const size_t at = (size_t)r * T + j;
            const __m512 d = _mm512_maskz_loadu_ps(k, ds + at);
            const __m512 pv = _mm512_maskz_loadu_ps(k, p + at);
            _mm512_mask_storeu_ps(ds + at, aes_lanes(T - j),
                                  _mm512_mul_ps(_mm512_mul_ps(vs, pv), _mm512_sub_ps(d, vd)));
        }
    }
}

/* The two right-hand operands of a head's strips: xt^T at buf (row stride
 * att_x86_ld(T)), then the rows of xr together; returns where those are. */
static float *pack_head(float *buf, const float *xt, const float *xr, size_t ldq, int T, int hs)
{
    float *rows = buf + att_x86_ld(hs) * att_x86_ld(T);
    att_x86_pack_t(buf, xt, ldq, T, hs);
    att_x86_pack_rows(rows, xr, ldq, T, hs);
    return rows;
}

/* One head with the AVX-512 kernels, a strip of ATT_X86_MR query rows at
 * a time: the strip's scores go to its rows of P, are turned into
 * probabilities while in L1, and multiply V at once (separate passes
 * over P read it back from L2 twice). */
static void head_forward_x86(float *o, size_t ldo, float *p, float *buf, const float *q,
                             const float *k, const float *v, size_t ldq, int T, int hs,
                             float scale, int causal)
{
    const size_t ldt = att_x86_ld(T), ldh = att_x86_ld(hs);
    const float *kt = buf, *vr = pack_head(buf, k, v, ldq, T, hs);
    for (int i0 = 0; i0 < T; i0 += ATT_X86_MR) {
        const int mr = T - i0 < ATT_X86_MR ? T - i0 : ATT_X86_MR, left = T - i0 - mr;
        const int n = causal ? i0 + mr : T; /* keys past the strip's last query are masked */
        float *ps = p + (size_t)i0 * T;
        att_x86_prefetch(ps + (size_t)mr * T, T, left, T);
        att_x86_prefetch(q + (size_t)(i0 + mr) * ldq, ldq, left, hs);
        att_x86_prefetch(o + (size_t)(i0 + mr) * ldo, ldo, left, hs);
        att_x86_strip(q + (size_t)i0 * ldq, ldq, kt, ldt, ps, T, mr, n, hs, scale, 0);
        softmax_strip(ps, mr, i0, T, causal);
        /* O = P V; masked probabilities are exact zeros */
        att_x86_strip(ps, T, vr, ldh, o + (size_t)i0 * ldo, ldo, mr, hs, n, 1.0f, 0);
    }
}

/* The backward of one head with the AVX-512 kernels: per strip of query
 * rows dP = dO V^T, dS from it in L1, and dQ += dS K; then dV += P^T dO
 * and dK += dS^T Q, column strips of P and dS that the row pass left in
 * L2 (P comes from memory: read first by rows, where the prefetchers
 * follow, its transposed product ran at half speed). */
static void head_backward_x86(float *dq, float *dk, float *dv, size_t ldq, float *ds, float *buf,
                              const float *dout, size_t ldo, const float *q, const float *k,
                              const float *v, const float *p, int T, int hs, float scale,
                              int causal)
{
    const size_t ldt = att_x86_ld(T), ldh = att_x86_ld(hs);
    const float *vt = buf, *kr = pack_head(buf, v, k, ldq, T, hs);
    for (int i0 = 0; i0 < T; i0 += ATT_X86_MR) {
        const int mr = T - i0 < ATT_X86_MR ? T - i0 : ATT_X86_MR, left = T - i0 - mr;
        const int n = causal ? i0 + mr : T;
        float *dss = ds + (size_t)i0 * T;
        const float *ps = p + (size_t)i0 * T;
        att_x86_prefetch(ps + (size_t)mr * T, T, left, T);
        att_x86_prefetch(dout + (size_t)(i0 + mr) * ldo, ldo, left, hs);
        att_x86_prefetch(dq + (size_t)(i0 + mr) * ldq, ldq, left, hs);
        att_x86_strip(dout + (size_t)i0 * ldo, ldo, vt, ldt, dss, T, mr, n, hs, 1.0f, 0);
        /* dS = P * (dP - rowsum(dP * P)), times the logit scale so that
         * the products give dQ and dK directly */
        ds_strip(dss, ps, mr, i0, T, causal, scale);
        att_x86_strip(dss, T, kr, ldh, dq + (size_t)i0 * ldq, ldq, mr, hs, n, 1.0f, 1);
    }
    att_x86_add_t(dv, ldq, buf, p, dout, ldo, T, hs, causal);
    att_x86_add_t(dk, ldq, buf, ds, q, ldq, T, hs, causal);
}
#endif

static int use_kernels = 1;

int attention_set_kernels(int on)
{
    const int was = use_kernels;
    use_kernels = on != 0;
    return was;
}

/* Whether this call runs the AVX-512 head kernels. */
static int own_kernels(void) { return use_kernels && att_x86_available(); }

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH,
                       int causal)
{
    AES_CHECK(NH > 0 && C % NH == 0);
    const int hs = C / NH;
    const int C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const int nbh = B * NH, own = own_kernels();
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
#ifdef AES_X86
            if (own) {
                head_forward_x86(o, C, p, buf, q, k, v, C3, T, hs, scale, causal);
                continue;
            }
#endif
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3,
                        0.0f, p, T);
            for (int t = 0; t < T; t++) /* keys 0..n-1 are visible */
                softmax_row(p + (size_t)t * T, causal ? t + 1 : T, T);
            /* O = P V; masked probabilities are exact zeros. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v, C3,
                        0.0f, o, C);
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
    const int nbh = B * NH, own = own_kernels();
    const size_t per = attention_scratch_floats(T, C, NH);
    const int saved = own ? 0 : aes_blas_serial_begin();
#pragma omp parallel
    {
        float *ds = scratch + (size_t)omp_get_thread_num() * per; /* then the kernels' buffer */
#pragma omp for schedule(static)
        for (int bh = 0; bh < nbh; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + off, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + (size_t)bh * T * T;
            const float *dout_h = dout + (size_t)b * T * C + (size_t)h * hs;
#ifdef AES_X86
            if (own) {
                head_backward_x86(dq, dk, dv, C3, ds, ds + (size_t)T * T, dout_h, C, q, k, v, p, T,
                                  hs, scale, causal);
                continue;
            }
#endif
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout_h, C, v, C3,
                        0.0f, ds, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dout_h, C,
                        1.0f, dv, C3);
            /* dS = P * (dP - rowsum(dP * P)), times the logit scale so the
             * two products below give dQ and dK directly. */
            for (int t = 0; t < T; t++)
                ds_row(ds + (size_t)t * T, p + (size_t)t * T, causal ? t + 1 : T, T, scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, k, C3,
                        1.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, q, C3, 1.0f,
                        dk, C3);
        }
    }
    if (!own) aes_blas_serial_end(saved);
}
