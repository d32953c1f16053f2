/*
 * Encoders as a tape of ops: the op table (forward and backward of each
 * kind), the tape runner and the ResNet, ViT and text-transformer builders.
 */
#include "aesnet/encoder.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/tokenizer.h"

#ifdef AESNET_WITH_CUDA
#include "aesnet/gpu.h"
#endif

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f
#define LN_EPS 1e-5f

/* ---- the op table ---------------------------------------------------- */

static float *X(aes_encoder *e, int a) { return e->acts[a].x; }
static float *DX(aes_encoder *e, int a) { return e->acts[a].dx; }
/* A parameter and its gradient: the table's device copy on the GPU. */
static float *W(aes_encoder *e, int p)
{
    if (p < 0) return NULL;
    return e->device ? e->P->d_data + e->P->t[p].offset : aes_params_data(e->P, p);
}
static float *DW(aes_encoder *e, int p)
{
    if (p < 0 || !e->P->t[p].trainable) return NULL;
    return e->device ? e->P->d_grad + e->P->t[p].offset : aes_params_grad(e->P, p);
}

/* conv: i = C, H, W, OC, K, stride, pad, OH, OW */
static void conv_fwd(aes_encoder *e, aes_op *o, int B)
{
    conv2d_forward(X(e, o->out), e->scratch, X(e, o->in), W(e, o->w), W(e, o->b), B, o->i[0],
                   o->i[1], o->i[2], o->i[3], o->i[4], o->i[4], o->i[5], o->i[6]);
}
static void conv_bwd(aes_encoder *e, aes_op *o, int B)
{
    /* The network's input (pixels) needs no gradient. */
    float *din = o->in == e->input && !e->input_grad ? NULL : DX(e, o->in);
    conv2d_backward(din, DW(e, o->w), DW(e, o->b), e->scratch, DX(e, o->out), X(e, o->in),
                    W(e, o->w), B, o->i[0], o->i[1], o->i[2], o->i[3], o->i[4], o->i[4], o->i[5],
                    o->i[6]);
}

/* bn: i = C, HW; w gamma, b beta, w2 running mean, b2 running var */
static void bn_fwd(aes_encoder *e, aes_op *o, int B)
{
    batchnorm_forward(X(e, o->out), o->s1, o->s2, X(e, o->in), W(e, o->w), W(e, o->b),
                      W(e, o->w2), W(e, o->b2), B, o->i[0], o->i[1], e->train, BN_MOMENTUM,
                      BN_EPS, e->red);
}
static void bn_bwd(aes_encoder *e, aes_op *o, int B)
{
    if (!e->train) aes_internal_error("%s: backward through batch norm in eval mode", e->prefix);
    batchnorm_backward(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in), o->s1,
                       o->s2, W(e, o->w), B, o->i[0], o->i[1], e->red);
}

static size_t per(aes_encoder *e, int a) { return e->acts[a].per_sample; }

static void relu_fwd(aes_encoder *e, aes_op *o, int B)
{
    relu_forward(X(e, o->out), X(e, o->in), per(e, o->in) * (size_t)B);
}
static void relu_bwd(aes_encoder *e, aes_op *o, int B)
{
    relu_backward(DX(e, o->in), DX(e, o->out), X(e, o->out), per(e, o->in) * (size_t)B);
}

/* maxpool: i = C, H, W, K, stride, pad */
static void maxpool_fwd(aes_encoder *e, aes_op *o, int B)
{
    maxpool2d_forward(X(e, o->out), o->si, X(e, o->in), B, o->i[0], o->i[1], o->i[2], o->i[3],
                      o->i[4], o->i[5]);
}
static void maxpool_bwd(aes_encoder *e, aes_op *o, int B)
{
    maxpool2d_backward(DX(e, o->in), DX(e, o->out), o->si, B, o->i[0], o->i[1], o->i[2], o->i[3],
                       o->i[4], o->i[5]);
}

static void add_fwd(aes_encoder *e, aes_op *o, int B)
{
    size_t n = per(e, o->in) * (size_t)B;
    memcpy(X(e, o->out), X(e, o->in), sizeof(float) * n);
    add_inplace(X(e, o->out), X(e, o->in2), n);
}
static void add_bwd(aes_encoder *e, aes_op *o, int B)
{
    size_t n = per(e, o->in) * (size_t)B;
    add_inplace(DX(e, o->in), DX(e, o->out), n);
    add_inplace(DX(e, o->in2), DX(e, o->out), n);
}

/* gap: i = C, HW */
static void gap_fwd(aes_encoder *e, aes_op *o, int B)
{
    gap_forward(X(e, o->out), X(e, o->in), B, o->i[0], o->i[1]);
}
static void gap_bwd(aes_encoder *e, aes_op *o, int B)
{
    gap_backward(DX(e, o->in), DX(e, o->out), B, o->i[0], o->i[1]);
}

/* linear: i = T (rows per sample), C, OC */
static void linear_fwd(aes_encoder *e, aes_op *o, int B)
{
    linear_forward(X(e, o->out), X(e, o->in), W(e, o->w), W(e, o->b), B * o->i[0], o->i[1],
                   o->i[2]);
}
static void linear_bwd(aes_encoder *e, aes_op *o, int B)
{
    linear_backward(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in),
                    W(e, o->w), B * o->i[0], o->i[1], o->i[2]);
}

/* ln: i = T, C */
static void ln_fwd(aes_encoder *e, aes_op *o, int B)
{
    layernorm_forward(X(e, o->out), o->s1, o->s2, X(e, o->in), W(e, o->w), W(e, o->b),
                      B * o->i[0], o->i[1], LN_EPS);
}
static void ln_bwd(aes_encoder *e, aes_op *o, int B)
{
    layernorm_backward(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in),
                       W(e, o->w), o->s1, o->s2, B * o->i[0], o->i[1]);
}

static void gelu_fwd(aes_encoder *e, aes_op *o, int B)
{
    gelu_forward(X(e, o->out), X(e, o->in), per(e, o->in) * (size_t)B);
}
static void gelu_bwd(aes_encoder *e, aes_op *o, int B)
{
    gelu_backward(DX(e, o->in), DX(e, o->out), X(e, o->in), per(e, o->in) * (size_t)B);
}

/* attn: i = T, C, NH, causal */
static void attn_fwd(aes_encoder *e, aes_op *o, int B)
{
    attention_forward(X(e, o->out), o->s1, X(e, o->in), B, o->i[0], o->i[1], o->i[2], o->i[3]);
}
static void attn_bwd(aes_encoder *e, aes_op *o, int B)
{
    attention_backward(DX(e, o->in), e->scratch, DX(e, o->out), X(e, o->in), o->s1, B, o->i[0],
                       o->i[1], o->i[2], o->i[3]);
}

/* embed: i = T, C, V; w token table, b position table */
static void embed_fwd(aes_encoder *e, aes_op *o, int B)
{
    embedding_forward(X(e, o->out), e->tokens, W(e, o->w), W(e, o->b), B, o->i[0], o->i[1],
                      o->i[2]);
}
static void embed_bwd(aes_encoder *e, aes_op *o, int B)
{
    embedding_backward(DW(e, o->w), DW(e, o->b), DX(e, o->out), e->tokens, B, o->i[0], o->i[1],
                       o->i[2]);
}

/* patch tokens: in [B, C, P] (conv output, P patches) -> out [B, 1 + P, C]
 * with the class token first and the position embedding added.
 * i = C, P; w class token [C], b positions [1 + P, C] */
static void patch_fwd(aes_encoder *e, aes_op *o, int B)
{
    const int C = o->i[0], P = o->i[1], T = P + 1;
    const float *in = X(e, o->in), *cls = W(e, o->w), *pos = W(e, o->b);
    float *out = X(e, o->out);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *ob = out + (size_t)b * T * C;
        for (int c = 0; c < C; c++) ob[c] = cls[c] + pos[c];
        for (int p = 0; p < P; p++)
            for (int c = 0; c < C; c++)
                ob[(size_t)(1 + p) * C + c] = in[((size_t)b * C + c) * P + p] + pos[(size_t)(1 + p) * C + c];
    }
}
static void patch_bwd(aes_encoder *e, aes_op *o, int B)
{
    const int C = o->i[0], P = o->i[1], T = P + 1;
    const float *dout = DX(e, o->out);
    float *din = DX(e, o->in), *dcls = DW(e, o->w), *dpos = DW(e, o->b);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < P; p++)
                din[((size_t)b * C + c) * P + p] += dout[((size_t)b * T + 1 + p) * C + c];
    /* Sums over the batch in sample order: deterministic. */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) {
                float g = dout[((size_t)b * T + t) * C + c];
                dpos[(size_t)t * C + c] += g;
                if (t == 0) dcls[c] += g;
            }
}

/* select token 0: in [B, T, C] -> out [B, C]; i = T, C */
static void select0_fwd(aes_encoder *e, aes_op *o, int B)
{
    const int T = o->i[0], C = o->i[1];
    for (int b = 0; b < B; b++)
        memcpy(X(e, o->out) + (size_t)b * C, X(e, o->in) + (size_t)b * T * C, sizeof(float) * C);
}
static void select0_bwd(aes_encoder *e, aes_op *o, int B)
{
    const int T = o->i[0], C = o->i[1];
    for (int b = 0; b < B; b++)
        add_inplace(DX(e, o->in) + (size_t)b * T * C, DX(e, o->out) + (size_t)b * C, (size_t)C);
}

/* pool at the first <eot> (the last position if there is none, as for an
 * absent, all-pad description): in [B, T, C] -> out [B, C]; i = T, C */
static void pool_eot_fwd(aes_encoder *e, aes_op *o, int B)
{
    const int T = o->i[0], C = o->i[1];
    for (int b = 0; b < B; b++) {
        int t = 0;
        while (t < T && e->tokens[(size_t)b * T + t] != AES_TOK_EOT) t++;
        if (t == T) t = T - 1;
        o->si[b] = t;
        memcpy(X(e, o->out) + (size_t)b * C, X(e, o->in) + ((size_t)b * T + t) * C,
               sizeof(float) * C);
    }
}
static void pool_eot_bwd(aes_encoder *e, aes_op *o, int B)
{
    const int T = o->i[0], C = o->i[1];
    for (int b = 0; b < B; b++)
        add_inplace(DX(e, o->in) + ((size_t)b * T + o->si[b]) * C, DX(e, o->out) + (size_t)b * C,
                    (size_t)C);
}

/* two tokens: in [B, Fv + Ft] -> out [B, 2, W]; token 0 = W0 in[:Fv] + b0,
 * token 1 = W1 in[Fv:] + b1. i = Fv, Ft, W. s1 holds the two input parts
 * contiguous ([B, Fv] then [B, Ft]) and room for their gradients; s2 the
 * two token rows contiguous ([B, W] twice). */
static void two_tokens_fwd(aes_encoder *e, aes_op *o, int B)
{
    const int Fv = o->i[0], Ft = o->i[1], Wd = o->i[2];
    const float *in = X(e, o->in);
    float *pv = o->s1, *pu = o->s1 + (size_t)B * Fv, *out = X(e, o->out);
    for (int b = 0; b < B; b++) {
        memcpy(pv + (size_t)b * Fv, in + (size_t)b * (Fv + Ft), sizeof(float) * Fv);
        memcpy(pu + (size_t)b * Ft, in + (size_t)b * (Fv + Ft) + Fv, sizeof(float) * Ft);
    }
    linear_forward(o->s2, pv, W(e, o->w), W(e, o->b), B, Fv, Wd);
    linear_forward(o->s2 + (size_t)B * Wd, pu, W(e, o->w2), W(e, o->b2), B, Ft, Wd);
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * 2 * Wd, o->s2 + (size_t)b * Wd, sizeof(float) * Wd);
        memcpy(out + (size_t)b * 2 * Wd + Wd, o->s2 + ((size_t)B + b) * Wd, sizeof(float) * Wd);
    }
}
static void two_tokens_bwd(aes_encoder *e, aes_op *o, int B)
{
    const int Fv = o->i[0], Ft = o->i[1], Wd = o->i[2];
    const float *dout = DX(e, o->out);
    float *pv = o->s1, *pu = o->s1 + (size_t)B * Fv;
    float *dpv = o->s1 + (size_t)B * (Fv + Ft), *dpu = dpv + (size_t)B * Fv;
    for (int b = 0; b < B; b++) {
        memcpy(o->s2 + (size_t)b * Wd, dout + (size_t)b * 2 * Wd, sizeof(float) * Wd);
        memcpy(o->s2 + ((size_t)B + b) * Wd, dout + (size_t)b * 2 * Wd + Wd, sizeof(float) * Wd);
    }
    memset(dpv, 0, sizeof(float) * (size_t)B * (Fv + Ft));
    linear_backward(dpv, DW(e, o->w), DW(e, o->b), o->s2, pv, W(e, o->w), B, Fv, Wd);
    linear_backward(dpu, DW(e, o->w2), DW(e, o->b2), o->s2 + (size_t)B * Wd, pu, W(e, o->w2), B,
                    Ft, Wd);
    float *din = DX(e, o->in);
    for (int b = 0; b < B; b++) {
        add_inplace(din + (size_t)b * (Fv + Ft), dpv + (size_t)b * Fv, (size_t)Fv);
        add_inplace(din + (size_t)b * (Fv + Ft) + Fv, dpu + (size_t)b * Ft, (size_t)Ft);
    }
}

typedef struct {
    void (*fwd)(aes_encoder *, aes_op *, int);
    void (*bwd)(aes_encoder *, aes_op *, int);
} op_impl;

static const op_impl impl[OP_KINDS] = {
    [OP_CONV] = {conv_fwd, conv_bwd},         [OP_BN] = {bn_fwd, bn_bwd},
    [OP_RELU] = {relu_fwd, relu_bwd},         [OP_MAXPOOL] = {maxpool_fwd, maxpool_bwd},
    [OP_ADD] = {add_fwd, add_bwd},            [OP_GAP] = {gap_fwd, gap_bwd},
    [OP_LINEAR] = {linear_fwd, linear_bwd},   [OP_LN] = {ln_fwd, ln_bwd},
    [OP_GELU] = {gelu_fwd, gelu_bwd},         [OP_ATTN] = {attn_fwd, attn_bwd},
    [OP_EMBED] = {embed_fwd, embed_bwd},      [OP_PATCH_TOKENS] = {patch_fwd, patch_bwd},
    [OP_SELECT0] = {select0_fwd, select0_bwd}, [OP_POOL_EOT] = {pool_eot_fwd, pool_eot_bwd},
    [OP_TWO_TOKENS] = {two_tokens_fwd, two_tokens_bwd},
};

/* ---- the GPU twins of the ops ------------------------------------------ */
#ifdef AESNET_WITH_CUDA
static void conv_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    conv2d_forward_gpu(X(e, o->out), X(e, o->in), W(e, o->w), W(e, o->b), B, o->i[0], o->i[1],
                       o->i[2], o->i[3], o->i[4], o->i[4], o->i[5], o->i[6]);
}
static void conv_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    float *din = o->in == e->input && !e->input_grad ? NULL : DX(e, o->in);
    conv2d_backward_gpu(din, DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in), W(e, o->w), B,
                        o->i[0], o->i[1], o->i[2], o->i[3], o->i[4], o->i[4], o->i[5], o->i[6]);
}
static void bn_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    batchnorm_forward_gpu(X(e, o->out), o->s1, o->s2, X(e, o->in), W(e, o->w), W(e, o->b),
                          W(e, o->w2), W(e, o->b2), B, o->i[0], o->i[1], e->train, BN_MOMENTUM,
                          BN_EPS, e->red);
}
static void bn_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    if (!e->train) aes_internal_error("%s: backward through batch norm in eval mode", e->prefix);
    batchnorm_backward_gpu(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in),
                           o->s1, o->s2, W(e, o->w), B, o->i[0], o->i[1], e->red);
}
static void relu_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    relu_forward_gpu(X(e, o->out), X(e, o->in), per(e, o->in) * (size_t)B);
}
static void relu_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    relu_backward_gpu(DX(e, o->in), DX(e, o->out), X(e, o->out), per(e, o->in) * (size_t)B);
}
static void maxpool_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    maxpool2d_forward_gpu(X(e, o->out), o->si, X(e, o->in), B, o->i[0], o->i[1], o->i[2], o->i[3],
                          o->i[4], o->i[5]);
}
static void maxpool_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    maxpool2d_backward_gpu(DX(e, o->in), DX(e, o->out), o->si, B, o->i[0], o->i[1], o->i[2],
                           o->i[3], o->i[4], o->i[5]);
}
static void add_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    size_t n = per(e, o->in) * (size_t)B;
    aes_gpu_copy(X(e, o->out), X(e, o->in), sizeof(float) * n);
    add_inplace_gpu(X(e, o->out), X(e, o->in2), n);
}
static void add_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    size_t n = per(e, o->in) * (size_t)B;
    add_inplace_gpu(DX(e, o->in), DX(e, o->out), n);
    add_inplace_gpu(DX(e, o->in2), DX(e, o->out), n);
}
static void gap_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    gap_forward_gpu(X(e, o->out), X(e, o->in), B, o->i[0], o->i[1]);
}
static void gap_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    gap_backward_gpu(DX(e, o->in), DX(e, o->out), B, o->i[0], o->i[1]);
}
static void linear_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    linear_forward_gpu(X(e, o->out), X(e, o->in), W(e, o->w), W(e, o->b), B * o->i[0], o->i[1],
                       o->i[2]);
}
static void linear_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    linear_backward_gpu(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in),
                        W(e, o->w), B * o->i[0], o->i[1], o->i[2]);
}
static void ln_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    layernorm_forward_gpu(X(e, o->out), o->s1, o->s2, X(e, o->in), W(e, o->w), W(e, o->b),
                          B * o->i[0], o->i[1], LN_EPS);
}
static void ln_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    layernorm_backward_gpu(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), X(e, o->in),
                           W(e, o->w), o->s1, o->s2, B * o->i[0], o->i[1]);
}
static void gelu_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    gelu_forward_gpu(X(e, o->out), X(e, o->in), per(e, o->in) * (size_t)B);
}
static void gelu_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    gelu_backward_gpu(DX(e, o->in), DX(e, o->out), X(e, o->in), per(e, o->in) * (size_t)B);
}
static void attn_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    attention_forward_gpu(X(e, o->out), o->s1, e->scratch, X(e, o->in), B, o->i[0], o->i[1],
                          o->i[2], o->i[3]);
}
static void attn_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    attention_backward_gpu(DX(e, o->in), e->scratch, DX(e, o->out), X(e, o->in), o->s1, B,
                           o->i[0], o->i[1], o->i[2], o->i[3]);
}
static void embed_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    embedding_forward_gpu(X(e, o->out), e->d_tokens, W(e, o->w), W(e, o->b), B, o->i[0], o->i[1],
                          o->i[2]);
}
static void embed_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    embedding_backward_gpu(DW(e, o->w), DW(e, o->b), DX(e, o->out), e->d_tokens, B, o->i[0],
                           o->i[1], o->i[2]);
}
static void patch_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    patch_tokens_forward_gpu(X(e, o->out), X(e, o->in), W(e, o->w), W(e, o->b), B, o->i[0],
                             o->i[1]);
}
static void patch_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    patch_tokens_backward_gpu(DX(e, o->in), DW(e, o->w), DW(e, o->b), DX(e, o->out), B, o->i[0],
                              o->i[1]);
}
static void select0_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    const int T = o->i[0], C = o->i[1];
    copy_cols_gpu(X(e, o->out), C, X(e, o->in), T * C, B, C, 0);
}
static void select0_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    const int T = o->i[0], C = o->i[1];
    copy_cols_gpu(DX(e, o->in), T * C, DX(e, o->out), C, B, C, 1);
}
static void pool_eot_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    pool_eot_forward_gpu(X(e, o->out), o->si, X(e, o->in), e->d_tokens, AES_TOK_EOT, B, o->i[0],
                         o->i[1]);
}
static void pool_eot_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    pool_eot_backward_gpu(DX(e, o->in), DX(e, o->out), o->si, B, o->i[0], o->i[1]);
}
/* As two_tokens_fwd/bwd, with strided copies for the splits. */
static void two_tokens_fwd_g(aes_encoder *e, aes_op *o, int B)
{
    const int Fv = o->i[0], Ft = o->i[1], Wd = o->i[2];
    const float *in = X(e, o->in);
    float *pv = o->s1, *pu = o->s1 + (size_t)B * Fv, *out = X(e, o->out);
    copy_cols_gpu(pv, Fv, in, Fv + Ft, B, Fv, 0);
    copy_cols_gpu(pu, Ft, in + Fv, Fv + Ft, B, Ft, 0);
    linear_forward_gpu(o->s2, pv, W(e, o->w), W(e, o->b), B, Fv, Wd);
    linear_forward_gpu(o->s2 + (size_t)B * Wd, pu, W(e, o->w2), W(e, o->b2), B, Ft, Wd);
    copy_cols_gpu(out, 2 * Wd, o->s2, Wd, B, Wd, 0);
    copy_cols_gpu(out + Wd, 2 * Wd, o->s2 + (size_t)B * Wd, Wd, B, Wd, 0);
}
static void two_tokens_bwd_g(aes_encoder *e, aes_op *o, int B)
{
    const int Fv = o->i[0], Ft = o->i[1], Wd = o->i[2];
    const float *dout = DX(e, o->out);
    float *pv = o->s1, *pu = o->s1 + (size_t)B * Fv;
    float *dpv = o->s1 + (size_t)B * (Fv + Ft), *dpu = dpv + (size_t)B * Fv;
    copy_cols_gpu(o->s2, Wd, dout, 2 * Wd, B, Wd, 0);
    copy_cols_gpu(o->s2 + (size_t)B * Wd, Wd, dout + Wd, 2 * Wd, B, Wd, 0);
    aes_gpu_zero(dpv, sizeof(float) * (size_t)B * (Fv + Ft));
    linear_backward_gpu(dpv, DW(e, o->w), DW(e, o->b), o->s2, pv, W(e, o->w), B, Fv, Wd);
    linear_backward_gpu(dpu, DW(e, o->w2), DW(e, o->b2), o->s2 + (size_t)B * Wd, pu, W(e, o->w2),
                        B, Ft, Wd);
    float *din = DX(e, o->in);
    copy_cols_gpu(din, Fv + Ft, dpv, Fv, B, Fv, 1);
    copy_cols_gpu(din + Fv, Fv + Ft, dpu, Ft, B, Ft, 1);
}

static const op_impl impl_gpu[OP_KINDS] = {
    [OP_CONV] = {conv_fwd_g, conv_bwd_g},         [OP_BN] = {bn_fwd_g, bn_bwd_g},
    [OP_RELU] = {relu_fwd_g, relu_bwd_g},         [OP_MAXPOOL] = {maxpool_fwd_g, maxpool_bwd_g},
    [OP_ADD] = {add_fwd_g, add_bwd_g},            [OP_GAP] = {gap_fwd_g, gap_bwd_g},
    [OP_LINEAR] = {linear_fwd_g, linear_bwd_g},   [OP_LN] = {ln_fwd_g, ln_bwd_g},
    [OP_GELU] = {gelu_fwd_g, gelu_bwd_g},         [OP_ATTN] = {attn_fwd_g, attn_bwd_g},
    [OP_EMBED] = {embed_fwd_g, embed_bwd_g},      [OP_PATCH_TOKENS] = {patch_fwd_g, patch_bwd_g},
    [OP_SELECT0] = {select0_fwd_g, select0_bwd_g}, [OP_POOL_EOT] = {pool_eot_fwd_g, pool_eot_bwd_g},
    [OP_TWO_TOKENS] = {two_tokens_fwd_g, two_tokens_bwd_g},
};
#endif

/* ---- running the tape ------------------------------------------------ */

static const op_impl *impl_of(const aes_encoder *e)
{
#ifdef AESNET_WITH_CUDA
    if (e->device) return impl_gpu;
#endif
    AES_CHECK(!e->device);
    return impl;
}

/* Copies between an activation and the caller's memory, on either side. */
static void act_put(aes_encoder *e, float *dst, const float *src, size_t n, int from_host)
{
#ifdef AESNET_WITH_CUDA
    if (e->device) {
        if (from_host) aes_gpu_upload(dst, src, sizeof(float) * n);
        else aes_gpu_copy(dst, src, sizeof(float) * n);
        return;
    }
#endif
    (void)e, (void)from_host;
    memcpy(dst, src, sizeof(float) * n);
}

static void act_zero(aes_encoder *e, float *p, size_t n)
{
#ifdef AESNET_WITH_CUDA
    if (e->device) {
        aes_gpu_zero(p, sizeof(float) * n);
        return;
    }
#endif
    (void)e;
    memset(p, 0, sizeof(float) * n);
}

const float *aes_encoder_forward(aes_encoder *e, const float *in, int B)
{
    AES_CHECK(B >= 1 && B <= e->maxB);
    if (in) act_put(e, X(e, e->input), in, per(e, e->input) * (size_t)B, 1);
#ifdef AESNET_WITH_CUDA
    if (e->device && e->d_tokens && e->tokens)
        aes_gpu_upload(e->d_tokens, e->tokens, sizeof(int32_t) * (size_t)B * e->tokens_T);
#endif
    const op_impl *im = impl_of(e);
    for (int k = 0; k < e->n_ops; k++) im[e->ops[k].kind].fwd(e, &e->ops[k], B);
    return X(e, e->output);
}

void aes_encoder_backward(aes_encoder *e, const float *dout, int B)
{
    AES_CHECK(B >= 1 && B <= e->maxB);
    /* Backward functions accumulate into dinp: start from zero. */
    for (int a = 0; a < e->n_acts; a++) act_zero(e, DX(e, a), per(e, a) * (size_t)B);
    act_put(e, DX(e, e->output), dout, per(e, e->output) * (size_t)B, 0);
    const op_impl *im = impl_of(e);
    for (int k = e->n_ops - 1; k >= 0; k--) {
        aes_op *o = &e->ops[k];
        im[o->kind].bwd(e, o, B);
        if (!e->grad_ready) continue;
        /* Parameters are declared in op order: those of ops k.. are final. */
        size_t lo = (size_t)-1;
        const int ps[4] = {o->w, o->b, o->w2, o->b2};
        for (int j = 0; j < 4; j++)
            if (ps[j] >= 0 && e->P->t[ps[j]].trainable && e->P->t[ps[j]].offset < lo)
                lo = e->P->t[ps[j]].offset;
        if (lo != (size_t)-1) e->grad_ready(e->grad_ctx, lo);
    }
}

/* ---- building -------------------------------------------------------- */

static int act_new(aes_encoder *e, size_t per_sample)
{
    if (e->n_acts == e->cap_acts) {
        e->cap_acts = e->cap_acts ? 2 * e->cap_acts : 64;
        e->acts = aes_realloc(e->acts, sizeof(aes_act) * (size_t)e->cap_acts, "activations");
    }
    e->acts[e->n_acts] = (aes_act){.per_sample = per_sample};
    return e->n_acts++;
}

static aes_op *op_new(aes_encoder *e, aes_op_kind kind, int in, int out)
{
    if (e->n_ops == e->cap_ops) {
        e->cap_ops = e->cap_ops ? 2 * e->cap_ops : 64;
        e->ops = aes_realloc(e->ops, sizeof(aes_op) * (size_t)e->cap_ops, "ops");
    }
    aes_op *o = &e->ops[e->n_ops++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->in = in;
    o->in2 = -1;
    o->out = out;
    o->w = o->b = o->w2 = o->b2 = -1;
    return o;
}

static int param(aes_encoder *e, const char *name, int ndim, const int *shape, int trainable,
                 int decay, aes_init_kind init, float a)
{
    char full[AES_MAX_NAME + 64];
    snprintf(full, sizeof full, "%s%s", e->prefix, name);
    return aes_params_add(e->P, full, ndim, shape, trainable, decay, init, a);
}

static void begin(aes_encoder *e, aes_params *P, const char *prefix)
{
    memset(e, 0, sizeof *e);
    e->P = P;
    snprintf(e->prefix, sizeof e->prefix, "%s", prefix);
    e->train = 1;
}

/* nn.Conv2d's default init: U(+-1/sqrt(fan_in)) for weight and bias. */
static int conv(aes_encoder *e, const char *name, int in, int C, int H, int W_, int OC, int K,
                int stride, int pad, int bias, int *OH, int *OW)
{
    *OH = (H + 2 * pad - K) / stride + 1;
    *OW = (W_ + 2 * pad - K) / stride + 1;
    int out = act_new(e, (size_t)OC * *OH * *OW);
    aes_op *o = op_new(e, OP_CONV, in, out);
    char n[AES_MAX_NAME];
    float bound = 1.0f / sqrtf((float)(C * K * K));
    int ws[4] = {OC, C, K, K};
    snprintf(n, sizeof n, "%s/weight", name);
    o->w = param(e, n, 4, ws, 1, 1, AES_INIT_UNIFORM, bound);
    if (bias) {
        snprintf(n, sizeof n, "%s/bias", name);
        o->b = param(e, n, 1, &OC, 1, 0, AES_INIT_UNIFORM, bound);
    }
    int v[] = {C, H, W_, OC, K, stride, pad, *OH, *OW};
    memcpy(o->i, v, sizeof v);
    return out;
}

static int bn(aes_encoder *e, const char *name, int in, int C, int HW)
{
    int out = act_new(e, (size_t)C * HW);
    aes_op *o = op_new(e, OP_BN, in, out);
    char n[AES_MAX_NAME];
    snprintf(n, sizeof n, "%s/weight", name);
    o->w = param(e, n, 1, &C, 1, 0, AES_INIT_ONE, 0);
    snprintf(n, sizeof n, "%s/bias", name);
    o->b = param(e, n, 1, &C, 1, 0, AES_INIT_ZERO, 0);
    snprintf(n, sizeof n, "%s/running_mean", name);
    o->w2 = param(e, n, 1, &C, 0, 0, AES_INIT_ZERO, 0);
    snprintf(n, sizeof n, "%s/running_var", name);
    o->b2 = param(e, n, 1, &C, 0, 0, AES_INIT_ONE, 0);
    o->i[0] = C;
    o->i[1] = HW;
    return out;
}

static int relu(aes_encoder *e, int in)
{
    int out = act_new(e, e->acts[in].per_sample);
    op_new(e, OP_RELU, in, out);
    return out;
}

static int add(aes_encoder *e, int a, int b)
{
    AES_CHECK(e->acts[a].per_sample == e->acts[b].per_sample);
    int out = act_new(e, e->acts[a].per_sample);
    aes_op *o = op_new(e, OP_ADD, a, out);
    o->in2 = b;
    return out;
}

/* nn.Linear's default init: U(+-1/sqrt(in)) for weight and bias. */
static int linear(aes_encoder *e, const char *name, int in, int T, int C, int OC, int bias)
{
    int out = act_new(e, (size_t)T * OC);
    aes_op *o = op_new(e, OP_LINEAR, in, out);
    char n[AES_MAX_NAME];
    float bound = 1.0f / sqrtf((float)C);
    int ws[2] = {OC, C};
    snprintf(n, sizeof n, "%s/weight", name);
    o->w = param(e, n, 2, ws, 1, 1, AES_INIT_UNIFORM, bound);
    if (bias) {
        snprintf(n, sizeof n, "%s/bias", name);
        o->b = param(e, n, 1, &OC, 1, 0, AES_INIT_UNIFORM, bound);
    }
    o->i[0] = T;
    o->i[1] = C;
    o->i[2] = OC;
    return out;
}

static int layernorm(aes_encoder *e, const char *name, int in, int T, int C)
{
    int out = act_new(e, (size_t)T * C);
    aes_op *o = op_new(e, OP_LN, in, out);
    char n[AES_MAX_NAME];
    snprintf(n, sizeof n, "%s/weight", name);
    o->w = param(e, n, 1, &C, 1, 0, AES_INIT_ONE, 0);
    snprintf(n, sizeof n, "%s/bias", name);
    o->b = param(e, n, 1, &C, 1, 0, AES_INIT_ZERO, 0);
    o->i[0] = T;
    o->i[1] = C;
    return out;
}

/* A pre-LN transformer block: x + attn(ln1(x)), then + mlp(ln2(.)). */
static int block(aes_encoder *e, const char *name, int x, int T, int C, int NH, int causal)
{
    char n[AES_MAX_NAME];
    snprintf(n, sizeof n, "%s/ln1", name);
    int h = layernorm(e, n, x, T, C);
    snprintf(n, sizeof n, "%s/attn/qkv", name);
    int qkv = linear(e, n, h, T, C, 3 * C, 1);
    int att = act_new(e, (size_t)T * C);
    aes_op *o = op_new(e, OP_ATTN, qkv, att);
    o->i[0] = T;
    o->i[1] = C;
    o->i[2] = NH;
    o->i[3] = causal;
    snprintf(n, sizeof n, "%s/attn/proj", name);
    int pr = linear(e, n, att, T, C, C, 1);
    int x1 = add(e, x, pr);
    snprintf(n, sizeof n, "%s/ln2", name);
    h = layernorm(e, n, x1, T, C);
    snprintf(n, sizeof n, "%s/mlp/fc", name);
    int f = linear(e, n, h, T, C, 4 * C, 1);
    int g = act_new(e, (size_t)T * 4 * C);
    op_new(e, OP_GELU, f, g);
    snprintf(n, sizeof n, "%s/mlp/proj", name);
    int p2 = linear(e, n, g, T, 4 * C, C, 1);
    return add(e, x1, p2);
}

void aes_resnet_build(aes_encoder *e, aes_params *P, const char *prefix, const aes_resnet_cfg *c)
{
    int layers[4];
    int bottleneck = 0;
    switch (c->depth) {
    case 18: memcpy(layers, (int[]){2, 2, 2, 2}, sizeof layers); break;
    case 34: memcpy(layers, (int[]){3, 4, 6, 3}, sizeof layers); break;
    case 50:
        memcpy(layers, (int[]){3, 4, 6, 3}, sizeof layers);
        bottleneck = 1;
        break;
    default: aes_internal_error("ResNet depth %d (18, 34 or 50)", c->depth);
    }
    begin(e, P, prefix);
    const int R = c->image_size;
    e->in_shape[0] = 3;
    e->in_shape[1] = e->in_shape[2] = R;
    e->input = act_new(e, (size_t)3 * R * R);
    int base = (int)lroundf(64 * c->width);
    if (base < 1) base = 1;
    int H, W_, H2, W2;
    int x = conv(e, "stem/conv", e->input, 3, R, R, base, 7, 2, 3, 0, &H, &W_);
    x = relu(e, bn(e, "stem/bn", x, base, H * W_));
    /* max pool 3x3, stride 2, padding 1 */
    H2 = (H + 2 - 3) / 2 + 1;
    W2 = (W_ + 2 - 3) / 2 + 1;
    int mp = act_new(e, (size_t)base * H2 * W2);
    aes_op *o = op_new(e, OP_MAXPOOL, x, mp);
    memcpy(o->i, (int[]){base, H, W_, 3, 2, 1}, 6 * sizeof(int));
    x = mp;
    H = H2;
    W_ = W2;
    int C = base;
    const int expansion = bottleneck ? 4 : 1;
    for (int s = 0; s < 4; s++) {
        int planes = (int)lroundf(64 * c->width * (float)(1 << s));
        if (planes < 1) planes = 1;
        for (int b = 0; b < layers[s]; b++) {
            int stride = (b == 0 && s > 0) ? 2 : 1;
            int OC = planes * expansion;
            char n[AES_MAX_NAME];
            int identity = x, y, Ho, Wo, t1, t2;
            if (!bottleneck) {
                snprintf(n, sizeof n, "stage%d/block%d/conv1", s + 1, b);
                y = conv(e, n, x, C, H, W_, planes, 3, stride, 1, 0, &Ho, &Wo);
                snprintf(n, sizeof n, "stage%d/block%d/bn1", s + 1, b);
                y = relu(e, bn(e, n, y, planes, Ho * Wo));
                snprintf(n, sizeof n, "stage%d/block%d/conv2", s + 1, b);
                y = conv(e, n, y, planes, Ho, Wo, planes, 3, 1, 1, 0, &t1, &t2);
                snprintf(n, sizeof n, "stage%d/block%d/bn2", s + 1, b);
                y = bn(e, n, y, planes, Ho * Wo);
            } else {
                /* torchvision's v1.5 bottleneck: the stride sits on the 3x3. */
                snprintf(n, sizeof n, "stage%d/block%d/conv1", s + 1, b);
                y = conv(e, n, x, C, H, W_, planes, 1, 1, 0, 0, &t1, &t2);
                snprintf(n, sizeof n, "stage%d/block%d/bn1", s + 1, b);
                y = relu(e, bn(e, n, y, planes, H * W_));
                snprintf(n, sizeof n, "stage%d/block%d/conv2", s + 1, b);
                y = conv(e, n, y, planes, H, W_, planes, 3, stride, 1, 0, &Ho, &Wo);
                snprintf(n, sizeof n, "stage%d/block%d/bn2", s + 1, b);
                y = relu(e, bn(e, n, y, planes, Ho * Wo));
                snprintf(n, sizeof n, "stage%d/block%d/conv3", s + 1, b);
                y = conv(e, n, y, planes, Ho, Wo, OC, 1, 1, 0, 0, &t1, &t2);
                snprintf(n, sizeof n, "stage%d/block%d/bn3", s + 1, b);
                y = bn(e, n, y, OC, Ho * Wo);
            }
            if (stride != 1 || C != OC) {
                snprintf(n, sizeof n, "stage%d/block%d/downsample/conv", s + 1, b);
                identity = conv(e, n, x, C, H, W_, OC, 1, stride, 0, 0, &t1, &t2);
                snprintf(n, sizeof n, "stage%d/block%d/downsample/bn", s + 1, b);
                identity = bn(e, n, identity, OC, Ho * Wo);
            }
            x = relu(e, add(e, y, identity));
            C = OC;
            H = Ho;
            W_ = Wo;
        }
    }
    int out = act_new(e, (size_t)C);
    o = op_new(e, OP_GAP, x, out);
    o->i[0] = C;
    o->i[1] = H * W_;
    e->output = out;
    e->out_width = C;
}

void aes_vit_build(aes_encoder *e, aes_params *P, const char *prefix, const aes_vit_cfg *c)
{
    if (c->patch < 1 || c->image_size % c->patch)
        aes_internal_error("ViT: image size %d is not a multiple of the patch %d", c->image_size, c->patch);
    if (c->width % c->heads) aes_internal_error("ViT: width %d does not divide into %d heads", c->width, c->heads);
    begin(e, P, prefix);
    const int R = c->image_size, C = c->width, G = R / c->patch, NP = G * G, T = NP + 1;
    e->in_shape[0] = 3;
    e->in_shape[1] = e->in_shape[2] = R;
    e->input = act_new(e, (size_t)3 * R * R);
    int H, W_;
    int x = conv(e, "patch_embed", e->input, 3, R, R, C, c->patch, c->patch, 0, 0, &H, &W_);
    int tok = act_new(e, (size_t)T * C);
    aes_op *o = op_new(e, OP_PATCH_TOKENS, x, tok);
    /* CLIP's scale for the class and position embeddings: width^-1/2 */
    float sc = 1.0f / sqrtf((float)C);
    int ts[2] = {T, C};
    o->w = param(e, "class_token", 1, &C, 1, 0, AES_INIT_NORMAL, sc);
    o->b = param(e, "position_embedding", 2, ts, 1, 0, AES_INIT_NORMAL, sc);
    o->i[0] = C;
    o->i[1] = NP;
    x = layernorm(e, "ln_pre", tok, T, C);
    for (int l = 0; l < c->depth; l++) {
        char n[AES_MAX_NAME];
        snprintf(n, sizeof n, "block%d", l);
        x = block(e, n, x, T, C, c->heads, 0);
    }
    int cls = act_new(e, (size_t)C);
    o = op_new(e, OP_SELECT0, x, cls);
    o->i[0] = T;
    o->i[1] = C;
    e->output = layernorm(e, "ln_post", cls, 1, C);
    e->out_width = C;
}

void aes_text_build(aes_encoder *e, aes_params *P, const char *prefix, const aes_text_cfg *c)
{
    if (c->width % c->heads) aes_internal_error("text: width %d does not divide into %d heads", c->width, c->heads);
    begin(e, P, prefix);
    const int T = c->context, C = c->width;
    e->input = act_new(e, 0); /* tokens come through e->tokens */
    int x = act_new(e, (size_t)T * C);
    aes_op *o = op_new(e, OP_EMBED, e->input, x);
    int ws[2] = {c->vocab, C}, ps[2] = {T, C};
    /* nn.Embedding's default N(0, 1); positions N(0, 0.01^2) as CLIP. */
    o->w = param(e, "token_embedding", 2, ws, 1, 0, AES_INIT_NORMAL, 1.0f);
    o->b = param(e, "position_embedding", 2, ps, 1, 0, AES_INIT_NORMAL, 0.01f);
    o->i[0] = T;
    o->i[1] = C;
    o->i[2] = c->vocab;
    for (int l = 0; l < c->depth; l++) {
        char n[AES_MAX_NAME];
        snprintf(n, sizeof n, "block%d", l);
        x = block(e, n, x, T, C, c->heads, 1);
    }
    /* Pool first, then the final layer norm: the same per-token result as
     * normalising every token, at 1/T of the cost. */
    int pooled = act_new(e, (size_t)C);
    o = op_new(e, OP_POOL_EOT, x, pooled);
    o->i[0] = T;
    o->i[1] = C;
    e->output = layernorm(e, "ln_final", pooled, 1, C);
    e->out_width = C;
}

void aes_mlp_build(aes_encoder *e, aes_params *P, const char *prefix, int C, int hidden, int OC)
{
    begin(e, P, prefix);
    e->input = act_new(e, (size_t)C);
    e->input_grad = 1;
    int h = linear(e, "fc1", e->input, 1, C, hidden, 1);
    int g = act_new(e, (size_t)hidden);
    op_new(e, OP_GELU, h, g);
    e->output = linear(e, "fc2", g, 1, hidden, OC, 1);
    e->out_width = OC;
}

void aes_fusion_transformer_build(aes_encoder *e, aes_params *P, const char *prefix, int Fv,
                                  int Ft, int Wd, int NH, int OC)
{
    if (Wd % NH) aes_internal_error("fusion: width %d does not divide into %d heads", Wd, NH);
    begin(e, P, prefix);
    e->input = act_new(e, (size_t)(Fv + Ft));
    e->input_grad = 1;
    int tok = act_new(e, (size_t)2 * Wd);
    aes_op *o = op_new(e, OP_TWO_TOKENS, e->input, tok);
    int s0[2] = {Wd, Fv}, s1[2] = {Wd, Ft};
    o->w = param(e, "image_token/weight", 2, s0, 1, 1, AES_INIT_UNIFORM, 1.0f / sqrtf((float)Fv));
    o->b = param(e, "image_token/bias", 1, &Wd, 1, 0, AES_INIT_UNIFORM, 1.0f / sqrtf((float)Fv));
    o->w2 = param(e, "text_token/weight", 2, s1, 1, 1, AES_INIT_UNIFORM, 1.0f / sqrtf((float)Ft));
    o->b2 = param(e, "text_token/bias", 1, &Wd, 1, 0, AES_INIT_UNIFORM, 1.0f / sqrtf((float)Ft));
    o->i[0] = Fv;
    o->i[1] = Ft;
    o->i[2] = Wd;
    int x = block(e, "block0", tok, 2, Wd, NH, 0);
    int first = act_new(e, (size_t)Wd);
    o = op_new(e, OP_SELECT0, x, first);
    o->i[0] = 2;
    o->i[1] = Wd;
    int n = layernorm(e, "ln", first, 1, Wd);
    e->output = linear(e, "out", n, 1, Wd, OC, 1);
    e->out_width = OC;
}

/* Floats (n1, n2) and indices (ni) an op keeps for backward at batch maxB. */
static void saved_sizes(const aes_encoder *e, const aes_op *o, int maxB, size_t *n1, size_t *n2,
                        size_t *ni)
{
    *n1 = *n2 = *ni = 0;
    switch (o->kind) {
    case OP_BN: *n1 = *n2 = (size_t)o->i[0]; break;                       /* mean, rstd */
    case OP_LN: *n1 = *n2 = (size_t)maxB * o->i[0]; break;                /* per row */
    case OP_MAXPOOL: *ni = e->acts[o->out].per_sample * (size_t)maxB; break; /* argmax */
    case OP_POOL_EOT: *ni = (size_t)maxB; break;                          /* eot positions */
    case OP_TWO_TOKENS:
        *n1 = (size_t)maxB * 2 * (o->i[0] + o->i[1]); /* the input parts and their gradients */
        *n2 = (size_t)maxB * 2 * o->i[2];             /* the two token rows */
        break;
    case OP_ATTN: *n1 = (size_t)maxB * o->i[2] * o->i[0] * o->i[0]; break; /* probabilities */
    default: break;
    }
}

void aes_encoder_alloc(aes_encoder *e, int maxB)
{
    e->maxB = maxB;
    for (int a = 0; a < e->n_acts; a++) {
        size_t n = e->acts[a].per_sample * (size_t)maxB;
        e->acts[a].x = aes_calloc(n ? n : 1, sizeof(float), "activation");
        e->acts[a].dx = aes_calloc(n ? n : 1, sizeof(float), "activation gradient");
    }
    size_t scratch = 1;
    const size_t threads = (size_t)omp_get_max_threads();
    for (int k = 0; k < e->n_ops; k++) {
        aes_op *o = &e->ops[k];
        size_t s = 0, n1, n2, ni;
        if (o->kind == OP_CONV)
            s = conv2d_scratch_floats(maxB, o->i[0], o->i[1], o->i[2], o->i[3], o->i[4], o->i[4],
                                      o->i[5], o->i[6]);
        if (o->kind == OP_ATTN) s = threads * attention_scratch_floats(o->i[0], o->i[1], o->i[2]);
        saved_sizes(e, o, maxB, &n1, &n2, &ni);
        if (n1) o->s1 = aes_calloc(n1, sizeof(float), "saved for backward");
        if (n2) o->s2 = aes_calloc(n2, sizeof(float), "saved for backward");
        if (ni) o->si = aes_calloc(ni, sizeof(int32_t), "saved indices");
        if (o->kind == OP_EMBED) e->tokens_T = o->i[0];
        if (s > scratch) scratch = s;
    }
    e->scratch_n = scratch;
    e->scratch = aes_calloc(scratch, sizeof(float), "scratch");
}

#ifdef AESNET_WITH_CUDA
void aes_encoder_to_device(aes_encoder *e)
{
    AES_CHECK(!e->device && e->P->d_data && e->maxB > 0);
    const int maxB = e->maxB;
    for (int a = 0; a < e->n_acts; a++) {
        const size_t n = e->acts[a].per_sample * (size_t)maxB * sizeof(float);
        free(e->acts[a].x);
        free(e->acts[a].dx);
        e->acts[a].x = aes_gpu_malloc(n, "activation");
        e->acts[a].dx = aes_gpu_malloc(n, "activation gradient");
    }
    size_t scratch = 1;
    for (int k = 0; k < e->n_ops; k++) {
        aes_op *o = &e->ops[k];
        size_t n1, n2, ni;
        saved_sizes(e, o, maxB, &n1, &n2, &ni);
        free(o->s1), free(o->s2), free(o->si);
        o->s1 = n1 ? aes_gpu_malloc(n1 * sizeof(float), "saved for backward") : NULL;
        o->s2 = n2 ? aes_gpu_malloc(n2 * sizeof(float), "saved for backward") : NULL;
        o->si = ni ? aes_gpu_malloc(ni * sizeof(int32_t), "saved indices") : NULL;
        if (o->kind == OP_ATTN) {
            size_t s = attention_scratch_floats_gpu(maxB, o->i[0], o->i[1], o->i[2]);
            if (s > scratch) scratch = s;
        }
    }
    free(e->scratch);
    e->scratch_n = scratch;
    e->scratch = aes_gpu_malloc(scratch * sizeof(float), "scratch");
    if (e->tokens_T)
        e->d_tokens = aes_gpu_malloc(sizeof(int32_t) * (size_t)maxB * e->tokens_T, "tokens");
    e->device = 1;
}
#endif

void aes_encoder_free(aes_encoder *e)
{
#ifdef AESNET_WITH_CUDA
    if (e->device) {
        for (int a = 0; a < e->n_acts; a++) {
            aes_gpu_free_mem(e->acts[a].x);
            aes_gpu_free_mem(e->acts[a].dx);
        }
        for (int k = 0; k < e->n_ops; k++) {
            aes_gpu_free_mem(e->ops[k].s1);
            aes_gpu_free_mem(e->ops[k].s2);
            aes_gpu_free_mem(e->ops[k].si);
        }
        aes_gpu_free_mem(e->scratch);
        aes_gpu_free_mem(e->d_tokens);
        free(e->acts);
        free(e->ops);
        memset(e, 0, sizeof *e);
        return;
    }
#endif
    for (int a = 0; a < e->n_acts; a++) {
        free(e->acts[a].x);
        free(e->acts[a].dx);
    }
    for (int k = 0; k < e->n_ops; k++) {
        free(e->ops[k].s1);
        free(e->ops[k].s2);
        free(e->ops[k].si);
    }
    free(e->acts);
    free(e->ops);
    free(e->scratch);
    memset(e, 0, sizeof *e);
}

double aes_encoder_flops(const aes_encoder *e)
{
    double f = 0;
    for (int k = 0; k < e->n_ops; k++) {
        const aes_op *o = &e->ops[k];
        switch (o->kind) {
        case OP_CONV: f += 2.0 * o->i[0] * o->i[4] * o->i[4] * o->i[3] * o->i[7] * o->i[8]; break;
        case OP_LINEAR: f += 2.0 * o->i[0] * o->i[1] * o->i[2]; break;
        case OP_TWO_TOKENS: f += 2.0 * (o->i[0] + o->i[1]) * o->i[2]; break;
        case OP_ATTN: f += 4.0 * o->i[0] * o->i[0] * o->i[1]; break;
        default: break;
        }
    }
    return f;
}
