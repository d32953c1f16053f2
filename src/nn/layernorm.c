/*
 * Layer norm over the last dimension, as torch.nn.functional.layer_norm:
 * out = (x - mean) * rstd * w + b with the biased variance; mean and rstd
 * [N] are kept for backward. Row statistics are summed in double.
 */
#include <math.h>

#include "aesnet/nn.h"
#include "core/avx512.h"

/* Column block of the dw/db reductions (see linear.c): one task per block,
 * rows summed in order, so the result does not depend on the thread count. */
#define COL_BLOCK 64

#ifdef AES_X86
/* The row passes with 16 float lanes, their sums in 16 double lanes (two
 * vectors of 8) added up in a fixed order at the end, where the scalar
 * loops below are chains of dependent double adds. Layer norm at ViT-B/16's
 * shape (1576 x 768), 2 threads: forward 0.96 -> 0.34 ms, backward 1.6 ->
 * 0.81 ms (its column sums in 8 lanes per 64-column block, summed in row
 * order as before: dw and db are unchanged bit for bit);
 * bench_transformer's 'other' time 21-22 -> 18.5 ms (ViT-B/16 block) and
 * 27-32 -> 25.5-26 ms (text block). Same formulas; the row sums in
 * another order. */
#define TARGET __attribute__((target("avx512f")))

/* s0, s1 += the 16 floats of a, as doubles */
TARGET static inline void add_pd16(__m512d *s0, __m512d *s1, __m512 a)
{
    *s0 = _mm512_add_pd(*s0, aes_lo_pd(a));
    *s1 = _mm512_add_pd(*s1, aes_hi_pd(a));
}

/* (x - m) * rs and a * b on the lanes in k (zero elsewhere) */
TARGET static inline __m512 xhat16(const float *x, __mmask16 k, __m512 vm, __m512 vr)
{
    return _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x), vm), vr);
}

TARGET static inline __m512 mul16(const float *a, const float *b, __mmask16 k)
{
    return _mm512_mul_ps(_mm512_maskz_loadu_ps(k, a), _mm512_maskz_loadu_ps(k, b));
}

TARGET static double sum_pd(__m512d s0, __m512d s1)
{
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

TARGET static void ln_row_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int C, float eps)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int c = 0; c < C; c += 16)
        add_pd16(&s0, &s1, _mm512_maskz_loadu_ps(aes_lanes(C - c), x + c));
    const double m = sum_pd(s0, s1) / C;
    const __m512d md = _mm512_set1_pd(m);
    __m512d v0 = _mm512_setzero_pd(), v1 = _mm512_setzero_pd();
    for (int c = 0; c < C; c += 16) {
        const __mmask16 k = aes_lanes(C - c);
        const __m512 xv = _mm512_maskz_loadu_ps(k, x + c);
        /* masked-off lanes: x = 0, d = -m; keep them out of the sum */
        const __m512d d0 = _mm512_maskz_sub_pd((__mmask8)k, aes_lo_pd(xv), md);
        const __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(k >> 8), aes_hi_pd(xv), md);
        v0 = _mm512_fmadd_pd(d0, d0, v0);
        v1 = _mm512_fmadd_pd(d1, d1, v1);
    }
    const double v = sum_pd(v0, v1);
    const float fm = (float)m, rs = (float)(1.0 / sqrt(v / C + (double)eps));
    *mean = fm;
    *rstd = rs;
    const __m512 vm = _mm512_set1_ps(fm), vr = _mm512_set1_ps(rs);
    for (int c = 0; c < C; c += 16) {
        const __mmask16 k = aes_lanes(C - c);
        const __m512 xh = xhat16(x + c, k, vm, vr);
        _mm512_mask_storeu_ps(y + c, k,
                              _mm512_add_ps(_mm512_mul_ps(xh, _mm512_maskz_loadu_ps(k, w + c)),
                                            _mm512_maskz_loadu_ps(k, b + c)));
    }
}

TARGET static void ln_row_bwd(float *dx, const float *d, const float *x, const float *w, float m,
                              float rs, int C)
{
    const __m512 vm = _mm512_set1_ps(m), vr = _mm512_set1_ps(rs);
    __m512d g0 = _mm512_setzero_pd(), g1 = _mm512_setzero_pd(), h0 = _mm512_setzero_pd(),
            h1 = _mm512_setzero_pd();
    for (int c = 0; c < C; c += 16) {
        const __mmask16 k = aes_lanes(C - c);
        const __m512 g = mul16(d + c, w + c, k), xh = xhat16(x + c, k, vm, vr);
        add_pd16(&g0, &g1, g);
        add_pd16(&h0, &h1, _mm512_mul_ps(g, xh)); /* g = 0 in masked-off lanes */
    }
    const __m512 mg = _mm512_set1_ps((float)(sum_pd(g0, g1) / C)),
                 mgx = _mm512_set1_ps((float)(sum_pd(h0, h1) / C));
    for (int c = 0; c < C; c += 16) {
        const __mmask16 k = aes_lanes(C - c);
        const __m512 g = mul16(d + c, w + c, k), xh = xhat16(x + c, k, vm, vr);
        const __m512 t =
            _mm512_mul_ps(vr, _mm512_sub_ps(_mm512_sub_ps(g, mg), _mm512_mul_ps(xh, mgx)));
        _mm512_mask_storeu_ps(dx + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dx + c), t));
    }
}
/* aw[j] = sum over rows of d * xhat, ab[j] = sum of d, for the wd <=
 * COL_BLOCK columns at d, x (row stride C), each column summed over rows
 * in row order as the scalar loop does; aw, ab hold COL_BLOCK doubles (the
 * columns past wd come out zero). */
TARGET static void ln_cols_bwd(double *aw, double *ab, const float *d, const float *x,
                               const float *mean, const float *rstd, int N, int C, int wd)
{
    __m512d sw[COL_BLOCK / 8], sb[COL_BLOCK / 8];
    for (int q = 0; q < COL_BLOCK / 8; q++) sw[q] = sb[q] = _mm512_setzero_pd();
    const int nv = (wd + 15) / 16;
    for (int n = 0; n < N; n++) {
        const __m512 vm = _mm512_set1_ps(mean[n]), vr = _mm512_set1_ps(rstd[n]);
        const float *dn = d + (size_t)n * C, *xn = x + (size_t)n * C;
        for (int v = 0; v < nv; v++) {
            const __mmask16 k = aes_lanes(wd - 16 * v);
            const __m512 dv = _mm512_maskz_loadu_ps(k, dn + 16 * v);
            const __m512 xh = xhat16(xn + 16 * v, k, vm, vr);
            add_pd16(&sw[2 * v], &sw[2 * v + 1], _mm512_mul_ps(dv, xh));
            add_pd16(&sb[2 * v], &sb[2 * v + 1], dv);
        }
    }
    for (int q = 0; q < 2 * nv; q++) {
        _mm512_storeu_pd(aw + 8 * q, sw[q]);
        _mm512_storeu_pd(ab + 8 * q, sb[q]);
    }
}
#endif

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int N, int C, float eps)
{
#ifdef AES_X86
    if (aes_avx512()) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            ln_row_fwd(out + (size_t)n * C, mean + n, rstd + n, inp + (size_t)n * C, w, b, C, eps);
        return;
    }
#endif
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
#ifdef AES_X86
        if (aes_avx512())
            ln_cols_bwd(aw, ab, dout + c0, inp + c0, mean, rstd, N, C, wd);
        else
#endif
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
#ifdef AES_X86
    if (aes_avx512()) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            ln_row_bwd(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C, w, mean[n],
                       rstd[n], C);
        return;
    }
#endif
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
