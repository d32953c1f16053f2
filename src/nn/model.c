/*
 * The AesNet model: encoders, fusion and per-attribute heads, forward and
 * backward for a local batch. See include/aesnet/model.h for the algebra.
 */
#include "aesnet/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"

#ifdef AESNET_WITH_CUDA
#include "aesnet/gpu.h"
#endif

static float *fz(size_t n, const char *what) { return aes_calloc(n ? n : 1, sizeof(float), what); }

static void build_image(aes_encoder *e, aes_params *P, const aes_model_cfg *c)
{
    if (c->image == AES_IMAGE_RESNET) aes_resnet_build(e, P, "image/", &c->resnet);
    else aes_vit_build(e, P, "image/", &c->vit);
}

/* The model's float buffers and their sizes at maxB (vref apart). */
enum { NBUF = 22 };
static void buffers(aes_model *m, float **p[NBUF], size_t n[NBUF])
{
    const size_t B = (size_t)m->maxB, AB = (size_t)m->cfg.A * B, D = (size_t)m->cfg.D;
    const size_t Fv = (size_t)m->Fv, Ft = (size_t)m->Ft;
    float **ps[NBUF] = {&m->v,  &m->u,  &m->nv, &m->nvn, &m->nu, &m->nun, &m->fin, &m->h,
                        &m->xp, &m->xn, &m->x,  &m->yp,  &m->yn, &m->y,   &m->dv,  &m->du,
                        &m->dh, &m->dxp, &m->dyp, &m->dnv, &m->dnu, &m->dfout};
    const size_t ns[NBUF] = {B * Fv, AB * Ft, B * Fv, B,      AB * Ft, AB,     AB * (Fv + Ft),
                             AB * Fv, AB * D, AB,     AB * D, AB * D,  AB,     AB * D,
                             B * Fv, AB * Ft, B * Fv, B * D,  B * D,   B * Fv, AB * Ft, AB * Fv};
    for (int k = 0; k < NBUF; k++) p[k] = ps[k], n[k] = ns[k];
}

void aes_model_build(aes_model *m, const aes_model_cfg *cfg, int maxB)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->maxB = maxB;
    /* The model keeps its own copy of the attribute names. */
    for (int a = 0; a < cfg->A && a < AES_MAX_ATTR; a++) m->cfg.attr_names[a] = aes_strdup(cfg->attr_names[a]);
    const int A = cfg->A, D = cfg->D;
    AES_CHECK(A >= 1 && A <= AES_MAX_ATTR && D >= 1 && maxB >= 1);
    aes_params_init_table(&m->P);
    build_image(&m->image, &m->P, cfg);
    aes_text_build(&m->text, &m->P, "text/", &cfg->text);
    m->Fv = m->image.out_width;
    m->Ft = m->text.out_width;
    const int Fv = m->Fv, Ft = m->Ft;
    if (cfg->fusion == AES_FUSION_MLP)
        aes_mlp_build(&m->fusion, &m->P, "fusion/", Fv + Ft, cfg->fusion_hidden, Fv);
    else if (cfg->fusion == AES_FUSION_TRANSFORMER)
        aes_fusion_transformer_build(&m->fusion, &m->P, "fusion/", Fv, Ft, cfg->fusion_hidden,
                                     cfg->fusion_heads, Fv);
    m->p_img_proj = aes_malloc(sizeof(int) * (size_t)A, "heads");
    m->p_txt_proj = aes_malloc(sizeof(int) * (size_t)A, "heads");
    m->p_scale = aes_malloc(sizeof(int) * (size_t)A, "heads");
    for (int a = 0; a < A; a++) {
        char n[AES_MAX_NAME];
        int si[2] = {D, Fv}, st[2] = {D, Ft}, one = 1;
        snprintf(n, sizeof n, "head/%s/image_proj", cfg->attr_names[a]);
        m->p_img_proj[a] = aes_params_add(&m->P, n, 2, si, 1, 1, AES_INIT_UNIFORM, 1.0f / sqrtf((float)Fv));
        snprintf(n, sizeof n, "head/%s/text_proj", cfg->attr_names[a]);
        m->p_txt_proj[a] = aes_params_add(&m->P, n, 2, st, 1, 1, AES_INIT_UNIFORM, 1.0f / sqrtf((float)Ft));
        snprintf(n, sizeof n, "head/%s/logit_scale", cfg->attr_names[a]);
        m->p_scale[a] = aes_params_add(&m->P, n, 1, &one, cfg->learn_scale, 0, AES_INIT_CONST,
                                       logf(cfg->init_scale));
    }
    aes_params_alloc(&m->P);
    aes_params_initialize(&m->P, cfg->seed);
    aes_encoder_alloc(&m->image, maxB);
    aes_encoder_alloc(&m->text, maxB * A);
    if (cfg->fusion != AES_FUSION_NONE) aes_encoder_alloc(&m->fusion, maxB * A);

    float **bp[NBUF];
    size_t bn[NBUF];
    buffers(m, bp, bn);
    for (int k = 0; k < NBUF; k++) *bp[k] = fz(bn[k], "model buffer");
    m->partner = aes_calloc((size_t)A * maxB, sizeof(int32_t), "partners");

    if (cfg->frozen_reference) {
        /* Same names, so the copy below finds every tensor; eval-mode batch
         * norm: the reference is a fixed function. */
        aes_params_init_table(&m->refP);
        build_image(&m->ref, &m->refP, cfg);
        aes_params_alloc(&m->refP);
        for (int k = 0; k < m->refP.n; k++) {
            int j = aes_params_find(&m->P, m->refP.t[k].name);
            AES_CHECK(j >= 0 && m->P.t[j].numel == m->refP.t[k].numel);
            memcpy(aes_params_data(&m->refP, k), aes_params_data(&m->P, j),
                   sizeof(float) * m->refP.t[k].numel);
        }
        aes_encoder_alloc(&m->ref, maxB);
        m->ref.train = 0;
        m->vref = fz((size_t)maxB * Fv, "reference features");
    }
}

void aes_model_free(aes_model *m)
{
    aes_encoder_free(&m->image);
    aes_encoder_free(&m->text);
    if (m->cfg.fusion != AES_FUSION_NONE) aes_encoder_free(&m->fusion);
    if (m->cfg.frozen_reference) {
        aes_encoder_free(&m->ref);
        aes_params_free(&m->refP);
        if (!m->device) free(m->vref);
    }
    aes_params_free(&m->P);
    float **bp[NBUF];
    size_t bn[NBUF];
    buffers(m, bp, bn);
#ifdef AESNET_WITH_CUDA
    if (m->device) {
        for (int k = 0; k < NBUF; k++) aes_gpu_free_mem(*bp[k]);
        aes_gpu_free_mem(m->d_partner);
        if (m->cfg.frozen_reference) aes_gpu_free_mem(m->vref), m->vref = NULL;
    }
#endif
    if (!m->device)
        for (int k = 0; k < NBUF; k++) free(*bp[k]);
    for (int a = 0; a < m->cfg.A; a++) free((char *)m->cfg.attr_names[a]);
    free(m->partner);
    free(m->p_img_proj);
    free(m->p_txt_proj);
    free(m->p_scale);
    memset(m, 0, sizeof *m);
}

/* The attribute fused into (a, i): uniform over the image's other
 * attributes that have a description, from a stream keyed by the sample,
 * never by rank. */
static void draw_partners(aes_model *m, const uint8_t *mask, const int64_t *rows, int64_t step, int B)
{
    const int A = m->cfg.A;
    for (int i = 0; i < B; i++) {
        aes_rng r;
        aes_rng_init(&r, aes_key(m->cfg.seed, (uint64_t)step, (uint64_t)rows[i], AES_RNG_FUSION_PARTNER));
        for (int a = 0; a < A; a++) {
            int cand[AES_MAX_ATTR], n = 0;
            for (int c = 0; c < A; c++)
                if (c != a && mask[(size_t)c * B + i]) cand[n++] = c;
            uint64_t u = aes_rng_u64(&r); /* one draw per (a, i) whatever n is */
            m->partner[(size_t)a * B + i] = n ? cand[u % (uint64_t)n] : -1;
        }
    }
}

/* ---- the GPU path: the same algebra with the GPU twins ------------------- */
#ifdef AESNET_WITH_CUDA
void aes_model_to_device(aes_model *m)
{
    AES_CHECK(!m->device);
    aes_params_to_device(&m->P);
    aes_encoder_to_device(&m->image);
    aes_encoder_to_device(&m->text);
    if (m->cfg.fusion != AES_FUSION_NONE) aes_encoder_to_device(&m->fusion);
    float **bp[NBUF];
    size_t bn[NBUF];
    buffers(m, bp, bn);
    for (int k = 0; k < NBUF; k++) {
        free(*bp[k]);
        *bp[k] = aes_gpu_malloc(sizeof(float) * (bn[k] ? bn[k] : 1), "model buffer");
        aes_gpu_zero(*bp[k], sizeof(float) * bn[k]);
    }
    m->d_partner = aes_gpu_malloc(sizeof(int32_t) * (size_t)m->cfg.A * m->maxB, "partners");
    if (m->cfg.frozen_reference) {
        aes_params_to_device(&m->refP);
        aes_encoder_to_device(&m->ref);
        free(m->vref);
        m->vref = aes_gpu_malloc(sizeof(float) * (size_t)m->maxB * m->Fv, "reference features");
    }
    m->device = 1;
}

static float *dparam(aes_model *m, int idx) { return m->P.d_data + m->P.t[idx].offset; }
static float *dgrad(aes_model *m, int idx) { return m->P.d_grad + m->P.t[idx].offset; }

static void forward_gpu(aes_model *m, const float *images, const int32_t *tokens, int B)
{
    const int A = m->cfg.A, D = m->cfg.D, Fv = m->Fv, Ft = m->Ft, AB = A * B;
    aes_gpu_copy(m->v, aes_encoder_forward(&m->image, images, B), sizeof(float) * (size_t)B * Fv);
    m->text.tokens = tokens;
    aes_gpu_copy(m->u, aes_encoder_forward(&m->text, NULL, AB), sizeof(float) * (size_t)AB * Ft);
    l2norm_forward_gpu(m->nv, m->nvn, m->v, B, Fv);
    l2norm_forward_gpu(m->nu, m->nun, m->u, AB, Ft);
    aes_gpu_upload(m->d_partner, m->partner, sizeof(int32_t) * (size_t)AB);
    const float *fout = NULL;
    if (m->cfg.fusion != AES_FUSION_NONE) {
        fusion_input_gpu(m->fin, m->nv, m->nu, m->d_partner, A, B, Fv, Ft);
        /* the fusion encoder's input is device memory already: copy it in */
        aes_gpu_copy(m->fusion.acts[m->fusion.input].x, m->fin, sizeof(float) * (size_t)AB * (Fv + Ft));
        fout = aes_encoder_forward(&m->fusion, NULL, AB);
    }
    fusion_add_gpu(m->h, m->v, fout, m->d_partner, A, B, Fv);
    for (int a = 0; a < A; a++) {
        const size_t o = (size_t)a * B * D;
        linear_forward_gpu(m->xp + o, m->h + (size_t)a * B * Fv, dparam(m, m->p_img_proj[a]), NULL,
                           B, Fv, D);
        l2norm_forward_gpu(m->x + o, m->xn + (size_t)a * B, m->xp + o, B, D);
        linear_forward_gpu(m->yp + o, m->u + (size_t)a * B * Ft, dparam(m, m->p_txt_proj[a]), NULL,
                           B, Ft, D);
        l2norm_forward_gpu(m->y + o, m->yn + (size_t)a * B, m->yp + o, B, D);
    }
    if (m->cfg.frozen_reference)
        aes_gpu_copy(m->vref, aes_encoder_forward(&m->ref, images, B), sizeof(float) * (size_t)B * Fv);
}

static void backward_gpu(aes_model *m, const float *dx, const float *dy, const float *dv_loss,
                         const float *dlogscale)
{
    const int B = m->B, A = m->cfg.A, D = m->cfg.D, Fv = m->Fv, Ft = m->Ft, AB = A * B;
    aes_gpu_zero(m->dnv, sizeof(float) * (size_t)B * Fv);
    aes_gpu_zero(m->dnu, sizeof(float) * (size_t)AB * Ft);
    aes_gpu_zero(m->du, sizeof(float) * (size_t)AB * Ft);
    aes_gpu_zero(m->dv, sizeof(float) * (size_t)B * Fv);
    for (int a = 0; a < A; a++) {
        const size_t o = (size_t)a * B * D;
        aes_gpu_zero(m->dxp, sizeof(float) * (size_t)B * D);
        l2norm_backward_gpu(m->dxp, dx + o, m->x + o, m->xn + (size_t)a * B, B, D);
        aes_gpu_zero(m->dh, sizeof(float) * (size_t)B * Fv);
        linear_backward_gpu(m->dh, dgrad(m, m->p_img_proj[a]), NULL, m->dxp,
                            m->h + (size_t)a * B * Fv, dparam(m, m->p_img_proj[a]), B, Fv, D);
        aes_gpu_zero(m->dyp, sizeof(float) * (size_t)B * D);
        l2norm_backward_gpu(m->dyp, dy + o, m->y + o, m->yn + (size_t)a * B, B, D);
        linear_backward_gpu(m->du + (size_t)a * B * Ft, dgrad(m, m->p_txt_proj[a]), NULL, m->dyp,
                            m->u + (size_t)a * B * Ft, dparam(m, m->p_txt_proj[a]), B, Ft, D);
        add_inplace_gpu(m->dv, m->dh, (size_t)B * Fv);
        if (m->cfg.fusion != AES_FUSION_NONE)
            fusion_dout_gpu(m->dfout + (size_t)a * B * Fv, m->dh, m->d_partner + (size_t)a * B, B, Fv);
        if (m->cfg.learn_scale) add_inplace_gpu(dgrad(m, m->p_scale[a]), dlogscale + a, 1);
    }
    if (m->cfg.fusion != AES_FUSION_NONE) {
        aes_encoder_backward(&m->fusion, m->dfout, AB);
        fusion_input_backward_gpu(m->dnv, m->dnu, m->fusion.acts[m->fusion.input].dx,
                                  m->d_partner, A, B, Fv, Ft);
        l2norm_backward_gpu(m->dv, m->dnv, m->nv, m->nvn, B, Fv);
        l2norm_backward_gpu(m->du, m->dnu, m->nu, m->nun, AB, Ft);
    }
    if (dv_loss) add_inplace_gpu(m->dv, dv_loss, (size_t)B * Fv);
    aes_encoder_backward(&m->text, m->du, AB);
    aes_encoder_backward(&m->image, m->dv, B);
}
#endif

void aes_model_forward(aes_model *m, const float *images, const int32_t *tokens,
                       const uint8_t *mask, const int64_t *rows, int64_t step, int B)
{
    AES_CHECK(B >= 1 && B <= m->maxB);
#ifdef AESNET_WITH_CUDA
    if (m->device) {
        m->B = B;
        draw_partners(m, mask, rows, step, B);
        forward_gpu(m, images, tokens, B);
        return;
    }
#endif
    m->B = B;
    const int A = m->cfg.A, D = m->cfg.D, Fv = m->Fv, Ft = m->Ft, AB = A * B;
    memcpy(m->v, aes_encoder_forward(&m->image, images, B), sizeof(float) * (size_t)B * Fv);
    m->text.tokens = tokens;
    memcpy(m->u, aes_encoder_forward(&m->text, NULL, AB), sizeof(float) * (size_t)AB * Ft);
    l2norm_forward(m->nv, m->nvn, m->v, B, Fv);
    l2norm_forward(m->nu, m->nun, m->u, AB, Ft);
    draw_partners(m, mask, rows, step, B);

    const float *fout = NULL;
    if (m->cfg.fusion != AES_FUSION_NONE) {
        for (int a = 0; a < A; a++)
            for (int i = 0; i < B; i++) {
                float *f = m->fin + ((size_t)a * B + i) * (Fv + Ft);
                int c = m->partner[(size_t)a * B + i];
                memcpy(f, m->nv + (size_t)i * Fv, sizeof(float) * Fv);
                if (c >= 0) memcpy(f + Fv, m->nu + ((size_t)c * B + i) * Ft, sizeof(float) * Ft);
                else memset(f + Fv, 0, sizeof(float) * Ft);
            }
        fout = aes_encoder_forward(&m->fusion, m->fin, AB);
    }
    for (int a = 0; a < A; a++) {
        float *h = m->h + (size_t)a * B * Fv;
        memcpy(h, m->v, sizeof(float) * (size_t)B * Fv);
        if (fout)
            for (int i = 0; i < B; i++)
                if (m->partner[(size_t)a * B + i] >= 0)
                    add_inplace(h + (size_t)i * Fv, fout + ((size_t)a * B + i) * Fv, (size_t)Fv);
        size_t o = (size_t)a * B * D;
        linear_forward(m->xp + o, h, aes_params_data(&m->P, m->p_img_proj[a]), NULL, B, Fv, D);
        l2norm_forward(m->x + o, m->xn + (size_t)a * B, m->xp + o, B, D);
        linear_forward(m->yp + o, m->u + (size_t)a * B * Ft, aes_params_data(&m->P, m->p_txt_proj[a]),
                       NULL, B, Ft, D);
        l2norm_forward(m->y + o, m->yn + (size_t)a * B, m->yp + o, B, D);
    }
    if (m->cfg.frozen_reference)
        memcpy(m->vref, aes_encoder_forward(&m->ref, images, B), sizeof(float) * (size_t)B * Fv);
}

void aes_model_backward(aes_model *m, const float *dx, const float *dy, const float *dv_loss,
                        const float *dlogscale)
{
#ifdef AESNET_WITH_CUDA
    if (m->device) {
        backward_gpu(m, dx, dy, dv_loss, dlogscale);
        return;
    }
#endif
    const int B = m->B, A = m->cfg.A, D = m->cfg.D, Fv = m->Fv, Ft = m->Ft, AB = A * B;
    memset(m->dnv, 0, sizeof(float) * (size_t)B * Fv);
    memset(m->dnu, 0, sizeof(float) * (size_t)AB * Ft);
    memset(m->du, 0, sizeof(float) * (size_t)AB * Ft);
    memset(m->dv, 0, sizeof(float) * (size_t)B * Fv);
    for (int a = 0; a < A; a++) {
        size_t o = (size_t)a * B * D;
        memset(m->dxp, 0, sizeof(float) * (size_t)B * D);
        l2norm_backward(m->dxp, dx + o, m->x + o, m->xn + (size_t)a * B, B, D);
        memset(m->dh, 0, sizeof(float) * (size_t)B * Fv);
        linear_backward(m->dh, aes_params_grad(&m->P, m->p_img_proj[a]), NULL, m->dxp,
                        m->h + (size_t)a * B * Fv, aes_params_data(&m->P, m->p_img_proj[a]), B, Fv, D);
        memset(m->dyp, 0, sizeof(float) * (size_t)B * D);
        l2norm_backward(m->dyp, dy + o, m->y + o, m->yn + (size_t)a * B, B, D);
        linear_backward(m->du + (size_t)a * B * Ft, aes_params_grad(&m->P, m->p_txt_proj[a]), NULL,
                        m->dyp, m->u + (size_t)a * B * Ft, aes_params_data(&m->P, m->p_txt_proj[a]),
                        B, Ft, D);
        add_inplace(m->dv, m->dh, (size_t)B * Fv);
        if (m->cfg.fusion != AES_FUSION_NONE)
            for (int i = 0; i < B; i++) {
                float *d = m->dfout + ((size_t)a * B + i) * Fv;
                if (m->partner[(size_t)a * B + i] >= 0) memcpy(d, m->dh + (size_t)i * Fv, sizeof(float) * Fv);
                else memset(d, 0, sizeof(float) * Fv);
            }
        if (m->cfg.learn_scale) aes_params_grad(&m->P, m->p_scale[a])[0] += dlogscale[a];
    }
    if (m->cfg.fusion != AES_FUSION_NONE) {
        aes_encoder_backward(&m->fusion, m->dfout, AB);
        const float *dfin = m->fusion.acts[m->fusion.input].dx;
        for (int a = 0; a < A; a++)
            for (int i = 0; i < B; i++) {
                int c = m->partner[(size_t)a * B + i];
                if (c < 0) continue;
                const float *g = dfin + ((size_t)a * B + i) * (Fv + Ft);
                add_inplace(m->dnv + (size_t)i * Fv, g, (size_t)Fv);
                add_inplace(m->dnu + ((size_t)c * B + i) * Ft, g + Fv, (size_t)Ft);
            }
        l2norm_backward(m->dv, m->dnv, m->nv, m->nvn, B, Fv);
        l2norm_backward(m->du, m->dnu, m->nu, m->nun, AB, Ft);
    }
    if (dv_loss) add_inplace(m->dv, dv_loss, (size_t)B * Fv);
    /* Parameters lie image, text, fusion, heads in the table: finish them
     * from the top so the all-reduce can start on each region. */
    if (m->grad_ready) {
        /* The fusion module and the heads: everything above the text encoder. */
        size_t lo = m->P.n_trainable;
        for (int k = 0; k < m->P.n; k++) {
            const aes_tensor *t = &m->P.t[k];
            if (t->trainable && (!strncmp(t->name, "fusion/", 7) || !strncmp(t->name, "head/", 5)) &&
                t->offset < lo)
                lo = t->offset;
        }
        m->grad_ready(m->grad_ctx, lo);
    }
    m->text.grad_ready = m->image.grad_ready = m->grad_ready;
    m->text.grad_ctx = m->image.grad_ctx = m->grad_ctx;
    aes_encoder_backward(&m->text, m->du, AB);
    aes_encoder_backward(&m->image, m->dv, B);
}

float aes_model_log_scale(const aes_model *m, int a)
{
#ifdef AESNET_WITH_CUDA
    if (m->device) { /* for the log: one float from the device */
        float s;
        aes_gpu_download(&s, m->P.d_data + m->P.t[m->p_scale[a]].offset, sizeof s);
        return s;
    }
#endif
    return aes_params_data(&m->P, m->p_scale[a])[0];
}

void aes_model_clamp_scales(aes_model *m)
{
    const float cap = logf(100.0f);
    for (int a = 0; a < m->cfg.A; a++) {
        float *s = aes_params_data(&m->P, m->p_scale[a]);
        if (s[0] > cap) s[0] = cap;
    }
}
