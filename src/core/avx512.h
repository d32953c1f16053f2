/*
 * What the hand-vectorised kernels share (src/nn/conv_x86.c,
 * conv_direct_x86.c, attention.c, attention_x86.c, gelu.c,
 * src/optim/adamw.c): AES_X86 where GCC can compile AVX-512
 * code for x86-64, aes_avx512() whether this CPU runs it (the kernels are
 * compiled for it with target attributes and chosen at run time),
 * aes_lanes(n) the mask of the first n of 16 lanes (all of them from 16
 * on, none below 1), aes_lo_pd / aes_hi_pd (the two halves of 16
 * floats as doubles), aes_transpose16 (16 vectors of 16 floats
 * transposed in registers), aes_exp_ps (exp, inlined), and, where
 * CMake found them in glibc's libmvec (AESNET_HAVE_MVEC), its 16-lane
 * erff and expf.
 */
#ifndef AESNET_CORE_AVX512_H
#define AESNET_CORE_AVX512_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stddef.h>

#define AES_X86 1

static inline int aes_avx512(void) { return __builtin_cpu_supports("avx512f"); }

static inline __mmask16 aes_lanes(ptrdiff_t n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* The low and high 8 floats of a, as doubles (for sums in double lanes). */
__attribute__((target("avx512f"))) static inline __m512d aes_lo_pd(__m512 a)
{
    return _mm512_cvtps_pd(_mm512_castps512_ps256(a));
}

__attribute__((target("avx512f"))) static inline __m512d aes_hi_pd(__m512 a)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

/* r[i][j] <-> r[j][i] for 16 vectors of 16. */
__attribute__((target("avx512f"))) static inline void aes_transpose16(__m512 r[16])
{
    __m512 a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        b[4 * i + 0] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0x44);
        b[4 * i + 1] = _mm512_shuffle_ps(a[4 * i], a[4 * i + 2], 0xEE);
        b[4 * i + 2] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0x44);
        b[4 * i + 3] = _mm512_shuffle_ps(a[4 * i + 1], a[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        a[j] = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88);
        a[4 + j] = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xDD);
        a[8 + j] = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
        a[12 + j] = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xDD);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(a[j], a[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(a[j], a[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(a[4 + j], a[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(a[4 + j], a[12 + j], 0xDD);
    }
}

/* exp of 16 floats, inlined (a call to libmvec's spills every live
 * vector register around it): x = n ln2 + r with |r| <= ln2 / 2 (ln2 in
 * two parts, Cody and Waite), e^r by its Taylor series to r^6 (the
 * remainder below 1.2e-7, 1.7e-7 of e^r), times 2^n by scalef. Within
 * 2.4e-7 relative of exp over the normal range (measured against double
 * exp); 0 below -104 (and at -inf), inf above 89, NaN kept. */
__attribute__((target("avx512f"))) static inline __m512 aes_exp_ps(__m512 x)
{
    /* min/max(c, x) return x when it is NaN */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x); /* n ln2_hi exact */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 e = _mm512_set1_ps(1.0f / 720.0f);
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 120.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 24.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 6.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(0.5f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(e, n);
}

#ifdef AESNET_HAVE_MVEC
#define AES_MVEC 1
__m512 _ZGVeN16v_erff(__m512 x);
__m512 _ZGVeN16v_expf(__m512 x);
#endif
#endif

#endif
