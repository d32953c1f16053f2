/*
 * Convolution as an implicit GEMM with AVX-512 kernels of our own: out[n]
 * [m][p] (+)= sum_k A[m][k] * col(x)[k][n, p], where col(x) is im2col of
 * x but never written out. Used by conv.c for the forward pass and the
 * weight gradient (below) of stride-1 and stride-2 convs (A = the
 * weights), and for the input gradient of stride-1 convs, which is itself
 * a stride-1 conv of dout (A = the weights with input and output channels
 * swapped and the kernel turned by 180 degrees, padding KH-1-pad). For
 * stride 2 the packing reads two vectors of the input row and keeps their
 * even elements (one permute), rather than reading four phase planes of
 * the input written out beforehand, as it first did: that pass over the
 * input cost about 1 ms of the 128-channel strided 3x3's forward at N =
 * 8 (7.4-8.5 -> 6.7-7.0 ms), and a weight gradient from the planes lost
 * to im2col + OpenBLAS, where this one breaks even on ResNet-50's strided
 * 3x3 (8.5-8.6 against 8.5-8.9 ms) and takes the demo model's (16 to 64
 * channels, 16 to 4 pixels, N = 32) from 0.36-0.41 to 0.13-0.18 ms.
 *
 * Why (issue 3, the 70% target). With im2col + OpenBLAS, every conv
 * writes its col matrix (C*KH*KW x OH*OW floats per sample) and OpenBLAS
 * reads it back to pack it; the input gradient goes through a col-sized
 * GEMM output and col2im; and the 7x7 layers run GEMMs of 49 columns per
 * sample. Here the packing routine reads the image directly, a sample's
 * columns continue into the next sample's (so the 7x7 layers see N*49
 * columns), and the input gradient is a GEMM with K = OC*KH*KW writing
 * dinp once.
 *
 * Measured (test/tools/bench_conv 8 5, 2 threads, OPENBLAS_CORETYPE=
 * SkylakeX, 2-core Sapphire Rapids VM), timed in turn with im2col +
 * OpenBLAS inside one process: the figures are in conv.c ("which path"),
 * which also says what stays on OpenBLAS. Runs of the two paths in
 * separate processes minutes apart disagreed (this VM's speed drifts by
 * 10-20%), which is why the benchmark alternates them. What made the
 * difference, after a first version that only broke even: packing the
 * weights with 16x16 transposes instead of a function call per element
 * (7x7 layer forward 10.0 -> 8.6 ms), and working out each tap's masked
 * loads once per panel for all channels instead of once per row of B
 * (3x3 convs at 14x14 and 28x28 from ~255 to ~290-310 GFLOP/s forward).
 * The micro-kernel alone reaches 147 GFLOP/s against OpenBLAS's 154 on a
 * 1536^3 sgemm on one core.
 *
 * The GEMM is the usual three-level blocking (Goto, BLIS): columns in
 * blocks of NC, reduction in blocks of KC; for each (column block,
 * reduction block) the B block is packed (KC x NC, in panels of NR
 * columns, about 400 KB, in L2) and then every 8 x 48 tile of C is one
 * call of the micro-kernel, which keeps its 24 accumulators (3 vectors of
 * 16 by 8 rows) in registers through the KC steps. A, the weights, is
 * packed once per call into panels of MR rows per KC block.
 *
 * Sums: every output is accumulated in k order (KC blocks in order, k in
 * order inside a block, one fused multiply-add per term), whatever the
 * thread count and the position of its column in a tile, so results
 * repeat bit for bit on any number of threads.
 *
 * The packing of B: a panel's 48 columns are 3 vectors of 16 lanes; the
 * lanes of a vector fall into runs of consecutive output columns of one
 * output row of one sample; for every k = (c, kh, kw) each run is one
 * masked load from the input row (the mask drops the lanes in the
 * padding), so a k row of the panel costs 3 stores and a few loads. The
 * loads depend on the tap (kh, kw) and not on the channel, so a panel is
 * packed tap by tap, with the tap's loads worked out once (plan_tap).
 * Column blocks are cut evenly (no block of a few columns at the end).
 */
#include <stdint.h>
#include <string.h>

#include <omp.h>

#include "aesnet/core.h"
#include "core/avx512.h"
#include "nn/nn_internal.h"

enum { MR = 8, NV = 3, NR = 16 * NV, KC = 256, NC = 8 * NR };

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

size_t conv_ig_packed_floats(int M, int K) { return (size_t)round_up(M, MR) * K; }

size_t conv_ig_thread_floats(void) { return (size_t)KC * NC + (size_t)MR * NR; }

#ifdef AES_X86

int conv_ig_available(void) { return aes_avx512(); }

/* Everything below runs only where conv_ig_available(): all of it is
 * compiled for AVX-512, so that no legacy-SSE code (a helper returning a
 * struct, say) runs between AVX-512 code with the upper register halves
 * dirty. A helper compiled without it once cost the stem's forward 9 ms
 * of 18 in such transitions. */
#pragma GCC push_options
#pragma GCC target("avx512f")

/* c[0:8][0:16*nv] (row stride ldc) = init + a @ b over kc steps, with
 * init = c itself (add) or bias[0:8] per row (bias may be NULL: zero).
 * a: kc x 8, b: kc rows of NR floats (the first 16*nv used), both packed
 * k-major. nv < 3 serves panels of at most 32 or 16 columns. */
static inline __attribute__((always_inline)) void
kernel_8xv(int nv, int kc, const float *a, const float *b, float *c, size_t ldc, int add,
           const float *bias)
{
    __m512 r[MR][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        const __m512 z = bias ? _mm512_set1_ps(bias[i]) : _mm512_setzero_ps();
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) r[i][v] = z;
    }
    for (int k = 0; k < kc; k++) {
        __m512 bv[NV];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) r[i][v] = _mm512_fmadd_ps(av, bv[v], r[i][v]);
        }
        a += MR;
        b += NR;
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            float *p = c + i * ldc + 16 * v;
            _mm512_storeu_ps(p, add ? _mm512_add_ps(_mm512_loadu_ps(p), r[i][v]) : r[i][v]);
        }
    }
}

static void kernel_8x48(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add, const float *bias)
{
    kernel_8xv(3, kc, a, b, c, ldc, add, bias);
}

static void kernel_8x32(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add, const float *bias)
{
    kernel_8xv(2, kc, a, b, c, ldc, add, bias);
}

static void kernel_8x16(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add, const float *bias)
{
    kernel_8xv(1, kc, a, b, c, ldc, add, bias);
}

/* A tile of ncols <= 48 columns into tmp[8][NR], the narrowest kernel
 * that covers them. */
static void kernel_tmp(int ncols, int kc, const float *a, const float *b, float *tmp)
{
    if (ncols <= 16)
        kernel_8x16(kc, a, b, tmp, NR, 0, NULL);
    else if (ncols <= 32)
        kernel_8x32(kc, a, b, tmp, NR, 0, NULL);
    else
        kernel_8x48(kc, a, b, tmp, NR, 0, NULL);
}

/* Packed A: for every KC block starting at pc, Mp/8 panels of kc x 8
 * (k-major) at ap + pc*Mp + ir*kc; rows past M are zero. This stores one
 * block's rows ir .. ir+15 at k .. k+nk-1, given as r[i] = row ir+i at 16
 * consecutive k (transposed here), into the panels of rows ir and ir+8
 * (the second when it exists: Mp is a multiple of 8 only). */
static void store_panels16(float *blk, __m512 r[16], int ir, int Mp, int kc, int k, int nk)
{
    aes_transpose16(r); /* r[l]: k + l, rows ir .. ir+15 */
    for (int l = 0; l < nk; l++) {
        _mm256_storeu_ps(blk + (size_t)ir * kc + (size_t)(k + l) * MR,
                         _mm512_castps512_ps256(r[l]));
        if (ir + MR < Mp)
            _mm256_storeu_ps(blk + (size_t)(ir + MR) * kc + (size_t)(k + l) * MR,
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(r[l]), 1)));
    }
}

/* The forward weights w[M, K] as they are, 16 rows by 16 k at a time. */
void conv_ig_pack(float *ap, const float *w, int M, int K)
{
    const int Mp = round_up(M, MR), nblocks = (K + KC - 1) / KC, ngroups = (Mp + 15) / 16;
#pragma omp parallel for schedule(static) collapse(2) if ((size_t)M * K > 32768)
    for (int bi = 0; bi < nblocks; bi++) {
        for (int gi = 0; gi < ngroups; gi++) {
            const int pc = bi * KC, kc = K - pc < KC ? K - pc : KC, ir = gi * 16;
            for (int k = 0; k < kc; k += 16) {
                const int nk = kc - k < 16 ? kc - k : 16;
                const __mmask16 m = aes_lanes(nk);
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = ir + i < M ? _mm512_maskz_loadu_ps(m, w + (size_t)(ir + i) * K + pc + k)
                                      : _mm512_setzero_ps();
                store_panels16(ap + (size_t)pc * Mp, r, ir, Mp, kc, k, nk);
            }
        }
    }
}

/* The input-gradient weights: A[c][oc*KK + t] = w[oc][c][KK-1-t], KK =
 * KH*KW (the kernel turned by 180 degrees). The 8 rows of a panel at one
 * oc are 8*KK consecutive floats of w. */
void conv_ig_pack_flipped(float *ap, const float *w, int OC, int C, int KH, int KW)
{
    const int KK = KH * KW, K = OC * KK, Mp = round_up(C, MR), npanels = Mp / MR;
    /* A full panel's KK taps of one oc are, in w, MR rows of KK floats one
     * after the other, and in ap, when they stay inside one KC block, KK
     * rows of MR floats one after the other: the same MR*KK floats
     * transposed, t reversed. For kernels of up to 64 taps they go as
     * gathers from the source block, 16 lanes at a time (idx); partial
     * panels and blocks split by a KC boundary one by one. The one-by-one
     * copy had taken a fifth of the input gradient of ResNet-50's
     * 512-channel 3x3 at 7x7 px, N = 8 (2.4 M weights): 8.9 -> 8.0 ms. */
    enum { GATHER_MAX = MR * 64 };
    int idx[GATHER_MAX + 16];
    const int nblk = MR * KK, gather = nblk <= GATHER_MAX;
    for (int p = 0; gather && p < nblk; p++) idx[p] = (p % MR) * KK + KK - 1 - p / MR;
#pragma omp parallel for schedule(static) if ((size_t)C * K > 32768)
    for (int pi = 0; pi < npanels; pi++) {
        const int c0 = pi * MR, rows = C - c0 < MR ? C - c0 : MR;
        for (int oc = 0; oc < OC; oc++) {
            const float *src = w + ((size_t)oc * C + c0) * KK;
            const int k0 = oc * KK;
            if (gather && rows == MR && k0 / KC == (k0 + KK - 1) / KC) {
                const int pc = k0 / KC * KC, kc = K - pc < KC ? K - pc : KC;
                float *d = ap + (size_t)pc * Mp + (size_t)c0 * kc + (size_t)(k0 - pc) * MR;
                for (int p = 0; p < nblk; p += 16) {
                    const __mmask16 m = aes_lanes(nblk - p);
                    const __m512i ix = _mm512_maskz_loadu_epi32(m, idx + p);
                    _mm512_mask_storeu_ps(
                        d + p, m, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, ix, src, 4));
                }
                continue;
            }
            for (int t = 0; t < KK; t++) {
                const int k = oc * KK + t, pc = k / KC * KC, kc = K - pc < KC ? K - pc : KC;
                float *d = ap + (size_t)pc * Mp + (size_t)c0 * kc + (size_t)(k - pc) * MR;
                for (int i = 0; i < rows; i++) d[i] = src[i * KK + KK - 1 - t];
                for (int i = rows; i < MR; i++) d[i] = 0.0f;
            }
        }
    }
}

/* A conv of stride 1 or 2: x[N, C, H, W] to out[N, M, OH, OW]; K =
 * C*KH*KW, P = OH*OW, Mp = M rounded up to the packing's row tile. */
typedef struct {
    int N, C, H, W, M, KH, KW, stride, pad, OH, OW, P, K, Mp;
} geom;

static geom geom_of(int N, int C, int H, int W, int M, int KH, int KW, int stride, int pad, int mr)
{
    geom g = {N, C, H, W, M, KH, KW, stride, pad, 0, 0, 0, 0, 0};
    g.OH = (H + 2 * pad - KH) / stride + 1;
    g.OW = (W + 2 * pad - KW) / stride + 1;
    g.P = g.OH * g.OW;
    g.K = C * KH * KW;
    g.Mp = round_up(M, mr);
    return g;
}

/* A run: lanes [lo, hi) of one 16-lane vector of a panel are output
 * columns ow0 + (lane - lo) of output row oh of sample n. */
typedef struct {
    int lo, hi, n, oh, ow0;
} run;

typedef struct {
    int nruns[NV];
    run runs[NV][16];
} panel_map;

static void map_panel(panel_map *pm, const geom *g, long j0, int ncols)
{
    for (int v = 0; v < NV; v++) {
        pm->nruns[v] = 0;
        for (int l = 0; l < 16; l++) {
            const int col = 16 * v + l;
            if (col >= ncols) break;
            const long j = j0 + col;
            const int n = (int)(j / g->P), p = (int)(j % g->P), oh = p / g->OW, ow = p % g->OW;
            if (pm->nruns[v] > 0) {
                run *last = &pm->runs[v][pm->nruns[v] - 1];
                if (last->n == n && last->oh == oh && ow == last->ow0 + (l - last->lo)) {
                    last->hi = l + 1;
                    continue;
                }
            }
            run *r = &pm->runs[v][pm->nruns[v]++];
            r->lo = l, r->hi = l + 1, r->n = n, r->oh = oh, r->ow0 = ow;
        }
    }
}

/* The loads of one kernel tap (kh, kw) for a panel's vectors: vector v
 * of the panel's row k = (c, kh, kw) is the masked loads e[start[v] ..
 * start[v+1]) from x + c*H*W + e.off, one per run of its lanes that
 * falls inside the image (the mask drops the lanes in the padding). The
 * same for every channel c, so it is worked out once per tap. */
typedef struct {
    ptrdiff_t off;
    __mmask16 m, ma, mb; /* the lanes; stride 2: the two loads' masks */
} tap_load;

typedef struct {
    int start[NV + 1];
    tap_load e[NR]; /* at most one per run, and a run has a lane at least */
} tap_plan;

static void plan_tap(tap_load *e, int *start, const geom *g, const panel_map *pm, int nv, int kh,
                     int kw)
{
    int n = 0;
    for (int v = 0; v < nv; v++) {
        start[v] = n;
        for (int q = 0; q < pm->nruns[v]; q++) {
            const run *r = &pm->runs[v][q];
            const int ih = r->oh * g->stride - g->pad + kh;
            if (ih < 0 || ih >= g->H) continue;
            /* lane l reads input column base + stride*l */
            const int st = g->stride, base = st * (r->ow0 - r->lo) - g->pad + kw;
            const int l0 = -nn_floor_div(base, st);
            const int l1 = nn_floor_div(g->W - 1 - base, st) + 1;
            const int a = l0 > r->lo ? l0 : r->lo, b = l1 < r->hi ? l1 : r->hi;
            if (a >= b) continue;
            e[n].m = aes_lanes(b) & (__mmask16)~aes_lanes(a);
            e[n].ma = e[n].mb = 0;
            for (int l = a; l < b && st == 2; l++) {
                if (2 * l < 16)
                    e[n].ma |= (__mmask16)(1u << (2 * l));
                else
                    e[n].mb |= (__mmask16)(1u << (2 * l - 16));
            }
            e[n++].off = ((ptrdiff_t)r->n * g->C * g->H + ih) * g->W + base;
        }
    }
    start[nv] = n;
}

/* Vector v of a row of the tap's channel xc = x + c*H*W. Stride 2:
 * two loads of 16 and their even elements. */
static inline __m512 tap_vec(const float *xc, const tap_load *e, const int *start, int v, int s2)
{
    /* Lane 0's address may lie before x (its lane masked off), so it is
     * formed as an integer, not by pointer arithmetic out of the array. */
    __m512 val = _mm512_setzero_ps();
    for (int i = start[v]; i < start[v + 1]; i++) {
        const uintptr_t at = (uintptr_t)xc + (uintptr_t)(e[i].off * (ptrdiff_t)sizeof(float));
        if (!s2) {
            val = _mm512_mask_loadu_ps(val, e[i].m, (const void *)at);
            continue;
        }
        const __m512i ev =
            _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        const __m512 lo = _mm512_maskz_loadu_ps(e[i].ma, (const void *)at);
        const __m512 hi = _mm512_maskz_loadu_ps(e[i].mb, (const void *)(at + 16 * sizeof(float)));
        val = _mm512_mask_mov_ps(val, e[i].m, _mm512_permutex2var_ps(lo, ev, hi));
    }
    return val;
}

/* B block: columns [j0, j0+nc), rows [k0, k0+kc), as panels of kc x 48;
 * panel by panel, and in a panel tap by tap, each tap's loads worked out
 * once for all its channels. */
static void pack_b(float *bbuf, const float *x, const geom *g, long j0, int nc, int k0,
                          int kc)
{
    const int np = (nc + NR - 1) / NR, KK = g->KH * g->KW;
    const size_t plane = (size_t)g->H * g->W;
    for (int q = 0; q < np; q++) {
        panel_map pm;
        tap_plan tp;
        float *panel = bbuf + (size_t)q * kc * NR;
        map_panel(&pm, g, j0 + (long)q * NR, nc - q * NR < NR ? nc - q * NR : NR);
        for (int t = 0; t < KK; t++) {
            int c = k0 > t ? (k0 - t + KK - 1) / KK : 0; /* the first c*KK + t >= k0 */
            if (c * KK + t >= k0 + kc) continue;
            plan_tap(tp.e, tp.start, g, &pm, NV, t / g->KW, t % g->KW);
            for (int k = c * KK + t; k < k0 + kc; k += KK, c++) {
                float *dst = panel + (size_t)(k - k0) * NR;
                for (int v = 0; v < NV; v++)
                    _mm512_storeu_ps(dst + 16 * v,
                                     tap_vec(x + c * plane, tp.e, tp.start, v, g->stride == 2));
            }
        }
    }
}

/* out (+)= tmp for the tile's valid rows and columns, column by column as
 * the columns may cross into the next sample. first: the tile's first
 * write (out = bias + tmp, or out += tmp when accumulating). */
static void scatter_tile(float *out, const float *tmp, const geom *g, long j0, int ncols, int ir,
                         int write, const float *bias)
{
    /* a run of the tile's columns at a time that lies in one sample's
     * output row block, 16 lanes at a time (the 7x7 layers' tiles nearly
     * all cross samples: a float at a time this took a tenth of their
     * forward) */
    const int mrows = g->M - ir < MR ? g->M - ir : MR;
    for (int col = 0; col < ncols;) {
        const long j = j0 + col;
        const long n = j / g->P, p = j % g->P;
        const int len = g->P - p < ncols - col ? (int)(g->P - p) : ncols - col;
        for (int i = 0; i < mrows; i++) {
            float *o = out + ((size_t)n * g->M + ir + i) * g->P + p;
            const float *t = tmp + i * NR + col;
            const __m512 b = _mm512_set1_ps(write && bias ? bias[ir + i] : 0.0f);
            for (int c = 0; c < len; c += 16) {
                const __mmask16 m = aes_lanes(len - c);
                const __m512 v = _mm512_maskz_loadu_ps(m, t + c);
                const __m512 base = write ? b : _mm512_maskz_loadu_ps(m, o + c);
                _mm512_mask_storeu_ps(o + c, m, _mm512_add_ps(base, v));
            }
        }
        col += len;
    }
}

/* Columns [jb, je) of output rows [m0, m1) (multiples of MR). */
static void run_block(float *out, float *buf, const float *x, const float *ap, const float *bias,
                      int accumulate, const geom *g, long jb, long je, int m0, int m1)
{
    float *bbuf = buf, *tmp = buf + (size_t)KC * NC;
    const long nblk = (je - jb + NC - 1) / NC;
    const int ncb = round_up((int)((je - jb + nblk - 1) / nblk), NR);
    for (long jc = jb; jc < je; jc += ncb) {
        const int nc = je - jc < ncb ? (int)(je - jc) : ncb;
        for (int pc = 0; pc < g->K; pc += KC) {
            const int kc = g->K - pc < KC ? g->K - pc : KC;
            const int write = pc == 0 && !accumulate;
            pack_b(bbuf, x, g, jc, nc, pc, kc);
            for (int ir = m0; ir < m1; ir += MR) {
                const float *a = ap + (size_t)pc * g->Mp + (size_t)ir * kc;
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bp = bbuf + (size_t)jr * kc;
                    const int ncols = nc - jr < NR ? nc - jr : NR;
                    const long j = jc + jr, n = j / g->P, p = j % g->P;
                    if (ncols == NR && p + NR <= g->P && ir + MR <= g->M) {
                        kernel_8x48(kc, a, bp, out + ((size_t)n * g->M + ir) * g->P + p, g->P,
                                    !write, write && bias ? bias + ir : NULL);
                    } else {
                        kernel_tmp(ncols, kc, a, bp, tmp);
                        scatter_tile(out, tmp, g, j, ncols, ir, write, bias);
                    }
                }
            }
        }
    }
}

void conv_ig_run(float *out, float *scratch, const float *x, const float *ap, const float *bias,
                 int accumulate, int N, int C, int H, int W, int M, int KH, int KW, int stride,
                 int pad)
{
    const geom g = geom_of(N, C, H, W, M, KH, KW, stride, pad, MR);
    const long cols = (long)N * g.P;
    const int T = nn_team(), mpanels = g.Mp / MR;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        /* The team the runtime gave (OMP_THREAD_LIMIT, OMP_DYNAMIC may make
         * it smaller than asked) in a grid of tm x tn threads, tm splitting
         * the rows of out and tn its columns, in whole panels; the one
         * whose busiest thread has the least work, counting the packing of
         * a column panel as one more tile (each of the tm threads on the
         * same columns packs them). The columns get all threads unless
         * there are few of them (the 7x7 layers). */
        const int Ta = omp_get_num_threads();
        int tm = 1;
        long best = -1;
        for (int d = 1; d <= Ta; d++) {
            if (Ta % d || d > mpanels) continue;
            const long pc = (cols + (long)(Ta / d) * NR - 1) / ((long)(Ta / d) * NR);
            const long cost = pc * ((mpanels + d - 1) / d + 1);
            if (best < 0 || cost < best) best = cost, tm = d;
        }
        const int tn = Ta / tm;
        const long per = ((cols + tn - 1) / tn + NR - 1) / NR * NR;
        const int mper = (mpanels + tm - 1) / tm * MR;
        const int t = omp_get_thread_num(), ti = t % tm, tj = t / tm;
        const long jb = tj * per < cols ? tj * per : cols, je = jb + per < cols ? jb + per : cols;
        const int m0 = ti * mper < g.Mp ? ti * mper : g.Mp;
        const int m1 = m0 + mper < g.Mp ? m0 + mper : g.Mp;
        if (jb < je && m0 < m1)
            run_block(out, scratch + (size_t)t * conv_ig_thread_floats(), x, ap, bias,
                      accumulate, &g, jb, je, m0, m1);
    }
}

/* ---- weight gradient ------------------------------------------------------
 *
 * dw[OC, C*KH*KW] += dy[OC, (n, p)] @ col(x)[(n, p), C*KH*KW]: the same
 * kernel with M = OC, the columns the C*KH*KW weights of a filter, and
 * the reduction over every output pixel of every sample, in blocks of
 * KCW pixels. Both operands are stored pixel-fastest, so both packs
 * transpose, 16 x 16 floats at a time: A from 16 rows of dy, B from the
 * 16-pixel vectors of 16 weights that the forward's row packing builds.
 */
enum { KCW = 256 };

/* A for the pixels [q0, q0 + kc) (kc a multiple of 16; pixels past
 * nq are zero): Mp/8 panels of kc x 8 at ap + ir*kc. */
static void pack_dy(float *ap, const float *dy, const geom *g, long q0, int kc, long nq)
{
    for (int k = 0; k < kc; k += 16) {
        const long q = q0 + k;
        const long n = q / g->P, p = q % g->P;
        const int whole = q + 16 <= nq && p + 16 <= g->P;
        for (int ir = 0; ir < g->Mp; ir += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const int oc = ir + i;
                if (oc >= g->M) {
                    r[i] = _mm512_setzero_ps();
                } else if (whole) {
                    r[i] = _mm512_loadu_ps(dy + ((size_t)n * g->M + oc) * g->P + p);
                } else {
                    float t[16];
                    for (int l = 0; l < 16; l++) {
                        const long ql = q + l;
                        t[l] = ql < nq ? dy[((size_t)(ql / g->P) * g->M + oc) * g->P + ql % g->P]
                                       : 0.0f;
                    }
                    r[i] = _mm512_loadu_ps(t);
                }
            }
            store_panels16(ap, r, ir, g->Mp, kc, k, 16);
        }
    }
}

/* B for the pixels [q0, q0 + kc) and the weights [j0, j0 + nc): panels
 * of kc x 48, weights past K zero. */
static void pack_cols_t(float *bbuf, const float *x, const geom *g, long q0, int kc, long nq,
                               int j0, int nc)
{
    const int KK = g->KH * g->KW;
    tap_load e[CONV_IG_WGRAD_MAX_TAPS][16];
    int start[CONV_IG_WGRAD_MAX_TAPS][2];
    for (int k = 0; k < kc; k += 16) {
        panel_map pm;
        const long left = nq - (q0 + k);
        map_panel(&pm, g, q0 + k, left < 16 ? (int)left : 16);
        for (int t = 0; t < KK; t++) plan_tap(e[t], start[t], g, &pm, 1, t / g->KW, t % g->KW);
        for (int j = 0; j < nc; j += 16) {
            __m512 r[16];
            for (int t = 0; t < 16; t++) {
                const int jj = j0 + j + t;
                if (jj >= g->K) {
                    r[t] = _mm512_setzero_ps();
                    continue;
                }
                const int c = jj / KK, tap = jj % KK;
                r[t] = tap_vec(x + (size_t)c * g->H * g->W, e[tap], start[tap], 0, g->stride == 2);
            }
            aes_transpose16(r); /* r[l]: pixel q0 + k + l, weights j0 + j .. +15 */
            float *d = bbuf + (size_t)(j / NR) * kc * NR + (size_t)k * NR + j % NR;
            for (int l = 0; l < 16; l++) _mm512_storeu_ps(d + (size_t)l * NR, r[l]);
        }
    }
}

/* dw[r][c] += tmp[r][c] for a tile's valid rows and columns. */
static void add_tile(float *dw, const float *tmp, const geom *g, int ir, int j, int ncols)
{
    const int mrows = g->M - ir < MR ? g->M - ir : MR;
    for (int i = 0; i < mrows; i++)
        for (int c = 0; c < ncols; c++) dw[(size_t)(ir + i) * g->K + j + c] += tmp[i * NR + c];
}

/* dw[:, jb:je] += the sum over pixels [qb, qe). */
static void wgrad_block(float *dw, float *buf, const float *dy, const float *x, const geom *g,
                        long qb, long qe, int jb, int je)
{
    float *apk = buf, *bbuf = apk + (size_t)g->Mp * KCW, *tmp = bbuf + (size_t)KCW * NC;
    for (long qc = qb; qc < qe; qc += KCW) {
        const int kq = qe - qc < KCW ? (int)(qe - qc) : KCW, kc = (kq + 15) / 16 * 16;
        pack_dy(apk, dy, g, qc, kc, qe);
        for (int jc = jb; jc < je; jc += NC) {
            const int nc = je - jc < NC ? je - jc : NC;
            pack_cols_t(bbuf, x, g, qc, kc, qe, jc, (nc + 15) / 16 * 16);
            for (int ir = 0; ir < g->Mp; ir += MR) {
                const float *a = apk + (size_t)ir * kc;
                for (int jr = 0; jr < nc; jr += NR) {
                    const float *bp = bbuf + (size_t)jr * kc;
                    const int ncols = nc - jr < NR ? nc - jr : NR;
                    if (ncols == NR && ir + MR <= g->M) {
                        kernel_8x48(kc, a, bp, dw + (size_t)ir * g->K + jc + jr, g->K, 1, NULL);
                    } else {
                        kernel_tmp(ncols, kc, a, bp, tmp);
                        add_tile(dw, tmp, g, ir, jc + jr, ncols);
                    }
                }
            }
        }
    }
}

/* Threads: each its own range of weight columns when there are enough
 * panels to share; otherwise (few weights: 3x3 convs of up to 128
 * channels at 2 threads) each its own range of pixels into a private dw
 * that is then added to dw in thread order. Either way the sums repeat
 * bit for bit on the same thread count. */
static int wgrad_by_pixels(int K, int T) { return T > 1 && (K + NR - 1) / NR < 8 * T; }

/* One thread's buffers: packed dy (rows rounded to 16), the B block, a
 * tile. */
static size_t wgrad_thread_floats(int OC)
{
    return (size_t)round_up(OC, 16) * KCW + (size_t)KCW * NC + (size_t)MR * NR;
}

size_t conv_ig_wgrad_floats(int OC, int C, int KH, int KW)
{
    const int T = omp_get_max_threads(), K = C * KH * KW;
    const size_t priv = wgrad_by_pixels(K, T) ? (size_t)T * OC * K : 0;
    return (size_t)T * wgrad_thread_floats(OC) + priv;
}

void conv_ig_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N, int C,
                         int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    const geom g = geom_of(N, C, H, W, OC, KH, KW, stride, pad, 16);
    const long nq = (long)N * g.P;
    const int T = nn_team();
    const size_t per = wgrad_thread_floats(OC);
    const int panels = (g.K + NR - 1) / NR;
    float *priv = scratch + (size_t)T * per; /* sized for T: a smaller team fits */
    const size_t nw = (size_t)OC * g.K;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        const int t = omp_get_thread_num(), Ta = omp_get_num_threads();
        const int by_pixels = wgrad_by_pixels(g.K, Ta); /* implies wgrad_by_pixels(g.K, T) */
        float *buf = scratch + (size_t)t * per;
        if (by_pixels) {
            const long qper = (nq + Ta - 1) / Ta;
            const long qb = t * qper < nq ? t * qper : nq, qe = qb + qper < nq ? qb + qper : nq;
            float *mine = priv + (size_t)t * nw;
            memset(mine, 0, nw * sizeof(float));
            if (qb < qe) wgrad_block(mine, buf, dy, x, &g, qb, qe, 0, g.K);
            conv_add_private(dw, priv, Ta, nw);
        } else {
            const int pper = (panels + Ta - 1) / Ta;
            const int jb = t * pper * NR < g.K ? t * pper * NR : g.K;
            const int je = jb + pper * NR < g.K ? jb + pper * NR : g.K;
            if (jb < je) wgrad_block(dw, buf, dy, x, &g, 0, nq, jb, je);
        }
    }
}

#pragma GCC pop_options

#else /* no x86-64 with GCC: the BLAS path only */

size_t conv_ig_wgrad_floats(int OC, int C, int KH, int KW) { return 0 * OC * C * KH * KW; }
void conv_ig_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N, int C,
                         int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    AES_CHECK(0 && dw && scratch && dy && x && N && C && H && W && OC && KH && KW && stride &&
              pad);
}

int conv_ig_available(void) { return 0; }
void conv_ig_pack(float *ap, const float *w, int M, int K) { AES_CHECK(0 && ap && w && M && K); }
void conv_ig_pack_flipped(float *ap, const float *w, int OC, int C, int KH, int KW)
{
    AES_CHECK(0 && ap && w && OC && C && KH && KW);
}
void conv_ig_run(float *out, float *scratch, const float *x, const float *ap, const float *bias,
                 int accumulate, int N, int C, int H, int W, int M, int KH, int KW, int stride,
                 int pad)
{
    AES_CHECK(0 && out && scratch && x && ap && bias && accumulate && N && C && H && W && M &&
              KH && KW && stride && pad);
}

#endif
