/*
 * AdamW with decoupled weight decay, the learning-rate schedule (linear
 * warm-up, then cosine decay) and clipping by the global gradient norm.
 */
#ifndef AESNET_OPTIM_H
#define AESNET_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct aes_adamw {
    float beta1, beta2, eps, weight_decay;
} aes_adamw;

/* One AdamW step on n contiguous parameters, as torch.optim.AdamW:
 *   p -= lr * wd * p                      (only where decay)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 * t is the 1-based step count. */
void aes_adamw_step(float *p, const float *g, float *m, float *v, size_t n, float lr,
                    const aes_adamw *cfg, int decay, int64_t t);
/* The same step with gradient gscale * g (rounded to float, as if g had
 * been scaled in place first): clipping folded into the update, which
 * saves a pass over the gradients; g itself is left as it is. */
void aes_adamw_step_scaled(float *p, const float *g, float gscale, float *m, float *v, size_t n,
                           float lr, const aes_adamw *cfg, int decay, int64_t t);

/* Learning rate at 0-based step: linear warm-up from 0 over warmup steps
 * to base, then cosine decay to base * min_ratio at total steps. */
float aes_lr_schedule(int64_t step, float base, int64_t warmup, int64_t total, float min_ratio);

/* Sum of squares of g (double accumulation, fixed order). */
double aes_sumsq(const float *g, size_t n);
/* Scale factor that clips a gradient of global norm `norm` to max_norm
 * (1 when max_norm <= 0 or norm <= max_norm), as torch's
 * clip_grad_norm_: max_norm / (norm + 1e-6). */
float aes_clip_factor(double norm, float max_norm);
void aes_scale(float *g, size_t n, float s);

#endif
