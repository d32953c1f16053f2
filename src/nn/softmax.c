/*
 * Row softmax with a scale on the logits: out = softmax(inp * scale).
 */
#include <math.h>

#include "aesnet/nn.h"

void softmax_forward(float *out, const float *inp, int N, int C, float scale)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        /* Subtract the row maximum so exp never overflows. */
        float mx = -INFINITY;
        for (int c = 0; c < C; c++) mx = fmaxf(mx, x[c] * scale);
        double sum = 0.0;
        for (int c = 0; c < C; c++) {
            y[c] = expf(x[c] * scale - mx);
            sum += y[c];
        }
        const float inv = (float)(1.0 / sum);
        for (int c = 0; c < C; c++) y[c] *= inv;
    }
}

void softmax_backward(float *dinp, const float *dout, const float *out, int N, int C, float scale)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *y = out + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        /* d logit_c = y_c (dy_c - sum_j dy_j y_j), times scale for the input */
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)dy[c] * y[c];
        const float fdot = (float)dot;
        for (int c = 0; c < C; c++) dx[c] += scale * y[c] * (dy[c] - fdot);
    }
}
