/*
 * conv2d: the CPU fp32 convolution, as im2col + sgemm; on CPUs with
 * AVX-512 most convs larger than 1x1 go to the implicit GEMM of
 * conv_x86.c or, with few input channels, to the direct kernels of
 * conv_direct_x86.c instead ("which path" below).
 *
 * Per sample n, with CKK = C*KH*KW and P = OH*OW:
 *   col[CKK, P]   = im2col(inp[n])          (1x1, stride 1, pad 0: inp[n] itself)
 *   out[n][OC, P] = w[OC, CKK] @ col + b
 *   dw           += dout[n] @ col^T
 *   dinp[n]      += col2im(w^T @ dout[n])   (1x1, stride 1, pad 0: straight into dinp[n])
 *
 * Blocks of output rows. col is built a block of output rows at a time,
 * CKK x (rows*OW) floats of at most COL_BLOCK_FLOATS (1 MB, half a core's
 * L2 here), and each block goes through its GEMMs while it is still in
 * cache. On one core that takes 15% off the forward time of the 224 and
 * 56 pixel layers; with both cores busy, forward plus backward over the
 * ResNet-50 shapes came out the same as whole-image cols (within the 3%
 * noise of this machine). It stays for the one-core gain and because it
 * bounds the scratch at about 1 MB per thread whatever the image size.
 *
 * Threading. Two ways were measured on the 2-core Xeon this was written on
 * (test/tools/bench_conv.c, ResNet-50 shapes, N = 8, OpenBLAS 0.3.21):
 * (a) OpenMP over samples, each thread running single-threaded sgemm on
 * its own col buffer, and (b) one sample at a time with OpenBLAS's own
 * threads splitting each sgemm and a serial im2col. With SkylakeX kernels
 * (a) did 180-195 GFLOP/s over the shapes against 130-145 for (b); with
 * the Prescott kernels OpenBLAS picks by default here, 55-56 against 51.
 * In (a) im2col and col2im run in parallel too, and there is one fork per
 * layer instead of one per GEMM. So (a) runs whenever OpenMP has more
 * than one thread and there are at least as many samples as threads; (b)
 * remains for smaller batches (single images at evaluation) and for one
 * OpenMP thread, where it is the only way to use more than one core.
 *
 * Stride 2 (the stem, downsampling): im2col_s2 splits each input row into
 * its even and odd columns once and copies contiguous runs from them.
 * Measured with bench_conv (N = 8, 2 threads, SkylakeX kernels): the 7x7
 * stem at 224 went from 14-22 ms to 11 ms forward and from 20.9 to 17.5 ms
 * backward, and the ResNet-50 shapes together from 58-60% to 63% of the
 * sgemm peak.
 *
 * OpenBLAS must not split its GEMMs over threads of its own while several
 * OpenMP threads call it: the cores would be oversubscribed, and the
 * pthread build of OpenBLAS queues concurrent calls on one server. Its
 * thread count is a process-wide setting whose setter is not safe inside a
 * parallel region, so it is lowered to 1 before the region opens and
 * restored after it closes, never from inside one.
 *
 * The weight gradient sums over samples. To keep that sum free of atomics,
 * each thread adds its own samples' products into a private copy of dw,
 * and the copies are added to dw in thread order at the end
 * (blas_backward_private), when the T copies are small (dw_private: every
 * ResNet-50 conv at 2 threads). Otherwise backward works in groups of T
 * samples (T threads): every thread builds its sample's col block, then
 * after a barrier the threads split dw into T disjoint blocks and each
 * adds the group's T products into its own block, in sample order. Either
 * way the order of the additions into every dw entry is fixed by N, T and
 * the shape alone, so a run on the same thread count repeats bit for bit.
 */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "nn/nn_internal.h"

enum { COL_BLOCK_FLOATS = 256 * 1024 };

typedef struct {
    int N, C, H, W, OC, KH, KW, stride, pad, OH, OW;
    int CKK, P;  /* GEMM sizes: reduction length of the forward, pixels out */
    int direct;  /* 1x1, stride 1, no padding: col is the input itself */
    int rows;    /* output rows per col block */
} conv_shape;

static conv_shape conv_shape_of(int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                                int pad)
{
    AES_CHECK(N > 0 && C > 0 && H > 0 && W > 0 && OC > 0 && KH > 0 && KW > 0 && stride > 0 &&
              pad >= 0);
    conv_shape s = {N, C, H, W, OC, KH, KW, stride, pad, 0, 0, 0, 0, 0, 0};
    s.OH = (H + 2 * pad - KH) / stride + 1;
    s.OW = (W + 2 * pad - KW) / stride + 1;
    AES_CHECK(s.OH > 0 && s.OW > 0);
    s.CKK = C * KH * KW;
    s.P = s.OH * s.OW;
    s.direct = KH == 1 && KW == 1 && stride == 1 && pad == 0;
    long rows = COL_BLOCK_FLOATS / ((long)s.CKK * s.OW);
    s.rows = s.direct || rows >= s.OH ? s.OH : rows < 1 ? 1 : (int)rows;
    return s;
}

/* Floats of one thread's col buffer. */
static size_t col_floats(const conv_shape *s)
{
    return s->direct ? 0 : (size_t)s->CKK * s->rows * s->OW;
}

/* Whether the sample-parallel backward gives every thread a private dw
 * (blas_backward_private) rather than a block of the shared one: when the
 * T copies take at most DW_PRIVATE_MAX_FLOATS (16 MB), i.e. every
 * ResNet-50 conv at 2 threads, the stem and the small 1x1 convs at 32.
 * The blocks need a barrier per group of T samples and cut dw into thin
 * GEMMs (the stem's 147 columns into 80 + 67); bench_conv (N = 8, 2
 * threads, SkylakeX kernels) measured the stem's backward at 10.8-11.4 ms
 * with private copies against 12.7-13.1 ms with blocks, and the 56x56 1x1
 * convs' at 6.4-6.7 against 6.7-7.1 ms. */
enum { DW_PRIVATE_MAX_FLOATS = 4 * 1024 * 1024 };

static int dw_private(const conv_shape *s, int T)
{
    return T > 1 && (size_t)T * s->OC * s->CKK <= DW_PRIVATE_MAX_FLOATS;
}

/* ---- which path --------------------------------------------------------
 *
 * On CPUs with AVX-512, convs with at most CONV_DIRECT_MAX_C (4) input
 * channels, stride 1 or 2 and kernels larger than 1x1 (the stem) run
 * their forward and weight gradient on the direct kernels of
 * conv_direct_x86.c (their input gradient, which the stem never needs,
 * as for the other convs below). bench_conv, N = 8, 2 threads, in turn
 * with the implicit GEMM in one process: the stem's forward 6.6-7.0 ms
 * against 8.8-9.3, its weight gradient 9.8-10.6 against 12.0-12.3 ms,
 * from 58% to 69-76% of the sgemm peak (im2col + OpenBLAS: 55-57%).
 *
 * The other convs larger than 1x1 of stride 1 (ResNet's 3x3 convs) and
 * stride 2 (the strided 3x3 convs) run their forward and weight gradient
 * (kernels up to 7x7) on the implicit GEMM of conv_x86.c, and for stride
 * 1 also the input gradient when the kernel is square with pad < KH (a
 * stride-1 conv itself). Everything else runs on im2col + OpenBLAS:
 * - 1x1 convs, which need no im2col (OpenBLAS reads the input as it is)
 *   and where OpenBLAS's packing beat ours: bench_conv, 56x56 1x1 shapes,
 *   forward 3.4-3.5 ms against 3.8-3.9 (256->64), input gradient
 *   likewise, weight gradient 8-9 against 12-13 ms with our transposing
 *   packs;
 * - the input gradient of stride-2 convs, through col2im_s2. An input
 *   gradient as one stride-1 GEMM per phase of the input gained about 1
 *   ms of 19 on the 128-channel 3x3 at 56x56 over the plain col2im, but
 *   lost on the demo model's small strided convs (0.55-0.68 against
 *   0.48-0.57 ms at batch 32), and col2im_s2 has since gained more.
 * bench_conv times both paths in turn in one process (N = 8, 2 threads,
 * SkylakeX kernels). Forward + backward in ms, implicit against im2col,
 * two runs: 3x3 at 56x56 22.3-23.1 against 26.4-27.2, at 28x28 19.9-20.6
 * against 22.6-23.2, at 14x14 19.4-20.0 against 22.7-23.5, at 7x7
 * 23.5-23.8 against 26.0-27.2. All shapes together 73-75% of the sgemm
 * peak measured beside them against 67-69% (before the direct stem and
 * the stride-2 changes; figures for those in conv_direct_x86.c and
 * conv_x86.c).
 *
 * AESNET_CONV=im2col (or conv2d_set_implicit(0), for tests and
 * benchmarks) puts every conv on im2col + OpenBLAS. */
static int implicit_mode = -1; /* -1: not yet read from AESNET_CONV */

static int ig_on(void)
{
    if (implicit_mode < 0) {
        const char *e = getenv("AESNET_CONV");
        if (e && *e && strcmp(e, "implicit") != 0 && strcmp(e, "im2col") != 0)
            aes_user_error("environment variable AESNET_CONV: expected implicit or im2col, got "
                           "'%s'",
                           e);
        implicit_mode = !(e && strcmp(e, "im2col") == 0);
    }
    return implicit_mode && conv_ig_available();
}

int conv2d_set_implicit(int on)
{
    const int was = ig_on();
    implicit_mode = on != 0;
    return was;
}

const char *conv2d_path(void)
{
    if (ig_on()) return "direct (AVX-512) for convs of up to 4 input channels, implicit GEMM "
                        "(AVX-512) for the other stride-1 and stride-2 convs larger than 1x1, "
                        "im2col + BLAS for the rest";
    return conv_ig_available() ? "im2col + BLAS (AESNET_CONV=im2col)" : "im2col + BLAS";
}

static int direct(const conv_shape *s)
{
    return conv_direct_suits(s->C, s->KH, s->KW, s->stride) && ig_on();
}

static int ig_forward(const conv_shape *s)
{
    return (s->stride == 1 || s->stride == 2) && s->KH * s->KW > 1 && ig_on();
}

static int ig_dinp(const conv_shape *s)
{
    return ig_forward(s) && s->stride == 1 && s->KH == s->KW && s->pad < s->KH;
}

static int ig_wgrad(const conv_shape *s)
{
    return ig_forward(s) && s->KH * s->KW <= CONV_IG_WGRAD_MAX_TAPS;
}

/* One col block per OpenMP thread, as the sample-parallel path gives each
 * thread a buffer of its own: omp_get_max_threads() * C*KH*KW * rows*OW,
 * where rows*OW <= OH*OW is the block of output pixels (about 1 MB of
 * col per thread, see the top of the file; none for a 1x1 stride-1
 * unpadded conv, which reads its input directly), plus the private dw
 * copies when dw_private. 0 only on one thread for such a 1x1 conv (col
 * may then be NULL). The thread count is the one at the time of this
 * call, so size the scratch under the same OpenMP setting as the
 * forward/backward calls that use it. For the convs the implicit GEMM
 * takes, where the CPU has AVX-512, also room for its packed weights and
 * buffers, whichever path is on (conv2d_set_implicit may switch later). */
size_t conv2d_scratch_floats(int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                             int pad)
{
    conv_shape s = conv_shape_of(N, C, H, W, OC, KH, KW, stride, pad);
    const size_t T = (size_t)omp_get_max_threads();
    size_t need = T * col_floats(&s), x;
    if (dw_private(&s, (int)T)) need += T * (size_t)OC * s.CKK;
    if (!conv_ig_available() || (stride != 1 && stride != 2) || KH * KW == 1) return need;
    x = conv_ig_packed_floats(OC, s.CKK) + T * conv_ig_thread_floats();
    if (x > need) need = x;
    x = conv_ig_packed_floats(C, OC * KH * KW) + T * conv_ig_thread_floats();
    if (x > need) need = x;
    x = conv_ig_wgrad_floats(OC, C, KH, KW);
    if (x > need) need = x;
    x = conv_direct_suits(C, KH, KW, stride)
            ? conv_direct_floats(N, C, H, W, OC, KH, KW, stride, pad)
            : 0;
    return x > need ? x : need;
}

/* Output columns ow whose input column ow*stride - pad + kw lies inside
 * [0, W): [*lo, *hi). */
static void valid_range(int OW, int W, int kw, int stride, int pad, int *lo, int *hi)
{
    int a = 0, b = OW;
    while (a < b && a * stride - pad + kw < 0) a++;
    while (b > a && (b - 1) * stride - pad + kw >= W) b--;
    *lo = a;
    *hi = b;
}

/* im2col for stride 2 (the stem, the downsampling convs): each input row
 * is split once into its even and odd columns, and then every kernel
 * column kw is a contiguous copy from one of the two halves (input column
 * 2*ow + kw - pad), where the plain loop would gather with stride 2 once
 * per kw (figures at the top of the file). */
enum { IM2COL_S2_MAX_W = 4096 };

static void im2col_s2(float *col, const float *inp, const conv_shape *s, int oh0, int oh1)
{
    const int H = s->H, W = s->W, OW = s->OW, KH = s->KH, KW = s->KW, pad = s->pad;
    const size_t pb = (size_t)(oh1 - oh0) * OW;
    float half[2][IM2COL_S2_MAX_W / 2 + 1];
    int lo[64], hi[64];
    for (int kw = 0; kw < KW; kw++) valid_range(OW, W, kw, 2, pad, &lo[kw], &hi[kw]);
    for (int c = 0; c < s->C; c++) {
        const float *plane = inp + (size_t)c * H * W;
        for (int kh = 0; kh < KH; kh++) {
            float *base = col + (size_t)(c * KH + kh) * KW * pb;
            for (int oh = oh0; oh < oh1; oh++) {
                const int ih = oh * 2 - pad + kh;
                const size_t at = (size_t)(oh - oh0) * OW;
                if (ih < 0 || ih >= H) {
                    for (int kw = 0; kw < KW; kw++) memset(base + kw * pb + at, 0, sizeof(float) * OW);
                    continue;
                }
                const float *src = plane + (size_t)ih * W;
                for (int j = 0; 2 * j < W; j++) half[0][j] = src[2 * j];
                for (int j = 0; 2 * j + 1 < W; j++) half[1][j] = src[2 * j + 1];
                for (int kw = 0; kw < KW; kw++) {
                    float *dst = base + kw * pb + at;
                    const int off = kw - pad;           /* input column 2*ow + off */
                    const int q = nn_floor_div(off, 2);
                    const float *h = half[off - 2 * q]; /* off - 2q is 0 or 1 */
                    const int a = lo[kw], b = hi[kw];
                    if (a >= b) {
                        memset(dst, 0, sizeof(float) * OW);
                        continue;
                    }
                    for (int ow = 0; ow < a; ow++) dst[ow] = 0.0f;
                    memcpy(dst + a, h + a + q, sizeof(float) * (b - a));
                    for (int ow = b; ow < OW; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* col[CKK, (oh1-oh0)*OW] for output rows [oh0, oh1) of one sample
 * inp[C, H, W]; padded cells are zero. */
static void im2col(float *col, const float *inp, const conv_shape *s, int oh0, int oh1)
{
    const int H = s->H, W = s->W, OW = s->OW, st = s->stride, pad = s->pad;
    if (st == 2 && W <= IM2COL_S2_MAX_W && s->KW <= 64) {
        im2col_s2(col, inp, s, oh0, oh1);
        return;
    }
    const size_t pb = (size_t)(oh1 - oh0) * OW;
    for (int c = 0; c < s->C; c++) {
        const float *plane = inp + (size_t)c * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                float *row = col + ((size_t)(c * s->KH + kh) * s->KW + kw) * pb;
                int lo, hi;
                valid_range(OW, W, kw, st, pad, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++) {
                    float *dst = row + (size_t)(oh - oh0) * OW;
                    const int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H || lo >= hi) {
                        memset(dst, 0, sizeof(float) * OW);
                        continue;
                    }
                    /* input column of output column ow: ow*st + off */
                    const float *src = plane + (size_t)ih * W;
                    const int off = kw - pad;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (st == 1) {
                        memcpy(dst + lo, src + lo + off, sizeof(float) * (hi - lo));
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * st + off];
                    }
                    for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* col2im_add for stride 2, the adjoint of im2col_s2: per input row, the
 * KW kernel columns are added into its even and odd halves as contiguous
 * runs, and the halves into the row once, where the plain loop adds with
 * stride 2 once per kw (a scalar loop; these vectorise). bench_conv, N =
 * 8, 2 threads: the input gradient of the 128-channel strided 3x3 at 56x56
 * from 10.0 to 8.3 ms. */
static void col2im_s2(float *dinp, const float *dcol, const conv_shape *s, int oh0, int oh1)
{
    const int H = s->H, W = s->W, OW = s->OW, KH = s->KH, KW = s->KW, pad = s->pad;
    const int ne = (W + 1) / 2, no = W / 2; /* even and odd input columns */
    const size_t pb = (size_t)(oh1 - oh0) * OW;
    float half[2][IM2COL_S2_MAX_W / 2 + 1];
    int lo[64], hi[64], q[64], par[64];
    for (int kw = 0; kw < KW; kw++) {
        valid_range(OW, W, kw, 2, pad, &lo[kw], &hi[kw]);
        const int off = kw - pad; /* input column 2*ow + off = 2*(ow + q) + par */
        q[kw] = nn_floor_div(off, 2);
        par[kw] = off - 2 * q[kw];
    }
    for (int c = 0; c < s->C; c++) {
        float *plane = dinp + (size_t)c * H * W;
        for (int kh = 0; kh < KH; kh++) {
            const float *base = dcol + (size_t)(c * KH + kh) * KW * pb;
            for (int oh = oh0; oh < oh1; oh++) {
                const int ih = oh * 2 - pad + kh;
                if (ih < 0 || ih >= H) continue;
                const size_t at = (size_t)(oh - oh0) * OW;
                memset(half[0], 0, sizeof(float) * ne);
                memset(half[1], 0, sizeof(float) * no);
                for (int kw = 0; kw < KW; kw++) {
                    const float *src = base + kw * pb + at;
                    float *h = half[par[kw]];
                    const int sh = q[kw];
                    for (int ow = lo[kw]; ow < hi[kw]; ow++) h[ow + sh] += src[ow];
                }
                float *dst = plane + (size_t)ih * W;
                for (int j = 0; j < no; j++) {
                    dst[2 * j] += half[0][j];
                    dst[2 * j + 1] += half[1][j];
                }
                if (ne > no) dst[W - 1] += half[0][ne - 1];
            }
        }
    }
}

/* dinp[C, H, W] += the adjoint of im2col for output rows [oh0, oh1). */
static void col2im_add(float *dinp, const float *dcol, const conv_shape *s, int oh0, int oh1)
{
    const int H = s->H, W = s->W, OW = s->OW, st = s->stride, pad = s->pad;
    if (st == 2 && W <= IM2COL_S2_MAX_W && s->KW <= 64) {
        col2im_s2(dinp, dcol, s, oh0, oh1);
        return;
    }
    const size_t pb = (size_t)(oh1 - oh0) * OW;
    for (int c = 0; c < s->C; c++) {
        float *plane = dinp + (size_t)c * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const float *row = dcol + ((size_t)(c * s->KH + kh) * s->KW + kw) * pb;
                int lo, hi;
                valid_range(OW, W, kw, st, pad, &lo, &hi);
                for (int oh = oh0; oh < oh1; oh++) {
                    const int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *src = row + (size_t)(oh - oh0) * OW;
                    float *dst = plane + (size_t)ih * W;
                    const int off = kw - pad;
                    if (st == 1) {
                        for (int ow = lo; ow < hi; ow++) dst[ow + off] += src[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow * st + off] += src[ow];
                    }
                }
            }
        }
    }
}

/* Sample-parallel needs a sample for every thread: with fewer, threads
 * would sit idle through im2col and the forward GEMMs, and OpenBLAS's own
 * threads are the better bet (a guess: only 2 cores were at hand to
 * measure). Inside someone else's parallel region we stay on this thread
 * and leave OpenBLAS's setting alone. */
static int use_sample_parallel(int N)
{
    const int T = omp_get_max_threads();
    return T > 1 && N >= T && !omp_in_parallel();
}

/* The col block of output rows [oh0, oh1) of sample x, and its leading
 * dimension: the input itself for a direct conv. */
static const float *col_block(float *buf, const float *x, const conv_shape *s, int oh0, int oh1,
                              int *ld)
{
    if (s->direct) {
        *ld = s->P;
        return x + (size_t)oh0 * s->OW;
    }
    im2col(buf, x, s, oh0, oh1);
    *ld = (oh1 - oh0) * s->OW;
    return buf;
}

/* ---- forward ------------------------------------------------------------ */

/* out[n] = w @ col(n) + b, block by block. */
static void forward_sample(float *out, float *buf, const float *inp, const float *w,
                           const float *b, const conv_shape *s, int n)
{
    const float *x = inp + (size_t)n * s->C * s->H * s->W;
    float *y = out + (size_t)n * s->OC * s->P;
    float beta = 0.0f;
    if (b) {
        for (int oc = 0; oc < s->OC; oc++) {
            float *row = y + (size_t)oc * s->P;
            for (int p = 0; p < s->P; p++) row[p] = b[oc];
        }
        beta = 1.0f;
    }
    for (int oh0 = 0; oh0 < s->OH; oh0 += s->rows) {
        const int oh1 = oh0 + s->rows < s->OH ? oh0 + s->rows : s->OH;
        int ld;
        const float *col = col_block(buf, x, s, oh0, oh1, &ld);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->OC, (oh1 - oh0) * s->OW,
                    s->CKK, 1.0f, w, s->CKK, col, ld, beta, y + (size_t)oh0 * s->OW, s->P);
    }
}

void conv2d_forward(float *out, float *col, const float *inp, const float *w, const float *b,
                    int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad)
{
    const conv_shape s = conv_shape_of(N, C, H, W, OC, KH, KW, stride, pad);
    const size_t per = col_floats(&s);
    if (direct(&s)) {
        conv_direct_forward(out, col, inp, w, b, N, C, H, W, OC, KH, KW, stride, pad);
        return;
    }
    if (ig_forward(&s)) {
        float *bufs = col + conv_ig_packed_floats(OC, s.CKK);
        conv_ig_pack(col, w, OC, s.CKK);
        conv_ig_run(out, bufs, inp, col, b, 0, N, C, H, W, OC, KH, KW, stride, pad);
        return;
    }
    if (!use_sample_parallel(N)) {
        for (int n = 0; n < N; n++) forward_sample(out, col, inp, w, b, &s, n);
        return;
    }
    const int saved = aes_blas_serial_begin();
#pragma omp parallel
    {
        float *buf = s.direct ? NULL : col + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) forward_sample(out, buf, inp, w, b, &s, n);
    }
    aes_blas_serial_end(saved);
}

/* ---- backward ----------------------------------------------------------- */

/* dw[r0:r1, c0:c1] += dy[r0:r1, rows oh0..oh1) @ col[c0:c1, :]^T, with dy
 * one sample's dout and col the block's col (leading dimension ld). */
static void dw_add(float *dw, const float *dy, const float *col, int ld, const conv_shape *s,
                   int oh0, int oh1, int r0, int r1, int c0, int c1)
{
    if (r1 <= r0 || c1 <= c0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, c1 - c0, (oh1 - oh0) * s->OW,
                1.0f, dy + (size_t)r0 * s->P + (size_t)oh0 * s->OW, s->P, col + (size_t)c0 * ld,
                ld, 1.0f, dw + (size_t)r0 * s->CKK + c0, s->CKK);
}

/* dinp[n] += col2im(w^T @ dout[n]) for output rows [oh0, oh1); buf is
 * overwritten. */
static void dinp_add(float *dinp, float *buf, const float *dout, const float *w,
                     const conv_shape *s, int n, int oh0, int oh1)
{
    const float *dy = dout + (size_t)n * s->OC * s->P + (size_t)oh0 * s->OW;
    float *dx = dinp + (size_t)n * s->C * s->H * s->W;
    const int pb = (oh1 - oh0) * s->OW;
    if (s->direct) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->C, pb, s->OC, 1.0f, w, s->CKK,
                    dy, s->P, 1.0f, dx + (size_t)oh0 * s->OW, s->P);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->CKK, pb, s->OC, 1.0f, w, s->CKK, dy,
                s->P, 0.0f, buf, pb);
    col2im_add(dx, buf, s, oh0, oh1);
}

/* db[oc] += the sum over samples and pixels of dout, in double. */
static void db_add(float *db, const float *dout, const conv_shape *s)
{
#pragma omp parallel for schedule(static) if ((size_t)s->OC * s->N * s->P > 65536)
    for (int oc = 0; oc < s->OC; oc++) {
        double acc = 0.0;
        for (int n = 0; n < s->N; n++) {
            const float *row = dout + ((size_t)n * s->OC + oc) * s->P;
            for (int p = 0; p < s->P; p++) acc += row[p];
        }
        db[oc] += (float)acc;
    }
}

void conv_add_private(float *dw, const float *priv, int T, size_t nw)
{
#pragma omp barrier
#pragma omp for schedule(static)
    for (long i = 0; i < (long)nw; i++) {
        float acc = dw[i];
        for (int u = 0; u < T; u++) acc += priv[(size_t)u * nw + i];
        dw[i] = acc;
    }
}

/* dw += (when not NULL) and dinp += (when not NULL) the gradients of
 * samples [n0, n1), a col block at a time in buf. */
static void samples_backward(float *dw, float *dinp, float *buf, const float *dout,
                             const float *inp, const float *w, const conv_shape *s, int n0, int n1)
{
    const size_t in_per = (size_t)s->C * s->H * s->W, out_per = (size_t)s->OC * s->P;
    for (int n = n0; n < n1; n++) {
        for (int oh0 = 0; oh0 < s->OH; oh0 += s->rows) {
            const int oh1 = oh0 + s->rows < s->OH ? oh0 + s->rows : s->OH;
            int ld;
            if (dw) {
                const float *cb = col_block(buf, inp + n * in_per, s, oh0, oh1, &ld);
                dw_add(dw, dout + n * out_per, cb, ld, s, oh0, oh1, 0, s->OC, 0, s->CKK);
            }
            if (dinp) dinp_add(dinp, buf, dout, w, s, n, oh0, oh1);
        }
    }
}

/* The sample-parallel backward with private copies of dw: each thread
 * takes a contiguous range of samples, adds their weight gradients into a
 * dw of its own with full-size GEMMs and does their input gradients, with
 * no barrier until the copies are added to dw in thread order (the sums
 * repeat bit for bit on the same thread count). Scratch: the T col
 * buffers, then the T copies. */
static void blas_backward_private(float *dw, float *dinp, float *col, const float *dout,
                                  const float *inp, const float *w, const conv_shape *sp)
{
    const conv_shape s = *sp;
    const int T = omp_get_max_threads();
    const size_t per = col_floats(&s), nw = (size_t)s.OC * s.CKK;
    float *priv = col + (size_t)T * per;
#pragma omp parallel num_threads(T)
    {
        /* The team the runtime gave, which may be smaller than T */
        const int t = omp_get_thread_num(), Ta = omp_get_num_threads();
        float *buf = s.direct ? NULL : col + (size_t)t * per, *mine = priv + (size_t)t * nw;
        memset(mine, 0, nw * sizeof(float));
        samples_backward(mine, dinp, buf, dout, inp, w, &s, t * s.N / Ta, (t + 1) * s.N / Ta);
        conv_add_private(dw, priv, Ta, nw);
    }
}

/* dw += the weight gradient when dw is not NULL, and dinp += the input
 * gradient through col2im when dinp is not NULL, on OpenBLAS. */
static void blas_backward(float *dw, float *dinp, float *col, const float *dout, const float *inp,
                        const float *w, const conv_shape *sp)
{
    const conv_shape s = *sp;
    const int N = s.N, OC = s.OC;
    const size_t per = col_floats(&s), in_per = (size_t)s.C * s.H * s.W, out_per = (size_t)OC * s.P;

    if (!use_sample_parallel(N)) {
        samples_backward(dw, dinp, col, dout, inp, w, &s, 0, N);
        return;
    }

    const int saved = aes_blas_serial_begin();
    if (dw && dw_private(&s, omp_get_max_threads())) {
        blas_backward_private(dw, dinp, col, dout, inp, w, &s);
        aes_blas_serial_end(saved);
        return;
    }
#pragma omp parallel
    {
        const int T = omp_get_num_threads(), t = omp_get_thread_num();
        float *buf = s.direct ? NULL : col + (size_t)t * per;
        /* This thread's block of dw: the longer side cut in T pieces,
         * multiples of 16 so the GEMM kernels work on full panels. */
        int r0 = 0, r1 = OC, c0 = 0, c1 = s.CKK;
        const int len = OC >= s.CKK ? OC : s.CKK;
        const int piece = ((len + T - 1) / T + 15) / 16 * 16;
        const int lo = t * piece < len ? t * piece : len;
        const int hi = lo + piece < len ? lo + piece : len;
        if (OC >= s.CKK) {
            r0 = lo, r1 = hi;
        } else {
            c0 = lo, c1 = hi;
        }
        for (int g = 0; g < N; g += T) {
            const int n = g + t, G = N - g < T ? N - g : T;
            for (int oh0 = 0; oh0 < s.OH; oh0 += s.rows) {
                const int oh1 = oh0 + s.rows < s.OH ? oh0 + s.rows : s.OH;
                int ld = 0;
                if (dw && n < N && !s.direct) col_block(buf, inp + n * in_per, &s, oh0, oh1, &ld);
#pragma omp barrier
                for (int k = 0; k < G && dw; k++) {
                    const float *ck = s.direct ? inp + (g + k) * in_per + (size_t)oh0 * s.OW
                                               : col + (size_t)k * per;
                    const int ldk = s.direct ? s.P : (oh1 - oh0) * s.OW;
                    dw_add(dw, dout + (g + k) * out_per, ck, ldk, &s, oh0, oh1, r0, r1, c0, c1);
                }
#pragma omp barrier
                if (n < N && dinp) dinp_add(dinp, buf, dout, w, &s, n, oh0, oh1);
            }
        }
    }
    aes_blas_serial_end(saved);
}

void conv2d_backward(float *dinp, float *dw, float *db, float *col, const float *dout,
                     const float *inp, const float *w, int N, int C, int H, int W, int OC, int KH,
                     int KW, int stride, int pad)
{
    const conv_shape s = conv_shape_of(N, C, H, W, OC, KH, KW, stride, pad);
    if (db) db_add(db, dout, &s);
    const int by_direct = dw && direct(&s);
    const int own_dw = by_direct || (dw && ig_wgrad(&s)), own_dinp = dinp && ig_dinp(&s);
    if (by_direct)
        conv_direct_weight_grad(dw, col, dout, inp, N, C, H, W, OC, KH, KW, stride, pad);
    else if (own_dw)
        conv_ig_weight_grad(dw, col, dout, inp, N, C, H, W, OC, KH, KW, stride, pad);
    if ((dw && !own_dw) || (dinp && !own_dinp))
        blas_backward(own_dw ? NULL : dw, own_dinp ? NULL : dinp, col, dout, inp, w, &s);
    if (own_dinp) {
        conv_ig_pack_flipped(col, w, OC, C, KH, KW);
        conv_ig_run(dinp, col + conv_ig_packed_floats(C, OC * KH * KW), dout, col, NULL, 1, N,
                    OC, s.OH, s.OW, C, KH, KW, 1, KH - 1 - pad);
    }
}
