/*
 * The whole model on a fixed batch, for test/py/test_model_torch.py:
 *   model_dump OUT.h5 resnet|resnet50|vit mlp|transformer|none
 * Builds a small AesNet model (fusion MLP, learned scales, frozen
 * reference for the affinity loss), runs one forward/backward on a batch
 * with masks and repeated descriptions and dumps inputs, initial
 * parameters, losses and every gradient; then runs 10 AdamW steps
 * (warm-up + cosine, clipping, scale clamp; STEPS of them if given) on the same batch and dumps, at
 * every step, the parameters before it, the partners drawn, the loss and the
 * raw gradients, and at the end the final parameters.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/loss.h"
#include "aesnet/model.h"
#include "aesnet/optim.h"
#include "dump.h"

enum { NA = 3, NB = 6, NL = 12, ND = 16, NR = 64, NV = 300 };

static void dump_params(hid_t f, const char *group, const aes_params *P, int grads)
{
    for (int k = 0; k < P->n; k++) {
        const aes_tensor *t = &P->t[k];
        if (grads && !t->trainable) continue;
        char name[256];
        snprintf(name, sizeof name, "%s/%s", group, t->name);
        dump_f32(f, name, grads ? aes_params_grad(P, k) : aes_params_data(P, k), t->ndim, t->shape);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5)
        aes_user_error("usage: model_dump OUT.h5 resnet|resnet50|vit mlp|transformer|none [STEPS]");
    aes_model_cfg c = {0};
    c.image = strcmp(argv[2], "vit") == 0 ? AES_IMAGE_VIT : AES_IMAGE_RESNET;
    c.resnet = (aes_resnet_cfg){.depth = 18, .width = 0.125f, .image_size = NR};
    if (!strcmp(argv[2], "resnet50")) c.resnet = (aes_resnet_cfg){.depth = 50, .width = 0.125f, .image_size = NR};
    c.vit = (aes_vit_cfg){.image_size = NR, .patch = 8, .width = 32, .depth = 2, .heads = 2};
    c.text = (aes_text_cfg){.vocab = NV, .context = NL, .width = 32, .depth = 2, .heads = 2};
    c.A = NA;
    c.attr_names[0] = "color";
    c.attr_names[1] = "light";
    c.attr_names[2] = "focus";
    c.D = ND;
    c.fusion = !strcmp(argv[3], "mlp") ? AES_FUSION_MLP
               : !strcmp(argv[3], "transformer") ? AES_FUSION_TRANSFORMER
                                                 : AES_FUSION_NONE;
    c.fusion_hidden = 24;
    c.fusion_heads = 2;
    c.learn_scale = 1;
    c.init_scale = 1.0f / 0.07f;
    c.frozen_reference = 1;
    c.seed = 42;
    aes_model m;
    aes_model_build(&m, &c, NB);

    /* The batch: random pixels; descriptions with repeats and gaps. */
    aes_rng r;
    aes_rng_init(&r, 7);
    float *img = aes_malloc(sizeof(float) * NB * 3 * NR * NR, "images");
    for (int k = 0; k < NB * 3 * NR * NR; k++) img[k] = aes_rng_normal(&r);
    int32_t tok[NA * NB * NL];
    uint8_t mask[NA * NB];
    uint64_t hash[NA * NB];
    int32_t hash_id[NA * NB];
    int64_t rows[NB];
    for (int i = 0; i < NB; i++) rows[i] = 100 + 3 * i;
    for (int a = 0; a < NA; a++)
        for (int i = 0; i < NB; i++) {
            int32_t *t = tok + ((size_t)a * NB + i) * NL;
            memset(t, 0, sizeof(int32_t) * NL);
            int present = !(a == 1 && i == 2) && !(a == 2 && i == 5);
            mask[a * NB + i] = (uint8_t)present;
            if (!present) {
                hash[a * NB + i] = 0;
                hash_id[a * NB + i] = -1;
                continue;
            }
            /* images 0 and 3 share their colour description */
            int src = (a == 0 && i == 3) ? 0 : i;
            aes_rng tr;
            aes_rng_init(&tr, aes_key(9, (uint64_t)a, (uint64_t)src, 0));
            int n = 3 + (int)aes_rng_below(&tr, NL - 4);
            t[0] = AES_TOK_SOT;
            for (int j = 1; j <= n; j++) t[j] = 3 + (int32_t)aes_rng_below(&tr, NV - 3);
            t[n + 1] = AES_TOK_EOT;
            hash[a * NB + i] = aes_tokens_hash(t, NL);
            hash_id[a * NB + i] = src;
        }
    const float weights[NA] = {1.0f, 0.5f, 2.0f};
    const float lambda = 0.7f, tau = 0.1f;

    hid_t f = dump_open(argv[1]);
    int dims4[4] = {NB, 3, NR, NR}, dtok[3] = {NA, NB, NL}, dm[2] = {NA, NB}, db[1] = {NB}, da[1] = {NA};
    dump_f32(f, "input/images", img, 4, dims4);
    dump_i32(f, "input/tokens", tok, 3, dtok);
    int32_t mask32[NA * NB];
    for (int k = 0; k < NA * NB; k++) mask32[k] = mask[k];
    dump_i32(f, "input/mask", mask32, 2, dm);
    dump_i32(f, "input/hash_id", hash_id, 2, dm);
    int32_t rows32[NB];
    for (int i = 0; i < NB; i++) rows32[i] = (int32_t)rows[i];
    dump_i32(f, "input/rows", rows32, 1, db);
    dump_f32(f, "input/weights", weights, 1, da);
    float hyper[2] = {lambda, tau};
    int dh[1] = {2};
    dump_f32(f, "input/lambda_tau", hyper, 1, dh);
    dump_params(f, "param", &m.P, 0);

    float *scratch = aes_malloc(sizeof(float) * (aes_mac_scratch_floats(NB, NB) + aes_sa_scratch_floats(NB, NB, m.Fv, m.Fv)), "scratch");
    float dx[NA * NB * ND], dy[NA * NB * ND], dls[NA], *dv = aes_malloc(sizeof(float) * NB * m.Fv, "dv");
    double loss_a[NA];
    float *m1 = aes_calloc(m.P.n_trainable, sizeof(float), "m"), *m2 = aes_calloc(m.P.n_trainable, sizeof(float), "v");
    const aes_adamw opt = {.beta1 = 0.9f, .beta2 = 0.98f, .eps = 1e-6f, .weight_decay = 0.1f};
    const int steps = argc == 5 ? atoi(argv[4]) : 10;
    AES_CHECK(steps >= 1 && steps <= 10);
    float losses[10], lrs[10];
    for (int s = 0; s < steps; s++) {
        char name[64];
        snprintf(name, sizeof name, "step%d/param", s);
        dump_params(f, name, &m.P, 0);
        aes_model_forward(&m, img, tok, mask, rows, s, NB);
        float ls[NA];
        for (int a = 0; a < NA; a++) ls[a] = aes_model_log_scale(&m, a);
        aes_mac_args ma = {.A = NA, .D = ND, .Bg = NB, .B = NB, .row0 = 0, .x = m.x, .y = m.y,
                           .mask = mask, .hash = hash, .logscale = ls, .weights = weights,
                           .duplicates_positive = 1};
        double mac = aes_mac_loss(&ma, scratch, loss_a, dx, dy, dls);
        aes_sa_args sa = {.Bg = NB, .B = NB, .row0 = 0, .F = m.Fv, .Fr = m.Fv, .v = m.v,
                          .ref = m.vref, .tau = tau, .kind = AES_AFFINITY_KL};
        double sal = aes_sa_loss(&sa, scratch, dv);
        aes_scale(dv, (size_t)NB * m.Fv, lambda);
        losses[s] = (float)(mac + lambda * sal);
        aes_params_zero_grad(&m.P);
        aes_model_backward(&m, dx, dy, dv, dls);
        snprintf(name, sizeof name, "partner/step%d", s);
        dump_i32(f, name, m.partner, 2, dm);
        snprintf(name, sizeof name, "step%d/grad", s);
        dump_params(f, name, &m.P, 1);
        if (s == 0) {
            float lv[3] = {(float)mac, (float)sal, losses[0]};
            int d3[1] = {3};
            dump_f32(f, "loss/mac_sa_total", lv, 1, d3);
            float la[NA];
            for (int a = 0; a < NA; a++) la[a] = (float)loss_a[a];
            dump_f32(f, "loss/attr", la, 1, da);
            int dxd[3] = {NA, NB, ND};
            dump_f32(f, "out/x", m.x, 3, dxd);
            dump_f32(f, "out/y", m.y, 3, dxd);
            int dvd[2] = {NB, m.Fv};
            dump_f32(f, "out/v", m.v, 2, dvd);
            dump_f32(f, "out/vref", m.vref, 2, dvd);
        }
        double norm = sqrt(aes_sumsq(m.P.grad, m.P.n_trainable));
        float cf = aes_clip_factor(norm, 1.0f);
        aes_scale(m.P.grad, m.P.n_trainable, cf);
        lrs[s] = aes_lr_schedule(s, 1e-3f, 3, 10, 0.1f);
        for (int k = 0; k < m.P.n; k++) {
            const aes_tensor *t = &m.P.t[k];
            if (!t->trainable) continue;
            aes_adamw_step(m.P.data + t->offset, m.P.grad + t->offset, m1 + t->offset,
                           m2 + t->offset, t->numel, lrs[s], &opt, t->decay, s + 1);
        }
        aes_model_clamp_scales(&m);
    }
    int ds[1] = {steps};
    dump_f32(f, "train/loss", losses, 1, ds);
    dump_f32(f, "train/lr", lrs, 1, ds);
    dump_params(f, "final", &m.P, 0);
    dump_close(f);
    printf("model_dump: %s, %zu trainable parameters, loss %.6f -> %.6f\n", argv[2],
           m.P.n_trainable, losses[0], losses[steps - 1]);
    aes_model_free(&m);
    free(img);
    free(scratch);
    free(dv);
    free(m1);
    free(m2);
    return 0;
}
