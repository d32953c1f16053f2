/*
 * Batch norm over [N, C, HW], with its statistics reduced over ranks.
 *
 * Training-mode forward takes two passes per channel: the mean, then the
 * sum of squared deviations from it (no E[x^2] - E[x]^2 cancellation). Both
 * sums are accumulated in double and handed to red->allreduce_sum so every
 * rank normalises with the statistics of the global batch; the element
 * count goes along in the first buffer so the ranks also agree on the
 * global N*HW when their local batches differ in size.
 *
 * Backward needs two per-channel sums over the global batch, of dout and of
 * dout * xhat. dgamma and dbeta receive this rank's LOCAL sums (taken before
 * the reduction): the trainer all-reduces parameter gradients afterwards,
 * and the global sums would be counted once per rank. dinp uses the global
 * sums, which makes W ranks of batch B exactly one rank of batch W*B.
 *
 * The reduction buffers live on the stack (no allocation in a training
 * step), so channels go in blocks of BN_BLOCK: one or two reductions per
 * pass for every layer of a ResNet-50, each the same size on every rank.
 */
#include <math.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"

enum { BN_BLOCK = 1024 };

static void reduce_sum(const aes_reducer *red, double *buf, int n)
{
    if (red && red->allreduce_sum) red->allreduce_sum(buf, n, red->ctx);
}

/* Parallel loops over a block's channels only pay for sizeable tensors. */
#define BN_PAR_MIN 32768

/* Sums in double over one plane. Eight independent partial sums: one
 * running sum would wait on the latency of every add (4x slower on a
 * 56x56 plane); the order is fixed, so the result still repeats. */
#define BN_LANES 8

static double plane_sum(const float *x, int n)
{
    double a[BN_LANES] = {0};
    int i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) a[j] += x[i + j];
    for (; i < n; i++) a[0] += x[i];
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static double plane_ssd(const float *x, int n, double m)
{
    double a[BN_LANES] = {0};
    int i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) {
            const double d = x[i + j] - m;
            a[j] += d * d;
        }
    for (; i < n; i++) {
        const double d = x[i] - m;
        a[0] += d * d;
    }
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* sum dout and sum dout * xhat over one plane, xhat = (x - m) * r. */
static void plane_dsums(const float *dy, const float *x, int n, float m, float r, double *sd,
                        double *sdx)
{
    double a[BN_LANES] = {0}, b[BN_LANES] = {0};
    int i = 0;
    for (; i + BN_LANES <= n; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) {
            const float d = dy[i + j], xhat = (x[i + j] - m) * r;
            a[j] += d;
            b[j] += (double)d * xhat;
        }
    for (; i < n; i++) {
        const float d = dy[i], xhat = (x[i] - m) * r;
        a[0] += d;
        b[0] += (double)d * xhat;
    }
    *sd += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *sdx += ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

void batchnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *gamma, const float *beta, float *running_mean,
                       float *running_var, int N, int C, int HW, int train, float momentum,
                       float eps, const aes_reducer *red)
{
    AES_CHECK(N > 0 && C > 0 && HW > 0);
    const size_t total = (size_t)N * C * HW;

    if (train) {
        double buf[2 * BN_BLOCK + 1];
        for (int c0 = 0; c0 < C; c0 += BN_BLOCK) {
            const int cn = C - c0 < BN_BLOCK ? C - c0 : BN_BLOCK;
            double *sum = buf, *ssd = buf + BN_BLOCK + 1;

#pragma omp parallel for schedule(static) if (total > BN_PAR_MIN)
            for (int j = 0; j < cn; j++) {
                double acc = 0.0;
                for (int n = 0; n < N; n++)
                    acc += plane_sum(inp + ((size_t)n * C + c0 + j) * HW, HW);
                sum[j] = acc;
            }
            sum[cn] = (double)N * HW;
            reduce_sum(red, sum, cn + 1);
            const double count = sum[cn];
            if (!(count > 1.0))
                aes_internal_error("batch norm in training needs more than one value per "
                                   "channel (global N*HW = %g)",
                                   count);
            for (int j = 0; j < cn; j++) sum[j] /= count; /* now the means */

#pragma omp parallel for schedule(static) if (total > BN_PAR_MIN)
            for (int j = 0; j < cn; j++) {
                double acc = 0.0;
                for (int n = 0; n < N; n++)
                    acc += plane_ssd(inp + ((size_t)n * C + c0 + j) * HW, HW, sum[j]);
                ssd[j] = acc;
            }
            reduce_sum(red, ssd, cn);

            for (int j = 0; j < cn; j++) {
                const int c = c0 + j;
                const double var = ssd[j] / count; /* biased: what normalises */
                mean[c] = (float)sum[j];
                rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
                running_mean[c] =
                    (float)((1.0 - momentum) * running_mean[c] + (double)momentum * sum[j]);
                running_var[c] = (float)((1.0 - momentum) * running_var[c] +
                                         (double)momentum * var * count / (count - 1.0));
            }
        }
    } else {
        for (int c = 0; c < C; c++) {
            mean[c] = running_mean[c];
            rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        }
    }

#pragma omp parallel for schedule(static) if (total > BN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        const float m = mean[c], k = rstd[c] * gamma[c], b = beta[c];
        for (int n = 0; n < N; n++) {
            const size_t o = ((size_t)n * C + c) * HW;
            for (int i = 0; i < HW; i++) out[o + i] = (inp[o + i] - m) * k + b;
        }
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *gamma, int N, int C, int HW, const aes_reducer *red)
{
    AES_CHECK(N > 0 && C > 0 && HW > 0);
    const size_t total = (size_t)N * C * HW;
    double buf[2 * BN_BLOCK + 1];
    for (int c0 = 0; c0 < C; c0 += BN_BLOCK) {
        const int cn = C - c0 < BN_BLOCK ? C - c0 : BN_BLOCK;
        double *sd = buf, *sdx = buf + cn; /* sum dout, sum dout * xhat; then the count */

#pragma omp parallel for schedule(static) if (total > BN_PAR_MIN)
        for (int j = 0; j < cn; j++) {
            const int c = c0 + j;
            const float m = mean[c], r = rstd[c];
            double a = 0.0, b = 0.0;
            for (int n = 0; n < N; n++) {
                const size_t o = ((size_t)n * C + c) * HW;
                plane_dsums(dout + o, inp + o, HW, m, r, &a, &b);
            }
            sd[j] = a;
            sdx[j] = b;
        }
        sd[2 * cn] = (double)N * HW;
        for (int j = 0; j < cn; j++) {
            dbeta[c0 + j] += (float)sd[j];
            dgamma[c0 + j] += (float)sdx[j];
        }
        reduce_sum(red, sd, 2 * cn + 1);
        const double count = sd[2 * cn];

#pragma omp parallel for schedule(static) if (total > BN_PAR_MIN)
        for (int j = 0; j < cn; j++) {
            const int c = c0 + j;
            const float m = mean[c], r = rstd[c], k = gamma[c] * r;
            const float md = (float)(sd[j] / count), mdx = (float)(sdx[j] / count);
            for (int n = 0; n < N; n++) {
                const size_t o = ((size_t)n * C + c) * HW;
                for (int i = 0; i < HW; i++) {
                    const float xhat = (inp[o + i] - m) * r;
                    dinp[o + i] += k * (dout[o + i] - md - xhat * mdx);
                }
            }
        }
    }
}
