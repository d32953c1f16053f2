/*
 * What the hand-vectorised kernels share (src/nn/conv_x86.c, gelu.c,
 * attention.c, src/optim/adamw.c): AES_X86 where GCC can compile AVX-512
 * code for x86-64, aes_avx512() whether this CPU runs it (the kernels are
 * compiled for it with target attributes and chosen at run time),
 * aes_lanes(n) the mask of the first n of 16 lanes (all of them from 16
 * on, none below 1), and, where CMake found them in glibc's libmvec
 * (AESNET_HAVE_MVEC), its 16-lane erff and expf.
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

#ifdef AESNET_HAVE_MVEC
#define AES_MVEC 1
__m512 _ZGVeN16v_erff(__m512 x);
__m512 _ZGVeN16v_expf(__m512 x);
#endif
#endif

#endif
