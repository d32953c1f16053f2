/*
 * The convolutional layers (conv2d, batch norm, max/avg/global pooling,
 * relu, residual add) against independent references:
 * - central finite differences of a scalar loss L = sum_i r_i out_i (r a
 *   fixed random vector) for every input and parameter gradient;
 * - direct double-precision loops for conv2d (forward and all gradients,
 *   also on shapes that take several im2col blocks) and the pools' forward;
 * - batch norm's statistics, running-stat update, output and gradients
 *   against its formulas in double (channels past one reduction block);
 * - batch norm over a batch split across two simulated ranks, whose
 *   reducer sums the two halves' buffers, against the whole batch;
 * - the accumulate convention (backward twice = twice the gradient),
 *   bit-for-bit repetition, and agreement across OpenMP thread counts.
 *
 * Finite-difference tolerance. Gradients are compared norm-wise over the
 * whole tensor, ||g - fd|| / ||fd||. With eps = 1e-2 and L accumulated in
 * double from fp32 outputs, the fp32 rounding of the outputs (~6e-8
 * relative each, summed over a few hundred terms of both signs) puts an
 * absolute noise of ~1e-7..1e-6 on L, i.e. 1e-5..1e-4 on a difference
 * quotient of size ~1. conv, pools, relu and gap are linear (or piecewise
 * linear away from kinks, which the inputs avoid), so there is no
 * truncation error; batch norm's O(eps^2) truncation error is of the same
 * order with these well-conditioned inputs (a batch of 4 values per
 * channel is not: 6e-4 there). Measured: 3e-5 at worst
 * (TEST_VERBOSE=1 prints every error). The usual 1e-2 let a 1% scaling
 * error at the padded border of avgpool's backward through, so the bound
 * is 1e-3: 30x above the noise, and a wrong index or term is O(1).
 * The layers that are linear in an input also get the exact adjoint
 * identity <r, f(x)> = <f'(r), x> (+ <db, b>), which sees errors of 1e-6.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "check.h"

#define FD_EPS 1e-2
#define FD_TOL 1e-3

static double worst_fd = 0.0; /* reported at the end */

/* ---- helpers --------------------------------------------------------- */

static float *fvec(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}

static float *fdup(const float *x, size_t n)
{
    float *p = fvec(n);
    memcpy(p, x, n * sizeof(float));
    return p;
}

static void fill_normal(float *x, size_t n, uint64_t key, float scale)
{
    aes_rng r;
    aes_rng_init(&r, key);
    for (size_t i = 0; i < n; i++) x[i] = scale * aes_rng_normal(&r);
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_err_d(const float *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double dot_r(const float *out, const float *r, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * out[i];
    return s;
}

static double dot_abs(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] * b[i]);
    return s;
}

/* For f linear in x: <r, f(x)> == <x, df> (+ extra), to fp32 rounding of
 * the dot products' terms. */
static void adjoint_check(const char *what, double lhs, double rhs, double scale)
{
    double e = fabs(lhs - rhs) / scale;
    if (getenv("TEST_VERBOSE")) printf("  %-32s adjoint rel err %.2e\n", what, e);
    CHECK_MSG(e <= 1e-6, "%s: adjoint identity off by %.3g", what, e);
}

/* Central differences of loss() over every entry of x, against g. */
typedef double (*loss_fn)(void *ctx);

static void fd_check(const char *what, float *x, const float *g, size_t n, loss_fn loss,
                     void *ctx)
{
    double *fd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i];
        const float xp = (float)(x0 + FD_EPS), xm = (float)(x0 - FD_EPS);
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = x0;
        fd[i] = (lp - lm) / ((double)xp - (double)xm);
    }
    double e = rel_err_d(g, fd, n);
    if (e > worst_fd) worst_fd = e;
    if (getenv("TEST_VERBOSE")) printf("  %-32s fd rel err %.2e\n", what, e);
    CHECK_MSG(e <= FD_TOL, "%s: finite-difference relative error %.3g", what, e);
    free(fd);
}

/* ---- conv2d ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int N, C, H, W, OC, KH, KW, stride, pad, bias;
} conv_case;

static const conv_case conv_cases[] = {
    {"3x3 s1 p1", 2, 3, 8, 8, 4, 3, 3, 1, 1, 1},
    {"3x3 s2 p1 odd", 3, 4, 9, 7, 6, 3, 3, 2, 1, 1},
    {"1x1 direct", 3, 5, 6, 6, 7, 1, 1, 1, 0, 1},
    {"1x1 s2 nobias", 2, 4, 7, 9, 3, 1, 1, 2, 0, 0},
    {"7x7 s2 p3", 2, 3, 11, 11, 5, 7, 7, 2, 3, 1},
    {"3x3 p0 N1", 1, 2, 5, 6, 3, 3, 3, 1, 0, 1},
    {"3x1 p1 nobias", 2, 3, 7, 8, 4, 3, 1, 1, 1, 0},
    {"1x1 direct N1", 1, 6, 5, 5, 4, 1, 1, 1, 0, 1},
    {"2x2 s2 p1 N5", 5, 2, 6, 5, 3, 2, 2, 2, 1, 1},
};

typedef struct {
    conv_case k;
    int OH, OW;
    size_t nin, nw, nout;
    float *inp, *w, *b, *out, *col, *r;
} conv_ctx;

static void conv_ctx_init(conv_ctx *c, const conv_case *k, uint64_t key)
{
    memset(c, 0, sizeof *c);
    c->k = *k;
    c->OH = (k->H + 2 * k->pad - k->KH) / k->stride + 1;
    c->OW = (k->W + 2 * k->pad - k->KW) / k->stride + 1;
    c->nin = (size_t)k->N * k->C * k->H * k->W;
    c->nw = (size_t)k->OC * k->C * k->KH * k->KW;
    c->nout = (size_t)k->N * k->OC * c->OH * c->OW;
    c->inp = fvec(c->nin);
    c->w = fvec(c->nw);
    c->b = k->bias ? fvec(k->OC) : NULL;
    c->out = fvec(c->nout);
    c->r = fvec(c->nout);
    c->col = fvec(
        conv2d_scratch_floats(k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW, k->stride, k->pad));
    fill_normal(c->inp, c->nin, key + 1, 1.0f);
    fill_normal(c->w, c->nw, key + 2, 0.5f);
    if (c->b) fill_normal(c->b, k->OC, key + 3, 0.5f);
    fill_normal(c->r, c->nout, key + 4, 1.0f);
}

static void conv_ctx_free(conv_ctx *c)
{
    free(c->inp), free(c->w), free(c->b), free(c->out), free(c->col), free(c->r);
}

static void conv_fwd(conv_ctx *c)
{
    const conv_case *k = &c->k;
    conv2d_forward(c->out, c->col, c->inp, c->w, c->b, k->N, k->C, k->H, k->W, k->OC, k->KH,
                   k->KW, k->stride, k->pad);
}

static void conv_bwd(conv_ctx *c, float *dinp, float *dw, float *db)
{
    const conv_case *k = &c->k;
    conv2d_backward(dinp, dw, db, c->col, c->r, c->inp, c->w, k->N, k->C, k->H, k->W, k->OC,
                    k->KH, k->KW, k->stride, k->pad);
}

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    conv_fwd(c);
    return dot_r(c->out, c->r, c->nout);
}

/* Direct convolution in double. */
static void conv_naive(double *out, const conv_ctx *c)
{
    const conv_case *k = &c->k;
    for (int n = 0; n < k->N; n++)
        for (int oc = 0; oc < k->OC; oc++)
            for (int oh = 0; oh < c->OH; oh++)
                for (int ow = 0; ow < c->OW; ow++) {
                    double s = c->b ? c->b[oc] : 0.0;
                    for (int ch = 0; ch < k->C; ch++)
                        for (int kh = 0; kh < k->KH; kh++)
                            for (int kw = 0; kw < k->KW; kw++) {
                                int ih = oh * k->stride - k->pad + kh;
                                int iw = ow * k->stride - k->pad + kw;
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                s += (double)c->inp[((n * k->C + ch) * k->H + ih) * k->W + iw] *
                                     c->w[((oc * k->C + ch) * k->KH + kh) * k->KW + kw];
                            }
                    out[((n * k->OC + oc) * c->OH + oh) * c->OW + ow] = s;
                }
}

/* Direct backward in double: dinp, dw, db for upstream gradient c->r. */
static void conv_naive_bwd(double *dx, double *dw, double *db, const conv_ctx *c)
{
    const conv_case *k = &c->k;
    memset(dx, 0, c->nin * sizeof(double));
    memset(dw, 0, c->nw * sizeof(double));
    memset(db, 0, k->OC * sizeof(double));
    for (int n = 0; n < k->N; n++)
        for (int oc = 0; oc < k->OC; oc++)
            for (int oh = 0; oh < c->OH; oh++)
                for (int ow = 0; ow < c->OW; ow++) {
                    const double g = c->r[((n * k->OC + oc) * c->OH + oh) * c->OW + ow];
                    db[oc] += g;
                    for (int ch = 0; ch < k->C; ch++)
                        for (int kh = 0; kh < k->KH; kh++)
                            for (int kw = 0; kw < k->KW; kw++) {
                                int ih = oh * k->stride - k->pad + kh;
                                int iw = ow * k->stride - k->pad + kw;
                                if (ih < 0 || ih >= k->H || iw < 0 || iw >= k->W) continue;
                                size_t xi = ((size_t)(n * k->C + ch) * k->H + ih) * k->W + iw;
                                size_t wi = ((size_t)(oc * k->C + ch) * k->KH + kh) * k->KW + kw;
                                dx[xi] += g * c->w[wi];
                                dw[wi] += g * c->inp[xi];
                            }
                }
}

/* Forward and all gradients against the direct loops: the check for
 * shapes too big for finite differences (several col blocks). */
static void test_conv_direct(const conv_case *k, uint64_t key)
{
    conv_ctx c;
    conv_ctx_init(&c, k, key);
    conv_fwd(&c);
    double *ref = malloc(c.nout * sizeof(double));
    conv_naive(ref, &c);
    double e = rel_err_d(c.out, ref, c.nout);
    CHECK_MSG(e <= 1e-6, "conv %s forward vs direct: %.3g", k->name, e);
    float *dinp = fvec(c.nin), *dw = fvec(c.nw), *db = fvec(k->OC);
    conv_bwd(&c, dinp, dw, k->bias ? db : NULL);
    double *rx = malloc(c.nin * sizeof(double)), *rw = malloc(c.nw * sizeof(double)),
           *rb = malloc(k->OC * sizeof(double));
    conv_naive_bwd(rx, rw, rb, &c);
    e = rel_err_d(dinp, rx, c.nin);
    CHECK_MSG(e <= 1e-6, "conv %s dinp vs direct: %.3g", k->name, e);
    e = rel_err_d(dw, rw, c.nw);
    CHECK_MSG(e <= 1e-6, "conv %s dw vs direct: %.3g", k->name, e);
    /* dw = NULL: the same input gradient, and nothing else written */
    float *dinp5 = fvec(c.nin);
    conv_bwd(&c, dinp5, NULL, NULL);
    CHECK_MSG(memcmp(dinp5, dinp, c.nin * sizeof(float)) == 0, "conv %s: dinp depends on dw = NULL",
              k->name);
    free(dinp5);
    if (k->bias) {
        e = rel_err_d(db, rb, k->OC);
        CHECK_MSG(e <= 1e-6, "conv %s db vs direct: %.3g", k->name, e);
    }
    if (getenv("TEST_VERBOSE")) printf("  conv %-27s matches direct loops\n", k->name);
    free(ref), free(rx), free(rw), free(rb), free(dinp), free(dw), free(db);
    conv_ctx_free(&c);
}

static void test_conv_case(const conv_case *k, uint64_t key)
{
    conv_ctx c;
    conv_ctx_init(&c, k, key);
    char what[128];

    /* forward against the direct loops */
    conv_fwd(&c);
    double *ref = malloc(c.nout * sizeof(double));
    conv_naive(ref, &c);
    double e = rel_err_d(c.out, ref, c.nout);
    CHECK_MSG(e <= 1e-6, "conv %s forward vs direct: %.3g", k->name, e);
    free(ref);

    /* gradients against finite differences */
    float *dinp = fvec(c.nin), *dw = fvec(c.nw), *db = k->bias ? fvec(k->OC) : NULL;
    conv_bwd(&c, dinp, dw, db);
    conv_fwd(&c);
    {
        const double L = dot_r(c.out, c.r, c.nout), scale = dot_abs(c.out, c.r, c.nout);
        const double bb = k->bias ? dot_r(c.b, db, k->OC) : 0.0;
        snprintf(what, sizeof what, "conv %s dinp", k->name);
        adjoint_check(what, L, dot_r(c.inp, dinp, c.nin) + bb, scale);
        snprintf(what, sizeof what, "conv %s dw", k->name);
        adjoint_check(what, L, dot_r(c.w, dw, c.nw) + bb, scale);
    }
    snprintf(what, sizeof what, "conv %s dinp", k->name);
    fd_check(what, c.inp, dinp, c.nin, conv_loss, &c);
    snprintf(what, sizeof what, "conv %s dw", k->name);
    fd_check(what, c.w, dw, c.nw, conv_loss, &c);
    if (k->bias) {
        snprintf(what, sizeof what, "conv %s db", k->name);
        fd_check(what, c.b, db, k->OC, conv_loss, &c);
    }

    /* accumulate: a second backward adds the same again */
    float *dinp2 = fdup(dinp, c.nin), *dw2 = fdup(dw, c.nw);
    float *db2 = k->bias ? fdup(db, k->OC) : NULL;
    conv_bwd(&c, dinp2, dw2, db2);
    for (size_t i = 0; i < c.nin; i++) dinp[i] *= 2.0f;
    for (size_t i = 0; i < c.nw; i++) dw[i] *= 2.0f;
    CHECK_MSG(rel_err(dinp2, dinp, c.nin) <= 1e-6, "conv %s: dinp does not accumulate", k->name);
    CHECK_MSG(rel_err(dw2, dw, c.nw) <= 1e-6, "conv %s: dw does not accumulate", k->name);
    if (k->bias) {
        for (int i = 0; i < k->OC; i++) db[i] *= 2.0f;
        CHECK_MSG(rel_err(db2, db, k->OC) <= 1e-6, "conv %s: db does not accumulate", k->name);
    }
    /* dinp = NULL leaves the parameter gradients as they were */
    float *dw3 = fvec(c.nw), *dw4 = fvec(c.nw);
    conv_bwd(&c, NULL, dw3, NULL);
    float *dx4 = fvec(c.nin);
    conv_bwd(&c, dx4, dw4, NULL);
    CHECK_MSG(memcmp(dw3, dw4, c.nw * sizeof(float)) == 0, "conv %s: dw depends on dinp = NULL",
              k->name);

    free(dinp), free(dw), free(db), free(dinp2), free(dw2), free(db2), free(dw3), free(dw4),
        free(dx4);
    conv_ctx_free(&c);
}

/* Bit-for-bit repetition, and agreement across thread counts (the split
 * of the samples and of dw changes with the thread count). */
static void run_conv_full(const conv_case *k, uint64_t key, float **out, float **dinp, float **dw,
                          float **db)
{
    conv_ctx c;
    conv_ctx_init(&c, k, key);
    conv_fwd(&c);
    *out = fdup(c.out, c.nout);
    *dinp = fvec(c.nin), *dw = fvec(c.nw), *db = fvec(k->OC);
    conv_bwd(&c, *dinp, *dw, *db);
    conv_ctx_free(&c);
}

static void test_conv_repeat(void)
{
    const conv_case k = {"repeat", 5, 6, 13, 11, 20, 3, 3, 2, 1, 1};
    const int OH = 7, OW = 6;
    const size_t nout = (size_t)k.N * k.OC * OH * OW, nin = (size_t)k.N * k.C * k.H * k.W,
                 nw = (size_t)k.OC * k.C * 9;
    float *o1, *x1, *w1, *b1, *o2, *x2, *w2, *b2;
    run_conv_full(&k, 77, &o1, &x1, &w1, &b1);
    run_conv_full(&k, 77, &o2, &x2, &w2, &b2);
    CHECK(memcmp(o1, o2, nout * sizeof(float)) == 0);
    CHECK(memcmp(x1, x2, nin * sizeof(float)) == 0);
    CHECK(memcmp(w1, w2, nw * sizeof(float)) == 0);
    CHECK(memcmp(b1, b2, k.OC * sizeof(float)) == 0);

    const int saved = omp_get_max_threads();
    const int counts[] = {1, 3};
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(counts[t]);
        float *o3, *x3, *w3, *b3;
        run_conv_full(&k, 77, &o3, &x3, &w3, &b3);
        CHECK_MSG(rel_err(o3, o1, nout) <= 1e-6, "conv out differs with %d threads", counts[t]);
        CHECK_MSG(rel_err(x3, x1, nin) <= 1e-6, "conv dinp differs with %d threads", counts[t]);
        CHECK_MSG(rel_err(w3, w1, nw) <= 1e-6, "conv dw differs with %d threads", counts[t]);
        CHECK_MSG(rel_err(b3, b1, k.OC) <= 1e-6, "conv db differs with %d threads", counts[t]);
        free(o3), free(x3), free(w3), free(b3);
    }
    omp_set_num_threads(saved);
    free(o1), free(x1), free(w1), free(b1), free(o2), free(x2), free(w2), free(b2);
}

/* Inside someone else's parallel region, with a larger thread count
 * there than where the scratch was sized (omp_set_num_threads inside the
 * region, as OMP_NUM_THREADS=2,4 does): each conv path runs on its own
 * thread within the scratch sized outside, and gives the serial result.
 * The direct stem kernels once placed their tap offsets by the inner
 * count and wrote past the scratch (ASan saw it; here a wrong result or
 * a crash). */
static void test_conv_nested(void)
{
    const conv_case ks[] = {
        {"nested stem 7x7 s2", 2, 3, 23, 21, 10, 7, 7, 2, 3, 1},
        {"nested 3x3 s2 implicit", 2, 12, 11, 13, 9, 3, 3, 2, 1, 1},
        {"nested 3x3 s1 implicit", 2, 12, 9, 8, 9, 3, 3, 1, 1, 0},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        const conv_case *k = &ks[i];
        conv_ctx c;
        conv_ctx_init(&c, k, 2300 + 10 * i);
        conv_fwd(&c);
        float *out1 = fdup(c.out, c.nout), *dx1 = fvec(c.nin), *dw1 = fvec(c.nw);
        conv_bwd(&c, dx1, dw1, NULL);
        const size_t ns = conv2d_scratch_floats(k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW,
                                                k->stride, k->pad);
        int same = 1;
#pragma omp parallel num_threads(2) reduction(&& : same)
        {
            omp_set_num_threads(4);
            float *scr = malloc(ns * sizeof(float)), *out = fvec(c.nout), *dx = fvec(c.nin),
                  *dw = fvec(c.nw);
            conv2d_forward(out, scr, c.inp, c.w, c.b, k->N, k->C, k->H, k->W, k->OC, k->KH,
                           k->KW, k->stride, k->pad);
            conv2d_backward(dx, dw, NULL, scr, c.r, c.inp, c.w, k->N, k->C, k->H, k->W, k->OC,
                            k->KH, k->KW, k->stride, k->pad);
            same = rel_err(out, out1, c.nout) <= 1e-6 && rel_err(dx, dx1, c.nin) <= 1e-6 &&
                   rel_err(dw, dw1, c.nw) <= 1e-6;
            free(scr), free(out), free(dx), free(dw);
        }
        CHECK_MSG(same, "conv %s: inside a parallel region differs from outside", k->name);
        free(out1), free(dx1), free(dw1);
        conv_ctx_free(&c);
    }
}

/* Input columns a stride-2 conv never reads (the last of an even width,
 * pad 0) may hold anything, Inf included, without touching the weight
 * gradient: the direct kernels' lanes past the output row once read them
 * and multiplied them by zero. */
static void test_conv_unread_inf(void)
{
    const conv_case k = {"unread inf", 2, 3, 8, 8, 4, 3, 3, 2, 0, 0};
    for (int path = 1; path >= 0; path--) {
        const int was = conv2d_set_implicit(path);
        conv_ctx c;
        conv_ctx_init(&c, &k, 2400);
        float *dw0 = fvec(c.nw), *dw1 = fvec(c.nw);
        conv_bwd(&c, NULL, dw0, NULL);
        for (size_t i = 0; i < c.nin; i++)
            if (i % k.W == (size_t)k.W - 1) c.inp[i] = INFINITY;
        conv_bwd(&c, NULL, dw1, NULL);
        CHECK_MSG(memcmp(dw0, dw1, c.nw * sizeof(float)) == 0,
                  "conv %s (%s): an unread input column changed dw", k.name,
                  path ? "implicit" : "im2col");
        free(dw0), free(dw1);
        conv_ctx_free(&c);
        conv2d_set_implicit(was);
    }
}

/* ---- batch norm ---------------------------------------------------------- */

typedef struct {
    int N, C, HW;
    size_t n;
    float *inp, *gamma, *beta, *out, *mean, *rstd, *rm, *rv, *r;
} bn_ctx;

static void bn_ctx_init(bn_ctx *c, int N, int C, int HW, uint64_t key)
{
    c->N = N, c->C = C, c->HW = HW;
    c->n = (size_t)N * C * HW;
    c->inp = fvec(c->n), c->out = fvec(c->n), c->r = fvec(c->n);
    c->gamma = fvec(C), c->beta = fvec(C), c->mean = fvec(C), c->rstd = fvec(C);
    c->rm = fvec(C), c->rv = fvec(C);
    fill_normal(c->inp, c->n, key + 1, 1.0f);
    /* an offset per channel so the mean matters (a few std, as activations) */
    for (size_t i = 0; i < c->n; i++) c->inp[i] += 0.5f * (float)((i / HW) % C % 7);
    fill_normal(c->gamma, C, key + 2, 0.3f);
    for (int i = 0; i < C; i++) c->gamma[i] += 1.0f;
    fill_normal(c->beta, C, key + 3, 0.3f);
    fill_normal(c->r, c->n, key + 4, 1.0f);
}

static void bn_ctx_free(bn_ctx *c)
{
    free(c->inp), free(c->out), free(c->r), free(c->gamma), free(c->beta), free(c->mean),
        free(c->rstd), free(c->rm), free(c->rv);
}

static void bn_fwd(bn_ctx *c)
{
    for (int i = 0; i < c->C; i++) c->rm[i] = 0.0f, c->rv[i] = 1.0f;
    batchnorm_forward(c->out, c->mean, c->rstd, c->inp, c->gamma, c->beta, c->rm, c->rv, c->N,
                      c->C, c->HW, 1, 0.1f, 1e-5f, NULL);
}

static double bn_loss(void *p)
{
    bn_ctx *c = p;
    bn_fwd(c);
    return dot_r(c->out, c->r, c->n);
}

static void test_bn_train(int N, int C, int HW, uint64_t key)
{
    bn_ctx c;
    bn_ctx_init(&c, N, C, HW, key);
    char what[128];
    bn_fwd(&c);

    /* statistics, running-stat update and output against direct formulas;
     * the gradients against the closed form of batch norm's backward, in
     * double (finite differences check that form on the small cases) */
    float *dinp = fvec(c.n), *dg = fvec(C), *dbt = fvec(C);
    batchnorm_backward(dinp, dg, dbt, c.r, c.inp, c.mean, c.rstd, c.gamma, N, C, HW, NULL);
    double worst_out = 0, worst_dx = 0, worst_dg = 0, worst_db = 0;
    for (int ch = 0; ch < C; ch++) {
        double s = 0, ss = 0, M = (double)N * HW;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) s += c.inp[((size_t)n * C + ch) * HW + i];
        double m = s / M;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                double d = c.inp[((size_t)n * C + ch) * HW + i] - m;
                ss += d * d;
            }
        double var = ss / M;
        CHECK_NEAR(c.mean[ch], m, 1e-6 * (1 + fabs(m)));
        CHECK_NEAR(c.rstd[ch], 1 / sqrt(var + 1e-5), 1e-6 / sqrt(var));
        CHECK_NEAR(c.rm[ch], 0.1 * m, 1e-6 * (1 + fabs(m)));
        CHECK_NEAR(c.rv[ch], 0.9 + 0.1 * var * M / (M - 1), 1e-6 * (1 + var));
        const double rs = 1 / sqrt(var + 1e-5);
        double sd = 0, sdx = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + ch) * HW + i;
                double xhat = (c.inp[o] - m) * rs, y = xhat * c.gamma[ch] + c.beta[ch];
                worst_out = fmax(worst_out, fabs(c.out[o] - y) / (1 + fabs(y)));
                sd += c.r[o], sdx += c.r[o] * xhat;
            }
        worst_db = fmax(worst_db, fabs(dbt[ch] - sd) / (1 + fabs(sd)));
        worst_dg = fmax(worst_dg, fabs(dg[ch] - sdx) / (1 + fabs(sdx)));
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                size_t o = ((size_t)n * C + ch) * HW + i;
                double xhat = (c.inp[o] - m) * rs;
                double dx = c.gamma[ch] * rs * (c.r[o] - sd / M - xhat * sdx / M);
                worst_dx = fmax(worst_dx, fabs(dinp[o] - dx) / (1 + fabs(dx)));
            }
    }
    CHECK_MSG(worst_out <= 1e-5, "bn N%d C%d HW%d out off by %.3g", N, C, HW, worst_out);
    CHECK_MSG(worst_dx <= 1e-5, "bn N%d C%d HW%d dinp off by %.3g", N, C, HW, worst_dx);
    CHECK_MSG(worst_dg <= 1e-5, "bn N%d C%d HW%d dgamma off by %.3g", N, C, HW, worst_dg);
    CHECK_MSG(worst_db <= 1e-5, "bn N%d C%d HW%d dbeta off by %.3g", N, C, HW, worst_db);

    if (c.n <= 1000) {
        snprintf(what, sizeof what, "bn N%d C%d HW%d dinp", N, C, HW);
        fd_check(what, c.inp, dinp, c.n, bn_loss, &c);
        snprintf(what, sizeof what, "bn N%d C%d HW%d dgamma", N, C, HW);
        fd_check(what, c.gamma, dg, C, bn_loss, &c);
        snprintf(what, sizeof what, "bn N%d C%d HW%d dbeta", N, C, HW);
        fd_check(what, c.beta, dbt, C, bn_loss, &c);
    }

    /* accumulate */
    bn_fwd(&c);
    float *dinp2 = fdup(dinp, c.n), *dg2 = fdup(dg, C), *dbt2 = fdup(dbt, C);
    batchnorm_backward(dinp2, dg2, dbt2, c.r, c.inp, c.mean, c.rstd, c.gamma, N, C, HW, NULL);
    for (size_t i = 0; i < c.n; i++) dinp[i] *= 2;
    for (int i = 0; i < C; i++) dg[i] *= 2, dbt[i] *= 2;
    CHECK(rel_err(dinp2, dinp, c.n) <= 1e-6);
    CHECK(rel_err(dg2, dg, C) <= 1e-6);
    CHECK(rel_err(dbt2, dbt, C) <= 1e-6);
    free(dinp), free(dg), free(dbt), free(dinp2), free(dg2), free(dbt2);
    bn_ctx_free(&c);
}

static void test_bn_eval(void)
{
    bn_ctx c;
    const int N = 3, C = 4, HW = 6;
    bn_ctx_init(&c, N, C, HW, 900);
    for (int i = 0; i < C; i++) c.rm[i] = 0.2f * i - 0.3f, c.rv[i] = 0.5f + 0.4f * i;
    float *rm0 = fdup(c.rm, C), *rv0 = fdup(c.rv, C);
    batchnorm_forward(c.out, c.mean, c.rstd, c.inp, c.gamma, c.beta, c.rm, c.rv, N, C, HW, 0,
                      0.1f, 1e-5f, NULL);
    CHECK(memcmp(rm0, c.rm, C * sizeof(float)) == 0 && memcmp(rv0, c.rv, C * sizeof(float)) == 0);
    double worst = 0;
    for (size_t o = 0; o < c.n; o++) {
        int ch = (int)((o / HW) % C);
        double y = (c.inp[o] - rm0[ch]) / sqrt(rv0[ch] + 1e-5) * c.gamma[ch] + c.beta[ch];
        worst = fmax(worst, fabs(c.out[o] - y) / (1 + fabs(y)));
    }
    CHECK_MSG(worst <= 1e-6, "bn eval output off by %g", worst);
    for (int ch = 0; ch < C; ch++) {
        CHECK(c.mean[ch] == rm0[ch]);
        CHECK_NEAR(c.rstd[ch], 1 / sqrt(rv0[ch] + 1e-5), 1e-6);
    }
    free(rm0), free(rv0);
    bn_ctx_free(&c);
}

/* Two simulated ranks: each runs in its own thread on its part of the
 * batch, and the reducer meets the other rank at a barrier and sums both
 * buffers (in rank order, so both ranks get the same bits). */
#define FAKE_MAX 4096
typedef struct {
    pthread_barrier_t bar;
    double *slot[2];
    int nslot[2];
    double tmp[2][FAKE_MAX];
    int mismatched;
} fake_world;

typedef struct {
    fake_world *world;
    int rank;
    int N0, N; /* this rank's samples: N0 .. N0+N-1 of the full batch */
    bn_ctx *full;
    float *out, *mean, *rstd, *rm, *rv, *dinp, *dg, *db;
} fake_rank;

static void fake_allreduce(double *buf, int n, void *ctx)
{
    fake_rank *r = ctx;
    fake_world *w = r->world;
    w->slot[r->rank] = buf;
    w->nslot[r->rank] = n;
    pthread_barrier_wait(&w->bar);
    if (w->nslot[0] != w->nslot[1] || n > FAKE_MAX) {
        w->mismatched = 1;
    } else {
        for (int i = 0; i < n; i++) w->tmp[r->rank][i] = w->slot[0][i] + w->slot[1][i];
    }
    pthread_barrier_wait(&w->bar);
    if (!w->mismatched) memcpy(buf, w->tmp[r->rank], n * sizeof(double));
}

static void *fake_rank_main(void *p)
{
    fake_rank *r = p;
    const bn_ctx *f = r->full;
    const size_t per = (size_t)f->C * f->HW, off = (size_t)r->N0 * per;
    aes_reducer red = {fake_allreduce, r};
    for (int i = 0; i < f->C; i++) r->rm[i] = 0.0f, r->rv[i] = 1.0f;
    batchnorm_forward(r->out, r->mean, r->rstd, f->inp + off, f->gamma, f->beta, r->rm, r->rv,
                      r->N, f->C, f->HW, 1, 0.1f, 1e-5f, &red);
    batchnorm_backward(r->dinp, r->dg, r->db, f->r + off, f->inp + off, r->mean, r->rstd,
                       f->gamma, r->N, f->C, f->HW, &red);
    return NULL;
}

static void test_bn_two_ranks(int N, int C, int HW, int N0)
{
    bn_ctx c;
    bn_ctx_init(&c, N, C, HW, 500 + N0);
    bn_fwd(&c);
    float *dinp = fvec(c.n), *dg = fvec(C), *dbt = fvec(C);
    batchnorm_backward(dinp, dg, dbt, c.r, c.inp, c.mean, c.rstd, c.gamma, N, C, HW, NULL);

    fake_world w;
    memset(&w, 0, sizeof w);
    pthread_barrier_init(&w.bar, NULL, 2);
    fake_rank rk[2];
    float *out = fvec(c.n), *dx = fvec(c.n);
    for (int r = 0; r < 2; r++) {
        fake_rank *k = &rk[r];
        memset(k, 0, sizeof *k);
        k->world = &w, k->rank = r, k->full = &c;
        k->N0 = r ? N0 : 0;
        k->N = r ? N - N0 : N0;
        k->out = out + (size_t)k->N0 * C * HW;
        k->dinp = dx + (size_t)k->N0 * C * HW;
        k->mean = fvec(C), k->rstd = fvec(C), k->rm = fvec(C), k->rv = fvec(C);
        k->dg = fvec(C), k->db = fvec(C);
    }
    pthread_t th[2];
    for (int r = 0; r < 2; r++) pthread_create(&th[r], NULL, fake_rank_main, &rk[r]);
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&w.bar);
    CHECK_MSG(!w.mismatched, "bn ranks called the reducer with different sizes");

    CHECK_MSG(rel_err(out, c.out, c.n) <= 1e-5, "bn 2 ranks (%d+%d) out: %g", N0, N - N0,
              rel_err(out, c.out, c.n));
    CHECK_MSG(rel_err(dx, dinp, c.n) <= 1e-5, "bn 2 ranks (%d+%d) dinp: %g", N0, N - N0,
              rel_err(dx, dinp, c.n));
    float *sg = fvec(C), *sb = fvec(C);
    for (int i = 0; i < C; i++) {
        sg[i] = rk[0].dg[i] + rk[1].dg[i];
        sb[i] = rk[0].db[i] + rk[1].db[i];
    }
    CHECK_MSG(rel_err(sg, dg, C) <= 1e-5, "bn 2 ranks dgamma sum: %g", rel_err(sg, dg, C));
    CHECK_MSG(rel_err(sb, dbt, C) <= 1e-5, "bn 2 ranks dbeta sum: %g", rel_err(sb, dbt, C));
    /* a rank's own dgamma is its local share, not the global sum */
    CHECK(rel_err(rk[0].dg, dg, C) > 1e-3);
    for (int r = 0; r < 2; r++) {
        CHECK(rel_err(rk[r].mean, c.mean, C) <= 1e-6);
        CHECK(rel_err(rk[r].rstd, c.rstd, C) <= 1e-6);
        CHECK(rel_err(rk[r].rm, c.rm, C) <= 1e-6);
        CHECK(rel_err(rk[r].rv, c.rv, C) <= 1e-6);
        free(rk[r].mean), free(rk[r].rstd), free(rk[r].rm), free(rk[r].rv), free(rk[r].dg),
            free(rk[r].db);
    }
    free(sg), free(sb), free(out), free(dx), free(dinp), free(dg), free(dbt);
    bn_ctx_free(&c);
}

static void test_bn_repeat(void)
{
    /* large enough for the parallel loops */
    const int N = 4, C = 16, HW = 900;
    float *o[2], *d[2], *g[2], *b[2];
    for (int t = 0; t < 2; t++) {
        bn_ctx c;
        bn_ctx_init(&c, N, C, HW, 321);
        bn_fwd(&c);
        d[t] = fvec(c.n), g[t] = fvec(C), b[t] = fvec(C);
        batchnorm_backward(d[t], g[t], b[t], c.r, c.inp, c.mean, c.rstd, c.gamma, N, C, HW, NULL);
        o[t] = fdup(c.out, c.n);
        bn_ctx_free(&c);
    }
    const size_t n = (size_t)N * C * HW;
    CHECK(memcmp(o[0], o[1], n * sizeof(float)) == 0);
    CHECK(memcmp(d[0], d[1], n * sizeof(float)) == 0);
    CHECK(memcmp(g[0], g[1], C * sizeof(float)) == 0);
    CHECK(memcmp(b[0], b[1], C * sizeof(float)) == 0);
    for (int t = 0; t < 2; t++) free(o[t]), free(d[t]), free(g[t]), free(b[t]);
}

/* ---- pooling, relu --------------------------------------------------------- */

typedef struct {
    int kind; /* 0 max, 1 avg, 2 gap, 3 relu */
    int N, C, H, W, K, stride, pad, OH, OW;
    size_t nin, nout;
    float *inp, *out, *r;
    int32_t *am;
} pool_ctx;

static void pool_fwd(pool_ctx *c)
{
    switch (c->kind) {
    case 0:
        maxpool2d_forward(c->out, c->am, c->inp, c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        break;
    case 1:
        avgpool2d_forward(c->out, c->inp, c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        break;
    case 2: gap_forward(c->out, c->inp, c->N, c->C, c->H * c->W); break;
    default: relu_forward(c->out, c->inp, c->nin); break;
    }
}

static void pool_bwd(pool_ctx *c, float *dinp)
{
    switch (c->kind) {
    case 0:
        maxpool2d_backward(dinp, c->r, c->am, c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        break;
    case 1:
        avgpool2d_backward(dinp, c->r, c->N, c->C, c->H, c->W, c->K, c->stride, c->pad);
        break;
    case 2: gap_backward(dinp, c->r, c->N, c->C, c->H * c->W); break;
    default: relu_backward(dinp, c->r, c->out, c->nin); break;
    }
}

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    pool_fwd(c);
    return dot_r(c->out, c->r, c->nout);
}

static void pool_init(pool_ctx *c, int kind, int N, int C, int H, int W, int K, int stride,
                      int pad, uint64_t key)
{
    memset(c, 0, sizeof *c);
    c->kind = kind, c->N = N, c->C = C, c->H = H, c->W = W, c->K = K, c->stride = stride,
    c->pad = pad;
    c->nin = (size_t)N * C * H * W;
    if (kind <= 1) {
        c->OH = (H + 2 * pad - K) / stride + 1, c->OW = (W + 2 * pad - K) / stride + 1;
        c->nout = (size_t)N * C * c->OH * c->OW;
    } else {
        c->nout = kind == 2 ? (size_t)N * C : c->nin;
    }
    c->inp = fvec(c->nin), c->out = fvec(c->nout), c->r = fvec(c->nout);
    c->am = calloc(c->nout, sizeof(int32_t));
    fill_normal(c->r, c->nout, key + 2, 1.0f);
    aes_rng g;
    aes_rng_init(&g, key + 1);
    if (kind == 0) {
        /* distinct values 0.1 apart (a shuffled ramp, mostly negative so
         * the padding would win if it were counted): no ties, and a step
         * of FD_EPS never changes a winner */
        for (size_t i = 0; i < c->nin; i++) c->inp[i] = 0.1f * (float)i - 0.08f * (float)c->nin;
        for (size_t i = c->nin - 1; i > 0; i--) {
            size_t j = aes_rng_below(&g, i + 1);
            float t = c->inp[i];
            c->inp[i] = c->inp[j], c->inp[j] = t;
        }
    } else if (kind == 3) {
        /* no value within 0.1 of the kink */
        for (size_t i = 0; i < c->nin; i++) {
            float v = aes_rng_normal(&g);
            c->inp[i] = v < 0 ? v - 0.1f : v + 0.1f;
        }
    } else {
        fill_normal(c->inp, c->nin, key + 1, 1.0f);
    }
}

static void pool_free(pool_ctx *c) { free(c->inp), free(c->out), free(c->r), free(c->am); }

static void test_pool(const char *name, int kind, int N, int C, int H, int W, int K, int stride,
                      int pad, uint64_t key)
{
    pool_ctx c;
    pool_init(&c, kind, N, C, H, W, K, stride, pad, key);
    pool_fwd(&c);

    /* forward against direct loops (max and avg) */
    if (kind <= 1) {
        double worst = 0;
        int bad_arg = 0;
        for (int pl = 0; pl < N * C; pl++)
            for (int oh = 0; oh < c.OH; oh++)
                for (int ow = 0; ow < c.OW; ow++) {
                    double best = -INFINITY, s = 0;
                    int at = -1;
                    for (int kh = 0; kh < K; kh++)
                        for (int kw = 0; kw < K; kw++) {
                            int ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                            double v = c.inp[(size_t)pl * H * W + ih * W + iw];
                            s += v;
                            if (v > best) best = v, at = ih * W + iw;
                        }
                    size_t o = ((size_t)pl * c.OH + oh) * c.OW + ow;
                    double ref = kind == 0 ? best : s / (K * K);
                    worst = fmax(worst, fabs(c.out[o] - ref) / (1 + fabs(ref)));
                    if (kind == 0 && c.am[o] != at) bad_arg++;
                }
        CHECK_MSG(worst <= 1e-6, "%s forward off by %g", name, worst);
        CHECK_MSG(bad_arg == 0, "%s: %d wrong argmax", name, bad_arg);
    }
    float *dinp = fvec(c.nin);
    pool_bwd(&c, dinp);
    char what[128];
    snprintf(what, sizeof what, "%s dinp", name);
    if (kind == 1 || kind == 2)
        adjoint_check(what, dot_r(c.out, c.r, c.nout), dot_r(c.inp, dinp, c.nin),
                      dot_abs(c.out, c.r, c.nout));
    fd_check(what, c.inp, dinp, c.nin, pool_loss, &c);

    pool_fwd(&c);
    float *dinp2 = fdup(dinp, c.nin);
    pool_bwd(&c, dinp2);
    for (size_t i = 0; i < c.nin; i++) dinp[i] *= 2;
    CHECK_MSG(rel_err(dinp2, dinp, c.nin) <= 1e-6, "%s: dinp does not accumulate", name);
    free(dinp), free(dinp2);
    pool_free(&c);
}

/* Padding never wins a max pool, even when every real value is negative. */
static void test_maxpool_negative(void)
{
    const int H = 4, W = 5, OH = 2, OW = 3;
    float x[20], y[6];
    int32_t am[6];
    for (int i = 0; i < H * W; i++) x[i] = -1.0f - 0.01f * i;
    maxpool2d_forward(y, am, x, 1, 1, H, W, 3, 2, 1);
    /* window (0,0) covers rows 0..1, cols 0..1: max is x[0] */
    CHECK(y[0] == x[0] && am[0] == 0);
    for (int o = 0; o < OH * OW; o++) CHECK(y[o] < 0.0f);
}

static void test_add(void)
{
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {0.5f, -2, 0, 1, -10};
    add_inplace(a, b, 5);
    CHECK(a[0] == 1.5f && a[1] == 0 && a[2] == 3 && a[3] == 5 && a[4] == -5);
    const size_t n = 200000; /* the parallel branch */
    float *x = fvec(n), *y = fvec(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)i, y[i] = 1.0f;
    add_inplace(x, y, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += x[i] != (float)i + 1.0f;
    CHECK(bad == 0);
    /* relu passes a NaN through */
    float z[3] = {-1.0f, NAN, 2.0f}, rz[3];
    relu_forward(rz, z, 3);
    CHECK(rz[0] == 0.0f && isnan(rz[1]) && rz[2] == 2.0f);
    free(x), free(y);
}

int main(void)
{
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        test_conv_case(&conv_cases[i], 1000 + 10 * i);
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        test_conv_direct(&conv_cases[i], 1500 + 10 * i);
    /* several col blocks of output rows (src/nn/conv.c keeps a block to
     * 256K floats): 3 blocks of 12 rows, then blocks of a single row */
    const conv_case blocked[] = {
        {"3x3 s1 p1 3 blocks", 3, 64, 36, 36, 16, 3, 3, 1, 1, 1},
        {"3x3 s2 p1 1-row blocks", 2, 300, 5, 199, 6, 3, 3, 2, 1, 1},
        {"3x3 s1 p2 1-row blocks N1", 1, 300, 4, 100, 5, 3, 3, 1, 2, 0},
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        test_conv_direct(&blocked[i], 1700 + 10 * i);
    /* The AVX-512 implicit GEMM's edges (src/nn/conv_x86.c): output
     * channels not a multiple of its 8-row tiles; reductions over several
     * 256-long blocks; column panels of 48 that cross output rows and
     * samples (7x7 and 5x5 outputs); blocks of 384 columns; few columns,
     * where threads split the rows; weight gradients with few weights
     * (threads split the pixels) and with many (threads split the
     * weights); stride-2 convs, read from the input's four phase planes
     * (odd and even sizes, so planes of unequal size; pads 0 to 3;
     * non-square kernels; outputs of a few pixels, so panels span
     * samples); and 1x1 convs, which stay on OpenBLAS with the implicit
     * GEMM switched on. Each on both settings where the CPU has AVX-512,
     * on the im2col path only where not. */
    const conv_case implicit[] = {
        {"3x3 s1 p1 OC 13 K 3 blocks", 3, 70, 9, 11, 13, 3, 3, 1, 1, 1},
        {"3x3 s1 p1 7x7 out, 40 ch", 5, 40, 7, 7, 40, 3, 3, 1, 1, 0},
        {"3x3 s1 p1 many weights", 2, 96, 7, 7, 24, 3, 3, 1, 1, 1},
        {"1x1 s1 20x20 3 col blocks", 3, 19, 20, 20, 21, 1, 1, 1, 0, 1},
        {"5x5 s1 p2 odd", 2, 5, 13, 9, 9, 5, 5, 1, 2, 1},
        {"3x3 s1 p0 N1 wide", 1, 6, 6, 61, 17, 3, 3, 1, 0, 0},
        {"7x7 s2 p3 stem-like", 2, 3, 37, 35, 16, 7, 7, 2, 3, 0},
        {"3x3 s2 p1 many ch", 2, 64, 15, 14, 40, 3, 3, 2, 1, 1},
        {"1x1 s2 p0 down", 3, 32, 14, 13, 24, 1, 1, 2, 0, 0},
        {"3x3 s2 p2 N1", 1, 9, 8, 23, 8, 3, 3, 2, 2, 1},
        {"3x3 s2 p1 many weights", 2, 96, 9, 10, 20, 3, 3, 2, 1, 0},
        {"5x3 s2 p0 even", 3, 7, 12, 10, 9, 5, 3, 2, 0, 1},
        {"3x3 s2 p1 4x4 out N6", 6, 17, 7, 8, 11, 3, 3, 2, 1, 1},
        {"5x5 s2 p2 odd", 2, 6, 17, 15, 10, 5, 5, 2, 2, 0},
        /* few input channels: the direct kernels (src/nn/conv_direct_x86.c)
         * with 4-channel groups cut by OC, 6-tap groups cut by K, rows of
         * several 16-pixel vectors with a masked tail, tiles of 6 vectors
         * across rows and samples, several row units per sample */
        {"7x7 s2 p3 3 ch, 70 px wide", 3, 3, 40, 139, 13, 7, 7, 2, 3, 1},
        {"3x3 s1 p1 1 ch, OC 5", 2, 1, 75, 33, 5, 3, 3, 1, 1, 1},
        {"5x5 s1 p0 4 ch, OC 7", 3, 4, 9, 52, 7, 5, 5, 1, 0, 0},
        {"3x3 s2 p0 2 ch N7", 7, 2, 11, 5, 6, 3, 3, 2, 0, 1},
        {"7x1 s2 p2 3 ch", 2, 3, 30, 17, 9, 7, 1, 2, 2, 0},
    };
    for (int path = 1; path >= 0; path--) {
        const int was = conv2d_set_implicit(path);
        for (size_t i = 0; i < sizeof implicit / sizeof implicit[0]; i++)
            test_conv_direct(&implicit[i], 1800 + 10 * i);
        conv2d_set_implicit(was);
    }
    test_conv_repeat();
    test_conv_nested();
    test_conv_unread_inf();

    test_bn_train(6, 3, 1, 11);
    test_bn_train(3, 4, 5, 12);
    test_bn_train(2, 2, 7, 13);
    test_bn_train(4, 1100, 3, 14); /* more channels than one reduction block (1024) */
    test_bn_train(2, 8, 2500, 15); /* planes long enough for the parallel loops */
    test_bn_eval();
    test_bn_two_ranks(6, 5, 4, 3);
    test_bn_two_ranks(6, 5, 4, 2); /* unequal halves: the count must be reduced too */
    test_bn_two_ranks(5, 3, 1, 2);
    test_bn_two_ranks(4, 1100, 2, 1);
    test_bn_repeat();

    test_pool("maxpool k3 s2 p1", 0, 2, 3, 9, 8, 3, 2, 1, 21);
    test_pool("maxpool k2 s2 p0", 0, 1, 2, 6, 7, 2, 2, 0, 22);
    test_pool("maxpool k3 s1 p1", 0, 2, 2, 5, 5, 3, 1, 1, 23);
    test_pool("avgpool k3 s2 p1", 1, 2, 3, 9, 8, 3, 2, 1, 24);
    test_pool("avgpool k2 s2 p0", 1, 2, 2, 6, 7, 2, 2, 0, 25);
    test_pool("gap", 2, 3, 4, 5, 6, 0, 0, 0, 26);
    test_pool("relu", 3, 2, 3, 5, 7, 0, 0, 0, 27);
    test_maxpool_negative();
    test_add();

    printf("worst finite-difference relative error: %.3g (tolerance %g)\n", worst_fd, FD_TOL);
    return check_report();
}
