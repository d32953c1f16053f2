/*
 * GELU, exact form as torch.nn.GELU(): x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
 *
 * Where glibc has them (2.35 on, found by CMake) and the CPU has AVX-512,
 * erf and exp come 16 lanes at a time from libmvec instead of one scalar
 * libm call per element; the scalar erff and expf were a tenth of a
 * transformer block's forward + backward time (bench_transformer, perf).
 * libmvec's float erf and exp are within a few ulp of the correctly
 * rounded result, like libm's; test_nn_transformer checks GELU against
 * PyTorch and finite differences either way.
 */
#include <math.h>
#include <stddef.h>

#include "aesnet/nn.h"
#include "core/avx512.h"

#define GELU_RSQRT2 0.70710678118654752440f   /* 1 / sqrt(2) */
#define GELU_RSQRT2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */

#ifdef AES_MVEC
#define TARGET __attribute__((target("avx512f")))

/* Elements [i, i+16) (or the first m of them: the tail, masked). */
TARGET static void gelu_fwd16(float *out, const float *inp, ptrdiff_t i, int m)
{
    const __mmask16 k = aes_lanes(m);
    const __m512 x = _mm512_maskz_loadu_ps(k, inp + i);
    const __m512 e = _ZGVeN16v_erff(_mm512_mul_ps(x, _mm512_set1_ps(GELU_RSQRT2)));
    const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x),
                                   _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_mask_storeu_ps(out + i, k, y);
}

TARGET static void gelu_bwd16(float *dinp, const float *dout, const float *inp, ptrdiff_t i, int m)
{
    const __mmask16 k = aes_lanes(m);
    const __m512 x = _mm512_maskz_loadu_ps(k, inp + i);
    const __m512 e = _ZGVeN16v_erff(_mm512_mul_ps(x, _mm512_set1_ps(GELU_RSQRT2)));
    const __m512 cdf = _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    const __m512 ex = _ZGVeN16v_expf(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), x), x));
    const __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(GELU_RSQRT2PI), ex);
    const __m512 d = _mm512_add_ps(cdf, _mm512_mul_ps(x, pdf));
    const __m512 acc = _mm512_maskz_loadu_ps(k, dinp + i);
    _mm512_mask_storeu_ps(dinp + i, k,
                          _mm512_add_ps(acc, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dout + i), d)));
}
#endif

void gelu_forward(float *out, const float *inp, size_t n)
{
    const ptrdiff_t m = (ptrdiff_t)n;
#ifdef AES_MVEC
    if (aes_avx512()) {
#pragma omp parallel for schedule(static)
        for (ptrdiff_t i = 0; i < m; i += 16)
            gelu_fwd16(out, inp, i, m - i < 16 ? (int)(m - i) : 16);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < m; i++) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * GELU_RSQRT2));
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    const ptrdiff_t m = (ptrdiff_t)n;
#ifdef AES_MVEC
    if (aes_avx512()) {
#pragma omp parallel for schedule(static)
        for (ptrdiff_t i = 0; i < m; i += 16)
            gelu_bwd16(dinp, dout, inp, i, m - i < 16 ? (int)(m - i) : 16);
        return;
    }
#endif
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < m; i++) {
        const float x = inp[i];
        /* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
        const float cdf = 0.5f * (1.0f + erff(x * GELU_RSQRT2));
        const float pdf = GELU_RSQRT2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}
