/*
 * optim_dump OUT.h5: ten AdamW steps on four small parameter tensors (two
 * with weight decay, two without), as the training loop runs them: the lr
 * from aes_lr_schedule, the gradients clipped by their global norm
 * (aes_sumsq over every tensor, aes_clip_factor, aes_scale), then
 * aes_adamw_step per tensor. The gradients are deterministic pseudo-random
 * draws whose size alternates so that some steps clip and some do not.
 * Writes the configuration, the initial parameters, each step's raw
 * (unclipped) gradients, the lrs, clip factors and norms, and the final
 * parameters and moments, for test/py/test_optim_torch.py to replay with
 * torch.optim.AdamW.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/optim.h"
#include "dump.h"

#define NT 4
#define STEPS 10
#define SEED 20240501u

static const int numel[NT] = {703, 19, 1000, 64};
static const int32_t decay[NT] = {1, 0, 1, 0};

static void dump_scalar_f(hid_t f, const char *name, float x)
{
    const int one = 1;
    dump_f32(f, name, &x, 1, &one);
}

static void dump_scalar_i(hid_t f, const char *name, int32_t x)
{
    const int one = 1;
    dump_i32(f, name, &x, 1, &one);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: optim_dump OUT.h5\n");
        return 2;
    }
    const aes_adamw cfg = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-6f, .weight_decay = 0.05f};
    const float base_lr = 1e-2f, min_ratio = 0.1f, max_norm = 1.0f;
    const int64_t warmup = 3, total = 8;

    size_t off[NT + 1] = {0};
    for (int k = 0; k < NT; k++) off[k + 1] = off[k] + (size_t)numel[k];
    const size_t n = off[NT];
    /* One buffer per family, as the trainer lays them out. */
    float *p = aes_calloc(4 * n, sizeof(float), "optim_dump buffers");
    float *g = p + n, *m = p + 2 * n, *v = p + 3 * n;

    hid_t f = dump_open(argv[1]);
    dump_scalar_f(f, "config/beta1", cfg.beta1);
    dump_scalar_f(f, "config/beta2", cfg.beta2);
    dump_scalar_f(f, "config/eps", cfg.eps);
    dump_scalar_f(f, "config/weight_decay", cfg.weight_decay);
    dump_scalar_f(f, "config/base_lr", base_lr);
    dump_scalar_f(f, "config/min_ratio", min_ratio);
    dump_scalar_f(f, "config/max_norm", max_norm);
    dump_scalar_i(f, "config/warmup", (int32_t)warmup);
    dump_scalar_i(f, "config/total", (int32_t)total);
    dump_scalar_i(f, "config/steps", STEPS);
    dump_scalar_i(f, "config/ntensors", NT);
    const int ntd = NT;
    dump_i32(f, "decay", decay, 1, &ntd);

    char name[64];
    for (int k = 0; k < NT; k++) {
        aes_rng r;
        aes_rng_init(&r, aes_key(SEED, 0, (uint64_t)k, AES_RNG_INIT));
        for (int i = 0; i < numel[k]; i++) p[off[k] + i] = 0.5f * aes_rng_normal(&r);
        snprintf(name, sizeof name, "init/p%d", k);
        dump_f32(f, name, p + off[k], 1, &numel[k]);
    }

    float lrs[STEPS], clips[STEPS], norms[STEPS];
    for (int s = 0; s < STEPS; s++) {
        /* Steps 1, 4, 7 draw small gradients (global norm ~0.2, no
         * clipping); the rest large ones (~2, clipped to 1). Step 0 has
         * exact zeros, so some moments start at zero. */
        const float scale = s % 3 == 1 ? 0.005f : 0.05f;
        for (int k = 0; k < NT; k++) {
            aes_rng r;
            aes_rng_init(&r, aes_key(SEED, (uint64_t)s + 1, (uint64_t)k, AES_RNG_SYNTH));
            float *gk = g + off[k];
            for (int i = 0; i < numel[k]; i++) {
                gk[i] = scale * aes_rng_normal(&r);
                if (i % 50 == 7) gk[i] *= 20.0f; /* a few outliers */
                if (s == 0 && i % 97 == 0) gk[i] = 0.0f;
            }
            snprintf(name, sizeof name, "grad/%d/p%d", s, k);
            dump_f32(f, name, gk, 1, &numel[k]);
        }
        double ss = 0.0;
        for (int k = 0; k < NT; k++) ss += aes_sumsq(g + off[k], (size_t)numel[k]);
        norms[s] = (float)sqrt(ss);
        clips[s] = aes_clip_factor(sqrt(ss), max_norm);
        aes_scale(g, n, clips[s]);
        lrs[s] = aes_lr_schedule(s, base_lr, warmup, total, min_ratio);
        for (int k = 0; k < NT; k++)
            aes_adamw_step(p + off[k], g + off[k], m + off[k], v + off[k], (size_t)numel[k],
                           lrs[s], &cfg, decay[k], s + 1);
    }
    const int ns = STEPS;
    dump_f32(f, "lr", lrs, 1, &ns);
    dump_f32(f, "clip", clips, 1, &ns);
    dump_f32(f, "norm", norms, 1, &ns);
    for (int k = 0; k < NT; k++) {
        snprintf(name, sizeof name, "final/p%d", k);
        dump_f32(f, name, p + off[k], 1, &numel[k]);
        snprintf(name, sizeof name, "final/m%d", k);
        dump_f32(f, name, m + off[k], 1, &numel[k]);
        snprintf(name, sizeof name, "final/v%d", k);
        dump_f32(f, name, v + off[k], 1, &numel[k]);
    }
    dump_close(f);
    free(p);
    return 0;
}
