/*
 * Encoders as a tape of layer ops (darknet style): each op names its input
 * and output activations and its parameters; a table of function pointers
 * gives each kind's forward and backward, so the forward pass is a short
 * loop and the backward pass the same loop reversed. Activation buffers
 * (and their gradients) are allocated once, for the largest batch.
 *
 * Builders: ResNet 18/34/50 (width multiplier), ViT (patch, width, depth,
 * heads) and the CLIP-style text transformer (pre-LN, causal, pooled at the
 * end-of-text token).
 */
#ifndef AESNET_ENCODER_H
#define AESNET_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "aesnet/nn.h"
#include "aesnet/params.h"

typedef enum {
    OP_CONV, OP_BN, OP_RELU, OP_MAXPOOL, OP_ADD, OP_GAP, OP_LINEAR, OP_LN, OP_GELU, OP_ATTN,
    OP_EMBED, OP_PATCH_TOKENS, OP_SELECT0, OP_POOL_EOT, OP_TWO_TOKENS, OP_KINDS
} aes_op_kind;

typedef struct aes_op {
    aes_op_kind kind;
    int in, in2, out;   /* activation ids (-1: none) */
    int w, b, w2, b2;   /* parameter ids (-1: none) */
    int i[10];          /* shapes and hyperparameters, per kind */
    float *s1, *s2;     /* saved for backward (mean/rstd, attention probabilities);
                         * device memory when the encoder is on the GPU */
    int32_t *si;        /* saved indices (max-pool argmax, eot positions) */
} aes_op;

typedef struct aes_act {
    size_t per_sample; /* floats per sample */
    float *x, *dx;
} aes_act;

typedef struct aes_encoder {
    aes_params *P;    /* the model's table (shared by all its encoders) */
    char prefix[32];  /* "image/" or "text/" */
    aes_op *ops;
    int n_ops, cap_ops;
    aes_act *acts;
    int n_acts, cap_acts;
    int maxB;
    int input, output;   /* activation ids */
    int input_grad;      /* backward fills the input's gradient (acts[input].dx) */
    int out_width;       /* features per sample at the output */
    float *scratch;      /* conv im2col / attention scratch, per thread */
    size_t scratch_n;
    /* On the GPU (aes_encoder_to_device): activations, saved state and
     * scratch are device memory, the ops run their GPU twins on the
     * parameter table's device copy, and forward/backward take and give
     * device pointers (forward's input may be a host pointer: in_host). */
    int device;
    int32_t *d_tokens;       /* [maxB, T] text input, uploaded from tokens */
    int tokens_T;            /* T of the text input (0: an image or fusion encoder) */
    /* run-time context */
    int train;               /* batch norm: batch statistics (1) or running (0) */
    const aes_reducer *red;  /* batch-norm reduction over ranks, or NULL */
    const int32_t *tokens;   /* text input [B, T] for OP_EMBED */
    int in_shape[3];         /* image encoders: C, H, W of the input */
    /* Called during backward with lo: every trainable float of the table
     * at offset >= lo that this encoder owns is final (for the gradient
     * all-reduce to start on it). NULL: no calls. */
    void (*grad_ready)(void *ctx, size_t lo);
    void *grad_ctx;
} aes_encoder;

typedef struct aes_resnet_cfg {
    int depth;        /* 18, 34 or 50 */
    float width;      /* multiplier of the base widths 64, 128, 256, 512 */
    int image_size;
} aes_resnet_cfg;

typedef struct aes_vit_cfg {
    int image_size, patch, width, depth, heads;
} aes_vit_cfg;

typedef struct aes_text_cfg {
    int vocab, context, width, depth, heads;
} aes_text_cfg;

/* Declare the parameters (under prefix) and the tape. Call
 * aes_encoder_alloc after aes_params_alloc. */
void aes_resnet_build(aes_encoder *e, aes_params *P, const char *prefix, const aes_resnet_cfg *c);
void aes_vit_build(aes_encoder *e, aes_params *P, const char *prefix, const aes_vit_cfg *c);
void aes_text_build(aes_encoder *e, aes_params *P, const char *prefix, const aes_text_cfg *c);
/* The MLP fusion module: in [C] -> linear(hidden) -> GELU -> linear(OC). */
void aes_mlp_build(aes_encoder *e, aes_params *P, const char *prefix, int C, int hidden, int OC);
/* The transformer fusion module: in [Fv + Ft] = [n(v); n(u)] -> two tokens
 * (a linear map of each part to width W) -> one pre-LN transformer block
 * over the two tokens (heads NH, no mask) -> the first token -> layer norm
 * -> linear(OC). Attention runs within each sample only. */
void aes_fusion_transformer_build(aes_encoder *e, aes_params *P, const char *prefix, int Fv,
                                  int Ft, int W, int NH, int OC);
void aes_encoder_alloc(aes_encoder *e, int maxB);
/* Move an allocated encoder to the GPU (CUDA builds, after aes_gpu_init
 * and aes_params_to_device on its table): its buffers are reallocated on
 * the device. */
void aes_encoder_to_device(aes_encoder *e);
void aes_encoder_free(aes_encoder *e);

/* Forward B samples. Images: in [B, 3, R, R]; text: e->tokens [B, T] and
 * in NULL. Returns the output activation [B, out_width] (owned by e).
 * On the GPU, in and tokens are host memory (uploaded here) and the
 * returned activation is device memory. */
const float *aes_encoder_forward(aes_encoder *e, const float *in, int B);
/* Backward from dout [B, out_width]: accumulates parameter gradients into
 * the table's grad; with input_grad set, acts[input].dx holds the input's
 * gradient afterwards. On the GPU dout and the gradients are device
 * memory. */
void aes_encoder_backward(aes_encoder *e, const float *dout, int B);

/* Floating-point operations of one forward pass per sample (multiply-adds
 * count 2), for throughput and utilisation figures. */
double aes_encoder_flops(const aes_encoder *e);

#endif
