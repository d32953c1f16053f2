/*
 * L2 normalisation of rows, as torch.nn.functional.normalize(x, dim=-1)
 * with eps 1e-12: out = x / max(||x||, eps).
 */
#include <math.h>

#include "aesnet/nn.h"

#define L2NORM_EPS 1e-12

void l2norm_forward(float *out, float *norm, const float *inp, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
        const double nr = sqrt(ss);
        norm[n] = (float)nr;
        const float inv = (float)(1.0 / (nr > L2NORM_EPS ? nr : L2NORM_EPS));
        for (int c = 0; c < C; c++) y[c] = x[c] * inv;
    }
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int N,
                     int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *y = out + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        /* torch's clamp_min passes the gradient to the norm where
         * norm >= eps; below it the denominator is the constant eps. */
        if ((double)norm[n] >= L2NORM_EPS) {
            /* d(x/|x|) = (I - y y^T) / |x| */
            double dot = 0.0;
            for (int c = 0; c < C; c++) dot += (double)dy[c] * y[c];
            const float fdot = (float)dot, inv = (float)(1.0 / norm[n]);
            for (int c = 0; c < C; c++) dx[c] += (dy[c] - y[c] * fdot) * inv;
        } else {
            const float inv = (float)(1.0 / L2NORM_EPS);
            for (int c = 0; c < C; c++) dx[c] += dy[c] * inv;
        }
    }
}
