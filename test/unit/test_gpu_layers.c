/*
 * Every GPU layer twin against its CPU reference (include/aesnet/gpu.h vs
 * nn.h): the same random inputs, the same pre-filled gradient buffers (so
 * the += convention is checked too), fp32 with TF32 off; per tensor
 * ||gpu - cpu|| / ||cpu|| <= 1e-4, and AdamW to 1e-6. Then whole
 * encoders (ResNet, ViT, text, both fusion modules) through the op
 * tape: the output and every parameter gradient; both losses, whole and
 * in row-block form; and the whole model (fusion, heads, reference). Exits 77 (skipped)
 * in a build without CUDA or on a machine without a GPU, as in CI.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/encoder.h"
#include "aesnet/gpu.h"
#include "aesnet/loss.h"
#include "aesnet/model.h"
#include "aesnet/tokenizer.h"
#include "aesnet/nn.h"
#include "aesnet/optim.h"
#include "check.h"

#ifndef AESNET_WITH_CUDA
int main(void)
{
    printf("skipped: built without CUDA\n");
    return 77;
}
#else

#define TOL 1e-4

static uint64_t g_seed = 1;

/* A host tensor with its device copy. */
typedef struct {
    float *h, *d;
    size_t n;
} ten;

static ten mk(size_t n, float scale)
{
    ten t = {aes_malloc(sizeof(float) * (n ? n : 1), "host"), aes_gpu_malloc(sizeof(float) * n, "dev"), n};
    aes_rng r;
    aes_rng_init(&r, g_seed++);
    for (size_t i = 0; i < n; i++) t.h[i] = scale * aes_rng_normal(&r);
    aes_gpu_upload(t.d, t.h, sizeof(float) * n);
    return t;
}

static void rm(ten *t)
{
    free(t->h);
    aes_gpu_free_mem(t->d);
}

/* The relative error of the device copy against the host one. */
static double err(const char *what, const ten *t)
{
    float *g = aes_malloc(sizeof(float) * (t->n ? t->n : 1), "download");
    aes_gpu_download(g, t->d, sizeof(float) * t->n);
    double dd = 0, nn = 0;
    for (size_t i = 0; i < t->n; i++) {
        double d = (double)g[i] - t->h[i];
        dd += d * d;
        nn += (double)t->h[i] * t->h[i];
    }
    free(g);
    double e = nn > 0 ? sqrt(dd / nn) : sqrt(dd);
    printf("  %-40s %.2e\n", what, e);
    return e;
}

#define EXPECT(what, t, tol) CHECK_MSG(err(what, &(t)) <= (tol), "%s", what)

static void test_linear(int N, int C, int OC)
{
    printf("linear N=%d C=%d OC=%d\n", N, C, OC);
    ten x = mk((size_t)N * C, 1), w = mk((size_t)OC * C, 0.2f), b = mk(OC, 1), y = mk((size_t)N * OC, 0);
    ten dy = mk((size_t)N * OC, 1), dx = mk((size_t)N * C, 1), dw = mk((size_t)OC * C, 1), db = mk(OC, 1);
    linear_forward(y.h, x.h, w.h, b.h, N, C, OC);
    linear_forward_gpu(y.d, x.d, w.d, b.d, N, C, OC);
    EXPECT("out", y, TOL);
    linear_backward(dx.h, dw.h, db.h, dy.h, x.h, w.h, N, C, OC);
    linear_backward_gpu(dx.d, dw.d, db.d, dy.d, x.d, w.d, N, C, OC);
    EXPECT("dinp", dx, TOL);
    EXPECT("dw", dw, TOL);
    EXPECT("db", db, TOL);
    rm(&x), rm(&w), rm(&b), rm(&y), rm(&dy), rm(&dx), rm(&dw), rm(&db);
}

static void test_conv(int N, int C, int H, int OC, int K, int stride, int pad, int bias)
{
    printf("conv2d N=%d C=%d H=W=%d OC=%d K=%d stride=%d pad=%d%s\n", N, C, H, OC, K, stride, pad,
           bias ? " bias" : "");
    const int OH = (H + 2 * pad - K) / stride + 1;
    ten x = mk((size_t)N * C * H * H, 1), w = mk((size_t)OC * C * K * K, 0.1f), b = mk(OC, 1);
    ten y = mk((size_t)N * OC * OH * OH, 0), dy = mk((size_t)N * OC * OH * OH, 1);
    ten dx = mk((size_t)N * C * H * H, 1), dw = mk((size_t)OC * C * K * K, 1), db = mk(OC, 1);
    float *col = aes_malloc(sizeof(float) * (conv2d_scratch_floats(N, C, H, H, OC, K, K, stride, pad) + 1), "col");
    conv2d_forward(y.h, col, x.h, w.h, bias ? b.h : NULL, N, C, H, H, OC, K, K, stride, pad);
    conv2d_forward_gpu(y.d, x.d, w.d, bias ? b.d : NULL, N, C, H, H, OC, K, K, stride, pad);
    EXPECT("out", y, TOL);
    conv2d_backward(dx.h, dw.h, bias ? db.h : NULL, col, dy.h, x.h, w.h, N, C, H, H, OC, K, K, stride, pad);
    conv2d_backward_gpu(dx.d, dw.d, bias ? db.d : NULL, dy.d, x.d, w.d, N, C, H, H, OC, K, K, stride, pad);
    EXPECT("dinp", dx, TOL);
    EXPECT("dw", dw, TOL);
    if (bias) EXPECT("db", db, TOL);
    free(col);
    rm(&x), rm(&w), rm(&b), rm(&y), rm(&dy), rm(&dx), rm(&dw), rm(&db);
}

/* A reduction hook standing for two ranks that hold the same batch. */
static void twice(double *buf, int n, void *ctx)
{
    (void)ctx;
    for (int i = 0; i < n; i++) buf[i] *= 2;
}

static void test_batchnorm(int N, int C, int HW, int train, int hook)
{
    printf("batchnorm N=%d C=%d HW=%d %s%s\n", N, C, HW, train ? "train" : "eval",
           hook ? ", reduction hook" : "");
    const size_t n = (size_t)N * C * HW;
    ten x = mk(n, 2), y = mk(n, 0), g = mk(C, 1), be = mk(C, 1), rmn = mk(C, 0.5f), rv = mk(C, 0);
    for (int c = 0; c < C; c++) rv.h[c] = 0.5f + 0.1f * c;
    aes_gpu_upload(rv.d, rv.h, sizeof(float) * C);
    for (size_t i = 0; i < n; i++) x.h[i] += 3.0f; /* a mean far from 0 */
    aes_gpu_upload(x.d, x.h, sizeof(float) * n);
    ten mean = mk(C, 0), rstd = mk(C, 0), dy = mk(n, 1), dx = mk(n, 1), dg = mk(C, 1), db = mk(C, 1);
    aes_reducer red = {twice, NULL};
    const aes_reducer *r = hook ? &red : NULL;
    batchnorm_forward(y.h, mean.h, rstd.h, x.h, g.h, be.h, rmn.h, rv.h, N, C, HW, train, 0.1f, 1e-5f, r);
    batchnorm_forward_gpu(y.d, mean.d, rstd.d, x.d, g.d, be.d, rmn.d, rv.d, N, C, HW, train, 0.1f,
                          1e-5f, r);
    EXPECT("out", y, TOL);
    EXPECT("mean", mean, TOL);
    EXPECT("rstd", rstd, TOL);
    EXPECT("running mean", rmn, TOL);
    EXPECT("running var", rv, TOL);
    if (train) {
        batchnorm_backward(dx.h, dg.h, db.h, dy.h, x.h, mean.h, rstd.h, g.h, N, C, HW, r);
        batchnorm_backward_gpu(dx.d, dg.d, db.d, dy.d, x.d, mean.d, rstd.d, g.d, N, C, HW, r);
        EXPECT("dinp", dx, TOL);
        EXPECT("dgamma", dg, TOL);
        EXPECT("dbeta", db, TOL);
    }
    rm(&x), rm(&y), rm(&g), rm(&be), rm(&rmn), rm(&rv), rm(&mean), rm(&rstd), rm(&dy), rm(&dx);
    rm(&dg), rm(&db);
}

static void test_elementwise(void)
{
    printf("relu, gelu, add\n");
    const size_t n = 10007;
    ten x = mk(n, 2), y = mk(n, 0), dy = mk(n, 1), dx = mk(n, 1);
    relu_forward(y.h, x.h, n);
    relu_forward_gpu(y.d, x.d, n);
    EXPECT("relu out", y, TOL);
    relu_backward(dx.h, dy.h, y.h, n);
    relu_backward_gpu(dx.d, dy.d, y.d, n);
    EXPECT("relu dinp", dx, TOL);
    gelu_forward(y.h, x.h, n);
    gelu_forward_gpu(y.d, x.d, n);
    EXPECT("gelu out", y, TOL);
    gelu_backward(dx.h, dy.h, x.h, n);
    gelu_backward_gpu(dx.d, dy.d, x.d, n);
    EXPECT("gelu dinp", dx, TOL);
    add_inplace(y.h, x.h, n);
    add_inplace_gpu(y.d, x.d, n);
    EXPECT("add", y, TOL);
    rm(&x), rm(&y), rm(&dy), rm(&dx);
}

static void test_pool(int N, int C, int H)
{
    printf("maxpool 3x3/2 pad 1 and global average pool N=%d C=%d H=W=%d\n", N, C, H);
    const int OH = (H + 2 - 3) / 2 + 1;
    ten x = mk((size_t)N * C * H * H, 1), y = mk((size_t)N * C * OH * OH, 0);
    ten dy = mk((size_t)N * C * OH * OH, 1), dx = mk((size_t)N * C * H * H, 1);
    int32_t *am = aes_malloc(sizeof(int32_t) * N * C * OH * OH, "argmax");
    int32_t *amd = aes_gpu_malloc(sizeof(int32_t) * N * C * OH * OH, "argmax");
    maxpool2d_forward(y.h, am, x.h, N, C, H, H, 3, 2, 1);
    maxpool2d_forward_gpu(y.d, amd, x.d, N, C, H, H, 3, 2, 1);
    EXPECT("maxpool out", y, TOL);
    maxpool2d_backward(dx.h, dy.h, am, N, C, H, H, 3, 2, 1);
    maxpool2d_backward_gpu(dx.d, dy.d, amd, N, C, H, H, 3, 2, 1);
    EXPECT("maxpool dinp", dx, TOL);
    ten g = mk((size_t)N * C, 0), dg = mk((size_t)N * C, 1);
    gap_forward(g.h, x.h, N, C, H * H);
    gap_forward_gpu(g.d, x.d, N, C, H * H);
    EXPECT("gap out", g, TOL);
    gap_backward(dx.h, dg.h, N, C, H * H);
    gap_backward_gpu(dx.d, dg.d, N, C, H * H);
    EXPECT("gap dinp", dx, TOL);
    free(am);
    aes_gpu_free_mem(amd);
    rm(&x), rm(&y), rm(&dy), rm(&dx), rm(&g), rm(&dg);
}

static void test_rows(int N, int C)
{
    printf("layer norm, softmax, L2 norm N=%d C=%d\n", N, C);
    const size_t n = (size_t)N * C;
    ten x = mk(n, 1), y = mk(n, 0), w = mk(C, 1), b = mk(C, 1), mean = mk(N, 0), rstd = mk(N, 0);
    ten dy = mk(n, 1), dx = mk(n, 1), dw = mk(C, 1), db = mk(C, 1);
    for (size_t i = 0; i < n; i++) x.h[i] += 5.0f;
    aes_gpu_upload(x.d, x.h, sizeof(float) * n);
    layernorm_forward(y.h, mean.h, rstd.h, x.h, w.h, b.h, N, C, 1e-5f);
    layernorm_forward_gpu(y.d, mean.d, rstd.d, x.d, w.d, b.d, N, C, 1e-5f);
    EXPECT("layernorm out", y, TOL);
    EXPECT("layernorm rstd", rstd, TOL);
    layernorm_backward(dx.h, dw.h, db.h, dy.h, x.h, w.h, mean.h, rstd.h, N, C);
    layernorm_backward_gpu(dx.d, dw.d, db.d, dy.d, x.d, w.d, mean.d, rstd.d, N, C);
    EXPECT("layernorm dinp", dx, TOL);
    EXPECT("layernorm dw", dw, TOL);
    EXPECT("layernorm db", db, TOL);
    softmax_forward(y.h, x.h, N, C, 0.7f);
    softmax_forward_gpu(y.d, x.d, N, C, 0.7f);
    EXPECT("softmax out", y, TOL);
    softmax_backward(dx.h, dy.h, y.h, N, C, 0.7f);
    softmax_backward_gpu(dx.d, dy.d, y.d, N, C, 0.7f);
    EXPECT("softmax dinp", dx, TOL);
    l2norm_forward(y.h, mean.h, x.h, N, C);
    l2norm_forward_gpu(y.d, mean.d, x.d, N, C);
    EXPECT("l2norm out", y, TOL);
    EXPECT("l2norm norm", mean, TOL);
    l2norm_backward(dx.h, dy.h, y.h, mean.h, N, C);
    l2norm_backward_gpu(dx.d, dy.d, y.d, mean.d, N, C);
    EXPECT("l2norm dinp", dx, TOL);
    rm(&x), rm(&y), rm(&w), rm(&b), rm(&mean), rm(&rstd), rm(&dy), rm(&dx), rm(&dw), rm(&db);
}

static void test_attention(int B, int T, int C, int NH, int causal)
{
    printf("attention B=%d T=%d C=%d NH=%d %s\n", B, T, C, NH, causal ? "causal" : "full");
    ten qkv = mk((size_t)B * T * 3 * C, 1), y = mk((size_t)B * T * C, 0);
    ten att = mk((size_t)B * NH * T * T, 0), dy = mk((size_t)B * T * C, 1);
    ten dqkv = mk((size_t)B * T * 3 * C, 1);
    float *scr = aes_malloc(sizeof(float) * attention_scratch_floats(T, C, NH) * omp_get_max_threads(), "scratch");
    float *sd = aes_gpu_malloc(sizeof(float) * attention_scratch_floats_gpu(B, T, C, NH), "scratch");
    attention_forward(y.h, att.h, qkv.h, B, T, C, NH, causal);
    attention_forward_gpu(y.d, att.d, sd, qkv.d, B, T, C, NH, causal);
    EXPECT("out", y, TOL);
    EXPECT("probabilities", att, TOL);
    attention_backward(dqkv.h, scr, dy.h, qkv.h, att.h, B, T, C, NH, causal);
    attention_backward_gpu(dqkv.d, sd, dy.d, qkv.d, att.d, B, T, C, NH, causal);
    EXPECT("dqkv", dqkv, TOL);
    free(scr);
    aes_gpu_free_mem(sd);
    rm(&qkv), rm(&y), rm(&att), rm(&dy), rm(&dqkv);
}

static void test_embedding(int B, int T, int C, int V)
{
    printf("embedding B=%d T=%d C=%d V=%d\n", B, T, C, V);
    int32_t *tok = aes_malloc(sizeof(int32_t) * B * T, "tokens");
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7919) % V % (V / 4 + 1); /* repeats */
    int32_t *tokd = aes_gpu_malloc(sizeof(int32_t) * B * T, "tokens");
    aes_gpu_upload(tokd, tok, sizeof(int32_t) * B * T);
    ten wte = mk((size_t)V * C, 1), wpe = mk((size_t)T * C, 1), y = mk((size_t)B * T * C, 0);
    ten dy = mk((size_t)B * T * C, 1), dwte = mk((size_t)V * C, 1), dwpe = mk((size_t)T * C, 1);
    embedding_forward(y.h, tok, wte.h, wpe.h, B, T, C, V);
    embedding_forward_gpu(y.d, tokd, wte.d, wpe.d, B, T, C, V);
    EXPECT("out", y, TOL);
    embedding_backward(dwte.h, dwpe.h, dy.h, tok, B, T, C, V);
    embedding_backward_gpu(dwte.d, dwpe.d, dy.d, tokd, B, T, C, V);
    EXPECT("dwte", dwte, TOL);
    EXPECT("dwpe", dwpe, TOL);
    free(tok);
    aes_gpu_free_mem(tokd);
    rm(&wte), rm(&wpe), rm(&y), rm(&dy), rm(&dwte), rm(&dwpe);
}

static void test_adamw(void)
{
    printf("AdamW, 3 steps, decay on and off\n");
    const size_t n = 4099;
    ten p = mk(n, 1), g = mk(n, 0.1f), m = mk(n, 0), v = mk(n, 0);
    const aes_adamw cfg = {0.9f, 0.98f, 1e-6f, 0.1f};
    for (int t = 1; t <= 3; t++) {
        aes_adamw_step(p.h, g.h, m.h, v.h, n, 1e-3f, &cfg, t != 2, t);
        aes_adamw_step_gpu(p.d, g.d, m.d, v.d, n, 1e-3f, &cfg, t != 2, t);
    }
    EXPECT("params", p, 1e-6);
    EXPECT("first moments", m, 1e-6);
    EXPECT("second moments", v, 1e-6);
    /* Steered from the device: the clip factor of aes_clip_factor from the
     * squared norm, then a step with it; a non-finite loss skips. */
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g.h[i] * g.h[i];
    double *dss = aes_gpu_malloc(sizeof(double), "sumsq");
    float *ctrl = aes_gpu_malloc(2 * sizeof(float), "ctrl"), hc[2];
    aes_gpu_upload(dss, &ss, sizeof ss);
    aes_step_control_gpu(ctrl, dss, 1.0, 0.5f);
    aes_gpu_download(hc, ctrl, sizeof hc);
    CHECK_MSG(hc[0] == aes_clip_factor(sqrt(ss), 0.5f) && hc[1] == 1.0f, "control %g %g", hc[0], hc[1]);
    aes_scale(g.h, n, hc[0]);
    aes_adamw_step(p.h, g.h, m.h, v.h, n, 1e-3f, &cfg, 1, 4);
    aes_adamw_step_gpu_ctrl(p.d, g.d, m.d, v.d, n, 1e-3f, &cfg, 1, 4, ctrl);
    EXPECT("params, clipped on the device", p, 1e-6);
    EXPECT("second moments, clipped on the device", v, 1e-6);
    aes_step_control_gpu(ctrl, dss, NAN, 0.5f);
    aes_gpu_download(hc, ctrl, sizeof hc);
    CHECK(hc[1] == 0.0f);
    aes_adamw_step_gpu_ctrl(p.d, g.d, m.d, v.d, n, 1e-3f, &cfg, 1, 5, ctrl);
    EXPECT("params unchanged by a skipped step", p, 1e-6); /* a step would move them ~1e-3 */
    aes_gpu_free_mem(dss);
    aes_gpu_free_mem(ctrl);
    rm(&p), rm(&g), rm(&m), rm(&v);
}

/* Unit rows, as the embeddings the losses see. */
static void unit_rows(ten *t, int n, int D)
{
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int k = 0; k < D; k++) ss += (double)t->h[i * D + k] * t->h[i * D + k];
        for (int k = 0; k < D; k++) t->h[i * D + k] /= (float)sqrt(ss);
    }
    aes_gpu_upload(t->d, t->h, sizeof(float) * t->n);
}

/* Both losses in row-block form (rows row0 .. row0 + B of Bg): a masked
 * attribute row, one attribute without rows, repeated descriptions. */
static void test_losses(int dup, int B, int row0)
{
    const int A = 3, D = 24, Bg = 20, F = 16, Fr = 12;
    printf("losses: MAC (duplicates %s), SA kl and mse; rows %d..%d of %d\n",
           dup ? "positive" : "negative", row0, row0 + B - 1, Bg);
    ten x = mk((size_t)A * Bg * D, 1), y = mk((size_t)A * Bg * D, 1);
    unit_rows(&x, A * Bg, D);
    unit_rows(&y, A * Bg, D);
    uint8_t mask[3 * 20];
    uint64_t hash[3 * 20];
    for (int a = 0; a < A; a++)
        for (int j = 0; j < Bg; j++) {
            mask[a * Bg + j] = a == 2 ? 0 : (j * 7 + a) % 5 != 0;
            hash[a * Bg + j] = aes_hash64((uint64_t)(j % 7) + 100 * a); /* groups of repeats */
        }
    uint8_t *dmask = aes_gpu_malloc(sizeof mask, "mask");
    uint64_t *dhash = aes_gpu_malloc(sizeof hash, "hash");
    aes_gpu_upload(dmask, mask, sizeof mask);
    aes_gpu_upload(dhash, hash, sizeof hash);
    ten ls = mk(A, 0);
    const float lsv[3] = {2.3f, 1.2f, 3.0f}, w[3] = {1.0f, 0.5f, 2.0f};
    memcpy(ls.h, lsv, sizeof lsv);
    aes_gpu_upload(ls.d, ls.h, sizeof lsv);
    aes_mac_args ma = {.A = A, .D = D, .Bg = Bg, .B = B, .row0 = row0, .x = x.h, .y = y.h,
                       .mask = mask, .hash = hash, .logscale = ls.h, .weights = w,
                       .duplicates_positive = dup};
    ten dx = mk((size_t)A * Bg * D, 0), dy = mk((size_t)A * Bg * D, 0), dls = mk(A, 0);
    ten la = mk(A + 1, 0); /* loss_a, then the total */
    float *scr = aes_malloc(sizeof(float) * aes_mac_scratch_floats(B, Bg), "scratch");
    double loss_a[3];
    const double total = aes_mac_loss(&ma, scr, loss_a, dx.h, dy.h, dls.h);
    for (int a = 0; a < A; a++) la.h[a] = (float)loss_a[a];
    la.h[A] = (float)total;
    float *sd = aes_gpu_malloc(sizeof(float) * aes_mac_scratch_floats_gpu(B, Bg, A), "scratch");
    double *dout = aes_gpu_malloc(sizeof(double) * (A + 1), "losses");
    aes_mac_args mg = ma;
    mg.x = x.d, mg.y = y.d, mg.mask = dmask, mg.hash = dhash, mg.logscale = ls.d;
    aes_mac_loss_gpu(&mg, sd, dout, dx.d, dy.d, dls.d);
    double hout[4];
    aes_gpu_download(hout, dout, sizeof(double) * (A + 1));
    float lf[4];
    for (int k = 0; k <= A; k++) lf[k] = (float)hout[k];
    aes_gpu_upload(la.d, lf, sizeof lf);
    EXPECT("MAC loss_a and share", la, 1e-5);
    EXPECT("MAC dx", dx, TOL);
    EXPECT("MAC dy", dy, TOL);
    EXPECT("MAC dlogscale", dls, TOL);
    free(scr);
    aes_gpu_free_mem(sd);

    ten v = mk((size_t)Bg * F, 1), ref = mk((size_t)Bg * Fr, 1), dv = mk((size_t)Bg * F, 0), sl = mk(1, 0);
    for (int kind = 0; kind < 2; kind++) {
        aes_sa_args sa = {.Bg = Bg, .B = B, .row0 = row0, .F = F, .Fr = Fr, .v = v.h, .ref = ref.h,
                          .tau = 0.1f, .kind = kind ? AES_AFFINITY_MSE : AES_AFFINITY_KL};
        float *sc = aes_malloc(sizeof(float) * aes_sa_scratch_floats(B, Bg, F, Fr), "scratch");
        sl.h[0] = (float)aes_sa_loss(&sa, sc, dv.h);
        float *sg = aes_gpu_malloc(sizeof(float) * aes_sa_scratch_floats_gpu(B, Bg, F, Fr), "scratch");
        aes_sa_args sb = sa;
        sb.v = v.d, sb.ref = ref.d;
        aes_sa_loss_gpu(&sb, sg, dout, dv.d);
        aes_gpu_download(hout, dout, sizeof(double));
        lf[0] = (float)hout[0];
        aes_gpu_upload(sl.d, lf, sizeof(float));
        EXPECT(kind ? "SA mse loss share" : "SA kl loss share", sl, 1e-5);
        EXPECT(kind ? "SA mse dv" : "SA kl dv", dv, TOL);
        free(sc);
        aes_gpu_free_mem(sg);
    }
    aes_gpu_free_mem(dout);
    aes_gpu_free_mem(dmask);
    aes_gpu_free_mem(dhash);
    rm(&x), rm(&y), rm(&ls), rm(&dx), rm(&dy), rm(&dls), rm(&la), rm(&v), rm(&ref), rm(&dv), rm(&sl);
}

/* A whole encoder: one copy on the CPU, one on the GPU from the same
 * initialisation; forward and backward on the same batch; the output and
 * every parameter gradient compared. kind: 0 ResNet, 1 ViT, 2 text,
 * 3 MLP fusion, 4 transformer fusion. */
static void test_encoder(int kind, int B)
{
    static const char *names[] = {"ResNet-18 (width 1/4, 32 px)", "ViT (patch 8, width 64, depth 2, 32 px)",
                                  "text transformer (width 64, depth 2, context 16)", "MLP fusion",
                                  "transformer fusion"};
    printf("encoder: %s, B=%d, forward and backward\n", names[kind], B);
    aes_params P[2];
    aes_encoder e[2];
    aes_resnet_cfg rc = {.depth = 18, .width = 0.25f, .image_size = 32};
    aes_vit_cfg vc = {.image_size = 32, .patch = 8, .width = 64, .depth = 2, .heads = 4};
    aes_text_cfg tc = {.vocab = 300, .context = 16, .width = 64, .depth = 2, .heads = 4};
    for (int d = 0; d < 2; d++) {
        aes_params_init_table(&P[d]);
        switch (kind) {
        case 0: aes_resnet_build(&e[d], &P[d], "image/", &rc); break;
        case 1: aes_vit_build(&e[d], &P[d], "image/", &vc); break;
        case 2: aes_text_build(&e[d], &P[d], "text/", &tc); break;
        case 3: aes_mlp_build(&e[d], &P[d], "fusion/", 48, 96, 32); break;
        default: aes_fusion_transformer_build(&e[d], &P[d], "fusion/", 40, 24, 32, 4, 40); break;
        }
        aes_params_alloc(&P[d]);
        aes_params_initialize(&P[d], 77);
        aes_encoder_alloc(&e[d], B);
        e[d].train = 1;
    }
    aes_params_to_device(&P[1]);
    aes_encoder_to_device(&e[1]);
    const size_t nin = e[0].acts[e[0].input].per_sample * (size_t)B;
    ten x = mk(kind == 2 ? 1 : nin, 1);
    int32_t *tok = NULL;
    if (kind == 2) { /* descriptions of various lengths, one without <eot> */
        tok = aes_malloc(sizeof(int32_t) * B * tc.context, "tokens");
        for (int b = 0; b < B; b++)
            for (int t = 0; t < tc.context; t++) {
                const int len = 3 + (b * 5) % (tc.context - 2);
                tok[b * tc.context + t] = t < len ? 256 + (b * 31 + t * 7) % 44 : t == len && b != 1 ? AES_TOK_EOT : 0;
            }
        e[0].tokens = e[1].tokens = tok;
    }
    const int OW = e[0].out_width;
    ten y = mk((size_t)B * OW, 0), dy = mk((size_t)B * OW, 1);
    memcpy(y.h, aes_encoder_forward(&e[0], kind == 2 ? NULL : x.h, B), sizeof(float) * B * OW);
    aes_gpu_copy(y.d, aes_encoder_forward(&e[1], kind == 2 ? NULL : x.h, B), sizeof(float) * B * OW);
    EXPECT("output", y, TOL);
    aes_params_zero_grad(&P[0]);
    aes_encoder_backward(&e[0], dy.h, B);
    aes_encoder_backward(&e[1], dy.d, B);
    aes_params_download_grad(&P[1]);
    double worst = 0;
    const char *worst_name = "";
    for (int k = 0; k < P[0].n; k++) {
        const aes_tensor *t = &P[0].t[k];
        if (!t->trainable) continue;
        const float *a = P[0].grad + t->offset, *b = P[1].grad + t->offset;
        double dd = 0, nn = 0;
        for (size_t i = 0; i < t->numel; i++) {
            dd += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
            nn += (double)a[i] * a[i];
        }
        const double r = nn > 0 ? sqrt(dd / nn) : sqrt(dd);
        if (r > worst) worst = r, worst_name = t->name;
    }
    printf("  %-40s %.2e (%s)\n", "worst parameter gradient", worst, worst_name);
    CHECK_MSG(worst <= TOL, "%s: %s", names[kind], worst_name);
    /* Batch norm's running statistics moved the same way. */
    aes_params_download(&P[1]);
    double rd = 0, rn = 0;
    for (size_t i = P[0].n_trainable; i < P[0].n_total; i++) {
        rd += ((double)P[0].data[i] - P[1].data[i]) * ((double)P[0].data[i] - P[1].data[i]);
        rn += (double)P[0].data[i] * P[0].data[i];
    }
    CHECK_MSG(rn == 0 || sqrt(rd / rn) <= TOL, "%s: running statistics", names[kind]);
    free(tok);
    rm(&x), rm(&y), rm(&dy);
    for (int d = 0; d < 2; d++) {
        aes_encoder_free(&e[d]);
        aes_params_free(&P[d]);
    }
}

/* The whole model (encoders, fusion, heads, frozen reference) on a batch
 * with an attribute missing for one image: x, y, v, vref and every
 * parameter gradient, GPU against CPU. */
static void test_model(aes_fusion_kind fusion, aes_image_kind image)
{
    enum { A = 3, B = 5, L = 10, R = 32 };
    printf("model: %s image encoder, %s fusion, frozen reference; B=%d\n",
           image == AES_IMAGE_VIT ? "ViT" : "ResNet",
           fusion == AES_FUSION_MLP ? "MLP" : fusion == AES_FUSION_TRANSFORMER ? "transformer" : "no",
           B);
    aes_model_cfg c = {0};
    c.image = image;
    c.resnet = (aes_resnet_cfg){.depth = 18, .width = 0.125f, .image_size = R};
    c.vit = (aes_vit_cfg){.image_size = R, .patch = 8, .width = 32, .depth = 1, .heads = 2};
    c.text = (aes_text_cfg){.vocab = 280, .context = L, .width = 16, .depth = 1, .heads = 2};
    c.A = A;
    c.attr_names[0] = "color", c.attr_names[1] = "light", c.attr_names[2] = "focus";
    c.D = 8, c.fusion = fusion, c.fusion_hidden = 16, c.fusion_heads = 2;
    c.learn_scale = 1, c.init_scale = 1 / 0.07f, c.seed = 3, c.frozen_reference = 1;
    aes_model m[2];
    for (int d = 0; d < 2; d++) aes_model_build(&m[d], &c, B);
    aes_model_to_device(&m[1]);
    ten img = mk((size_t)B * 3 * R * R, 1);
    int32_t tok[A * B * L];
    uint8_t mask[A * B];
    int64_t rows[B];
    for (int a = 0; a < A; a++)
        for (int i = 0; i < B; i++) {
            int32_t *t = tok + ((size_t)a * B + i) * L;
            memset(t, 0, sizeof(int32_t) * L);
            mask[a * B + i] = (uint8_t)!(a == 1 && i == 2);
            if (!mask[a * B + i]) continue;
            t[0] = AES_TOK_SOT;
            for (int j = 1; j < 6; j++) t[j] = 3 + (a * 37 + i * 11 + j * 5) % 270;
            t[6] = AES_TOK_EOT;
        }
    for (int i = 0; i < B; i++) rows[i] = 50 + i;
    for (int d = 0; d < 2; d++) aes_model_forward(&m[d], img.h, tok, mask, rows, 4, B);
    const size_t nx = (size_t)A * B * c.D, nv = (size_t)B * m[0].Fv;
    ten x = mk(nx, 0), y = mk(nx, 0), v = mk(nv, 0), vr = mk(nv, 0);
    memcpy(x.h, m[0].x, sizeof(float) * nx), aes_gpu_copy(x.d, m[1].x, sizeof(float) * nx);
    memcpy(y.h, m[0].y, sizeof(float) * nx), aes_gpu_copy(y.d, m[1].y, sizeof(float) * nx);
    memcpy(v.h, m[0].v, sizeof(float) * nv), aes_gpu_copy(v.d, m[1].v, sizeof(float) * nv);
    memcpy(vr.h, m[0].vref, sizeof(float) * nv), aes_gpu_copy(vr.d, m[1].vref, sizeof(float) * nv);
    EXPECT("x", x, TOL);
    EXPECT("y", y, TOL);
    EXPECT("v", v, TOL);
    EXPECT("reference features", vr, TOL);
    ten dx = mk(nx, 1), dy = mk(nx, 1), dv = mk(nv, 1), dls = mk(A, 1);
    aes_params_zero_grad(&m[0].P);
    aes_model_backward(&m[0], dx.h, dy.h, dv.h, dls.h);
    aes_model_backward(&m[1], dx.d, dy.d, dv.d, dls.d);
    aes_params_download_grad(&m[1].P);
    double worst = 0;
    const char *wn = "";
    for (int k = 0; k < m[0].P.n; k++) {
        const aes_tensor *t = &m[0].P.t[k];
        if (!t->trainable) continue;
        double dd = 0, nn = 0;
        for (size_t i = 0; i < t->numel; i++) {
            const double a = m[0].P.grad[t->offset + i], b = m[1].P.grad[t->offset + i];
            dd += (a - b) * (a - b), nn += a * a;
        }
        const double r = nn > 0 ? sqrt(dd / nn) : sqrt(dd);
        if (r > worst) worst = r, wn = t->name;
    }
    printf("  %-40s %.2e (%s)\n", "worst parameter gradient", worst, wn);
    CHECK_MSG(worst <= TOL, "model gradients: %s", wn);
    rm(&img), rm(&x), rm(&y), rm(&v), rm(&vr), rm(&dx), rm(&dy), rm(&dv), rm(&dls);
    for (int d = 0; d < 2; d++) aes_model_free(&m[d]);
}

int main(void)
{
    char why[256];
    if (!aes_gpu_available(why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;
    }
    aes_gpu gpu;
    aes_err e;
    if (aes_gpu_init(&gpu, 0, AES_MATH_FP32, &e) != 0) {
        printf("skipped: %s\n", e.msg);
        return 77;
    }
    printf("%s (compute capability %d.%d), fp32 with TF32 off\n", gpu.name, gpu.cc_major,
           gpu.cc_minor);
    test_linear(37, 65, 23);
    test_linear(256, 768, 768);
    test_conv(4, 3, 32, 16, 7, 2, 3, 0);  /* the stem */
    test_conv(4, 16, 16, 16, 3, 1, 1, 0);
    test_conv(3, 16, 16, 32, 1, 2, 0, 0); /* a downsample */
    test_conv(2, 8, 9, 12, 3, 2, 1, 1);   /* odd sizes, bias */
    test_batchnorm(8, 16, 64, 1, 0);
    test_batchnorm(8, 16, 64, 1, 1);
    test_batchnorm(8, 16, 64, 0, 0);
    test_batchnorm(32, 24, 1, 1, 0);      /* after a linear layer */
    test_elementwise();
    test_pool(3, 5, 17);
    test_rows(50, 97);
    test_rows(8, 768);
    test_attention(3, 17, 64, 4, 1);
    test_attention(2, 50, 96, 3, 0);
    test_attention(4, 77, 128, 4, 1);
    test_embedding(5, 13, 32, 100);
    test_adamw();
    test_losses(1, 20, 0);
    test_losses(0, 20, 0);
    test_losses(1, 7, 9);
    for (int kind = 0; kind < 5; kind++) test_encoder(kind, 6);
    test_model(AES_FUSION_MLP, AES_IMAGE_RESNET);
    test_model(AES_FUSION_TRANSFORMER, AES_IMAGE_VIT);
    test_model(AES_FUSION_NONE, AES_IMAGE_RESNET);
    aes_gpu_free(&gpu);
    return check_report();
}
#endif
