/*
 * GELU, exact form as torch.nn.GELU(): x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)).
 */
#include <math.h>

#include "aesnet/nn.h"

#define GELU_RSQRT2 0.70710678118654752440f   /* 1 / sqrt(2) */
#define GELU_RSQRT2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */

void gelu_forward(float *out, const float *inp, size_t n)
{
    const ptrdiff_t m = (ptrdiff_t)n;
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < m; i++) {
        const float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * GELU_RSQRT2));
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    const ptrdiff_t m = (ptrdiff_t)n;
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < m; i++) {
        const float x = inp[i];
        /* d/dx [x Phi(x)] = Phi(x) + x phi(x) */
        const float cdf = 0.5f * (1.0f + erff(x * GELU_RSQRT2));
        const float pdf = GELU_RSQRT2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}
