/*
 * Direct convolution with AVX-512 kernels for convs with few input
 * channels: the stem (3 -> 64, 7x7, stride 2), forward and weight
 * gradient. conv.c decides when (conv_direct_suits).
 *
 * Why (issue 3, the 70% target). As a GEMM the stem has a reduction of
 * only C*KH*KW = 147, so the implicit GEMM of conv_x86.c spends much of
 * its time packing B (every column is read and written once per 64
 * output channels' worth of work) and on tile overheads, and im2col +
 * OpenBLAS writes and rereads a col matrix 49 times the input's size. At
 * N = 8 on 2 threads the stem ran at 58% of the sgemm peak (forward
 * ~215, weight gradient ~155 GFLOP/s). Here nothing is packed but the
 * weights: the input is split once into zero-padded phase planes, in
 * which every tap (c, kh, kw) reads a stride-1 window at a fixed offset,
 * and the kernels load their vectors from those planes directly.
 *
 * The phase planes: xq[n][c][a][b][i][j] = x[n][c][s*i + a - pad][s*j + b
 * - pad] (zero outside the image) for stride s in {1, 2}, a, b < s, i <
 * Hq = OH + (KH-1)/s, j < Wq = 16*nvr + (KW-1)/s, where nvr = ceil(OW /
 * 16) vectors cover an output row. Output pixel (oh, ow) reads tap (c,
 * kh, kw) at plane (c, kh%s, kw%s), row oh + kh/s, column ow + kw/s, so
 * a vector of 16 output columns reads 16 consecutive floats, all inside
 * the planes (the lanes past OW read the padding or image columns that
 * the conv itself never uses: the forward does not store them, the
 * weight gradient masks them).
 *
 * Forward: a tile is 4 output channels by 6 vectors of 16 output pixels
 * (each vector inside one output row; a tile's vectors may span rows and
 * samples), 24 accumulators in registers through all K taps; per tap 4
 * weight broadcasts and 6 vector loads feed 24 fused multiply-adds. Each
 * output is summed in tap order from the bias (or zero), whatever the
 * thread count.
 *
 * Weight gradient: dw[oc][t] = sum over pixels of dy[oc][pixel] *
 * x_t[pixel]. A tile is 4 output channels by 6 taps; its 24 accumulators
 * hold 16 partial sums each (one per lane: the pixel's column mod 16) and
 * run through a unit of output rows (about 64 vectors of pixels, so that
 * the unit's windows of the planes stay in L1/L2); per vector of pixels 4
 * loads of dy and 6 of the planes feed 24 fused multiply-adds. The 16
 * lanes stay apart in a per-thread array until the end, where they and
 * the threads are added in a fixed order in double, so a run on the same
 * thread count repeats bit for bit.
 *
 * Measured: conv.c ("which path").
 */
#include <string.h>

#include <omp.h>

#include "aesnet/core.h"
#include "core/avx512.h"
#include "nn/nn_internal.h"

enum { DM = 4, DV = 6, UNIT_VECTORS = 64, MAX_TAPS = CONV_DIRECT_MAX_C * 49 };

int conv_direct_suits(int C, int KH, int KW, int stride)
{
    return C <= CONV_DIRECT_MAX_C && KH * KW > 1 && KH * KW <= 49 && (stride == 1 || stride == 2);
}

#ifdef AES_X86

typedef struct {
    int N, C, H, W, OC, KH, KW, s, pad, OH, OW;
    int K;      /* taps: C*KH*KW */
    int nvr;    /* vectors per output row */
    int Hq, Wq; /* rows and row length of a phase plane */
    int OCg;    /* groups of DM output channels */
    int Tg;     /* groups of DV taps (weight gradient) */
    int R;      /* output rows per unit (weight gradient) */
    size_t plane, sample; /* floats of a phase plane, of a sample's planes */
} dgeom;

static dgeom dgeom_of(int N, int C, int H, int W, int OC, int KH, int KW, int s, int pad)
{
    dgeom g;
    g.N = N, g.C = C, g.H = H, g.W = W, g.OC = OC, g.KH = KH, g.KW = KW, g.s = s, g.pad = pad;
    g.OH = (H + 2 * pad - KH) / s + 1;
    g.OW = (W + 2 * pad - KW) / s + 1;
    g.K = C * KH * KW;
    g.nvr = (g.OW + 15) / 16;
    g.Hq = g.OH + (KH - 1) / s;
    g.Wq = 16 * g.nvr + (KW - 1) / s;
    g.OCg = (OC + DM - 1) / DM;
    g.Tg = (g.K + DV - 1) / DV;
    g.R = (UNIT_VECTORS + g.nvr - 1) / g.nvr;
    if (g.R > g.OH) g.R = g.OH;
    g.plane = (size_t)g.Hq * g.Wq;
    g.sample = (size_t)C * s * s * g.plane;
    return g;
}


/* A thread's lane-wise sums, then its packed dy. */
static size_t acc_floats(const dgeom *g) { return (size_t)g->OCg * g->Tg * DM * DV * 16; }
static size_t wgrad_thread_floats(const dgeom *g)
{
    return acc_floats(g) + (size_t)g->R * g->nvr * DM * 16;
}

#pragma GCC push_options
#pragma GCC target("avx512f")

/* The phase planes of x (top of the file), one (sample, channel) per
 * iteration across the threads. */
static void build_planes(float *xq, const float *x, const dgeom *g)
{
    const int s = g->s, W = g->W, H = g->H, pad = g->pad;
    const int Tw = nn_team();
#pragma omp parallel for schedule(static) num_threads(Tw) if (Tw > 1)
    for (long nc = 0; nc < (long)g->N * g->C; nc++) {
        const float *src = x + (size_t)nc * H * W;
        float *dst = xq + (size_t)nc * s * s * g->plane;
        for (int a = 0; a < s; a++) {
            for (int i = 0; i < g->Hq; i++) {
                const int ih = s * i + a - pad;
                for (int b = 0; b < s; b++) {
                    float *row = dst + (size_t)(a * s + b) * g->plane + (size_t)i * g->Wq;
                    if (ih < 0 || ih >= H) {
                        memset(row, 0, sizeof(float) * g->Wq);
                        continue;
                    }
                    const float *in = src + (size_t)ih * W;
                    /* row[j] = in[s*j + b - pad]: columns j in [lo, hi) lie in the image */
                    const int off = b - pad;
                    int lo = 0, hi = g->Wq;
                    while (lo < hi && s * lo + off < 0) lo++;
                    while (hi > lo && s * (hi - 1) + off >= W) hi--;
                    for (int j = 0; j < lo; j++) row[j] = 0.0f;
                    if (s == 1) {
                        memcpy(row + lo, in + lo + off, sizeof(float) * (hi - lo));
                    } else {
                        const float *p = in + s * lo + off;
                        for (int j = 0; j < hi - lo; j++) row[lo + j] = p[s * j];
                    }
                    for (int j = hi; j < g->Wq; j++) row[j] = 0.0f;
                }
            }
        }
    }
}

/* Offset of tap t = (c, kh, kw) in a sample's planes, from output (0, 0). */
static void tap_offsets(int *off, const dgeom *g)
{
    const int s = g->s;
    for (int c = 0, t = 0; c < g->C; c++)
        for (int kh = 0; kh < g->KH; kh++)
            for (int kw = 0; kw < g->KW; kw++, t++)
                off[t] = (int)(((size_t)(c * s + kh % s) * s + kw % s) * g->plane +
                               (size_t)(kh / s) * g->Wq + kw / s);
}

/* Vector q = (n, oh, v) of the output pixels: where it reads in the planes
 * (from tap offset 0), where it writes in out[n][0], and its lanes. */
static void vector_at(const dgeom *g, long q, const float *xq, float *out, const float **xb,
                      float **yb, __mmask16 *mk)
{
    const long rowv = q / g->nvr;
    const int v = (int)(q - rowv * g->nvr), oh = (int)(rowv % g->OH);
    const long n = rowv / g->OH;
    *xb = xq + (size_t)n * g->sample + (size_t)oh * g->Wq + 16 * v;
    *yb = out + ((size_t)n * g->OC * g->OH + oh) * g->OW + 16 * v;
    *mk = aes_lanes(g->OW - 16 * v);
}

/* One forward tile: output channels [4*og, 4*og + 4) (rows past OC are
 * computed on zero weights and not stored) of the DV vectors. wp: the
 * group's weights, K x 4, tap-major. */
static void forward_tile(const dgeom *g, const float *const xb[DV], float *const yb[DV],
                         const __mmask16 mk[DV], const int *off, const float *wp,
                         const float *bias4, int rows, int pf_rows)
{
    const size_t P = (size_t)g->OH * g->OW;
    /* The output's lines into cache while the tile computes, so that its
     * stores retire at once: left to miss at the end, they held later
     * loads that alias them modulo 4 KB, and the forward took 7 to 11 ms
     * at N = 8 depending on where out and the planes lay. */
    for (int i = 0; i < pf_rows; i++)
        for (int j = 0; j < DV; j++)
            if (mk[j]) {
                _mm_prefetch((const char *)(yb[j] + (DM + i) * P), _MM_HINT_T0);
                _mm_prefetch((const char *)(yb[j] + (DM + i) * P + 15), _MM_HINT_T0);
            }
    __m512 acc[DM][DV];
#pragma GCC unroll 4
    for (int i = 0; i < DM; i++)
#pragma GCC unroll 6
        for (int j = 0; j < DV; j++) acc[i][j] = _mm512_set1_ps(bias4[i]);
    for (int t = 0; t < g->K; t++) {
        const float *wt = wp + DM * t;
        const __m512 w0 = _mm512_set1_ps(wt[0]), w1 = _mm512_set1_ps(wt[1]),
                     w2 = _mm512_set1_ps(wt[2]), w3 = _mm512_set1_ps(wt[3]);
        const int o = off[t];
#pragma GCC unroll 6
        for (int j = 0; j < DV; j++) {
            const __m512 xv = _mm512_loadu_ps(xb[j] + o);
            acc[0][j] = _mm512_fmadd_ps(w0, xv, acc[0][j]);
            acc[1][j] = _mm512_fmadd_ps(w1, xv, acc[1][j]);
            acc[2][j] = _mm512_fmadd_ps(w2, xv, acc[2][j]);
            acc[3][j] = _mm512_fmadd_ps(w3, xv, acc[3][j]);
        }
    }
    for (int i = 0; i < rows; i++)
#pragma GCC unroll 6
        for (int j = 0; j < DV; j++) _mm512_mask_storeu_ps(yb[j] + i * P, mk[j], acc[i][j]);
}

size_t conv_direct_floats(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    const dgeom g = dgeom_of(N, C, H, W, OC, KH, KW, stride, pad);
    const size_t planes = (size_t)N * g.sample;
    const size_t fwd = (size_t)g.OCg * DM * (g.K + 1);
    const size_t wgrad = (size_t)omp_get_max_threads() * wgrad_thread_floats(&g);
    return planes + (fwd > wgrad ? fwd : wgrad);
}

void conv_direct_forward(float *out, float *scratch, const float *x, const float *w,
                         const float *b, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad)
{
    const dgeom g = dgeom_of(N, C, H, W, OC, KH, KW, stride, pad);
    float *xq = scratch, *wp = xq + (size_t)N * g.sample, *bp = wp + (size_t)g.OCg * DM * g.K;
    int off[MAX_TAPS];
    build_planes(xq, x, &g);
    tap_offsets(off, &g);
    /* wp[og][t][i] = w[4*og + i][t], zero past OC */
    for (int og = 0; og < g.OCg; og++)
        for (int t = 0; t < g.K; t++)
            for (int i = 0; i < DM; i++) {
                const int oc = DM * og + i;
                wp[((size_t)og * g.K + t) * DM + i] = oc < OC ? w[(size_t)oc * g.K + t] : 0.0f;
            }
    for (int i = 0; i < g.OCg * DM; i++) bp[i] = b && i < OC ? b[i] : 0.0f;
    const long nq = (long)N * g.OH * g.nvr, tiles = (nq + DV - 1) / DV;
    const int Tw = nn_team();
#pragma omp parallel num_threads(Tw) if (Tw > 1)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        for (long k = t * tiles / T; k < (t + 1) * tiles / T; k++) {
            const float *xb[DV];
            float *yb[DV];
            __mmask16 mk[DV];
            for (int j = 0; j < DV; j++) {
                const long q = k * DV + j < nq ? k * DV + j : nq - 1;
                vector_at(&g, q, xq, out, &xb[j], &yb[j], &mk[j]);
                if (k * DV + j >= nq) mk[j] = 0;
            }
            for (int og = 0; og < g.OCg; og++) {
                float *ys[DV];
                for (int j = 0; j < DV; j++) ys[j] = yb[j] + (size_t)DM * og * g.OH * g.OW;
                const int rows = OC - DM * og < DM ? OC - DM * og : DM;
                const int left = OC - DM * (og + 1), pf = left < 0 ? 0 : left < DM ? left : DM;
                forward_tile(&g, xb, ys, mk, off, wp + (size_t)og * g.K * DM, bp + DM * og, rows,
                             pf);
            }
        }
    }
}

/* The dy of output channels [4*og, 4*og + 4) for output rows [oh0, oh1)
 * of one sample, vector by vector: dyp[q][i][16] for the unit's vectors
 * q = (oh - oh0)*nvr + v, zeros past OW and OC, so that the tile reads
 * them through one pointer with no masks. */
static void pack_dy(float *dyp, const dgeom *g, const float *dyn, int og, int oh0, int oh1)
{
    const size_t P = (size_t)g->OH * g->OW;
    for (int i = 0; i < DM; i++) {
        const int oc = DM * og + i;
        float *d = dyp + 16 * i;
        const float *src = dyn + (size_t)(oc < g->OC ? oc : 0) * P;
        for (int oh = oh0; oh < oh1; oh++)
            for (int v = 0; v < g->nvr; v++, d += DM * 16) {
                const __mmask16 m = oc < g->OC ? aes_lanes(g->OW - 16 * v) : 0;
                _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m, src + (size_t)oh * g->OW + 16 * v));
            }
    }
}

/* One weight-gradient tile over output rows [oh0, oh1) of a sample:
 * acc[4][6][16] += the lane-wise sums for output channels 4*og.. (dyp,
 * packed) and taps 6*tg.. (taps past K read offset 0 and are never added
 * to dw). */
static void wgrad_tile(float *acc_mem, const dgeom *g, const float *dyp, const float *xqn,
                       const int *off, int tg, int oh0, int oh1)
{
    ptrdiff_t o[DV];
    for (int j = 0; j < DV; j++) o[j] = DV * tg + j < g->K ? off[DV * tg + j] : 0;
    __m512 acc[DM][DV];
#pragma GCC unroll 4
    for (int i = 0; i < DM; i++)
#pragma GCC unroll 6
        for (int j = 0; j < DV; j++) acc[i][j] = _mm512_loadu_ps(acc_mem + (i * DV + j) * 16);
    /* One vector of pixels: 4 dy vectors by 6 tap vectors. The lanes past
     * OW (zero in dyp) must not read the image columns there, 0 * Inf
     * would put a NaN in dw from a pixel the conv never reads: the last
     * vector of a row loads masked when OW is not a multiple of 16 (all
     * of them masked cost the stem's weight gradient 10 -> 11.3 ms). */
#define WGRAD_STEP(LOAD)                                                                          \
    do {                                                                                          \
        const __m512 d0 = _mm512_loadu_ps(d), d1 = _mm512_loadu_ps(d + 16),                       \
                     d2 = _mm512_loadu_ps(d + 32), d3 = _mm512_loadu_ps(d + 48);                  \
        _Pragma("GCC unroll 6") for (int j = 0; j < DV; j++)                                      \
        {                                                                                         \
            const __m512 a = LOAD;                                                                \
            acc[0][j] = _mm512_fmadd_ps(d0, a, acc[0][j]);                                        \
            acc[1][j] = _mm512_fmadd_ps(d1, a, acc[1][j]);                                        \
            acc[2][j] = _mm512_fmadd_ps(d2, a, acc[2][j]);                                        \
            acc[3][j] = _mm512_fmadd_ps(d3, a, acc[3][j]);                                        \
        }                                                                                         \
    } while (0)
    const int full = g->OW / 16;
    const __mmask16 tail = aes_lanes(g->OW - 16 * full);
    const float *d = dyp;
    for (int oh = oh0; oh < oh1; oh++) {
        const float *xv = xqn + (size_t)oh * g->Wq;
        for (int v = 0; v < full; v++, xv += 16, d += DM * 16)
            WGRAD_STEP(_mm512_loadu_ps(xv + o[j]));
        if (tail) {
            WGRAD_STEP(_mm512_maskz_loadu_ps(tail, xv + o[j]));
            d += DM * 16;
        }
    }
#undef WGRAD_STEP
#pragma GCC unroll 4
    for (int i = 0; i < DM; i++)
#pragma GCC unroll 6
        for (int j = 0; j < DV; j++) _mm512_storeu_ps(acc_mem + (i * DV + j) * 16, acc[i][j]);
}

void conv_direct_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N,
                             int C, int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    const dgeom g = dgeom_of(N, C, H, W, OC, KH, KW, stride, pad);
    const size_t per = wgrad_thread_floats(&g), P = (size_t)g.OH * g.OW;
    float *xq = scratch, *accs = xq + (size_t)N * g.sample;
    int off[MAX_TAPS];
    build_planes(xq, x, &g);
    tap_offsets(off, &g);
    const int upn = (g.OH + g.R - 1) / g.R; /* units per sample */
    const long units = (long)N * upn;
    const int Tw = nn_team();
#pragma omp parallel num_threads(Tw) if (Tw > 1)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        float *mine = accs + (size_t)t * per, *dyp = mine + acc_floats(&g);
        memset(mine, 0, per * sizeof(float));
        for (long u = t * units / T; u < (t + 1) * units / T; u++) {
            const int n = (int)(u / upn), oh0 = (int)(u % upn) * g.R;
            const int oh1 = oh0 + g.R < g.OH ? oh0 + g.R : g.OH;
            const float *dyn = dy + (size_t)n * OC * P, *xqn = xq + (size_t)n * g.sample;
            for (int og = 0; og < g.OCg; og++) {
                pack_dy(dyp, &g, dyn, og, oh0, oh1);
                for (int tg = 0; tg < g.Tg; tg++)
                    wgrad_tile(mine + ((size_t)og * g.Tg + tg) * DM * DV * 16, &g, dyp, xqn, off,
                               tg, oh0, oh1);
            }
        }
#pragma omp barrier
        /* dw[oc][k] += the threads' lanes, thread by thread, lane by lane */
#pragma omp for schedule(static)
        for (long e = 0; e < (long)OC * g.K; e++) {
            const int oc = (int)(e / g.K), k = (int)(e % g.K);
            const size_t at = (((size_t)(oc / DM) * g.Tg + k / DV) * DM * DV +
                               (size_t)(oc % DM) * DV + k % DV) * 16;
            double sum = 0.0;
            for (int u = 0; u < T; u++)
                for (int l = 0; l < 16; l++) sum += accs[(size_t)u * per + at + l];
            dw[e] += (float)sum;
        }
    }
}

#pragma GCC pop_options

#else /* no x86-64 with GCC: conv_direct_suits is never asked */

size_t conv_direct_floats(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    return 0 * (size_t)N * C * H * W * OC * KH * KW * stride * pad;
}
void conv_direct_forward(float *out, float *scratch, const float *x, const float *w,
                         const float *b, int N, int C, int H, int W, int OC, int KH, int KW,
                         int stride, int pad)
{
    AES_CHECK(0 && out && scratch && x && w && b && N && C && H && W && OC && KH && KW &&
              stride && pad);
}
void conv_direct_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N,
                             int C, int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    AES_CHECK(0 && dw && scratch && dy && x && N && C && H && W && OC && KH && KW && stride &&
              pad);
}

#endif
