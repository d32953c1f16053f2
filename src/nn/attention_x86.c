/*
 * The products of one attention head with AVX-512 kernels of our own,
 * for attention.c (which decides when: att_x86_available).
 *
 * Why (issue 3, the 70% target). Per head the six products are small
 * (ViT-B/16: 197 x 197 x 64; the text encoder: 77 x 77 x 64), and every
 * single-threaded OpenBLAS call packed both operands into buffers of its
 * own first: OpenBLAS's copy routines took about a fifth of attention's
 * time. Here the left operand is read where it lies (a strip of 6 rows
 * of Q, dO, P or dS, or of 6 columns of P or dS for the transposed
 * products), the right operand is either K^T or V^T (packed once per
 * head with 16 x 16 transposes) or rows of V, dO, K or Q, copied
 * together first (at their stride in qkv, 3C floats, a multiple of 1 KB
 * for ViT-B/16, the passes over them fell into a few sets of L1: the
 * backward went from 12.5 to 9.4 ms with the copy), and causal heads skip
 * the blocks above the diagonal, where P and dS are zero. attention.c
 * calls the row-strip products a strip at a time (att_x86_strip), with
 * its row operations between them; the transposed ones whole
 * (att_x86_add_t).
 *
 * One kernel serves all six products: C[0:6][0:16*nv] (+)= alpha *
 * sum_k A(0:6, k) * b[k][0:16*nv], for b rows of at most 64 floats: 24
 * accumulators (6 rows by 4 vectors), per k 4 vector loads and 6
 * broadcasts. Alone, on one core, a 197 x 197 x 64 product from
 * contiguous operands runs at 137-154 GFLOP/s. Every output is summed in
 * k order by one thread, so results repeat bit for bit on any number of
 * threads.
 *
 * Measured: attention.c.
 */
#include "aesnet/core.h"
#include "core/avx512.h"
#include "nn/nn_internal.h"

enum { AMR = ATT_X86_MR, ANV = 4, ANC = 16 * ANV };

size_t att_x86_floats(int T, int hs)
{
    /* a head's K^T or V^T, then its K or V rows; att_x86_add_t puts its
     * packed rows and its edge strip (AMR * T floats, less than the
     * 16 * T of the first part) in the same space */
    return att_x86_ld(hs) * att_x86_ld(T) + (size_t)T * att_x86_ld(hs);
}

#ifdef AES_X86

int att_x86_available(void) { return aes_avx512(); }

#pragma GCC push_options
#pragma GCC target("avx512f")

/* c[i][0:nc] for i < mr (+)= alpha * sum over k < kc of A(i, k) * b[k*ldb
 * + 0:nc], 16*(nv-1) < nc <= 16*nv (the last vector masked), with A(i,
 * k) = a[i*lda + k] (rows: a strip of rows of the left operand, read in
 * place; rows past mr read row 0 and are not stored) or a[k*lda + i]
 * (cols: a strip of columns, i.e. of rows of the operand's transpose; all
 * AMR must be readable). */
static inline __attribute__((always_inline)) void
kernel_6xv(int nv, int cols, int kc, const float *a, size_t lda, const float *b, size_t ldb,
           float *c, size_t ldc, int mr, int nc, float alpha, int acc)
{
    const __mmask16 ml = aes_lanes(nc - 16 * (nv - 1));
    const float *ar[AMR];
#pragma GCC unroll 6
    for (int i = 0; i < AMR; i++) ar[i] = a + (size_t)(i < mr ? i : 0) * lda;
    __m512 r[AMR][ANV];
#pragma GCC unroll 6
    for (int i = 0; i < AMR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) r[i][v] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m512 bv[ANV];
#pragma GCC unroll 4
        for (int v = 0; v < nv - 1; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
        bv[nv - 1] = _mm512_maskz_loadu_ps(ml, b + 16 * (nv - 1));
#pragma GCC unroll 6
        for (int i = 0; i < AMR; i++) {
            const __m512 ai = _mm512_set1_ps(cols ? a[i] : ar[i][k]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) r[i][v] = _mm512_fmadd_ps(ai, bv[v], r[i][v]);
        }
        if (cols) a += lda;
        b += ldb;
    }
    const __m512 al = _mm512_set1_ps(alpha);
    /* all AMR rows unrolled (a loop to mr would index r at run time and
     * keep it in memory through the k loop) */
#pragma GCC unroll 6
    for (int i = 0; i < AMR; i++) {
        if (i >= mr) break;
        float *ci = c + (size_t)i * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? ml : (__mmask16)0xFFFF;
            __m512 x = _mm512_mul_ps(al, r[i][v]);
            if (acc) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, ci + 16 * v));
            _mm512_mask_storeu_ps(ci + 16 * v, m, x);
        }
    }
}

typedef void (*kernel_fn)(int kc, const float *a, size_t lda, const float *b, size_t ldb,
                          float *c, size_t ldc, int mr, int nc, float alpha, int acc);

#define KERNEL_6X(NV, COLS)                                                                       \
    static void kernel_6x##NV##_##COLS(int kc, const float *a, size_t lda, const float *b,        \
                                       size_t ldb, float *c, size_t ldc, int mr, int nc,          \
                                       float alpha, int acc)                                      \
    {                                                                                             \
        kernel_6xv(NV, COLS, kc, a, lda, b, ldb, c, ldc, mr, nc, alpha, acc);                     \
    }
KERNEL_6X(1, 0)
KERNEL_6X(2, 0)
KERNEL_6X(3, 0)
KERNEL_6X(4, 0)
KERNEL_6X(1, 1)
KERNEL_6X(2, 1)
KERNEL_6X(3, 1)
KERNEL_6X(4, 1)

static const kernel_fn kernels[2][ANV] = {
    {kernel_6x1_0, kernel_6x2_0, kernel_6x3_0, kernel_6x4_0},
    {kernel_6x1_1, kernel_6x2_1, kernel_6x3_1, kernel_6x4_1},
};

/* One strip of C: rows [i0, i0 + mr), columns [0, n) in blocks of 64,
 * reduction [k0, k1); a points at A(i0, k0). */
static void strip(int cols, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                  size_t ldc, int mr, int n, int kc, float alpha, int acc)
{
    for (int j0 = 0; j0 < n; j0 += ANC) {
        const int nc = n - j0 < ANC ? n - j0 : ANC;
        kernels[cols][(nc + 15) / 16 - 1](kc, a, lda, b + j0, ldb, c + j0, ldc, mr, nc, alpha,
                                          acc);
    }
}

/* Used for the next strip's rows of the outputs (probabilities, gradients
 * of qkv, written or added where the cache has not been for a while:
 * stores missing at the end of a strip held the next strip's loads) and
 * of the strided inputs. */
void att_x86_prefetch(const float *X, size_t ld, int rows, int n)
{
    for (int r = 0; r < AMR && r < rows; r++)
        for (int j = 0; j < n; j += 16)
            _mm_prefetch((const char *)(X + (size_t)r * ld + j), _MM_HINT_T0);
}

/* bt[d][j] = X[j][d] for d < hs, j < T (row stride att_x86_ld(T)), 16 x 16
 * at a time. */
void att_x86_pack_t(float *bt, const float *X, size_t ldx, int T, int hs)
{
    const size_t ld = att_x86_ld(T);
    for (int j0 = 0; j0 < T; j0 += 16)
        for (int d0 = 0; d0 < hs; d0 += 16) {
            const __mmask16 md = aes_lanes(hs - d0);
            __m512 r[16];
            for (int l = 0; l < 16; l++)
                r[l] = j0 + l < T ? _mm512_maskz_loadu_ps(md, X + (size_t)(j0 + l) * ldx + d0)
                                  : _mm512_setzero_ps();
            aes_transpose16(r); /* r[e]: d0 + e, columns j0 .. j0 + 15 */
            for (int e = 0; e < 16 && d0 + e < hs; e++)
                _mm512_storeu_ps(bt + (size_t)(d0 + e) * ld + j0, r[e]);
        }
}

void att_x86_pack_rows(float *bp, const float *X, size_t ldx, int T, int hs)
{
    const size_t ld = att_x86_ld(hs);
    for (int k = 0; k < T; k++)
        for (int d = 0; d < hs; d += 16)
            _mm512_storeu_ps(bp + (size_t)k * ld + d,
                             _mm512_maskz_loadu_ps(aes_lanes(hs - d), X + (size_t)k * ldx + d));
}

void att_x86_strip(const float *a, size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                   int mr, int n, int kc, float alpha, int acc)
{
    strip(0, a, lda, b, ldb, c, ldc, mr, n, kc, alpha, acc);
}

void att_x86_add_t(float *Cm, size_t ldc, float *buf, const float *P, const float *Bm,
                   size_t ldb, int T, int hs, int causal)
{
    /* Bm's rows copied together: at their stride in qkv (3C floats, a
     * multiple of 1 KB for ViT-B/16) every strip's pass over them fell
     * into a few sets of L1 and went back to L2 */
    float *bp = buf;
    buf += (size_t)T * att_x86_ld(hs);
    att_x86_pack_rows(bp, Bm, ldb, T, hs);
    Bm = bp, ldb = att_x86_ld(hs);
    for (int j0 = 0; j0 < T; j0 += AMR) {
        const int mr = T - j0 < AMR ? T - j0 : AMR;
        /* row j of P^T Bm sums over the rows k of P, only k >= j when P
         * is zero above its diagonal (causal) */
        const int k0 = causal ? j0 : 0;
        const float *a = P + (size_t)k0 * T + j0;
        size_t lda = (size_t)T;
        if (mr < AMR) { /* the last strip: AMR columns would run past P */
            for (int k = k0; k < T; k++)
                for (int i = 0; i < AMR; i++)
                    buf[(size_t)(k - k0) * AMR + i] = i < mr ? P[(size_t)k * T + j0 + i] : 0.0f;
            a = buf, lda = AMR;
        }
        att_x86_prefetch(Cm + (size_t)(j0 + AMR) * ldc, ldc, T - j0 - AMR, hs);
        strip(1, a, lda, Bm + (size_t)k0 * ldb, ldb, Cm + (size_t)j0 * ldc, ldc, mr, hs, T - k0,
              1.0f, 1);
    }
}

#pragma GCC pop_options

#else /* no x86-64 with GCC: attention.c takes the BLAS path */

int att_x86_available(void) { return 0; }

#endif
