/*
 * Forward + backward + update time of a whole AesNet pre-training step on
 * this machine's CPUs, with FLOP rate against the measured sgemm peak.
 *   bench_model demo|resnet50|vit_b16 [--batch B] [--steps N] [--dump-params F.h5]
 *               [--device cuda [--precision fp32|tf32|bf16]]
 * analysis/bench_model_torch.py runs the same model in PyTorch (from the
 * dumped parameters) for the ratio; jobs/bench-model.sh runs both on the
 * CPU, test/device/run.sh on a GPU. On the GPU the peak is the measured
 * GEMM rate (bf16 inputs, or fp32) and the step is the GPU step of
 * src/train/train_gpu.c on one rank.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/gpu.h"
#include "aesnet/loss.h"
#include "aesnet/model.h"
#include "aesnet/optim.h"
#include "aesnet/tokenizer.h"
#include "dump.h"

static const char *attrs[5] = {"color", "light", "composition", "focus", "subject"};

static aes_model_cfg preset(const char *name, int *B)
{
    aes_model_cfg c = {0};
    c.A = 5;
    for (int a = 0; a < 5; a++) c.attr_names[a] = attrs[a];
    c.fusion = AES_FUSION_MLP;
    c.learn_scale = 1;
    c.init_scale = 1 / 0.07f;
    c.frozen_reference = 0;
    c.seed = 1;
    if (!strcmp(name, "demo")) {
        c.image = AES_IMAGE_RESNET;
        c.resnet = (aes_resnet_cfg){.depth = 18, .width = 0.25f, .image_size = 64};
        c.text = (aes_text_cfg){.vocab = 1024, .context = 32, .width = 128, .depth = 2, .heads = 4};
        c.D = 128;
        c.fusion_hidden = 256;
        if (!*B) *B = 32;
    } else if (!strcmp(name, "resnet50") || !strcmp(name, "vit_b16")) {
        c.image = name[0] == 'r' ? AES_IMAGE_RESNET : AES_IMAGE_VIT;
        c.resnet = (aes_resnet_cfg){.depth = 50, .width = 1.0f, .image_size = 224};
        c.vit = (aes_vit_cfg){.image_size = 224, .patch = 16, .width = 768, .depth = 12, .heads = 12};
        c.text = (aes_text_cfg){.vocab = 8192, .context = 77, .width = 512, .depth = 12, .heads = 8};
        c.D = 512;
        c.fusion_hidden = 1024;
        if (!*B) *B = 4;
    } else {
        aes_user_error("bench_model: unknown model '%s' (demo, resnet50, vit_b16)", name);
    }
    return c;
}

static double sgemm_peak(void)
{
    const int n = 1536;
    float *a = aes_malloc(sizeof(float) * n * n, "a"), *b = aes_malloc(sizeof(float) * n * n, "b"),
          *c = aes_calloc((size_t)n * n, sizeof(float), "c");
    for (int i = 0; i < n * n; i++) a[i] = b[i] = 1.0f / (float)(1 + i % 7);
    double best = 0;
    for (int r = 0; r < 6; r++) { /* the first call starts OpenBLAS's threads */
        double t0 = aes_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * n / (aes_now() - t0) / 1e9;
        if (g > best) best = g;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* FLOPs of one step: forward of every image, every description, the
 * fusion module and the heads, times 3 (backward ~ 2x forward). */
static double step_flops(const aes_model *m, const aes_model_cfg *c, int B)
{
    const int A = c->A, D = c->D;
    return 3 * (aes_encoder_flops(&m->image) * B + aes_encoder_flops(&m->text) * A * B +
                (c->fusion != AES_FUSION_NONE ? aes_encoder_flops(&m->fusion) * A * B : 0) +
                2.0 * A * B * D * (m->Fv + m->Ft));
}

/* The GPU step (as src/train/train_gpu.c on one rank), timed by phase. */
static int bench_gpu(aes_model *m, const aes_model_cfg *c, const char *name, const char *precision,
                     int B, int steps, const float *img, const int32_t *tok, const uint8_t *mask,
                     const uint64_t *hash, const int64_t *rows, const float *w)
{
#ifndef AESNET_WITH_CUDA
    (void)m, (void)c, (void)name, (void)precision, (void)B, (void)steps, (void)img, (void)tok;
    (void)mask, (void)hash, (void)rows, (void)w;
    aes_user_error("bench_model: built without CUDA");
#else
    const int A = c->A, D = c->D, Fv = m->Fv;
    const aes_gpu_math math = !strcmp(precision, "bf16")   ? AES_MATH_BF16
                              : !strcmp(precision, "tf32") ? AES_MATH_TF32
                                                           : AES_MATH_FP32;
    aes_gpu g;
    aes_err e;
    if (aes_gpu_init(&g, 0, math, &e) != 0) aes_user_error("bench_model: %s", e.msg);
    const double peak = aes_gpu_gemm_peak_tflops(math);
    aes_model_to_device(m);
    uint8_t *dmask = aes_gpu_malloc((size_t)A * B, "mask");
    uint64_t *dhash = aes_gpu_malloc(sizeof(uint64_t) * A * B, "hash");
    aes_gpu_upload(dmask, mask, (size_t)A * B);
    aes_gpu_upload(dhash, hash, sizeof(uint64_t) * A * B);
    const size_t nm = aes_mac_scratch_floats_gpu(B, B, A), nt = m->P.n_trainable;
    float *scratch = aes_gpu_malloc(sizeof(float) * (nm + aes_sa_scratch_floats_gpu(B, B, Fv, Fv)), "scratch");
    float *dx = aes_gpu_malloc(sizeof(float) * A * B * D, "dx"), *dy = aes_gpu_malloc(sizeof(float) * A * B * D, "dy");
    float *dv = aes_gpu_malloc(sizeof(float) * B * Fv, "dv"), *ls = aes_gpu_malloc(sizeof(float) * A, "ls");
    float *dls = aes_gpu_malloc(sizeof(float) * A, "dls");
    float *m1 = aes_gpu_malloc(sizeof(float) * nt, "m"), *m2 = aes_gpu_malloc(sizeof(float) * nt, "v");
    double *out = aes_gpu_malloc(sizeof(double) * (A + 2), "losses");
    double *sq = aes_gpu_malloc(sizeof(double) * aes_sumsq_scratch_gpu(), "norm");
    aes_gpu_zero(m1, sizeof(float) * nt);
    aes_gpu_zero(m2, sizeof(float) * nt);
    const aes_adamw opt = {.beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f, .weight_decay = 0.1f};
    double t_f = 0, t_l = 0, t_b = 0, t_u = 0;
    for (int s = 0; s < steps + 1; s++) {
        aes_gpu_sync(&g);
        double t0 = aes_now();
        aes_model_forward(m, img, tok, mask, rows, s, B);
        aes_gpu_sync(&g);
        double t1 = aes_now();
        for (int a = 0; a < A; a++)
            aes_gpu_copy(ls + a, m->P.d_data + m->P.t[m->p_scale[a]].offset, sizeof(float));
        aes_mac_args ma = {.A = A, .D = D, .Bg = B, .B = B, .row0 = 0, .x = m->x, .y = m->y,
                           .mask = dmask, .hash = dhash, .logscale = ls, .weights = w,
                           .duplicates_positive = 1};
        aes_mac_loss_gpu(&ma, scratch, out, dx, dy, dls);
        aes_sa_args sa = {.Bg = B, .B = B, .row0 = 0, .F = Fv, .Fr = Fv, .v = m->v, .ref = m->v,
                          .tau = 0.1f, .kind = AES_AFFINITY_KL};
        aes_sa_loss_gpu(&sa, scratch + nm, out + A + 1, dv);
        aes_gpu_sync(&g);
        double t2 = aes_now();
        aes_gpu_zero(m->P.d_grad, sizeof(float) * nt);
        aes_model_backward(m, dx, dy, dv, dls);
        aes_gpu_sync(&g);
        double t3 = aes_now();
        double ss;
        aes_sumsq_gpu(m->P.d_grad, nt, sq);
        aes_gpu_download(&ss, sq, sizeof ss);
        aes_scale_gpu(m->P.d_grad, nt, aes_clip_factor(sqrt(ss), 1.0f));
        for (int k = 0; k < m->P.n; k++) {
            const aes_tensor *t = &m->P.t[k];
            if (t->trainable)
                aes_adamw_step_gpu(m->P.d_data + t->offset, m->P.d_grad + t->offset, m1 + t->offset,
                                   m2 + t->offset, t->numel, 1e-4f, &opt, t->decay, s + 1);
        }
        for (int a = 0; a < A; a++) /* the logit-scale clamp, as aes_model_clamp_scales */
            aes_clamp_max_gpu(m->P.d_data + m->P.t[m->p_scale[a]].offset, 1, logf(100.0f));
        aes_gpu_sync(&g);
        double t4 = aes_now();
        if (s == 0) continue; /* warm-up: cuDNN's choices, first touches */
        t_f += t1 - t0, t_l += t2 - t1, t_b += t3 - t2, t_u += t4 - t3;
    }
    const double step = (t_f + t_l + t_b + t_u) / steps, fl = step_flops(m, c, B);
    printf("aesnet %s on %s (%s): batch %d (%d descriptions), %.1f M parameters\n", name, g.name,
           precision, B, A * B, nt / 1e6);
    printf("  step %.1f ms = forward %.1f + loss %.1f + backward %.1f + update %.1f; %.1f images/s\n",
           1e3 * step, 1e3 * t_f / steps, 1e3 * t_l / steps, 1e3 * t_b / steps, 1e3 * t_u / steps,
           B / step);
    printf("  %.1f GFLOP per step, %.1f TFLOP/s = %.1f%% of the %s GEMM peak measured here (%.1f TFLOP/s)\n",
           fl / 1e9, fl / step / 1e12, 100 * fl / step / 1e12 / peak, precision, peak);
    printf("RESULT model=%s batch=%d step_ms=%.3f images_per_s=%.2f tflops=%.3f peak_tflops=%.3f\n",
           name, B, 1e3 * step, B / step, fl / step / 1e12, peak);
    void *bufs[] = {dmask, dhash, scratch, dx, dy, dv, ls, dls, m1, m2, out, sq};
    for (size_t k = 0; k < sizeof bufs / sizeof bufs[0]; k++) aes_gpu_free_mem(bufs[k]);
    aes_model_free(m);
    aes_gpu_free(&g);
    return 0;
#endif
}

int main(int argc, char **argv)
{
    if (argc < 2) aes_user_error("usage: bench_model demo|resnet50|vit_b16 [--batch B] [--steps N] [--dump-params F.h5]");
    int B = 0, steps = 3, cuda = 0;
    const char *dump = NULL, *precision = "fp32";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) cuda = !strcmp(argv[++i], "cuda");
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) precision = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dump-params") && i + 1 < argc) dump = argv[++i];
        else aes_user_error("bench_model: unknown option '%s'", argv[i]);
    }
    aes_model_cfg c = preset(argv[1], &B);
    const int A = c.A, D = c.D, L = c.text.context;
    aes_model m;
    aes_model_build(&m, &c, B);
    if (dump) {
        hid_t f = dump_open(dump);
        for (int k = 0; k < m.P.n; k++) {
            char name[256];
            snprintf(name, sizeof name, "param/%s", m.P.t[k].name);
            dump_f32(f, name, aes_params_data(&m.P, k), m.P.t[k].ndim, m.P.t[k].shape);
        }
        dump_close(f);
    }
    const int R = c.image == AES_IMAGE_RESNET ? c.resnet.image_size : c.vit.image_size;
    aes_rng r;
    aes_rng_init(&r, 5);
    float *img = aes_malloc(sizeof(float) * (size_t)B * 3 * R * R, "images");
    for (size_t k = 0; k < (size_t)B * 3 * R * R; k++) img[k] = aes_rng_normal(&r);
    int32_t *tok = aes_calloc((size_t)A * B * L, sizeof(int32_t), "tokens");
    uint8_t *mask = aes_malloc((size_t)A * B, "mask");
    uint64_t *hash = aes_malloc(sizeof(uint64_t) * A * B, "hash");
    int64_t *rows = aes_malloc(sizeof(int64_t) * B, "rows");
    for (int i = 0; i < B; i++) rows[i] = i;
    for (int k = 0; k < A * B; k++) {
        int32_t *t = tok + (size_t)k * L;
        int n = L / 2 + (int)aes_rng_below(&r, (uint64_t)(L / 2 - 1));
        t[0] = AES_TOK_SOT;
        for (int j = 1; j < n; j++) t[j] = 3 + (int32_t)aes_rng_below(&r, (uint64_t)(c.text.vocab - 3));
        t[n] = AES_TOK_EOT;
        mask[k] = 1;
        hash[k] = (uint64_t)k + 1;
    }
    float w[5] = {1, 1, 1, 1, 1};
    if (cuda) return bench_gpu(&m, &c, argv[1], precision, B, steps, img, tok, mask, hash, rows, w);
    float *scratch = aes_malloc(sizeof(float) * (aes_mac_scratch_floats(B, B) + aes_sa_scratch_floats(B, B, m.Fv, m.Fv)), "scratch");
    float *dx = aes_malloc(sizeof(float) * (size_t)A * B * D, "dx"), *dy = aes_malloc(sizeof(float) * (size_t)A * B * D, "dy");
    float *dv = aes_malloc(sizeof(float) * (size_t)B * m.Fv, "dv"), dls[5];
    float *m1 = aes_calloc(m.P.n_trainable, sizeof(float), "m"), *m2 = aes_calloc(m.P.n_trainable, sizeof(float), "v");
    const aes_adamw opt = {.beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f, .weight_decay = 0.1f};
    double peak = sgemm_peak();
    double fwd = step_flops(&m, &c, B) / 3;
    double t_f = 0, t_l = 0, t_b = 0, t_u = 0;
    int timed = 0;
    for (int s = 0; s < steps + 1; s++) {
        double t0 = aes_now();
        aes_model_forward(&m, img, tok, mask, rows, s, B);
        double t1 = aes_now();
        float ls[5];
        for (int a = 0; a < A; a++) ls[a] = aes_model_log_scale(&m, a);
        aes_mac_args ma = {.A = A, .D = D, .Bg = B, .B = B, .row0 = 0, .x = m.x, .y = m.y,
                           .mask = mask, .hash = hash, .logscale = ls, .weights = w, .duplicates_positive = 1};
        aes_mac_loss(&ma, scratch, NULL, dx, dy, dls);
        aes_sa_args sa = {.Bg = B, .B = B, .row0 = 0, .F = m.Fv, .Fr = m.Fv, .v = m.v, .ref = m.v,
                          .tau = 0.1f, .kind = AES_AFFINITY_KL};
        aes_sa_loss(&sa, scratch, dv);
        double t2 = aes_now();
        aes_params_zero_grad(&m.P);
        aes_model_backward(&m, dx, dy, dv, dls);
        double t3 = aes_now();
        float cf = aes_clip_factor(sqrt(aes_sumsq(m.P.grad, m.P.n_trainable)), 1.0f);
        for (int k = 0; k < m.P.n; k++) { /* clipping folded in, as src/train/train.c */
            const aes_tensor *t = &m.P.t[k];
            if (t->trainable)
                aes_adamw_step_scaled(m.P.data + t->offset, m.P.grad + t->offset, cf, m1 + t->offset,
                                      m2 + t->offset, t->numel, 1e-4f, &opt, t->decay, s + 1);
        }
        aes_model_clamp_scales(&m);
        double t4 = aes_now();
        if (s == 0) continue; /* warm-up: first touches of every buffer */
        t_f += t1 - t0;
        t_l += t2 - t1;
        t_b += t3 - t2;
        t_u += t4 - t3;
        timed++;
    }
    double step = (t_f + t_l + t_b + t_u) / timed;
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("aesnet %s: batch %d (%d descriptions), %d threads, OpenBLAS core %s, %.1f M parameters\n", argv[1], B,
           A * B, omp_get_max_threads(), core ? core : "(auto)", m.P.n_trainable / 1e6);
    printf("  step %.1f ms = forward %.1f + loss %.1f + backward %.1f + update %.1f; %.2f images/s\n",
           1e3 * step, 1e3 * t_f / timed, 1e3 * t_l / timed, 1e3 * t_b / timed, 1e3 * t_u / timed, B / step);
    /* The peak again after the steps, the better of the two: one reading
     * before the steps once came out at 60% of the usual (this VM's speed
     * drifts), which made the model look faster than the peak. */
    const double peak2 = sgemm_peak();
    if (peak2 > peak) peak = peak2;
    printf("  %.1f GFLOP per step, %.1f GFLOP/s = %.0f%% of the sgemm peak measured here (%.1f GFLOP/s)\n",
           3 * fwd / 1e9, 3 * fwd / step / 1e9, 100 * 3 * fwd / step / 1e9 / peak, peak);
    printf("RESULT model=%s batch=%d step_ms=%.3f gflops=%.3f peak=%.3f\n", argv[1], B, 1e3 * step,
           3 * fwd / step / 1e9, peak);
    aes_model_free(&m);
    return 0;
}
