/*
 * The transformer layers (linear, layer norm, GELU, attention, embedding,
 * softmax, L2 norm) against their own definitions:
 *   - gradients against central finite differences of a scalar loss
 *     L = sum(r * out) with a fixed random r (so dout = r);
 *   - the accumulate convention: backward run twice doubles every gradient;
 *   - determinism: reruns repeat bit for bit, and the layers whose work is
 *     split so that each element is summed by one thread in a fixed order
 *     give the same bits on 1, 2 or 3 threads;
 *   - causal attention: a later token cannot change an earlier output.
 * The comparison with PyTorch is test/py/test_nn_transformer_torch.py.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "check.h"
#include "core/avx512.h"

/* ---- helpers -------------------------------------------------------------- */

static aes_rng rng;

static float *fbuf(size_t n)
{
    return aes_calloc(n ? n : 1, sizeof(float), "test buffer");
}

static float *frand(size_t n, float lo, float hi)
{
    float *x = fbuf(n);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)aes_rng_uniform(&rng);
    return x;
}

static float *fcopy(const float *x, size_t n)
{
    float *y = fbuf(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double dotd(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/*
 * Finite differences. The layers run in fp32, so the difference quotient
 * carries two errors: truncation, about eps^2/6 * |f'''|, and the rounding
 * of the fp32 outputs, about sqrt(n_out) * 2^-23 * |out| / (2 eps) once
 * summed into L (L itself is summed in double). With inputs of order 1 and
 * at most a few hundred outputs, eps = 1e-2 keeps both near 1e-4 (1e-3
 * would push the rounding part to ~1e-3), so a tolerance of
 * 2e-3 + 1e-2 * |g| leaves a tenfold margin while any real mistake (a
 * missing term, a wrong scale or index) is off by O(0.1 |g|) or more.
 * The perturbation actually applied is (x + eps) - (x - eps) in fp32.
 */
#define FD_EPS 1e-2f
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2

typedef double (*loss_fn)(void *ctx);

static void grad_check(const char *what, float *x, size_t n, const float *g, loss_fn f,
                       void *ctx)
{
    double worst = 0.0, worst_fd = 0.0, worst_g = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i];
        const float xp = x0 + FD_EPS, xm = x0 - FD_EPS;
        x[i] = xp;
        const double lp = f(ctx);
        x[i] = xm;
        const double lm = f(ctx);
        x[i] = x0;
        const double fd = (lp - lm) / ((double)xp - (double)xm);
        const double r = fabs(fd - g[i]) / (FD_ATOL + FD_RTOL * fabs(g[i]));
        if (r > worst) {
            worst = r;
            worst_i = i;
            worst_fd = fd;
            worst_g = g[i];
        }
    }
    CHECK_MSG(worst <= 1.0, "%s: element %zu: finite difference %.6g, backward %.6g", what,
              worst_i, worst_fd, worst_g);
}

/* g2 (backward run twice from zero) against 2 * g1 (run once). GEMMs may
 * add the second product in blocks (C + P1) + P2, so allow a few ulps. */
static void check_doubled(const char *what, const float *g1, const float *g2, size_t n)
{
    double mx = 0.0, err = 0.0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(g1[i]));
        err = fmax(err, fabs((double)g2[i] - 2.0 * g1[i]));
    }
    CHECK_MSG(mx > 0.0 && err <= 1e-6 * 2.0 * mx, "%s: max |twice - 2 once| %g (max |g| %g)",
              what, err, mx);
}

/* ---- linear ------------------------------------------------------------ */

typedef struct {
    float *out, *inp, *w, *b, *r;
    int N, C, OC;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
    return dotd(c->r, c->out, (size_t)c->N * c->OC);
}

static void test_linear(int with_bias)
{
    lin_ctx c = {.N = 6, .C = 9, .OC = 7};
    const size_t ni = (size_t)c.N * c.C, nw = (size_t)c.OC * c.C, no = (size_t)c.N * c.OC;
    c.inp = frand(ni, -1, 1);
    c.w = frand(nw, -1, 1);
    c.b = with_bias ? frand((size_t)c.OC, -1, 1) : NULL;
    c.r = frand(no, -1, 1);
    c.out = fbuf(no);
    float *dinp = fbuf(ni), *dw = fbuf(nw), *db = with_bias ? fbuf((size_t)c.OC) : NULL;
    linear_backward(dinp, dw, db, c.r, c.inp, c.w, c.N, c.C, c.OC);
    const char *tag = with_bias ? "linear+b" : "linear";
    char name[64];
    snprintf(name, sizeof name, "%s dinp", tag);
    grad_check(name, c.inp, ni, dinp, lin_loss, &c);
    snprintf(name, sizeof name, "%s dw", tag);
    grad_check(name, c.w, nw, dw, lin_loss, &c);
    if (with_bias) grad_check("linear+b db", c.b, (size_t)c.OC, db, lin_loss, &c);

    /* Accumulation, and dinp = NULL (no input gradient) leaves dw intact. */
    float *dinp2 = fbuf(ni), *dw2 = fbuf(nw), *db2 = with_bias ? fbuf((size_t)c.OC) : NULL;
    for (int k = 0; k < 2; k++) linear_backward(dinp2, dw2, db2, c.r, c.inp, c.w, c.N, c.C, c.OC);
    snprintf(name, sizeof name, "%s twice dinp", tag);
    check_doubled(name, dinp, dinp2, ni);
    snprintf(name, sizeof name, "%s twice dw", tag);
    check_doubled(name, dw, dw2, nw);
    if (with_bias) check_doubled("linear+b twice db", db, db2, (size_t)c.OC);
    float *dw3 = fbuf(nw);
    linear_backward(NULL, dw3, NULL, c.r, c.inp, c.w, c.N, c.C, c.OC);
    CHECK(same_bits(dw3, dw, nw));

    free(c.inp), free(c.w), free(c.b), free(c.r), free(c.out);
    free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2), free(dw3);
}

/* ---- layer norm ------------------------------------------------------ */

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b, *r;
    int N, C;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
    return dotd(c->r, c->out, (size_t)c->N * c->C);
}

static void test_layernorm(int N, int C)
{
    ln_ctx c = {.N = N, .C = C};
    const size_t n = (size_t)c.N * c.C;
    c.inp = frand(n, -2, 2);
    for (int i = 0; i < c.N; i++) /* an offset per row: the mean must cancel */
        for (int j = 0; j < c.C; j++) c.inp[i * c.C + j] += (float)(i - 2);
    c.w = frand((size_t)c.C, 0.5f, 1.5f);
    c.b = frand((size_t)c.C, -1, 1);
    c.r = frand(n, -1, 1);
    c.out = fbuf(n), c.mean = fbuf((size_t)c.N), c.rstd = fbuf((size_t)c.N);
    ln_loss(&c);
    /* Undo the affine part: each row of xhat has mean 0 and variance
     * var / (var + eps), within 1e-4 of 1 for these rows. */
    double worst = 0.0;
    for (int i = 0; i < c.N; i++) {
        double s = 0.0, s2 = 0.0;
        for (int j = 0; j < c.C; j++) {
            const double xh = (c.out[i * c.C + j] - c.b[j]) / c.w[j];
            s += xh;
            s2 += xh * xh;
        }
        worst = fmax(worst, fmax(fabs(s / c.C), fabs(s2 / c.C - 1.0)));
    }
    CHECK_MSG(worst < 1e-4, "layernorm rows not normalised: %g", worst);

    float *dinp = fbuf(n), *dw = fbuf((size_t)c.C), *db = fbuf((size_t)c.C);
    layernorm_backward(dinp, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    grad_check("layernorm dinp", c.inp, n, dinp, ln_loss, &c);
    grad_check("layernorm dw", c.w, (size_t)c.C, dw, ln_loss, &c);
    grad_check("layernorm db", c.b, (size_t)c.C, db, ln_loss, &c);

    ln_loss(&c);
    float *dinp2 = fbuf(n), *dw2 = fbuf((size_t)c.C), *db2 = fbuf((size_t)c.C);
    for (int k = 0; k < 2; k++)
        layernorm_backward(dinp2, dw2, db2, c.r, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    check_doubled("layernorm twice dinp", dinp, dinp2, n);
    check_doubled("layernorm twice dw", dw, dw2, (size_t)c.C);
    check_doubled("layernorm twice db", db, db2, (size_t)c.C);
    free(c.out), free(c.mean), free(c.rstd), free(c.inp), free(c.w), free(c.b), free(c.r);
    free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2);
}

/* ---- GELU ------------------------------------------------------------ */

typedef struct {
    float *out, *inp, *r;
    size_t n;
} ew_ctx;

static double gelu_loss(void *p)
{
    ew_ctx *c = p;
    gelu_forward(c->out, c->inp, c->n);
    return dotd(c->r, c->out, c->n);
}

static void test_gelu(void)
{
    ew_ctx c = {.n = 64};
    c.inp = frand(c.n, -5, 5);
    c.r = frand(c.n, -1, 1);
    c.out = fbuf(c.n);
    gelu_loss(&c);
    /* Known values of x * Phi(x). */
    float xs[3] = {-1.0f, 0.0f, 2.0f}, ys[3];
    gelu_forward(ys, xs, 3);
    CHECK_NEAR(ys[0], -0.15865525393145707, 1e-6);
    CHECK(ys[1] == 0.0f);
    CHECK_NEAR(ys[2], 1.9544997361036416, 1e-6);

    float *dinp = fbuf(c.n), *dinp2 = fbuf(c.n);
    gelu_backward(dinp, c.r, c.inp, c.n);
    grad_check("gelu dinp", c.inp, c.n, dinp, gelu_loss, &c);
    for (int k = 0; k < 2; k++) gelu_backward(dinp2, c.r, c.inp, c.n);
    check_doubled("gelu twice dinp", dinp, dinp2, c.n);
    free(c.out), free(c.inp), free(c.r), free(dinp), free(dinp2);
}

/* ---- attention --------------------------------------------------------- */

typedef struct {
    float *out, *att, *qkv, *r;
    int B, T, C, NH, causal;
} att_ctx;

static double att_loss(void *p)
{
    att_ctx *c = p;
    attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->C, c->NH, c->causal);
    return dotd(c->r, c->out, (size_t)c->B * c->T * c->C);
}

static float *att_scratch(int T, int C, int NH)
{
    /* Sized for the thread count at the call, as callers must (the
     * determinism test raises it to 3). */
    return fbuf((size_t)(omp_get_max_threads() > 3 ? omp_get_max_threads() : 3) *
                attention_scratch_floats(T, C, NH));
}

static void test_attention(int causal)
{
    att_ctx c = {.B = 2, .T = 5, .C = 8, .NH = 2, .causal = causal};
    const size_t nq = (size_t)c.B * c.T * 3 * c.C, no = (size_t)c.B * c.T * c.C;
    c.qkv = frand(nq, -1.5f, 1.5f);
    c.r = frand(no, -1, 1);
    c.out = fbuf(no);
    c.att = fbuf((size_t)c.B * c.NH * c.T * c.T);
    float *scratch = att_scratch(c.T, c.C, c.NH);
    att_loss(&c);

    /* Probabilities: rows sum to one, masked entries exactly zero. */
    double worst = 0.0;
    int masked_zero = 1;
    for (int bh = 0; bh < c.B * c.NH; bh++)
        for (int t = 0; t < c.T; t++) {
            const float *row = c.att + ((size_t)bh * c.T + t) * c.T;
            double s = 0.0;
            for (int j = 0; j < c.T; j++) {
                s += row[j];
                if (causal && j > t && row[j] != 0.0f) masked_zero = 0;
            }
            worst = fmax(worst, fabs(s - 1.0));
        }
    CHECK_MSG(worst < 1e-6, "attention rows sum to 1 +- %g", worst);
    CHECK(masked_zero);

    float *dqkv = fbuf(nq), *dqkv2 = fbuf(nq);
    attention_backward(dqkv, scratch, c.r, c.qkv, c.att, c.B, c.T, c.C, c.NH, causal);
    grad_check(causal ? "attention causal dqkv" : "attention dqkv", c.qkv, nq, dqkv, att_loss, &c);
    att_loss(&c);
    for (int k = 0; k < 2; k++)
        attention_backward(dqkv2, scratch, c.r, c.qkv, c.att, c.B, c.T, c.C, c.NH, causal);
    check_doubled(causal ? "attention causal twice" : "attention twice", dqkv, dqkv2, nq);
    free(c.out), free(c.att), free(c.qkv), free(c.r), free(scratch), free(dqkv), free(dqkv2);
}

/* Forward and backward against the definition in double, on shapes that
 * reach every edge of the AVX-512 head kernels (src/nn/attention_x86.c):
 * T not a multiple of their 6-row strips nor of 16 lanes, past one
 * 64-column block; head sizes past 64 and not a multiple of 16; both
 * masks. */
static void attention_ref(double *out, double *dqkv, const float *qkv, const float *dout, int B,
                          int T, int C, int NH, int causal)
{
    const int hs = C / NH, C3 = 3 * C;
    const double scale = 1.0 / sqrt((double)hs);
    double *p = malloc(sizeof(double) * T * T), *dp = malloc(sizeof(double) * T * T);
    memset(dqkv, 0, sizeof(double) * B * T * C3);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            const float *dO = dout + (size_t)b * T * C + h * hs;
            double *dq = dqkv + (size_t)b * T * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * C;
            for (int i = 0; i < T; i++) {
                const int n = causal ? i + 1 : T;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < T; j++) {
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) s += (double)q[i * C3 + d] * k[j * C3 + d];
                    p[i * T + j] = j < n ? s * scale : -INFINITY;
                    if (j < n) mx = fmax(mx, p[i * T + j]);
                }
                for (int j = 0; j < T; j++) {
                    p[i * T + j] = j < n ? exp(p[i * T + j] - mx) : 0.0;
                    sum += p[i * T + j];
                }
                for (int j = 0; j < T; j++) p[i * T + j] /= sum;
                for (int d = 0; d < hs; d++) {
                    double o = 0.0;
                    for (int j = 0; j < T; j++) o += p[i * T + j] * v[j * C3 + d];
                    out[((size_t)b * T + i) * C + h * hs + d] = o;
                }
            }
            for (int i = 0; i < T; i++) {
                double dot = 0.0;
                for (int j = 0; j < T; j++) {
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) s += (double)dO[i * C + d] * v[j * C3 + d];
                    dp[i * T + j] = s;
                    dot += s * p[i * T + j];
                }
                for (int j = 0; j < T; j++) dp[i * T + j] = p[i * T + j] * (dp[i * T + j] - dot);
            }
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++)
                    for (int d = 0; d < hs; d++) {
                        dv[j * C3 + d] += p[i * T + j] * dO[i * C + d];
                        dq[i * C3 + d] += scale * dp[i * T + j] * k[j * C3 + d];
                        dk[j * C3 + d] += scale * dp[i * T + j] * q[i * C3 + d];
                    }
        }
    free(p), free(dp);
}

static double rel_err_f_d(const float *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

/* own: the AVX-512 kernels (where the CPU has them) or the BLAS path. */
static void check_attention_shape(int own, int B, int T, int C, int NH, int causal)
{
    const char *path = own ? "" : " (BLAS path)";
    const size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = frand(nq, -1.5f, 1.5f), *dout = frand(no, -1, 1), *out = fbuf(no);
    float *att = fbuf((size_t)B * NH * T * T), *dqkv = fbuf(nq);
    float *scratch = att_scratch(T, C, NH);
    double *ro = malloc(sizeof(double) * no), *rd = malloc(sizeof(double) * nq);
    const int was = attention_set_kernels(own);
    attention_forward(out, att, qkv, B, T, C, NH, causal);
    attention_backward(dqkv, scratch, dout, qkv, att, B, T, C, NH, causal);
    attention_set_kernels(was);
    attention_ref(ro, rd, qkv, dout, B, T, C, NH, causal);
    const double eo = rel_err_f_d(out, ro, no), ed = rel_err_f_d(dqkv, rd, nq);
    CHECK_MSG(eo <= 1e-5, "attention%s B=%d T=%d C=%d NH=%d causal=%d out vs double: %.3g", path,
              B, T, C, NH, causal, eo);
    CHECK_MSG(ed <= 1e-5, "attention%s B=%d T=%d C=%d NH=%d causal=%d dqkv vs double: %.3g",
              path, B, T, C, NH, causal, ed);
    if (getenv("TEST_VERBOSE"))
        printf("  attention%s B=%d T=%d C=%d NH=%d causal=%d: out %.2g dqkv %.2g\n", path, B, T,
               C, NH, causal, eo, ed);
    free(qkv), free(dout), free(out), free(att), free(dqkv), free(scratch), free(ro), free(rd);
}

static void test_attention_shapes(void)
{
    const int shapes[][4] = {/* B, T, C, NH */
                             {2, 70, 144, 2},
                             {1, 131, 60, 3},
                             {3, 17, 64, 1},
                             {2, 1, 32, 2}};
    for (int own = 1; own >= 0; own--)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int causal = 0; causal < 2; causal++)
                check_attention_shape(own, shapes[s][0], shapes[s][1], shapes[s][2],
                                      shapes[s][3], causal);
}

#ifdef AES_X86
__attribute__((target("avx512f"))) static void exp16(float *y, const float *x)
{
    _mm512_storeu_ps(y, aes_exp_ps(_mm512_loadu_ps(x)));
}
#endif

/* aes_exp_ps (the softmax of attention's AVX-512 path) against double exp:
 * relative error on a fine grid of [-103, 88.5] (results above the
 * smallest normal float), and the ends: 0 at -104 and below, inf above
 * 89, NaN kept, exp(0) = 1 exactly. */
static void test_exp(void)
{
#ifdef AES_X86
    if (!aes_avx512()) return;
    double worst = 0.0;
    for (int i = 0; i < 191500; i += 16) {
        float x[16], y[16];
        for (int l = 0; l < 16; l++) x[l] = -103.0f + 0.001f * (float)(i + l) + 1e-5f * (float)l;
        exp16(y, x);
        for (int l = 0; l < 16; l++) {
            const double ref = exp((double)x[l]);
            if (ref < 1.1754944e-38 || ref > 3.4e38) continue;
            const double e = fabs(y[l] - ref) / ref;
            if (e > worst) worst = e;
        }
    }
    CHECK_MSG(worst < 3e-7, "aes_exp_ps relative error %.3g over [-103, 88.5]", worst);
    const float x[16] = {0.0f, -104.0f, -150.0f, -1e30f, -INFINITY, 89.5f, 1e30f, INFINITY,
                         NAN,  -1.0f,   1.0f,    -87.0f, 10.0f,     -20.0f, 88.0f, -0.5f};
    float y[16];
    exp16(y, x);
    CHECK_MSG(y[0] == 1.0f, "aes_exp_ps(0) = %.9g", y[0]);
    for (int l = 1; l < 5; l++) CHECK_MSG(y[l] == 0.0f, "aes_exp_ps(%g) = %g", x[l], y[l]);
    for (int l = 5; l < 8; l++)
        CHECK_MSG(isinf(y[l]) && y[l] > 0, "aes_exp_ps(%g) = %g", x[l], y[l]);
    CHECK_MSG(isnan(y[8]), "aes_exp_ps(NaN) = %g", y[8]);
    for (int l = 9; l < 16; l++)
        CHECK_MSG(fabs(y[l] - exp((double)x[l])) <= 3e-7 * exp((double)x[l]),
                  "aes_exp_ps(%g) = %.9g", x[l], y[l]);
#endif
}

/* Perturbing token t0 (its q, k and v) must leave every earlier output row
 * bit-identical under the causal mask, and must change them without it. */
static void test_causal_future(void)
{
    const int B = 2, T = 9, C = 16, NH = 4, t0 = 6;
    const size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = frand(nq, -1, 1), *att = fbuf((size_t)B * NH * T * T);
    float *o1 = fbuf(no), *o2 = fbuf(no);
    for (int causal = 1; causal >= 0; causal--) {
        float *q2 = fcopy(qkv, nq);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < 3 * C; j++) q2[((size_t)b * T + t0) * 3 * C + j] += 0.5f;
        attention_forward(o1, att, qkv, B, T, C, NH, causal);
        attention_forward(o2, att, q2, B, T, C, NH, causal);
        int before_same = 1, at_changed = 1;
        for (int b = 0; b < B; b++) {
            const size_t r0 = (size_t)b * T * C;
            before_same &= same_bits(o1 + r0, o2 + r0, (size_t)t0 * C);
            at_changed &= !same_bits(o1 + r0 + (size_t)t0 * C, o2 + r0 + (size_t)t0 * C,
                                     (size_t)C);
        }
        if (causal)
            CHECK_MSG(before_same, "causal attention: a later token changed an earlier output");
        else
            CHECK_MSG(!before_same, "non-causal attention ignores later tokens");
        CHECK(at_changed);
        free(q2);
    }
    free(qkv), free(att), free(o1), free(o2);
}

/* ---- embedding ---------------------------------------------------------- */

typedef struct {
    float *out, *wte, *wpe, *r;
    int32_t *tok;
    int B, T, C, V;
} emb_ctx;

static double emb_loss(void *p)
{
    emb_ctx *c = p;
    embedding_forward(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C, c->V);
    return dotd(c->r, c->out, (size_t)c->B * c->T * c->C);
}

static void test_embedding(void)
{
    /* Token 3 appears four times (twice in one sequence), token 1 twice,
     * token 5 never: its gradient row must stay zero. */
    int32_t tok[8] = {3, 1, 3, 0, 2, 3, 1, 3};
    emb_ctx c = {.B = 2, .T = 4, .C = 6, .V = 6, .tok = tok};
    const size_t no = (size_t)c.B * c.T * c.C, ne = (size_t)c.V * c.C, np = (size_t)c.T * c.C;
    c.wte = frand(ne, -1, 1);
    c.wpe = frand(np, -1, 1);
    c.r = frand(no, -1, 1);
    c.out = fbuf(no);
    emb_loss(&c);
    CHECK(c.out[5 * c.C + 2] == c.wte[3 * c.C + 2] + c.wpe[1 * c.C + 2]);
    float *dwte = fbuf(ne), *dwpe = fbuf(np);
    embedding_backward(dwte, dwpe, c.r, c.tok, c.B, c.T, c.C, c.V);
    grad_check("embedding dwte (repeated tokens)", c.wte, ne, dwte, emb_loss, &c);
    grad_check("embedding dwpe", c.wpe, np, dwpe, emb_loss, &c);
    int unused_zero = 1;
    for (int j = 0; j < c.C; j++) unused_zero &= dwte[5 * c.C + j] == 0.0f;
    CHECK(unused_zero);
    float *dwte2 = fbuf(ne), *dwpe2 = fbuf(np);
    for (int k = 0; k < 2; k++) embedding_backward(dwte2, dwpe2, c.r, c.tok, c.B, c.T, c.C, c.V);
    check_doubled("embedding twice dwte", dwte, dwte2, ne);
    check_doubled("embedding twice dwpe", dwpe, dwpe2, np);
    free(c.out), free(c.wte), free(c.wpe), free(c.r), free(dwte), free(dwpe), free(dwte2),
        free(dwpe2);
}

/* ---- softmax ------------------------------------------------------------ */

typedef struct {
    float *out, *inp, *r, scale;
    int N, C;
} sm_ctx;

static double sm_loss(void *p)
{
    sm_ctx *c = p;
    softmax_forward(c->out, c->inp, c->N, c->C, c->scale);
    return dotd(c->r, c->out, (size_t)c->N * c->C);
}

static void test_softmax(void)
{
    sm_ctx c = {.N = 4, .C = 11, .scale = 1.7f};
    const size_t n = (size_t)c.N * c.C;
    c.inp = frand(n, -2, 2);
    c.r = frand(n, -1, 1);
    c.out = fbuf(n);
    /* Logits far from zero: the row maximum must be subtracted. */
    float big[3] = {1000.0f, 1001.0f, 999.0f}, pb[3];
    softmax_forward(pb, big, 1, 3, 1.0f);
    CHECK_NEAR(pb[1], 0.66524096, 1e-6);
    sm_loss(&c);
    float *dinp = fbuf(n), *dinp2 = fbuf(n);
    softmax_backward(dinp, c.r, c.out, c.N, c.C, c.scale);
    grad_check("softmax dinp", c.inp, n, dinp, sm_loss, &c);
    sm_loss(&c);
    for (int k = 0; k < 2; k++) softmax_backward(dinp2, c.r, c.out, c.N, c.C, c.scale);
    check_doubled("softmax twice", dinp, dinp2, n);
    free(c.out), free(c.inp), free(c.r), free(dinp), free(dinp2);
}

/* ---- L2 norm ----------------------------------------------------------- */

typedef struct {
    float *out, *norm, *inp, *r;
    int N, C;
} l2_ctx;

static double l2_loss(void *p)
{
    l2_ctx *c = p;
    l2norm_forward(c->out, c->norm, c->inp, c->N, c->C);
    return dotd(c->r, c->out, (size_t)c->N * c->C);
}

static void test_l2norm(void)
{
    l2_ctx c = {.N = 4, .C = 7};
    const size_t n = (size_t)c.N * c.C;
    c.inp = frand(n, -1, 1);
    c.r = frand(n, -1, 1);
    c.out = fbuf(n), c.norm = fbuf((size_t)c.N);
    l2_loss(&c);
    double worst = 0.0;
    for (int i = 0; i < c.N; i++)
        worst = fmax(worst, fabs(sqrt(dotd(c.out + i * c.C, c.out + i * c.C, (size_t)c.C)) - 1));
    CHECK_MSG(worst < 1e-6, "l2norm rows have norm 1 +- %g", worst);
    float *dinp = fbuf(n), *dinp2 = fbuf(n);
    l2norm_backward(dinp, c.r, c.out, c.norm, c.N, c.C);
    grad_check("l2norm dinp", c.inp, n, dinp, l2_loss, &c);
    l2_loss(&c);
    for (int k = 0; k < 2; k++) l2norm_backward(dinp2, c.r, c.out, c.norm, c.N, c.C);
    check_doubled("l2norm twice", dinp, dinp2, n);

    /* A zero row: out 0, gradient dout / eps (torch's clamp_min), no NaN. */
    float z[3] = {0, 0, 0}, zo[3], zn, dz[3] = {0, 0, 0}, dy[3] = {1, -2, 3};
    l2norm_forward(zo, &zn, z, 1, 3);
    l2norm_backward(dz, dy, zo, &zn, 1, 3);
    CHECK(zn == 0.0f && zo[0] == 0.0f && zo[1] == 0.0f && zo[2] == 0.0f);
    CHECK_NEAR(dz[2] * 1e-12, 3.0, 1e-6);
    free(c.out), free(c.norm), free(c.inp), free(c.r), free(dinp), free(dinp2);
}

/* ---- determinism ------------------------------------------------------- */

/* Every layer's forward and backward at a size where the work is really
 * split over threads (and the GEMMs over OpenBLAS's threads); all outputs
 * and gradients of one run go into one buffer, to compare runs. */
enum { D_N = 300, D_C = 256, D_OC = 384, D_B = 3, D_T = 50, D_NH = 4, D_V = 40 };

typedef struct {
    float *inp, *w, *b, *dout_lin, *dout_c, *qkv, *dout_att, *wte, *wpe, *dout_emb;
    int32_t *tok;
} det_inputs;

static size_t det_run(const det_inputs *in, float *res, int with_linear)
{
    size_t k = 0;
    const size_t nl = (size_t)D_N * D_C;
    /* linear */
    if (with_linear) {
        float *out = res + k;
        k += (size_t)D_N * D_OC;
        linear_forward(out, in->inp, in->w, in->b, D_N, D_C, D_OC);
        float *dinp = res + k;
        k += nl;
        float *dw = res + k;
        k += (size_t)D_OC * D_C;
        float *db = res + k;
        k += D_OC;
        linear_backward(dinp, dw, db, in->dout_lin, in->inp, in->w, D_N, D_C, D_OC);
    }
    /* layer norm */
    float *mean = res + k, *rstd = res + k + D_N, *lo = res + k + 2 * D_N;
    k += 2 * D_N + nl;
    layernorm_forward(lo, mean, rstd, in->inp, in->w, in->b, D_N, D_C, 1e-5f);
    float *ldi = res + k, *ldw = res + k + nl, *ldb = res + k + nl + D_C;
    k += nl + 2 * D_C;
    layernorm_backward(ldi, ldw, ldb, in->dout_c, in->inp, in->w, mean, rstd, D_N, D_C);
    /* GELU, softmax, L2 norm on [D_N, D_C] */
    gelu_forward(res + k, in->inp, nl);
    gelu_backward(res + k + nl, in->dout_c, in->inp, nl);
    k += 2 * nl;
    softmax_forward(res + k, in->inp, D_N, D_C, 0.8f);
    softmax_backward(res + k + nl, in->dout_c, res + k, D_N, D_C, 0.8f);
    k += 2 * nl;
    l2norm_forward(res + k, res + k + nl, in->inp, D_N, D_C);
    l2norm_backward(res + k + nl + D_N, in->dout_c, res + k, res + k + nl, D_N, D_C);
    k += 2 * nl + D_N;
    /* attention, both masks */
    const int C = 64;
    const size_t nq = (size_t)D_B * D_T * 3 * C, no = (size_t)D_B * D_T * C;
    float *scratch = att_scratch(D_T, C, D_NH);
    for (int causal = 0; causal < 2; causal++) {
        const size_t na = (size_t)D_B * D_NH * D_T * D_T;
        float *out = res + k, *att = res + k + no, *dq = res + k + no + na;
        k += no + na + nq;
        attention_forward(out, att, in->qkv, D_B, D_T, C, D_NH, causal);
        attention_backward(dq, scratch, in->dout_att, in->qkv, att, D_B, D_T, C, D_NH, causal);
    }
    free(scratch);
    /* embedding */
    const int EC = 96;
    embedding_forward(res + k, in->tok, in->wte, in->wpe, D_B, D_T, EC, D_V);
    k += (size_t)D_B * D_T * EC;
    embedding_backward(res + k, res + k + (size_t)D_V * EC, in->dout_emb, in->tok, D_B, D_T, EC,
                       D_V);
    k += (size_t)D_V * EC + (size_t)D_T * EC;
    return k;
}

static void test_determinism(void)
{
    det_inputs in;
    const size_t nl = (size_t)D_N * D_C;
    in.inp = frand(nl, -2, 2);
    in.w = frand((size_t)D_OC * D_C, -1, 1);
    in.b = frand(D_OC, -1, 1);
    in.dout_lin = frand((size_t)D_N * D_OC, -1, 1);
    in.dout_c = frand(nl, -1, 1);
    in.qkv = frand((size_t)D_B * D_T * 3 * 64, -2, 2);
    in.dout_att = frand((size_t)D_B * D_T * 64, -1, 1);
    in.wte = frand((size_t)D_V * 96, -1, 1);
    in.wpe = frand((size_t)D_T * 96, -1, 1);
    in.dout_emb = frand((size_t)D_B * D_T * 96, -1, 1);
    in.tok = aes_calloc((size_t)D_B * D_T, sizeof(int32_t), "tokens");
    /* tokens from 0..6 only: many repeats */
    for (int i = 0; i < D_B * D_T; i++) in.tok[i] = (int32_t)aes_rng_below(&rng, 7);

    const size_t cap = 8u << 20;
    float *r1 = fbuf(cap), *r2 = fbuf(cap);
    /* Backward accumulates: every run starts from zeroed buffers. */
    const size_t n1 = det_run(&in, r1, 1);
    AES_CHECK(n1 <= cap);
    const size_t n2 = det_run(&in, r2, 1);
    CHECK_MSG(n1 == n2 && same_bits(r1, r2, n1), "a rerun gave different bits");

    /* Without the GEMM layer (OpenBLAS may block a GEMM by thread count),
     * each result element is computed by one thread in a fixed order, so
     * the thread count must not matter either. */
    const int saved = omp_get_max_threads();
    memset(r1, 0, cap * sizeof(float));
    const size_t m = det_run(&in, r1, 0);
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        memset(r2, 0, m * sizeof(float));
        det_run(&in, r2, 0);
        CHECK_MSG(same_bits(r1, r2, m), "%d threads gave different bits than %d", th, saved);
    }
    omp_set_num_threads(saved);
    free(r1), free(r2);
    free(in.inp), free(in.w), free(in.b), free(in.dout_lin), free(in.dout_c), free(in.qkv);
    free(in.dout_att), free(in.wte), free(in.wpe), free(in.dout_emb), free(in.tok);
}

int main(void)
{
    aes_rng_init(&rng, aes_key(20240611, 0, 0, AES_RNG_INIT));
    test_linear(1);
    test_linear(0);
    test_layernorm(5, 12);
    test_layernorm(4, 37); /* 16-lane rows with a tail (src/nn/layernorm.c) */
    test_gelu();
    test_attention(0);
    test_attention(1);
    test_exp();
    test_attention_shapes();
    test_causal_future();
    test_embedding();
    test_softmax();
    test_l2norm();
    test_determinism();
    return check_report();
}
