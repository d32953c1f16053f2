/*
 * Model-level properties that need no reference implementation:
 * - the fusion module (MLP and transformer) works on each sample alone:
 *   permuting the batch permutes x, y and v and changes nothing else;
 * - parameter names and counts: every tensor has a unique path under
 *   image/, text/, fusion/ or head/<attribute>/; buffers (batch-norm
 *   running statistics) are saved but have no gradient;
 * - ResNet-50 and ViT-B/16 have the parameter counts of their torchvision
 *   namesakes' backbones (heads excluded).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/model.h"
#include "aesnet/tokenizer.h"
#include "check.h"

enum { A = 3, B = 5, L = 10, R = 32 };

static aes_model_cfg small_cfg(aes_fusion_kind fusion, aes_image_kind image)
{
    aes_model_cfg c = {0};
    c.image = image;
    c.resnet = (aes_resnet_cfg){.depth = 18, .width = 0.125f, .image_size = R};
    c.vit = (aes_vit_cfg){.image_size = R, .patch = 8, .width = 32, .depth = 1, .heads = 2};
    c.text = (aes_text_cfg){.vocab = 280, .context = L, .width = 16, .depth = 1, .heads = 2};
    c.A = A;
    c.attr_names[0] = "color";
    c.attr_names[1] = "light";
    c.attr_names[2] = "focus";
    c.D = 8;
    c.fusion = fusion;
    c.fusion_hidden = 16;
    c.fusion_heads = 2;
    c.learn_scale = 1;
    c.init_scale = 1 / 0.07f;
    c.seed = 3;
    return c;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static void permutation_test(aes_fusion_kind fusion, aes_image_kind image)
{
    aes_model_cfg c = small_cfg(fusion, image);
    aes_model m;
    aes_model_build(&m, &c, B);
    const size_t img = 3 * R * R;
    float *x0 = aes_malloc(sizeof(float) * B * img, "img"), *x1 = aes_malloc(sizeof(float) * B * img, "img");
    int32_t tok0[A * B * L], tok1[A * B * L];
    uint8_t mask0[A * B], mask1[A * B];
    int64_t rows0[B], rows1[B];
    const int perm[B] = {3, 0, 4, 1, 2};
    aes_rng r;
    aes_rng_init(&r, 11);
    for (size_t k = 0; k < B * img; k++) x0[k] = aes_rng_normal(&r);
    for (int a = 0; a < A; a++)
        for (int i = 0; i < B; i++) {
            int32_t *t = tok0 + ((size_t)a * B + i) * L;
            memset(t, 0, sizeof(int32_t) * L);
            mask0[a * B + i] = (uint8_t)!(a == 1 && i == 2);
            if (!mask0[a * B + i]) continue;
            t[0] = AES_TOK_SOT;
            for (int j = 1; j < 6; j++) t[j] = 3 + (int32_t)aes_rng_below(&r, 270);
            t[6] = AES_TOK_EOT;
        }
    for (int i = 0; i < B; i++) rows0[i] = 50 + i;
    for (int i = 0; i < B; i++) {
        int p = perm[i];
        memcpy(x1 + i * img, x0 + p * img, sizeof(float) * img);
        rows1[i] = rows0[p];
        for (int a = 0; a < A; a++) {
            memcpy(tok1 + ((size_t)a * B + i) * L, tok0 + ((size_t)a * B + p) * L, sizeof(int32_t) * L);
            mask1[a * B + i] = mask0[a * B + p];
        }
    }
    const size_t nx = (size_t)A * B * c.D;
    float *xa = aes_malloc(sizeof(float) * nx, "x"), *ya = aes_malloc(sizeof(float) * nx, "y");
    aes_model_forward(&m, x0, tok0, mask0, rows0, 4, B);
    memcpy(xa, m.x, sizeof(float) * nx);
    memcpy(ya, m.y, sizeof(float) * nx);
    aes_model_forward(&m, x1, tok1, mask1, rows1, 4, B);
    double worst = 0;
    for (int a = 0; a < A; a++)
        for (int i = 0; i < B; i++) {
            size_t o1 = ((size_t)a * B + i) * c.D, o0 = ((size_t)a * B + perm[i]) * c.D;
            worst = fmax(worst, maxdiff(m.x + o1, xa + o0, (size_t)c.D));
            worst = fmax(worst, maxdiff(m.y + o1, ya + o0, (size_t)c.D));
            CHECK(m.partner[a * B + i] == -1 || mask1[m.partner[a * B + i] * B + i]);
        }
    CHECK_MSG(worst < 1e-5, "fusion %d image %d: permuted batch differs by %g", fusion, image, worst);
    /* And the fusion term really acts: without it x changes. */
    if (fusion != AES_FUSION_NONE) {
        aes_model_cfg c2 = c;
        c2.fusion = AES_FUSION_NONE;
        aes_model m2;
        aes_model_build(&m2, &c2, B);
        aes_model_forward(&m2, x0, tok0, mask0, rows0, 4, B);
        CHECK(maxdiff(m2.x, xa, nx) > 1e-3);
        CHECK(maxdiff(m2.y, ya, nx) < 1e-6); /* the text side is untouched */
        aes_model_free(&m2);
    }
    free(x0);
    free(x1);
    free(xa);
    free(ya);
    aes_model_free(&m);
}

static void names_test(void)
{
    aes_model_cfg c = small_cfg(AES_FUSION_MLP, AES_IMAGE_RESNET);
    aes_model m;
    aes_model_build(&m, &c, 2);
    size_t trainable = 0;
    int buffers = 0;
    for (int k = 0; k < m.P.n; k++) {
        const aes_tensor *t = &m.P.t[k];
        CHECK(!strncmp(t->name, "image/", 6) || !strncmp(t->name, "text/", 5) ||
              !strncmp(t->name, "fusion/", 7) || !strncmp(t->name, "head/", 5));
        for (int j = 0; j < k; j++) CHECK(strcmp(t->name, m.P.t[j].name) != 0);
        if (t->trainable) trainable += t->numel;
        else {
            buffers++;
            CHECK(strstr(t->name, "running_") != NULL);
        }
        if (strstr(t->name, "/bn") || strstr(t->name, "/ln") || strstr(t->name, "bias") ||
            strstr(t->name, "embedding") || strstr(t->name, "logit_scale"))
            CHECK_MSG(!t->decay, "%s must not decay", t->name);
    }
    CHECK(trainable == m.P.n_trainable);
    CHECK(buffers == 2 * 20); /* 20 batch norms in a ResNet-18 */
    CHECK(aes_params_find(&m.P, "image/stage2/block0/conv1/weight") >= 0);
    CHECK(aes_params_find(&m.P, "image/stage2/block0/downsample/bn/running_var") >= 0);
    CHECK(aes_params_find(&m.P, "head/light/logit_scale") >= 0);
    CHECK_NEAR(aes_model_log_scale(&m, 1), log(1 / 0.07), 1e-6);
    CHECK(aes_params_count(&m.P, "image/") + aes_params_count(&m.P, "text/") +
              aes_params_count(&m.P, "fusion/") + aes_params_count(&m.P, "head/") == m.P.n_trainable);
    aes_model_free(&m);
}

static void size_test(void)
{
    /* torchvision resnet50 without fc: 25,557,032 - 2,049,000 = 23,508,032;
     * vit_b_16 without heads: 86,567,656 - 769,000 = 85,798,656 (it has a
     * bias on the patch embedding, 768, and no ln_pre, 1536; CLIP's layout
     * has the reverse). */
    aes_params P;
    aes_encoder e;
    aes_params_init_table(&P);
    aes_resnet_cfg rc = {.depth = 50, .width = 1.0f, .image_size = 224};
    aes_resnet_build(&e, &P, "image/", &rc);
    CHECK_MSG(aes_params_count(&P, "image/") == 23508032, "ResNet-50 has %zu", aes_params_count(&P, "image/"));
    CHECK(e.out_width == 2048);
    aes_encoder_free(&e);
    aes_params_free(&P);
    aes_params_init_table(&P);
    aes_vit_cfg vc = {.image_size = 224, .patch = 16, .width = 768, .depth = 12, .heads = 12};
    aes_vit_build(&e, &P, "image/", &vc);
    CHECK_MSG(aes_params_count(&P, "image/") == 85798656 - 768 + 1536, "ViT-B/16 has %zu", aes_params_count(&P, "image/"));
    aes_encoder_free(&e);
    aes_params_free(&P);
}

int main(void)
{
    names_test();
    size_test();
    permutation_test(AES_FUSION_MLP, AES_IMAGE_RESNET);
    permutation_test(AES_FUSION_TRANSFORMER, AES_IMAGE_VIT);
    permutation_test(AES_FUSION_NONE, AES_IMAGE_RESNET);
    return check_report();
}
