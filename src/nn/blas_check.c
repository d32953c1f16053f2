/*
 * A quick self-check of the BLAS kernels in use: OpenBLAS picks them from
 * the CPU it detects, or from OPENBLAS_CORETYPE, and some kernels of older
 * OpenBLAS releases compute wrong results on some CPUs. A few sgemm shapes
 * (all transpose cases, edge sizes that hit the kernels' remainder paths)
 * against a plain double-precision loop, at start-up. Also the switch that
 * keeps OpenBLAS single-threaded inside OpenMP regions.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"

#include "nn/nn_internal.h"

char *openblas_get_corename(void);

int aes_blas_serial_begin(void)
{
    if (openblas_get_parallel() != 1) return 0;
    const int t = openblas_get_num_threads();
    if (t <= 1) return 0;
    openblas_set_num_threads(1);
    return t;
}

void aes_blas_serial_end(int saved)
{
    if (saved > 1) openblas_set_num_threads(saved);
}

const char *aes_blas_core(void) { return openblas_get_corename(); }

int aes_blas_selfcheck(aes_err *err)
{
    static const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {17, 33, 65}, {64, 64, 64}, {96, 131, 37}, {257, 19, 128}};
    aes_rng r;
    aes_rng_init(&r, 12345);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *a = aes_malloc(sizeof(float) * M * K, "check"), *b = aes_malloc(sizeof(float) * K * N, "check");
        float *c = aes_malloc(sizeof(float) * M * N, "check");
        for (int i = 0; i < M * K; i++) a[i] = aes_rng_normal(&r);
        for (int i = 0; i < K * N; i++) b[i] = aes_rng_normal(&r);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                /* a is read as [M, K] (or its transpose stored [K, M]), b as [K, N] (or [N, K]) */
                cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                            M, N, K, 1.0f, a, ta ? M : K, b, tb ? K : N, 0.0f, c, N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double ref = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            double x = ta ? a[(size_t)k * M + i] : a[(size_t)i * K + k];
                            double y = tb ? b[(size_t)j * K + k] : b[(size_t)k * N + j];
                            ref += x * y;
                            mag += fabs(x * y);
                        }
                        if (fabs(c[(size_t)i * N + j] - ref) > 1e-5 * mag + 1e-6) {
                            aes_err_set(err, "sgemm %s%s %dx%dx%d gives %g where %g is right",
                                        ta ? "T" : "N", tb ? "T" : "N", M, N, K,
                                        (double)c[(size_t)i * N + j], ref);
                            free(a);
                            free(b);
                            free(c);
                            return -1;
                        }
                    }
            }
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
