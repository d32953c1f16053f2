/* Shared by the layer files, not part of the public API. */
#ifndef AESNET_NN_INTERNAL_H
#define AESNET_NN_INTERNAL_H

#include <omp.h>
#include <stddef.h>

/* The thread count a conv kernel asks for its own parallel region: one
 * inside someone else's region (its scratch was sized out there, by
 * omp_get_max_threads() of that level, which may be smaller than the
 * inner one), omp_get_max_threads() otherwise. */
static inline int nn_team(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* floor(a / b) for b > 0 and a of either sign (C's / truncates towards 0):
 * where the strided convs map an input column to an output lane. */
static inline int nn_floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* OpenBLAS to one thread while OpenMP threads call it (one thread pool at
 * a time: the two pools spinning on two cores slow each other down).
 * Returns the count to restore, 0 when nothing was changed. Only the
 * pthread build of OpenBLAS needs it: the OpenMP build already runs
 * single-threaded inside a parallel region, and there
 * openblas_set_num_threads would set OpenMP's own thread count. */
int aes_blas_serial_begin(void);
void aes_blas_serial_end(int saved);

/* Convolution of stride 1 or 2 as an implicit GEMM with AVX-512 kernels
 * (conv_x86.c). conv_ig_available: the CPU has AVX-512F (conv.c decides
 * whether to use it). conv_ig_run: out[N, M, OH, OW] = bias + conv(x[N,
 * C, H, W]) (or += without bias when accumulate), OH = (H + 2*pad - KH) /
 * stride + 1, with the weights packed by conv_ig_pack (w[M, C*KH*KW]) or
 * conv_ig_pack_flipped (the input gradient of a stride-1 conv: M = the
 * forward's C, from the forward's w[OC, C, KH, KW]) into
 * conv_ig_packed_floats(M, C*KH*KW) floats; scratch holds
 * conv_ig_thread_floats() per OpenMP thread. */
int conv_ig_available(void);
size_t conv_ig_packed_floats(int M, int K);
size_t conv_ig_thread_floats(void);
void conv_ig_pack(float *ap, const float *w, int M, int K);
void conv_ig_pack_flipped(float *ap, const float *w, int OC, int C, int KH, int KW);
void conv_ig_run(float *out, float *scratch, const float *x, const float *ap, const float *bias,
                 int accumulate, int N, int C, int H, int W, int M, int KH, int KW, int stride,
                 int pad);
/* Called by all T threads of a parallel region once each has filled its
 * copy priv[t*nw .. (t+1)*nw) of a weight gradient: waits for all, then
 * dw[i] += priv[0][i] + ... + priv[T-1][i], added in thread order so the
 * sums repeat bit for bit (the threads split i). */
void conv_add_private(float *dw, const float *priv, int T, size_t nw);
/* dw[OC, C*KH*KW] += the weight gradient of a stride-1 or 2 conv, from dy[N,
 * OC, OH, OW] and x, for kernels of at most CONV_IG_WGRAD_MAX_TAPS taps
 * (KH*KW; 7x7); scratch: conv_ig_wgrad_floats(...) floats. */
enum { CONV_IG_WGRAD_MAX_TAPS = 49 };
size_t conv_ig_wgrad_floats(int OC, int C, int KH, int KW);
void conv_ig_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N, int C,
                         int H, int W, int OC, int KH, int KW, int stride, int pad);

/* Direct convolution for convs with at most CONV_DIRECT_MAX_C input
 * channels (the stem), stride 1 or 2, kernels of 2 to 49 taps
 * (conv_direct_suits), where conv_ig_available (conv_direct_x86.c):
 * out[N, OC, OH, OW] = b + conv(x), and dw[OC, C*KH*KW] += the weight
 * gradient; scratch: conv_direct_floats(...) floats for either. */
enum { CONV_DIRECT_MAX_C = 4 };
int conv_direct_suits(int C, int KH, int KW, int stride);
size_t conv_direct_floats(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad);
void conv_direct_forward(float *out, float *scratch, const float *x, const float *w,
                         const float *b, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad);
void conv_direct_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N,
                             int C, int H, int W, int OC, int KH, int KW, int stride, int pad);

/* One attention head's products with AVX-512 kernels (attention_x86.c),
 * where att_x86_available; attention.c runs a head a strip of
 * ATT_X86_MR rows at a time. Packed operands have row stride
 * att_x86_ld(their width). att_x86_pack_t: bt[d][j] = X[j][d] (K^T or
 * V^T); att_x86_pack_rows: the rows of X together. att_x86_strip:
 * c[0:mr][0:n] (+= when acc) = alpha * a[0:mr][0:kc] b[0:kc][0:n], a read
 * in place. att_x86_prefetch: the first min(rows, ATT_X86_MR) rows of X
 * (n floats each) towards L1. att_x86_add_t: Cm[T, hs] += P^T Bm for P
 * [T, T] (row stride T) and Bm [T, hs]; causal: P is zero above its
 * diagonal. buf: att_x86_floats(T, hs) floats (the two packed operands,
 * or att_x86_add_t's own). */
enum { ATT_X86_MR = 6 };
static inline size_t att_x86_ld(int n) { return ((size_t)n + 15) / 16 * 16; }
int att_x86_available(void);
size_t att_x86_floats(int T, int hs);
void att_x86_pack_t(float *bt, const float *X, size_t ldx, int T, int hs);
void att_x86_pack_rows(float *bp, const float *X, size_t ldx, int T, int hs);
void att_x86_strip(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                   int mr, int n, int kc, float alpha, int acc);
void att_x86_prefetch(const float *X, size_t ld, int rows, int n);
void att_x86_add_t(float *Cm, size_t ldc, float *buf, const float *P, const float *Bm,
                   size_t ldb, int T, int hs, int causal);

#endif
