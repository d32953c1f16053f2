/*
 * The AesNet pre-training model: image encoder f (ResNet or ViT), text
 * encoder g, the integration (fusion) module F and, per attribute a, the
 * projection heads and logit scale:
 *   v_i = f(image_i)                       [B, Fv]
 *   u_ai = g(description of attribute a)   [A, B, Ft]
 *   h_ai = v_i + F([n(v_i); n(u_ci)])      c: another attribute of image i
 *                                          (h_ai = v_i for fusion none, or
 *                                          when the image has no other one)
 *   x_ai = n(P_a h_ai),  y_ai = n(Q_a u_ai)   [A, B, D]
 * F works on each sample alone. Downstream only f is kept.
 * An optional frozen copy of the starting image encoder gives the
 * reference features of the semantic affinity loss.
 */
#ifndef AESNET_MODEL_H
#define AESNET_MODEL_H

#include <stdint.h>

#include "aesnet/encoder.h"
#include "aesnet/params.h"

typedef enum { AES_IMAGE_RESNET = 0, AES_IMAGE_VIT = 1 } aes_image_kind;
typedef enum { AES_FUSION_NONE = 0, AES_FUSION_MLP = 1, AES_FUSION_TRANSFORMER = 2 } aes_fusion_kind;

#define AES_MAX_ATTR 64

typedef struct aes_model_cfg {
    aes_image_kind image;
    aes_resnet_cfg resnet;
    aes_vit_cfg vit;
    aes_text_cfg text;
    int A;                                   /* attributes */
    const char *attr_names[AES_MAX_ATTR];    /* parameter paths use them */
    int D;                                   /* embedding width per attribute */
    aes_fusion_kind fusion;
    int fusion_hidden;                       /* MLP hidden width; transformer token width */
    int fusion_heads;                        /* transformer fusion heads */
    int learn_scale;                         /* 1: learned logit scale; 0: fixed */
    float init_scale;                        /* initial (or fixed) scale, 1/0.07 */
    int frozen_reference;                    /* keep a frozen copy of f for L_sa */
    uint64_t seed;                           /* initialisation and partner draws */
} aes_model_cfg;

typedef struct aes_model {
    aes_model_cfg cfg;
    aes_params P;
    aes_encoder image, text, fusion;
    int Fv, Ft, maxB;
    int *p_img_proj, *p_txt_proj, *p_scale;  /* [A] parameter ids */
    /* forward state, sized for maxB */
    int B;
    float *v;        /* [B, Fv] */
    float *u;        /* [A, B, Ft] */
    float *nv, *nvn; /* n(v) [B, Fv] and norms [B] */
    float *nu, *nun; /* n(u) [A, B, Ft] and norms [A, B] */
    int32_t *partner;/* [A, B] attribute c fused into (a, i), -1 none */
    float *fin;      /* [A * B, Fv + Ft] fusion input */
    float *h;        /* [A, B, Fv] */
    float *xp, *xn, *x; /* [A, B, D] pre-norm, [A, B] norms, [A, B, D] */
    float *yp, *yn, *y;
    /* backward scratch */
    float *dv, *du, *dh, *dxp, *dyp, *dnv, *dnu, *dfout;
    void (*grad_ready)(void *ctx, size_t lo);
    void *grad_ctx;
    /* the frozen reference */
    aes_params refP;
    aes_encoder ref;
    float *vref;     /* [B, Fv] */
    /* On the GPU (aes_model_to_device): the buffers above (not partner)
     * are device memory; partner is drawn on the host and uploaded. */
    int device;
    int32_t *d_partner; /* [A, B] */
} aes_model;

void aes_model_build(aes_model *m, const aes_model_cfg *cfg, int maxB);
/* Move a built model to the GPU (CUDA builds, after aes_gpu_init): its
 * parameter tables, encoders and buffers. Forward then takes host inputs
 * (images, tokens, mask, rows) and leaves v, x, y (and vref) in device
 * memory; backward takes device gradients and accumulates into the
 * table's device gradient (dlogscale: device memory too). */
void aes_model_to_device(aes_model *m);
void aes_model_free(aes_model *m);

/* Forward B samples: images [B, 3, R, R], tokens [A, B, L], mask [A, B],
 * rows [B] (global sample ids: the fusion partner of (a, i) is drawn from
 * (seed, step, rows[i], a)). Fills v, x, y (and vref with a frozen
 * reference). bn_train: batch norm with batch statistics. */
void aes_model_forward(aes_model *m, const float *images, const int32_t *tokens,
                       const uint8_t *mask, const int64_t *rows, int64_t step, int B);
/* Backward from the loss gradients of the local rows: dx, dy [A, B, D],
 * dv_loss [B, Fv] (the affinity loss; NULL for none) and dlogscale [A].
 * Accumulates into m->P.grad (zero it first). With grad_ready set, reports
 * finished gradient regions in decreasing offset order (heads and fusion,
 * then the text encoder, then the image encoder), for an all-reduce that
 * overlaps the rest of the backward pass. */
void aes_model_backward(aes_model *m, const float *dx, const float *dy, const float *dv_loss,
                        const float *dlogscale);

/* The logit scale of attribute a is exp(log_scale); clamp log_scale at
 * log(100) after every update, as CLIP. */
void aes_model_clamp_scales(aes_model *m);
float aes_model_log_scale(const aes_model *m, int a);

#endif
