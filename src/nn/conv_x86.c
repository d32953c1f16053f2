/*
 * Stride-1 convolution as an implicit GEMM with AVX-512 kernels of our
 * own: out[n][m][p] (+)= sum_k A[m][k] * col(x)[k][n, p], where col(x) is
 * im2col of x but never written out. Used by conv.c for the forward pass
 * of stride-1 convs (A = the weights) and for the input gradient of
 * stride-1 convs, which is itself a stride-1 conv of dout (A = the
 * weights with input and output channels swapped and the kernel turned
 * by 180 degrees, padding KH-1-pad).
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
 * Measured (test/tools/bench_conv 8 3, 2 threads, OPENBLAS_CORETYPE=
 * SkylakeX, 2-core Sapphire Rapids VM, all eight ResNet-50 shapes, the
 * strided ones on im2col in both): in a first series of runs 188-194
 * GFLOP/s against 172-178 for im2col + OpenBLAS (63-65% against 57-60%
 * of the ~300 GFLOP/s sgemm peak; 3x3 convs at 28 and 14 pixels up from
 * ~205 to ~235, the 7x7 layer from 175 to 195); in a later series, runs
 * alternating the two paths, 157-173 against 185-191. The machine's
 * sgemm peak stayed at ~295 in both, so the difference is in memory
 * traffic the peak does not see; not understood yet. So this path is
 * opt-in (AESNET_CONV=implicit, conv2d_set_implicit) until it wins
 * reliably. Its micro-kernel alone reaches 147 GFLOP/s against
 * OpenBLAS's 154 on a 1536^3 sgemm on one core.
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
 * padding), so a k row of the panel costs 3 stores and a few loads.
 */
#include <stdint.h>
#include <string.h>

#include <omp.h>

#include "aesnet/core.h"
#include "nn/nn_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CONV_X86 1
#define TARGET __attribute__((target("avx512f")))
#endif

enum { MR = 8, NV = 3, NR = 16 * NV, KC = 256, NC = 8 * NR };

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

size_t conv_ig_packed_floats(int M, int K) { return (size_t)round_up(M, MR) * K; }

size_t conv_ig_thread_floats(void) { return (size_t)KC * NC + (size_t)MR * NR; }

#ifdef CONV_X86

int conv_ig_available(void)
{
    return __builtin_cpu_supports("avx512f");
}

/* c[0:8][0:16*nv] (row stride ldc) = init + a @ b over kc steps, with
 * init = c itself (add) or bias[0:8] per row (bias may be NULL: zero).
 * a: kc x 8, b: kc rows of NR floats (the first 16*nv used), both packed
 * k-major. nv < 3 serves panels of at most 32 or 16 columns. */
TARGET static inline __attribute__((always_inline)) void
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

TARGET static void kernel_8x48(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add, const float *bias)
{
    kernel_8xv(3, kc, a, b, c, ldc, add, bias);
}

TARGET static void kernel_8x32(int kc, const float *a, const float *b, float *c, size_t ldc,
                               int add, const float *bias)
{
    kernel_8xv(2, kc, a, b, c, ldc, add, bias);
}

TARGET static void kernel_8x16(int kc, const float *a, const float *b, float *c, size_t ldc,
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
 * (k-major) at ap + pc*Mp + ir*kc; rows past M are zero. a(m, k) reads
 * the unpacked matrix. */
typedef float (*a_at)(const float *w, int m, int k, const int *dims);

static void pack_a(float *ap, const float *w, int M, int K, a_at at, const int *dims)
{
    const int Mp = round_up(M, MR), nblocks = (K + KC - 1) / KC, npanels = Mp / MR;
#pragma omp parallel for schedule(static) collapse(2) if ((size_t)M * K > 32768)
    for (int bi = 0; bi < nblocks; bi++) {
        for (int pi = 0; pi < npanels; pi++) {
            const int pc = bi * KC, kc = K - pc < KC ? K - pc : KC, ir = pi * MR;
            float *d = ap + (size_t)pc * Mp + (size_t)ir * kc;
            for (int i = 0; i < MR; i++) {
                if (ir + i >= M) {
                    for (int k = 0; k < kc; k++) d[k * MR + i] = 0.0f;
                    continue;
                }
                for (int k = 0; k < kc; k++) d[k * MR + i] = at(w, ir + i, pc + k, dims);
            }
        }
    }
}

/* The forward weights w[OC, C*KH*KW] as they are. dims: K. */
static float at_plain(const float *w, int m, int k, const int *dims)
{
    return w[(size_t)m * dims[0] + k];
}

/* The input-gradient weights: A[c][oc*KK + t] = w[oc][c][KK-1-t], KK =
 * KH*KW (the kernel turned by 180 degrees). dims: C, KK. */
static float at_flipped(const float *w, int m, int k, const int *dims)
{
    const int C = dims[0], KK = dims[1], oc = k / KK, t = k - oc * KK;
    return w[((size_t)oc * C + m) * KK + KK - 1 - t];
}

void conv_ig_pack(float *ap, const float *w, int M, int K)
{
    const int dims[1] = {K};
    pack_a(ap, w, M, K, at_plain, dims);
}

void conv_ig_pack_flipped(float *ap, const float *w, int OC, int C, int KH, int KW)
{
    const int dims[2] = {C, KH * KW};
    pack_a(ap, w, C, OC * KH * KW, at_flipped, dims);
}

/* A stride-1 conv: x[N, C, H, W] to out[N, M, OH, OW]; K = C*KH*KW, P =
 * OH*OW, Mp = M rounded up to the packing's row tile. */
typedef struct {
    int N, C, H, W, M, KH, KW, pad, OH, OW, P, K, Mp;
} geom;

static geom geom_of(int N, int C, int H, int W, int M, int KH, int KW, int pad, int mr)
{
    geom g = {N, C, H, W, M, KH, KW, pad, 0, 0, 0, 0, 0};
    g.OH = H + 2 * pad - KH + 1;
    g.OW = W + 2 * pad - KW + 1;
    g.P = g.OH * g.OW;
    g.K = C * KH * KW;
    g.Mp = round_up(M, mr);
    return g;
}

/* A run: lanes [lo, hi) of one 16-lane vector of a panel are output
 * columns ow0 + (lane - lo) of output row oh of sample n; lane l reads
 * x[base + off + l] for the k row at offset off. */
typedef struct {
    int lo, hi, n, oh, ow0;
    ptrdiff_t base; /* x offset read by lane 0 at c = kh = kw = 0 */
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
            r->base = (ptrdiff_t)n * g->C * g->H * g->W + (ptrdiff_t)(oh - g->pad) * g->W +
                      (ow - g->pad) - l;
        }
    }
}


/* The 16 lanes of vector v of a panel at row k = (c, kh, kw), off the
 * offset of (c, kh, kw) in x: one masked load per run, the mask dropping
 * the lanes that fall in the padding. */
TARGET static inline __m512 pack_vec(const float *x, const geom *g, const panel_map *pm, int v,
                                     ptrdiff_t off, int kh, int kw)
{
    __m512 val = _mm512_setzero_ps();
    for (int q = 0; q < pm->nruns[v]; q++) {
        const run *r = &pm->runs[v][q];
        const int ih = r->oh - g->pad + kh;
        if (ih < 0 || ih >= g->H) continue;
        /* lane l reads input column ow0 + l - lo - pad + kw */
        const int l0 = r->lo - r->ow0 + g->pad - kw;
        const int a = l0 > r->lo ? l0 : r->lo, b = l0 + g->W < r->hi ? l0 + g->W : r->hi;
        if (a >= b) continue;
        const __mmask16 m = (__mmask16)((((uint32_t)1 << b) - 1) & ~(((uint32_t)1 << a) - 1));
        val = _mm512_mask_loadu_ps(val, m, x + r->base + off);
    }
    return val;
}

/* Row k = (c, kh, kw) of one panel: dst[0:48]. */
TARGET static inline void pack_row(float *dst, const float *x, const geom *g, const panel_map *pm,
                                   ptrdiff_t off, int kh, int kw)
{
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(dst + 16 * v, pack_vec(x, g, pm, v, off, kh, kw));
}

/* B block: columns [j0, j0+nc), rows [k0, k0+kc), as panels of kc x 48;
 * row by row across the panels, so that each input row is read in one
 * stretch. */
TARGET static void pack_b(float *bbuf, const float *x, const geom *g, long j0, int nc, int k0,
                          int kc)
{
    panel_map pm[NC / NR];
    const int np = (nc + NR - 1) / NR, KK = g->KH * g->KW;
    for (int q = 0; q < np; q++)
        map_panel(&pm[q], g, j0 + (long)q * NR, nc - q * NR < NR ? nc - q * NR : NR);
    int c = k0 / KK, kh = (k0 % KK) / g->KW, kw = k0 % g->KW;
    for (int k = 0; k < kc; k++) {
        const ptrdiff_t off = (ptrdiff_t)c * g->H * g->W + (ptrdiff_t)kh * g->W + kw;
        for (int q = 0; q < np; q++)
            pack_row(bbuf + ((size_t)q * kc + k) * NR, x, g, &pm[q], off, kh, kw);
        if (++kw == g->KW) {
            kw = 0;
            if (++kh == g->KH) kh = 0, c++;
        }
    }
}

/* out (+)= tmp for the tile's valid rows and columns, column by column as
 * the columns may cross into the next sample. first: the tile's first
 * write (out = bias + tmp, or out += tmp when accumulating). */
static void scatter_tile(float *out, const float *tmp, const geom *g, long j0, int ncols, int ir,
                         int write, const float *bias)
{
    const int mrows = g->M - ir < MR ? g->M - ir : MR;
    for (int col = 0; col < ncols; col++) {
        const long j = j0 + col;
        const long n = j / g->P, p = j % g->P;
        float *o = out + ((size_t)n * g->M + ir) * g->P + p;
        for (int i = 0; i < mrows; i++) {
            const float t = tmp[i * NR + col];
            if (write)
                o[(size_t)i * g->P] = (bias ? bias[ir + i] : 0.0f) + t;
            else
                o[(size_t)i * g->P] += t;
        }
    }
}

/* Columns [jb, je) of output rows [m0, m1) (multiples of MR). */
static void run_block(float *out, float *buf, const float *x, const float *ap, const float *bias,
                      int accumulate, const geom *g, long jb, long je, int m0, int m1)
{
    float *bbuf = buf, *tmp = buf + (size_t)KC * NC;
    for (long jc = jb; jc < je; jc += NC) {
        const int nc = je - jc < NC ? (int)(je - jc) : NC;
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
                 int accumulate, int N, int C, int H, int W, int M, int KH, int KW, int pad)
{
    const geom g = geom_of(N, C, H, W, M, KH, KW, pad, MR);
    const long cols = (long)N * g.P;
    const int T = omp_in_parallel() ? 1 : omp_get_max_threads(), mpanels = g.Mp / MR;
    /* A grid of tm x tn threads, tm splitting the rows of out and tn its
     * columns, in whole panels; the one whose busiest thread has the least
     * work, counting the packing of a column panel as one more tile (each
     * of the tm threads on the same columns packs them). The columns get
     * all threads unless there are few of them (the 7x7 layers). */
    int tm = 1;
    long best = -1;
    for (int d = 1; d <= T; d++) {
        if (T % d || d > mpanels) continue;
        const long pc = (cols + (long)(T / d) * NR - 1) / ((long)(T / d) * NR);
        const long cost = pc * ((mpanels + d - 1) / d + 1);
        if (best < 0 || cost < best) best = cost, tm = d;
    }
    const int tn = T / tm;
    const long per = ((cols + tn - 1) / tn + NR - 1) / NR * NR;
    const int mper = (mpanels + tm - 1) / tm * MR;
#pragma omp parallel num_threads(T) if (T > 1)
    {
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

/* r[i][j] <-> r[j][i] for 16 vectors of 16. */
TARGET static void transpose16(__m512 r[16])
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

/* A for the pixels [q0, q0 + kc) (kc a multiple of 16; pixels past
 * nq are zero): Mp/8 panels of kc x 8 at ap + ir*kc. */
TARGET static void pack_dy(float *ap, const float *dy, const geom *g, long q0, int kc, long nq)
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
            transpose16(r); /* r[l]: pixel q + l, rows ir .. ir+15 */
            for (int l = 0; l < 16; l++) {
                _mm256_storeu_ps(ap + (size_t)ir * kc + (size_t)(k + l) * MR,
                                 _mm512_castps512_ps256(r[l]));
                if (ir + MR < g->Mp)
                    _mm256_storeu_ps(ap + (size_t)(ir + MR) * kc + (size_t)(k + l) * MR,
                                     _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                         _mm512_castps_pd(r[l]), 1)));
            }
        }
    }
}

/* B for the pixels [q0, q0 + kc) and the weights [j0, j0 + nc): panels
 * of kc x 48, weights past K zero. */
TARGET static void pack_cols_t(float *bbuf, const float *x, const geom *g, long q0, int kc, long nq,
                               int j0, int nc)
{
    const int KK = g->KH * g->KW;
    for (int k = 0; k < kc; k += 16) {
        panel_map pm;
        const long left = nq - (q0 + k);
        map_panel(&pm, g, q0 + k, left < 16 ? (int)left : 16);
        for (int j = 0; j < nc; j += 16) {
            __m512 r[16];
            for (int t = 0; t < 16; t++) {
                const int jj = j0 + j + t;
                if (jj >= g->K) {
                    r[t] = _mm512_setzero_ps();
                    continue;
                }
                const int c = jj / KK, kh = (jj % KK) / g->KW, kw = jj % g->KW;
                const ptrdiff_t off = (ptrdiff_t)c * g->H * g->W + (ptrdiff_t)kh * g->W + kw;
                r[t] = pack_vec(x, g, &pm, 0, off, kh, kw);
            }
            transpose16(r); /* r[l]: pixel q0 + k + l, weights j0 + j .. +15 */
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
                         int H, int W, int OC, int KH, int KW, int pad)
{
    const geom g = geom_of(N, C, H, W, OC, KH, KW, pad, 16);
    const long nq = (long)N * g.P;
    const int T = omp_in_parallel() ? 1 : omp_get_max_threads();
    const size_t per = wgrad_thread_floats(OC);
    const int panels = (g.K + NR - 1) / NR, by_pixels = wgrad_by_pixels(g.K, T);
    float *priv = scratch + (size_t)T * per;
    const size_t nw = (size_t)OC * g.K;
#pragma omp parallel num_threads(T) if (T > 1)
    {
        const int t = omp_get_thread_num();
        float *buf = scratch + (size_t)t * per;
        if (by_pixels) {
            const long qper = (nq + T - 1) / T;
            const long qb = t * qper < nq ? t * qper : nq, qe = qb + qper < nq ? qb + qper : nq;
            float *mine = priv + (size_t)t * nw;
            memset(mine, 0, nw * sizeof(float));
            if (qb < qe) wgrad_block(mine, buf, dy, x, &g, qb, qe, 0, g.K);
#pragma omp barrier
#pragma omp for schedule(static)
            for (long i = 0; i < (long)nw; i++) {
                float acc = dw[i];
                for (int u = 0; u < T; u++) acc += priv[(size_t)u * nw + i];
                dw[i] = acc;
            }
        } else {
            const int pper = (panels + T - 1) / T;
            const int jb = t * pper * NR < g.K ? t * pper * NR : g.K;
            const int je = jb + pper * NR < g.K ? jb + pper * NR : g.K;
            if (jb < je) wgrad_block(dw, buf, dy, x, &g, 0, nq, jb, je);
        }
    }
}

#else /* no x86-64 with GCC: the BLAS path only */

size_t conv_ig_wgrad_floats(int OC, int C, int KH, int KW) { return 0 * OC * C * KH * KW; }
void conv_ig_weight_grad(float *dw, float *scratch, const float *dy, const float *x, int N, int C,
                         int H, int W, int OC, int KH, int KW, int pad)
{
    AES_CHECK(0 && dw && scratch && dy && x && N && C && H && W && OC && KH && KW && pad);
}

int conv_ig_available(void) { return 0; }
void conv_ig_pack(float *ap, const float *w, int M, int K) { AES_CHECK(0 && ap && w && M && K); }
void conv_ig_pack_flipped(float *ap, const float *w, int OC, int C, int KH, int KW)
{
    AES_CHECK(0 && ap && w && OC && C && KH && KW);
}
void conv_ig_run(float *out, float *scratch, const float *x, const float *ap, const float *bias,
                 int accumulate, int N, int C, int H, int W, int M, int KH, int KW, int pad)
{
    AES_CHECK(0 && out && scratch && x && ap && bias && accumulate && N && C && H && W && M &&
              KH && KW && pad);
}

#endif
