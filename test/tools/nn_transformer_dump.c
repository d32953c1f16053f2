/*
 * nn_transformer_dump OUT.h5: runs every transformer layer (and a whole
 * pre-LN transformer block built from them, causal and not) on fixed
 * pseudo-random data and writes, per case, to group /<case>:
 *   in/<name>     inputs and weights (tokens as int32),
 *   dout/<name>   the upstream gradient of each output that has one,
 *   out/<name>    aesnet's outputs (and saved statistics),
 *   prior/<name>  what each gradient buffer held before backward,
 *   grad/<name>   each gradient buffer after backward (= prior + gradient,
 *                 the accumulate convention),
 *   cfg           int32 settings of the case (heads, causal, ...),
 *   scale, eps    float settings where the layer has them.
 * test/py/test_nn_transformer_torch.py rebuilds each case in torch.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "dump.h"

static hid_t F;
static char group[64];
static aes_rng rng;

static void put_f(const char *kind, const char *name, const float *x, const int *dims, int nd)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s/%s", group, kind, name);
    dump_f32(F, path, x, nd, dims);
}
#define NDIMS(...) ((int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))
#define PUT(kind, name, x, ...) put_f(kind, name, x, (int[]){__VA_ARGS__}, NDIMS(__VA_ARGS__))

static void put_cfg(const int32_t *cfg, int n)
{
    char path[160];
    snprintf(path, sizeof path, "%s/cfg", group);
    dump_i32(F, path, cfg, 1, &n);
}

static void put_scalar(const char *name, float v)
{
    char path[160];
    int one = 1;
    snprintf(path, sizeof path, "%s/%s", group, name);
    dump_f32(F, path, &v, 1, &one);
}

static float *uni(size_t n, float lo, float hi)
{
    float *x = aes_malloc(n * sizeof(float), "dump tensor");
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)aes_rng_uniform(&rng);
    return x;
}

static float *zeros(size_t n) { return aes_calloc(n ? n : 1, sizeof(float), "dump tensor"); }

/* A gradient buffer seeded with a small prior (dumped now), so the
 * comparison also checks that backward adds instead of overwriting. */
static float *grad_buf(const char *name, size_t n, const int *dims, int nd)
{
    float *g = uni(n, -0.05f, 0.05f);
    put_f("prior", name, g, dims, nd);
    return g;
}
#define GRAD(name, n, ...) grad_buf(name, n, (int[]){__VA_ARGS__}, NDIMS(__VA_ARGS__))

static void begin(const char *name) { snprintf(group, sizeof group, "%s", name); }

static void add_to(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---- single layers -------------------------------------------------------- */

static void case_linear(const char *name, int N, int C, int OC, int bias)
{
    begin(name);
    float *x = uni((size_t)N * C, -1, 1), *w = uni((size_t)OC * C, -0.5f, 0.5f);
    float *b = bias ? uni((size_t)OC, -1, 1) : NULL, *dy = uni((size_t)N * OC, -1, 1);
    PUT("in", "x", x, N, C);
    PUT("in", "w", w, OC, C);
    if (bias) PUT("in", "b", b, OC);
    PUT("dout", "y", dy, N, OC);
    float *y = zeros((size_t)N * OC);
    linear_forward(y, x, w, b, N, C, OC);
    PUT("out", "y", y, N, OC);
    float *dx = GRAD("x", (size_t)N * C, N, C), *dw = GRAD("w", (size_t)OC * C, OC, C);
    float *db = bias ? GRAD("b", (size_t)OC, OC) : NULL;
    linear_backward(dx, dw, db, dy, x, w, N, C, OC);
    PUT("grad", "x", dx, N, C);
    PUT("grad", "w", dw, OC, C);
    if (bias) PUT("grad", "b", db, OC);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db);
}

static void case_layernorm(void)
{
    const int N = 10, C = 48;
    const float eps = 1e-5f;
    begin("layernorm");
    float *x = uni((size_t)N * C, -2, 2);
    for (int i = 0; i < N; i++) /* rows far from zero mean too */
        for (int j = 0; j < C; j++) x[i * C + j] += (float)(3 * i - 12);
    float *w = uni(C, 0.5f, 1.5f), *b = uni(C, -1, 1), *dy = uni((size_t)N * C, -1, 1);
    PUT("in", "x", x, N, C);
    PUT("in", "w", w, C);
    PUT("in", "b", b, C);
    PUT("dout", "y", dy, N, C);
    put_scalar("eps", eps);
    float *y = zeros((size_t)N * C), *mean = zeros(N), *rstd = zeros(N);
    layernorm_forward(y, mean, rstd, x, w, b, N, C, eps);
    PUT("out", "y", y, N, C);
    PUT("out", "mean", mean, N);
    PUT("out", "rstd", rstd, N);
    float *dx = GRAD("x", (size_t)N * C, N, C), *dw = GRAD("w", C, C), *db = GRAD("b", C, C);
    layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
    PUT("grad", "x", dx, N, C);
    PUT("grad", "w", dw, C);
    PUT("grad", "b", db, C);
    free(x), free(w), free(b), free(dy), free(y), free(mean), free(rstd), free(dx), free(dw),
        free(db);
}

static void case_gelu(void)
{
    const int n = 2000;
    begin("gelu");
    float *x = uni(n, -8, 8), *dy = uni(n, -1, 1), *y = zeros(n);
    PUT("in", "x", x, n);
    PUT("dout", "y", dy, n);
    gelu_forward(y, x, n);
    PUT("out", "y", y, n);
    float *dx = GRAD("x", n, n);
    gelu_backward(dx, dy, x, n);
    PUT("grad", "x", dx, n);
    free(x), free(dy), free(y), free(dx);
}

static float *att_scratch(int T, int C, int NH)
{
    return zeros((size_t)omp_get_max_threads() * attention_scratch_floats(T, C, NH));
}

static void case_attention(const char *name, int B, int T, int C, int NH, int causal)
{
    begin(name);
    const size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = uni(nq, -2, 2), *dy = uni(no, -1, 1);
    PUT("in", "qkv", qkv, B, T, 3 * C);
    PUT("dout", "y", dy, B, T, C);
    const int32_t cfg[2] = {NH, causal};
    put_cfg(cfg, 2);
    float *y = zeros(no), *att = zeros((size_t)B * NH * T * T), *scratch = att_scratch(T, C, NH);
    attention_forward(y, att, qkv, B, T, C, NH, causal);
    PUT("out", "y", y, B, T, C);
    PUT("out", "att", att, B, NH, T, T);
    float *dq = GRAD("qkv", nq, B, T, 3 * C);
    attention_backward(dq, scratch, dy, qkv, att, B, T, C, NH, causal);
    PUT("grad", "qkv", dq, B, T, 3 * C);
    free(qkv), free(dy), free(y), free(att), free(scratch), free(dq);
}

static void case_embedding(void)
{
    const int B = 3, T = 7, C = 20, V = 11;
    begin("embedding");
    int32_t tok[3 * 7];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)aes_rng_below(&rng, 6); /* repeats */
    tok[0] = tok[1] = tok[2] = 10; /* the same token three times in a row */
    int dims[2] = {B, T};
    char path[160];
    snprintf(path, sizeof path, "%s/in/tokens", group);
    dump_i32(F, path, tok, 2, dims);
    float *wte = uni((size_t)V * C, -1, 1), *wpe = uni((size_t)T * C, -1, 1);
    float *dy = uni((size_t)B * T * C, -1, 1), *y = zeros((size_t)B * T * C);
    PUT("in", "wte", wte, V, C);
    PUT("in", "wpe", wpe, T, C);
    PUT("dout", "y", dy, B, T, C);
    embedding_forward(y, tok, wte, wpe, B, T, C, V);
    PUT("out", "y", y, B, T, C);
    float *dwte = GRAD("wte", (size_t)V * C, V, C), *dwpe = GRAD("wpe", (size_t)T * C, T, C);
    embedding_backward(dwte, dwpe, dy, tok, B, T, C, V);
    PUT("grad", "wte", dwte, V, C);
    PUT("grad", "wpe", dwpe, T, C);
    free(wte), free(wpe), free(dy), free(y), free(dwte), free(dwpe);
}

static void case_softmax(void)
{
    const int N = 9, C = 30;
    const float scale = 2.5f;
    begin("softmax");
    float *x = uni((size_t)N * C, -10, 10), *dy = uni((size_t)N * C, -1, 1);
    float *y = zeros((size_t)N * C);
    PUT("in", "x", x, N, C);
    PUT("dout", "y", dy, N, C);
    put_scalar("scale", scale);
    softmax_forward(y, x, N, C, scale);
    PUT("out", "y", y, N, C);
    float *dx = GRAD("x", (size_t)N * C, N, C);
    softmax_backward(dx, dy, y, N, C, scale);
    PUT("grad", "x", dx, N, C);
    free(x), free(dy), free(y), free(dx);
}

/* tiny: rows 0 and 1 hold zeros and 1e-14s (norm below eps). */
static void case_l2norm(const char *name, int N, int C, int tiny)
{
    begin(name);
    float *x = uni((size_t)N * C, -3, 3), *dy = uni((size_t)N * C, -1, 1);
    if (tiny)
        for (int j = 0; j < C; j++) x[j] = 0.0f, x[C + j] = (j % 2 ? 1e-14f : -1e-14f);
    float *y = zeros((size_t)N * C), *norm = zeros(N);
    PUT("in", "x", x, N, C);
    PUT("dout", "y", dy, N, C);
    l2norm_forward(y, norm, x, N, C);
    PUT("out", "y", y, N, C);
    PUT("out", "norm", norm, N);
    float *dx = GRAD("x", (size_t)N * C, N, C);
    l2norm_backward(dx, dy, y, norm, N, C);
    PUT("grad", "x", dx, N, C);
    free(x), free(dy), free(y), free(norm), free(dx);
}

/* ---- a pre-LN transformer block ---------------------------------------------
 * x1 = x + proj(attn(qkv(ln1(x)))),  y = x1 + fc2(gelu(fc1(ln2(x1)))). */

enum { P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_PRJW, P_PRJB, P_LN2W, P_LN2B, P_FC1W, P_FC1B, P_FC2W,
       P_FC2B, NPAR };
static const char *pname[NPAR] = {"ln1_w", "ln1_b", "qkv_w", "qkv_b", "proj_w", "proj_b",
                                  "ln2_w", "ln2_b", "fc_w",  "fc_b",  "fc2_w",  "fc2_b"};

static void case_block(const char *name, int B, int T, int C, int NH, int causal)
{
    begin(name);
    const int N = B * T, H = 4 * C;
    const size_t nc = (size_t)N * C;
    int shape[NPAR][2] = {{C, 0}, {C, 0}, {3 * C, C}, {3 * C, 0}, {C, C}, {C, 0},
                          {C, 0}, {C, 0}, {H, C},     {H, 0},     {C, H}, {C, 0}};
    float *p[NPAR], *g[NPAR];
    for (int k = 0; k < NPAR; k++) {
        const int nd = shape[k][1] ? 2 : 1;
        const size_t n = (size_t)shape[k][0] * (nd == 2 ? shape[k][1] : 1);
        const int is_ln_w = k == P_LN1W || k == P_LN2W;
        /* weights about 1/sqrt(fan-in) so activations stay of order one */
        const float a = is_ln_w ? 0.3f : (nd == 2 ? 1.5f / sqrtf((float)shape[k][1]) : 0.2f);
        p[k] = uni(n, (is_ln_w ? 1.0f : 0.0f) - a, (is_ln_w ? 1.0f : 0.0f) + a);
        put_f("in", pname[k], p[k], shape[k], nd);
        g[k] = grad_buf(pname[k], n, shape[k], nd);
    }
    const int32_t cfg[2] = {NH, causal};
    put_cfg(cfg, 2);
    const float eps = 1e-5f;
    put_scalar("eps", eps);
    float *x = uni(nc, -1.5f, 1.5f), *dy = uni(nc, -1, 1);
    PUT("in", "x", x, B, T, C);
    PUT("dout", "y", dy, B, T, C);

    /* forward, keeping every activation */
    float *h1 = zeros(nc), *m1 = zeros(N), *r1 = zeros(N), *qkv = zeros(nc * 3);
    float *att = zeros((size_t)B * NH * T * T), *a = zeros(nc), *x1 = zeros(nc);
    float *h2 = zeros(nc), *m2 = zeros(N), *r2 = zeros(N), *f = zeros((size_t)N * H);
    float *gl = zeros((size_t)N * H), *y = zeros(nc);
    layernorm_forward(h1, m1, r1, x, p[P_LN1W], p[P_LN1B], N, C, eps);
    linear_forward(qkv, h1, p[P_QKVW], p[P_QKVB], N, C, 3 * C);
    attention_forward(a, att, qkv, B, T, C, NH, causal);
    linear_forward(x1, a, p[P_PRJW], p[P_PRJB], N, C, C);
    add_to(x1, x, nc);
    layernorm_forward(h2, m2, r2, x1, p[P_LN2W], p[P_LN2B], N, C, eps);
    linear_forward(f, h2, p[P_FC1W], p[P_FC1B], N, C, H);
    gelu_forward(gl, f, (size_t)N * H);
    linear_forward(y, gl, p[P_FC2W], p[P_FC2B], N, H, C);
    add_to(y, x1, nc);
    PUT("out", "y", y, B, T, C);
    PUT("out", "att", att, B, NH, T, T);

    /* backward; activation gradients start at zero (they accumulate) */
    float *dx = GRAD("x", nc, B, T, C);
    float *dx1 = zeros(nc), *dgl = zeros((size_t)N * H), *df = zeros((size_t)N * H);
    float *dh2 = zeros(nc), *da = zeros(nc), *dqkv = zeros(nc * 3), *dh1 = zeros(nc);
    float *scratch = att_scratch(T, C, NH);
    add_to(dx1, dy, nc); /* residual */
    linear_backward(dgl, g[P_FC2W], g[P_FC2B], dy, gl, p[P_FC2W], N, H, C);
    gelu_backward(df, dgl, f, (size_t)N * H);
    linear_backward(dh2, g[P_FC1W], g[P_FC1B], df, h2, p[P_FC1W], N, C, H);
    layernorm_backward(dx1, g[P_LN2W], g[P_LN2B], dh2, x1, p[P_LN2W], m2, r2, N, C);
    add_to(dx, dx1, nc); /* residual */
    linear_backward(da, g[P_PRJW], g[P_PRJB], dx1, a, p[P_PRJW], N, C, C);
    attention_backward(dqkv, scratch, da, qkv, att, B, T, C, NH, causal);
    linear_backward(dh1, g[P_QKVW], g[P_QKVB], dqkv, h1, p[P_QKVW], N, C, 3 * C);
    layernorm_backward(dx, g[P_LN1W], g[P_LN1B], dh1, x, p[P_LN1W], m1, r1, N, C);
    PUT("grad", "x", dx, B, T, C);
    for (int k = 0; k < NPAR; k++) put_f("grad", pname[k], g[k], shape[k], shape[k][1] ? 2 : 1);

    for (int k = 0; k < NPAR; k++) free(p[k]), free(g[k]);
    free(x), free(dy), free(h1), free(m1), free(r1), free(qkv), free(att), free(a), free(x1);
    free(h2), free(m2), free(r2), free(f), free(gl), free(y), free(dx), free(dx1), free(dgl);
    free(df), free(dh2), free(da), free(dqkv), free(dh1), free(scratch);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: nn_transformer_dump OUT.h5\n");
        return 2;
    }
    aes_rng_init(&rng, aes_key(7, 0, 0, AES_RNG_INIT));
    F = dump_open(argv[1]);
    case_linear("linear_bias", 37, 50, 23, 1);
    case_linear("linear_nobias", 20, 16, 24, 0);
    case_linear("linear_big", 200, 520, 300, 1); /* blocked and threaded GEMMs */
    case_layernorm();
    case_gelu();
    case_attention("attention", 2, 17, 48, 4, 0);
    case_attention("attention_causal", 2, 13, 32, 2, 1);
    case_attention("attention_vit", 1, 197, 128, 2, 0);
    case_attention("attention_text", 3, 77, 64, 2, 1);
    case_embedding();
    case_softmax();
    case_l2norm("l2norm", 8, 33, 0);
    case_l2norm("l2norm_tiny", 3, 5, 1);
    case_block("block", 2, 9, 32, 4, 0);
    case_block("block_causal", 2, 7, 32, 4, 1);
    dump_close(F);
    return 0;
}
