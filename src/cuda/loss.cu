/*
 * GPU twins of the AesNet losses (src/loss, include/aesnet/loss.h), in the
 * same row-block form, on device buffers, with no host round trip: the
 * global counts, the normaliser and the loss values stay on the device
 * (out), for the step to copy to the host with its other statistics.
 *
 * As on the CPU, per attribute and direction: the B x Bg logits by one
 * GEMM, a block per row for the softmax against the target (one-hot, or
 * spread over the columns with the same description hash), its KL and the
 * gradient, then two GEMMs for the row and column gradients. The logit
 * scale s = exp(logscale) is read on the device: the logits are formed as
 * s * <x, y> in the row kernel and s is folded into the gradient matrix.
 * Per-row partials are summed in row order by one thread: deterministic.
 */
#include <math.h>

#include "cuda/gpu_internal.cuh"

/* ---- multi-attribute contrastive ------------------------------------------------------
 * Scratch (floats): doubles kl[A], gl[A], rowloss[B], rowgl[B]; then
 * weights[A] (float), counts[A] (int), then L [B, Bg]. */

/* Even counts, so that a scratch placed after this one stays aligned for
 * the doubles it starts with. */
static size_t even(size_t n) { return (n + 1) & ~(size_t)1; }

size_t aes_mac_scratch_floats_gpu(int B, int Bg, int A)
{
    return even(2 * (2 * (size_t)A + 2 * (size_t)B) + 2 * (size_t)A + (size_t)B * Bg);
}

__global__ void mac_counts_kernel(int *counts, const uint8_t *mask, int Bg)
{
    const uint8_t *m = mask + (size_t)blockIdx.x * Bg;
    int n = 0;
    for (int j = threadIdx.x; j < Bg; j += blockDim.x) n += m[j] != 0;
    n = block_sum(n);
    if (threadIdx.x == 0) counts[blockIdx.x] = n;
}

__device__ double mac_wsum(const float *weights, const int *counts, int A)
{
    double w = 0.0;
    for (int a = 0; a < A; a++)
        if (counts[a] > 0) w += weights[a];
    return w;
}

/* One block per local row i of attribute a. */
__global__ void mac_rows_kernel(float *L, int Bg, int row0, const uint8_t *mask,
                                const uint64_t *hash, int dup, const float *logscale,
                                const float *weights, const int *counts, int A, int a, int grad,
                                double *rowloss, double *rowgl)
{
    const int i = blockIdx.x, gi = row0 + i;
    float *l = L + (size_t)i * Bg;
    const int n = counts[a];
    if (!mask[gi] || n == 0) {
        if (grad)
            for (int j = threadIdx.x; j < Bg; j += blockDim.x) l[j] = 0.0f;
        if (threadIdx.x == 0) rowloss[i] = rowgl[i] = 0.0;
        return;
    }
    const float s = expf(logscale[a]);
    const double wsum = mac_wsum(weights, counts, A);
    const double coef = wsum != 0.0 ? weights[a] / (wsum * 2.0 * n) : 0.0;
    const uint64_t h = hash[gi];
    __shared__ float smax;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < Bg; j += blockDim.x)
        if (mask[j]) m = fmaxf(m, s * l[j]);
    for (int k = 16; k > 0; k >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, k));
    __shared__ float wm[32];
    if ((threadIdx.x & 31) == 0) wm[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        float mm = -INFINITY;
        for (int k = 0; k < (int)((blockDim.x + 31) >> 5); k++) mm = fmaxf(mm, wm[k]);
        smax = mm;
    }
    __syncthreads();
    m = smax;
    double se = 0.0, sel = 0.0, tl = 0.0;
    int cnt = 0;
    for (int j = threadIdx.x; j < Bg; j += blockDim.x) {
        if (!mask[j]) continue;
        const float lj = s * l[j];
        const float e = expf(lj - m);
        se += e;
        sel += (double)e * lj;
        if (dup ? hash[j] == h : j == gi) cnt++, tl += lj;
    }
    se = block_sum(se);
    sel = block_sum(sel);
    tl = block_sum(tl);
    cnt = block_sum(cnt);
    const double tw = 1.0 / cnt;
    if (threadIdx.x == 0) {
        rowloss[i] = m + log(se) - tl * tw - log((double)cnt);
        rowgl[i] = sel / se - tl * tw;
    }
    if (!grad) return;
    __syncthreads(); /* every thread has read l before it is overwritten */
    const double inv_se = 1.0 / se;
    for (int j = threadIdx.x; j < Bg; j += blockDim.x) {
        if (!mask[j]) {
            l[j] = 0.0f;
            continue;
        }
        const double t = (dup ? hash[j] == h : j == gi) ? tw : 0.0;
        const float e = expf(s * l[j] - m);
        /* s folded in: the gradient GEMMs then run with alpha 1 */
        l[j] = (float)(s * coef * (e * inv_se - t));
    }
}

/* kl[a] += sum_i rowloss[i], gl[a] += sum_i rowgl[i], in row order. */
__global__ void mac_accumulate_kernel(double *kl, double *gl, const double *rowloss,
                                      const double *rowgl, int B, int a)
{
    double k = 0.0, g = 0.0;
    for (int i = 0; i < B; i++) k += rowloss[i], g += rowgl[i];
    kl[a] += k;
    gl[a] += g;
}

__global__ void mac_finish_kernel(double *out, float *dlogscale, const double *kl, const double *gl,
                                  const float *weights, const int *counts, int A)
{
    const double wsum = mac_wsum(weights, counts, A);
    double total = 0.0;
    for (int a = 0; a < A; a++) {
        const int n = counts[a];
        const double la = n > 0 ? kl[a] / (2.0 * n) : 0.0;
        out[a] = la;
        if (wsum != 0.0) total += weights[a] * la;
        const double coef = n > 0 && wsum != 0.0 ? weights[a] / (wsum * 2.0 * n) : 0.0;
        if (dlogscale) dlogscale[a] = (float)(coef * gl[a]);
    }
    out[A] = wsum != 0.0 ? total / wsum : 0.0;
}

extern "C" void aes_mac_loss_gpu(const aes_mac_args *args, float *scratch, double *out, float *dx,
                                 float *dy, float *dlogscale)
{
    const int A = args->A, D = args->D, Bg = args->Bg, B = args->B, row0 = args->row0;
    AES_CHECK(A >= 1 && D >= 1 && Bg >= 1 && B >= 1 && row0 >= 0 && row0 + B <= Bg);
    AES_CHECK((dx == NULL) == (dy == NULL));
    const int grad = dx != NULL;
    const size_t slab = (size_t)Bg * D;
    double *kl = (double *)(void *)scratch, *gl = kl + A, *rowloss = gl + A, *rowgl = rowloss + B;
    float *weights = (float *)(rowgl + B);
    int *counts = (int *)(weights + A);
    float *L = (float *)(counts + A);
    cudaStream_t st = gpu_stream();
    aes_gpu_upload(weights, args->weights, sizeof(float) * A); /* the config's, host memory */
    aes_gpu_zero(kl, sizeof(double) * 2 * A);
    if (grad) {
        aes_gpu_zero(dx, sizeof(float) * slab * A);
        aes_gpu_zero(dy, sizeof(float) * slab * A);
    }
    mac_counts_kernel<<<A, 256, 0, st>>>(counts, args->mask, Bg);
    LAUNCH_OK();
    for (int a = 0; a < A; a++) {
        const float *xa = args->x + (size_t)a * slab, *ya = args->y + (size_t)a * slab;
        for (int dir = 0; dir < 2; dir++) {
            const float *rows = dir ? ya : xa, *cols = dir ? xa : ya;
            const float *rows_loc = rows + (size_t)row0 * D;
            /* L^T [Bg, B] = cols [Bg, D] . rows_loc^T [D, B] */
            gpu_gemm(1, CUBLAS_OP_T, CUBLAS_OP_N, Bg, B, D, 1.0f,
                     cols, D, rows_loc, D, 0.0f, L, Bg);
            mac_rows_kernel<<<B, 256, 0, st>>>(L, Bg, row0, args->mask + (size_t)a * Bg,
                                               args->hash + (size_t)a * Bg,
                                               args->duplicates_positive, args->logscale, weights,
                                               counts, A, a, grad, rowloss, rowgl);
            LAUNCH_OK();
            mac_accumulate_kernel<<<1, 1, 0, st>>>(kl, gl, rowloss, rowgl, B, a);
            LAUNCH_OK();
            if (!grad) continue;
            float *drows = (dir ? dy : dx) + (size_t)a * slab;
            float *dcols = (dir ? dx : dy) + (size_t)a * slab;
            /* rows: G [B, Bg] . cols [Bg, D];  columns: G^T [Bg, B] . rows_loc [B, D] */
            gpu_gemm(1, CUBLAS_OP_N, CUBLAS_OP_N, D, B, Bg, 1.0f,
                     cols, D, L, Bg, 1.0f, drows + (size_t)row0 * D, D);
            gpu_gemm(1, CUBLAS_OP_N, CUBLAS_OP_T, D, Bg, B, 1.0f,
                     rows_loc, D, L, Bg, 1.0f, dcols, D);
        }
    }
    mac_finish_kernel<<<1, 1, 0, st>>>(out, dlogscale, kl, gl, weights, counts, A);
    LAUNCH_OK();
}

/* ---- semantic affinity -----------------------------------------------------------------
 * Scratch (floats): doubles rowloss[B]; then vh [Bg, F], rh [Bg, Fr], vn
 * [Bg], C [B, Bg] (then H = dL/dc), R [B, Bg]. */

#define SA_EPS 1e-12

size_t aes_sa_scratch_floats_gpu(int B, int Bg, int F, int Fr)
{
    return even(2 * (size_t)B + (size_t)Bg * F + (size_t)Bg * Fr + (size_t)Bg + 2 * (size_t)B * Bg);
}

__global__ void sa_normalise_kernel(float *out, float *norm, const float *in, int F)
{
    const size_t o = (size_t)blockIdx.x * F;
    double ss = 0.0;
    for (int k = threadIdx.x; k < F; k += blockDim.x) ss += (double)in[o + k] * in[o + k];
    const double nr = sqrt(block_sum(ss));
    const double inv = 1.0 / (nr > SA_EPS ? nr : SA_EPS);
    for (int k = threadIdx.x; k < F; k += blockDim.x) out[o + k] = (float)(in[o + k] * inv);
    if (norm && threadIdx.x == 0) norm[blockIdx.x] = (float)nr;
}

/* One block per local row: the row's loss, and C's row turned into H. */
__global__ void sa_rows_kernel(float *Cm, const float *Rm, double *rowloss, int Bg, int row0,
                               int kl, double itau, double norm)
{
    const int i = blockIdx.x, gi = row0 + i;
    float *c = Cm + (size_t)i * Bg;
    const float *r = Rm + (size_t)i * Bg;
    double loss = 0.0;
    if (kl) {
        double mr = -INFINITY, mc = -INFINITY;
        for (int j = threadIdx.x; j < Bg; j += blockDim.x) {
            if (j == gi) continue;
            mr = fmax(mr, r[j] * itau);
            mc = fmax(mc, c[j] * itau);
        }
        for (int k = 16; k > 0; k >>= 1) {
            mr = fmax(mr, __shfl_xor_sync(0xffffffffu, mr, k));
            mc = fmax(mc, __shfl_xor_sync(0xffffffffu, mc, k));
        }
        __shared__ double wr[32], wc[32], smr, smc;
        if ((threadIdx.x & 31) == 0) wr[threadIdx.x >> 5] = mr, wc[threadIdx.x >> 5] = mc;
        __syncthreads();
        if (threadIdx.x == 0) {
            double a = -INFINITY, b = -INFINITY;
            for (int k = 0; k < (int)((blockDim.x + 31) >> 5); k++) a = fmax(a, wr[k]), b = fmax(b, wc[k]);
            smr = a, smc = b;
        }
        __syncthreads();
        mr = smr, mc = smc;
        double sp = 0.0, sq = 0.0;
        for (int j = threadIdx.x; j < Bg; j += blockDim.x) {
            if (j == gi) continue;
            sp += exp(r[j] * itau - mr);
            sq += exp(c[j] * itau - mc);
        }
        sp = block_sum(sp);
        sq = block_sum(sq);
        const double lsp = mr + log(sp), lsq = mc + log(sq);
        __syncthreads();
        for (int j = threadIdx.x; j < Bg; j += blockDim.x) {
            if (j == gi) {
                c[j] = 0.0f;
                continue;
            }
            const double lp = r[j] * itau - lsp, lq = c[j] * itau - lsq;
            const double p = exp(lp), q = exp(lq);
            loss += p * (lp - lq);
            c[j] = (float)(norm * itau * (q - p));
        }
    } else {
        for (int j = threadIdx.x; j < Bg; j += blockDim.x) {
            if (j == gi) {
                c[j] = 0.0f;
                continue;
            }
            const double d = (double)c[j] - r[j];
            loss += d * d;
            c[j] = (float)(norm * 2.0 * d);
        }
    }
    loss = block_sum(loss);
    if (threadIdx.x == 0) rowloss[i] = loss;
}

__global__ void sa_total_kernel(double *out, const double *rowloss, int B, double norm)
{
    double t = 0.0;
    for (int i = 0; i < B; i++) t += rowloss[i];
    out[0] = t * norm;
}

/* Back through the normalisation, row j of dv in place. */
__global__ void sa_norm_bwd_kernel(float *dv, const float *vh, const float *vn, int F)
{
    const size_t o = (size_t)blockIdx.x * F;
    const float n = vn[blockIdx.x];
    if (n > SA_EPS) {
        double dot = 0.0;
        for (int k = threadIdx.x; k < F; k += blockDim.x) dot += (double)vh[o + k] * dv[o + k];
        dot = block_sum(dot);
        const double inv = 1.0 / n;
        for (int k = threadIdx.x; k < F; k += blockDim.x)
            dv[o + k] = (float)((dv[o + k] - vh[o + k] * dot) * inv);
    } else {
        for (int k = threadIdx.x; k < F; k += blockDim.x) dv[o + k] = (float)(dv[o + k] / SA_EPS);
    }
}

extern "C" void aes_sa_loss_gpu(const aes_sa_args *args, float *scratch, double *out, float *dv)
{
    const int Bg = args->Bg, B = args->B, row0 = args->row0, F = args->F, Fr = args->Fr;
    AES_CHECK(Bg >= 1 && F >= 1 && Fr >= 1 && B >= 0 && row0 >= 0 && row0 + B <= Bg);
    AES_CHECK(args->kind == AES_AFFINITY_KL || args->kind == AES_AFFINITY_MSE);
    AES_CHECK(args->kind != AES_AFFINITY_KL || args->tau > 0.0f);
    if (dv) aes_gpu_zero(dv, sizeof(float) * (size_t)Bg * F);
    aes_gpu_zero(out, sizeof(double));
    if (Bg < 2 || B == 0) return;
    cudaStream_t st = gpu_stream();
    double *rowloss = (double *)(void *)scratch;
    float *vh = scratch + 2 * (size_t)B, *rh = vh + (size_t)Bg * F, *vn = rh + (size_t)Bg * Fr;
    float *Cm = vn + Bg, *Rm = Cm + (size_t)B * Bg;
    sa_normalise_kernel<<<Bg, 128, 0, st>>>(vh, vn, args->v, F);
    LAUNCH_OK();
    sa_normalise_kernel<<<Bg, 128, 0, st>>>(rh, NULL, args->ref, Fr);
    LAUNCH_OK();
    const float *vh_loc = vh + (size_t)row0 * F;
    /* C^T [Bg, B] = vh [Bg, F] . vh_loc^T;  R likewise */
    gpu_gemm(1, CUBLAS_OP_T, CUBLAS_OP_N, Bg, B, F, 1.0f, vh, F, vh_loc, F, 0.0f, Cm, Bg);
    gpu_gemm(1, CUBLAS_OP_T, CUBLAS_OP_N, Bg, B, Fr, 1.0f,
             rh, Fr, rh + (size_t)row0 * Fr, Fr, 0.0f, Rm, Bg);
    const int kl = args->kind == AES_AFFINITY_KL;
    const double norm = kl ? 1.0 / Bg : 1.0 / ((double)Bg * (Bg - 1));
    sa_rows_kernel<<<B, 256, 0, st>>>(Cm, Rm, rowloss, Bg, row0, kl, kl ? 1.0 / args->tau : 0.0,
                                      norm);
    LAUNCH_OK();
    sa_total_kernel<<<1, 1, 0, st>>>(out, rowloss, B, norm);
    LAUNCH_OK();
    if (!dv) return;
    /* rows: H [B, Bg] . vh [Bg, F];  columns: H^T . vh_loc */
    gpu_gemm(1, CUBLAS_OP_N, CUBLAS_OP_N, F, B, Bg, 1.0f,
             vh, F, Cm, Bg, 1.0f, dv + (size_t)row0 * F, F);
    gpu_gemm(1, CUBLAS_OP_N, CUBLAS_OP_T, F, Bg, B, 1.0f, vh_loc, F, Cm, Bg, 1.0f, dv, F);
    sa_norm_bwd_kernel<<<Bg, 128, 0, st>>>(dv, vh, vn, F);
    LAUNCH_OK();
}
