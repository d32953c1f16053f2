/*
 * AdamW, the learning-rate schedule and clipping by the global gradient
 * norm: the CPU reference path (include/aesnet/optim.h).
 *
 * aes_adamw_step reproduces torch 1.13's torch.optim.AdamW on CPU (the
 * default single-tensor path, amsgrad off) operation for operation, with
 * every rounding where torch rounds, so the two agree to the last bit or
 * so rather than merely to the formula:
 *
 *   torch (adamw.py, _single_tensor_adamw)        here, per element
 *   param.mul_(1 - lr * wd)                       p = p * (float)(1 - lr*wd)   [decay only]
 *   exp_avg.mul_(b1).add_(g, alpha=1 - b1)        m = fmaf(g, (float)(1-b1), m * b1)
 *   exp_avg_sq.mul_(b2).addcmul_(g, g, 1 - b2)    v = fmaf((float)(1-b2) * g, g, v * b2)
 *   bc1 = 1 - b1**t, bc2 = 1 - b2**t (double)     same, in double
 *   step_size = lr / bc1 (double)                 same
 *   denom = (v.sqrt() / sqrt(bc2)).add_(eps)      d = sqrtf(v) / (float)sqrt(bc2) + eps
 *   param.addcdiv_(m, denom, value=-step_size)    p = p + ((float)-step_size * m) / d
 *
 * The scalars are Python floats (doubles) in torch and are rounded to
 * float when they meet a float tensor; they are formed in double here and
 * rounded at the same places. Torch's AVX2 kernels fuse the multiply-add
 * of add_(alpha) and addcmul_ (checked against torch: fmaf matches every
 * element, the unfused form does not), hence fmaf. With wd = 0 torch still
 * multiplies by 1, which is exact, so skipping it for decay = 0 changes
 * nothing. Elements are independent, so the result does not depend on the
 * thread count.
 *
 * aes_sumsq sums in double in an order fixed by n alone (see below), so a
 * gradient norm, and with it the clip factor, repeats bit for bit on any
 * number of threads.
 */
#include "aesnet/optim.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "aesnet/core.h"
#include "core/avx512.h"

/* Below this many elements a parallel region costs more than it saves. */
#define AES_OPTIM_PAR_MIN 16384
/* M_PI is POSIX, not C11. */
#define AES_PI 3.14159265358979323846

void aes_adamw_step(float *p, const float *g, float *m, float *v, size_t n, float lr,
                    const aes_adamw *cfg, int decay, int64_t t)
{
    aes_adamw_step_scaled(p, g, 1.0f, m, v, n, lr, cfg, decay, t);
}

/* The per-element arithmetic, shared by the scalar loop and the vector
 * one (which does the same IEEE operations 16 lanes at a time, so the two
 * give the same bits). */
typedef struct {
    float gscale, b1, b2, one_m_b1, one_m_b2, keep, neg_step, bc2_sqrt, eps;
    int decay;
} adamw_k;

static void adamw_scalar(const adamw_k *k, float *p, const float *g, float *m, float *v,
                         ptrdiff_t i0, ptrdiff_t i1)
{
    for (ptrdiff_t i = i0; i < i1; i++) {
        const float gi = g[i] * k->gscale;
        float pi = p[i];
        if (k->decay) pi = pi * k->keep;
        const float mi = fmaf(gi, k->one_m_b1, m[i] * k->b1);
        const float vi = fmaf(k->one_m_b2 * gi, gi, v[i] * k->b2);
        const float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
        p[i] = pi + (k->neg_step * mi) / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

#ifdef AES_X86
/* Without -mfma, fmaf is a libm call per element and the scalar loop does
 * not vectorise (sqrtf may set errno); this is the same loop in AVX-512.
 * bench_model's update phase (2 threads), ViT-B/16 with the text encoder:
 * 431 -> 124 ms; ResNet-50: 254 -> 71-78 ms (PyTorch: 370 and 211 ms).
 * test_optim_torch still finds every element bit-identical to torch. */
__attribute__((target("avx512f"))) static void adamw_avx512(const adamw_k *k, float *p,
                                                            const float *g, float *m, float *v,
                                                            ptrdiff_t i0, ptrdiff_t i1)
{
    const __m512 gs = _mm512_set1_ps(k->gscale), b1 = _mm512_set1_ps(k->b1),
                 b2 = _mm512_set1_ps(k->b2), c1 = _mm512_set1_ps(k->one_m_b1),
                 c2 = _mm512_set1_ps(k->one_m_b2), keep = _mm512_set1_ps(k->keep),
                 ns = _mm512_set1_ps(k->neg_step), bq = _mm512_set1_ps(k->bc2_sqrt),
                 eps = _mm512_set1_ps(k->eps);
    for (ptrdiff_t i = i0; i < i1; i += 16) {
        const __mmask16 mk = aes_lanes(i1 - i);
        const __m512 gi = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + i), gs);
        __m512 pi = _mm512_maskz_loadu_ps(mk, p + i);
        if (k->decay) pi = _mm512_mul_ps(pi, keep);
        const __m512 mi = _mm512_fmadd_ps(gi, c1, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, m + i), b1));
        const __m512 vi =
            _mm512_fmadd_ps(_mm512_mul_ps(c2, gi), gi, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, v + i), b2));
        const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bq), eps);
        _mm512_mask_storeu_ps(p + i, mk, _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(ns, mi), denom)));
        _mm512_mask_storeu_ps(m + i, mk, mi);
        _mm512_mask_storeu_ps(v + i, mk, vi);
    }
}
#endif

void aes_adamw_step_scaled(float *p, const float *g, float gscale, float *m, float *v, size_t n,
                           float lr, const aes_adamw *cfg, int decay, int64_t t)
{
    if (t < 1) aes_internal_error("AdamW step count %lld: must be >= 1", (long long)t);
    const float b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps;
    const float one_m_b1 = (float)(1.0 - (double)b1);
    const float one_m_b2 = (float)(1.0 - (double)b2);
    const float keep = (float)(1.0 - (double)lr * (double)cfg->weight_decay);
    const double bc1 = 1.0 - pow((double)b1, (double)t);
    const double bc2 = 1.0 - pow((double)b2, (double)t);
    const float neg_step = (float)(-((double)lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const adamw_k k = {gscale, b1, b2, one_m_b1, one_m_b2, keep, neg_step, bc2_sqrt, eps, decay != 0};
    const ptrdiff_t N = (ptrdiff_t)n;
#ifdef AES_X86
    const int vec = aes_avx512();
#else
    const int vec = 0;
#endif
#pragma omp parallel if (N >= AES_OPTIM_PAR_MIN)
    {
        /* A contiguous range per thread, cut at multiples of 16. */
        const int T = omp_get_num_threads(), th = omp_get_thread_num();
        const ptrdiff_t per = ((N + T - 1) / T + 15) / 16 * 16;
        const ptrdiff_t i0 = th * per < N ? th * per : N, i1 = i0 + per < N ? i0 + per : N;
#ifdef AES_X86
        if (vec) adamw_avx512(&k, p, g, m, v, i0, i1);
        else
#endif
            adamw_scalar(&k, p, g, m, v, i0, i1);
    }
    (void)vec;
}

/*
 * Warm-up: step s < warmup gets base * (s + 1) / warmup, so step 0 already
 * moves (base / warmup; a zero first step would be wasted) and step
 * warmup - 1 reaches base. Then cosine from base at step warmup to
 * base * min_ratio at step total:
 *   lr = lo + (base - lo) * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))
 * and base * min_ratio from total on. warmup <= 0: no warm-up. If
 * total <= warmup there is no decay phase: base * min_ratio after warm-up.
 * Negative steps count as step 0. Computed in double, rounded once.
 */
float aes_lr_schedule(int64_t step, float base, int64_t warmup, int64_t total, float min_ratio)
{
    const double b = (double)base;
    const double lo = b * (double)min_ratio;
    if (step < 0) step = 0;
    if (warmup < 0) warmup = 0;
    if (step < warmup) return (float)(b * (double)(step + 1) / (double)warmup);
    if (step >= total) return (float)lo;
    const double progress = (double)(step - warmup) / (double)(total - warmup);
    return (float)(lo + (b - lo) * 0.5 * (1.0 + cos(AES_PI * progress)));
}

/*
 * Fixed summation order, independent of the thread count: the input is cut
 * into blocks of AES_SUMSQ_BLOCK elements (the last may be short). Within a
 * block, element i goes to lane i % 8 (offset from the block start), each
 * lane summed in index order, the lanes combined as
 * ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)). Block sums are then added serially
 * in block order. Threads only decide who computes which block sum. The
 * squares are exact in double (a float has 24 significant bits).
 */
#define AES_SUMSQ_BLOCK 4096
#define AES_SUMSQ_GROUP 256 /* blocks per parallel pass: bounds the stack buffer */

static double sumsq_block(const float *x, size_t n)
{
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += (double)x[i + j] * (double)x[i + j];
    for (int j = 0; i < n; i++, j++) l[j] += (double)x[i] * (double)x[i];
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

double aes_sumsq(const float *g, size_t n)
{
    const size_t nblocks = (n + AES_SUMSQ_BLOCK - 1) / AES_SUMSQ_BLOCK;
    double part[AES_SUMSQ_GROUP];
    double total = 0.0;
    for (size_t b0 = 0; b0 < nblocks; b0 += AES_SUMSQ_GROUP) {
        const ptrdiff_t nb =
            (ptrdiff_t)(nblocks - b0 < AES_SUMSQ_GROUP ? nblocks - b0 : AES_SUMSQ_GROUP);
#pragma omp parallel for schedule(static) if (nb > 1)
        for (ptrdiff_t k = 0; k < nb; k++) {
            const size_t start = (b0 + (size_t)k) * AES_SUMSQ_BLOCK;
            const size_t len = n - start < AES_SUMSQ_BLOCK ? n - start : AES_SUMSQ_BLOCK;
            part[k] = sumsq_block(g + start, len);
        }
        for (ptrdiff_t k = 0; k < nb; k++) total += part[k];
    }
    return total;
}

/*
 * torch.nn.utils.clip_grad_norm_ (1.13) works in float32 tensors:
 * clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1, and
 * the gradients are always multiplied by it. The same float arithmetic
 * here. Note that for norm within 1e-6 below max_norm this gives a factor
 * just under 1, as torch does. max_norm <= 0 disables clipping. A NaN
 * norm gives 1 (torch would spread the NaN to every gradient): the caller
 * checks the norm for finiteness and skips the step.
 */
float aes_clip_factor(double norm, float max_norm)
{
    if (!(max_norm > 0.0f)) return 1.0f;
    const float c = max_norm / ((float)norm + 1e-6f);
    return c < 1.0f ? c : 1.0f;
}

void aes_scale(float *g, size_t n, float s)
{
    const ptrdiff_t N = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (N >= AES_OPTIM_PAR_MIN)
    for (ptrdiff_t i = 0; i < N; i++) g[i] *= s;
}
