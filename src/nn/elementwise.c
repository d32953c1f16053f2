/*
 * Element-wise layers of the convolutional encoders: ReLU and the residual
 * add. (GELU, the transformer's, lives with the transformer layers.)
 */
#include "aesnet/nn.h"

/* Below this many elements a parallel region costs more than the loop. */
#define EW_PAR_MIN 65536

/* A NaN passes through (x < 0 is false for it), as in torch.relu, so a
 * diverging run shows up instead of being zeroed away. */
void relu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        out[i] = x < 0.0f ? 0.0f : x;
    }
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

void add_inplace(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] += inp[i];
}
