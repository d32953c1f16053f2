/*
 * bench_conv [N [REPS [LAYER]]]: times conv2d forward and backward on
 * ResNet-50 shapes at 224 (batch N, default 8; LAYER: only the shapes
 * whose name contains it, e.g. "stem" or "@14") and prints GFLOP/s, next
 * to a plain 1024^3 sgemm as the attainable peak. FLOPs count the GEMMs only:
 * forward 2*N*OC*OH*OW*C*KH*KW, backward twice that (dw and dinp), once
 * when dinp is not needed (the stem, whose input is the image). No bias,
 * as in ResNet, where batch norm follows every conv.
 *
 * The thread counts come from the environment: OMP_NUM_THREADS for the
 * sample-parallel path, OPENBLAS_NUM_THREADS for OpenBLAS, and
 * OPENBLAS_CORETYPE picks OpenBLAS's kernels (0.3.21 takes a Sapphire
 * Rapids for a Prescott and runs SSE3 kernels unless told SkylakeX).
 * AESNET_CONV=implicit times the AVX-512 implicit GEMM (src/nn/conv_x86.c)
 * for the stride-1 convs instead of im2col + OpenBLAS.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"

typedef struct {
    const char *name;
    int C, H, W, OC, K, stride, pad, need_dinp;
} shape;

static const shape shapes[] = {
    {"stem 3->64 7x7 s2 @224", 3, 224, 224, 64, 7, 2, 3, 0},
    {"64->64 3x3 @56", 64, 56, 56, 64, 3, 1, 1, 1},
    {"256->64 1x1 @56", 256, 56, 56, 64, 1, 1, 0, 1},
    {"64->256 1x1 @56", 64, 56, 56, 256, 1, 1, 0, 1},
    {"256->512 1x1 s2 @56", 256, 56, 56, 512, 1, 2, 0, 1},
    {"128->128 3x3 s2 @56", 128, 56, 56, 128, 3, 2, 1, 1},
    {"128->128 3x3 @28", 128, 28, 28, 128, 3, 1, 1, 1},
    {"256->256 3x3 @14", 256, 14, 14, 256, 3, 1, 1, 1},
    {"512->512 3x3 @7", 512, 7, 7, 512, 3, 1, 1, 1},
};

static float *randn(size_t n, uint64_t key)
{
    float *x = aes_malloc(n * sizeof(float), "bench tensor");
    aes_rng r;
    aes_rng_init(&r, key);
    for (size_t i = 0; i < n; i++) x[i] = aes_rng_normal(&r);
    return x;
}

static double sgemm_gflops(int n, int reps)
{
    float *a = randn((size_t)n * n, 1), *b = randn((size_t)n * n, 2), *c = randn((size_t)n * n, 3);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = aes_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double t = aes_now() - t0;
        if (t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

int main(int argc, char **argv)
{
    const int N = argc > 1 ? atoi(argv[1]) : 8;
    const int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *only = argc > 3 ? argv[3] : NULL;
    if (N < 1 || reps < 1 || argc > 4) {
        fprintf(stderr, "usage: %s [N [REPS [LAYER]]]\n", argv[0]);
        return 2;
    }
    const int blas_threads = openblas_get_num_threads();
    printf("OpenBLAS core %s, OpenBLAS threads %d, OpenMP threads %d, N = %d, best of %d\n",
           openblas_get_corename(), blas_threads, omp_get_max_threads(), N, reps);
    const double peak = sgemm_gflops(1024, reps + 2);
    openblas_set_num_threads(1);
    const double peak1 = sgemm_gflops(1024, reps + 2);
    openblas_set_num_threads(blas_threads);
    printf("sgemm 1024^3: %.1f GFLOP/s (%d OpenBLAS threads), %.1f GFLOP/s (1 thread)\n", peak,
           blas_threads, peak1);
    printf("%-24s %-8s %9s %9s %9s %9s %9s %6s\n", "layer", "path", "fwd ms", "bwd ms",
           "fwd GF/s", "bwd GF/s", "all GF/s", "/peak");

    /* The paths, timed in turn inside every round so that both see the
     * same state of the machine (this VM's speed drifts by 10-20% over
     * minutes). */
    const int initial = conv2d_set_implicit(1);
    const int have_ig = conv2d_set_implicit(initial);
    const int npaths = have_ig ? 2 : 1;
    const char *path_name[2] = {"im2col", "implicit"};
    double tot_flop = 0, tot_time[2] = {0, 0};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const shape *k = &shapes[s];
        if (only && !strstr(k->name, only)) continue;
        const int OH = (k->H + 2 * k->pad - k->K) / k->stride + 1;
        const int OW = (k->W + 2 * k->pad - k->K) / k->stride + 1;
        const size_t nin = (size_t)N * k->C * k->H * k->W, nw = (size_t)k->OC * k->C * k->K * k->K,
                     nout = (size_t)N * k->OC * OH * OW;
        float *x = randn(nin, 10 + s), *w = randn(nw, 20 + s);
        float *dy = randn(nout, 40 + s), *y = aes_malloc(nout * sizeof(float), "out");
        float *dx = aes_calloc(nin, sizeof(float), "dinp");
        float *dw = aes_calloc(nw, sizeof(float), "dw");
        float *col = aes_malloc(
            conv2d_scratch_floats(N, k->C, k->H, k->W, k->OC, k->K, k->K, k->stride, k->pad) * sizeof(float),
            "col");
        double tf[2] = {1e30, 1e30}, tb[2] = {1e30, 1e30};
        for (int r = 0; r <= reps; r++) { /* the first round warms up */
            for (int p = 0; p < npaths; p++) {
                conv2d_set_implicit(p);
                double t0 = aes_now();
                conv2d_forward(y, col, x, w, NULL, N, k->C, k->H, k->W, k->OC, k->K, k->K, k->stride,
                               k->pad);
                double t1 = aes_now();
                conv2d_backward(k->need_dinp ? dx : NULL, dw, NULL, col, dy, x, w, N, k->C, k->H,
                                k->W, k->OC, k->K, k->K, k->stride, k->pad);
                double t2 = aes_now();
                if (r > 0 && t1 - t0 < tf[p]) tf[p] = t1 - t0;
                if (r > 0 && t2 - t1 < tb[p]) tb[p] = t2 - t1;
            }
        }
        const double ff = 2.0 * N * k->OC * (double)OH * OW * k->C * k->K * k->K;
        const double fb = ff * (k->need_dinp ? 2 : 1);
        for (int p = 0; p < npaths; p++) {
            const double all = (ff + fb) / (tf[p] + tb[p]) * 1e-9;
            printf("%-24s %-8s %9.2f %9.2f %9.1f %9.1f %9.1f %5.0f%%\n", p ? "" : k->name,
                   path_name[p], tf[p] * 1e3, tb[p] * 1e3, ff / tf[p] * 1e-9, fb / tb[p] * 1e-9,
                   all, 100 * all / peak);
            tot_time[p] += tf[p] + tb[p];
        }
        tot_flop += ff + fb;
        free(x), free(w), free(dy), free(y), free(dx), free(dw), free(col);
    }
    for (int p = 0; p < npaths; p++)
        printf("%-24s %-8s %9s %9s %9s %9s %9.1f %5.0f%%\n", p ? "" : "all layers", path_name[p], "",
               "", "", "", tot_flop / tot_time[p] * 1e-9,
               100 * tot_flop / tot_time[p] * 1e-9 / peak);
    if (npaths == 2) printf("implicit / im2col time, all layers: %.3f\n", tot_time[1] / tot_time[0]);
    conv2d_set_implicit(initial);
    return 0;
}
