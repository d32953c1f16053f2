/*
 * Pooling over [N, C, H, W]: max pool (with the winner's index kept for
 * backward), average pool counting padding in the divisor, and the global
 * average pool that ends a ResNet. Output sizes follow floor mode:
 * OH = (H + 2*pad - K) / stride + 1.
 *
 * Every plane (n, c) is independent, so the work is split over planes;
 * backward writes only into its own plane, so no two threads touch the
 * same dinp element and the sums need no atomics.
 */
#include <math.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"

static int pool_out_size(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

#define POOL_PAR_MIN 16384

void maxpool2d_forward(float *out, int32_t *argmax, const float *inp, int N, int C, int H, int W,
                       int K, int stride, int pad)
{
    AES_CHECK(N > 0 && C > 0 && K > 0 && stride > 0 && pad >= 0 && 2 * pad <= K);
    const int OH = pool_out_size(H, K, stride, pad), OW = pool_out_size(W, K, stride, pad);
    AES_CHECK(OH > 0 && OW > 0);
    const long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > POOL_PAR_MIN)
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *y = out + pl * OH * OW;
        int32_t *am = argmax + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const int h0 = oh * stride - pad;
            const int ha = h0 < 0 ? 0 : h0, hb = h0 + K < H ? h0 + K : H;
            for (int ow = 0; ow < OW; ow++) {
                const int w0 = ow * stride - pad;
                const int wa = w0 < 0 ? 0 : w0, wb = w0 + K < W ? w0 + K : W;
                /* Padding never wins: only real cells are visited, and
                 * 2*pad <= K leaves at least one in every window. A NaN
                 * wins, as in PyTorch, so it is not hidden. */
                float best = -INFINITY;
                int32_t at = ha * W + wa;
                for (int ih = ha; ih < hb; ih++)
                    for (int iw = wa; iw < wb; iw++) {
                        const float v = x[ih * W + iw];
                        if (v > best || isnan(v)) {
                            best = v;
                            at = ih * W + iw;
                            if (isnan(v)) goto done;
                        }
                    }
            done:
                y[oh * OW + ow] = best;
                am[oh * OW + ow] = at;
            }
        }
    }
}

void maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, int N, int C,
                        int H, int W, int K, int stride, int pad)
{
    const int OH = pool_out_size(H, K, stride, pad), OW = pool_out_size(W, K, stride, pad);
    const long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > POOL_PAR_MIN)
    for (long pl = 0; pl < planes; pl++) {
        float *dx = dinp + pl * H * W;
        const float *dy = dout + pl * OH * OW;
        const int32_t *am = argmax + pl * OH * OW;
        for (int o = 0; o < OH * OW; o++) dx[am[o]] += dy[o];
    }
}

/* count_include_pad: in floor mode every window lies within the padded
 * input, so the divisor is always K*K. */
void avgpool2d_forward(float *out, const float *inp, int N, int C, int H, int W, int K,
                       int stride, int pad)
{
    AES_CHECK(N > 0 && C > 0 && K > 0 && stride > 0 && pad >= 0 && 2 * pad <= K);
    const int OH = pool_out_size(H, K, stride, pad), OW = pool_out_size(W, K, stride, pad);
    AES_CHECK(OH > 0 && OW > 0);
    const float inv = 1.0f / (float)(K * K);
    const long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > POOL_PAR_MIN)
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *y = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const int h0 = oh * stride - pad;
            const int ha = h0 < 0 ? 0 : h0, hb = h0 + K < H ? h0 + K : H;
            for (int ow = 0; ow < OW; ow++) {
                const int w0 = ow * stride - pad;
                const int wa = w0 < 0 ? 0 : w0, wb = w0 + K < W ? w0 + K : W;
                float s = 0.0f;
                for (int ih = ha; ih < hb; ih++)
                    for (int iw = wa; iw < wb; iw++) s += x[ih * W + iw];
                y[oh * OW + ow] = s * inv;
            }
        }
    }
}

void avgpool2d_backward(float *dinp, const float *dout, int N, int C, int H, int W, int K,
                        int stride, int pad)
{
    const int OH = pool_out_size(H, K, stride, pad), OW = pool_out_size(W, K, stride, pad);
    const float inv = 1.0f / (float)(K * K);
    const long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W > POOL_PAR_MIN)
    for (long pl = 0; pl < planes; pl++) {
        float *dx = dinp + pl * H * W;
        const float *dy = dout + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            const int h0 = oh * stride - pad;
            const int ha = h0 < 0 ? 0 : h0, hb = h0 + K < H ? h0 + K : H;
            for (int ow = 0; ow < OW; ow++) {
                const int w0 = ow * stride - pad;
                const int wa = w0 < 0 ? 0 : w0, wb = w0 + K < W ? w0 + K : W;
                const float g = dy[oh * OW + ow] * inv;
                for (int ih = ha; ih < hb; ih++)
                    for (int iw = wa; iw < wb; iw++) dx[ih * W + iw] += g;
            }
        }
    }
}

void gap_forward(float *out, const float *inp, int N, int C, int HW)
{
    AES_CHECK(N > 0 && C > 0 && HW > 0);
    const long planes = (long)N * C;
#pragma omp parallel for schedule(static) if (planes * HW > POOL_PAR_MIN)
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * HW;
        double s = 0.0;
        for (int i = 0; i < HW; i++) s += x[i];
        out[pl] = (float)(s / HW);
    }
}

void gap_backward(float *dinp, const float *dout, int N, int C, int HW)
{
    const long planes = (long)N * C;
    const float inv = 1.0f / (float)HW;
#pragma omp parallel for schedule(static) if (planes * HW > POOL_PAR_MIN)
    for (long pl = 0; pl < planes; pl++) {
        float *dx = dinp + pl * HW;
        const float g = dout[pl] * inv;
        for (int i = 0; i < HW; i++) dx[i] += g;
    }
}
