/*
 * AdamW, the learning-rate schedule, the sum of squares and the clip
 * factor against closed forms and a double-precision reference written
 * here (the torch comparison is test/py/test_optim_torch.py).
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/optim.h"
#include "check.h"

static const aes_adamw CFG = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};

/* First step from m = v = 0: m_hat = g and v_hat = g^2 exactly in real
 * arithmetic, so p1 = p0 * (1 - lr wd) - lr * g / (|g| + eps). */
static void test_first_step(void)
{
    enum { N = 8 };
    const float p0[N] = {1.0f, -0.5f, 2.0f, 0.25f, -1.5f, 0.75f, 1.0f, -3.0f};
    const float g[N] = {0.3f, -2.0f, 1e-8f, -1e-8f, 0.0f, 123.0f, -1e-3f, 5e-5f};
    const float lr = 1e-2f;
    for (int decay = 0; decay <= 1; decay++) {
        float p[N], m[N], v[N];
        memcpy(p, p0, sizeof p);
        memset(m, 0, sizeof m);
        memset(v, 0, sizeof v);
        aes_adamw_step(p, g, m, v, N, lr, &CFG, decay, 1);
        for (int i = 0; i < N; i++) {
            const double keep = decay ? 1.0 - (double)lr * CFG.weight_decay : 1.0;
            const double gi = g[i];
            const double want = p0[i] * keep - (double)lr * gi / (fabs(gi) + CFG.eps);
            CHECK_NEAR(p[i], want, 3e-7 * fabs(want) + 1e-6 * lr);
            CHECK_NEAR(m[i], (1.0 - CFG.beta1) * gi, 1e-6 * fabs((1.0 - CFG.beta1) * gi));
            CHECK_NEAR(v[i], (1.0 - CFG.beta2) * gi * gi, 1e-6 * (1.0 - CFG.beta2) * gi * gi);
        }
        /* A zero gradient moves a parameter only through decay. */
        CHECK(p[4] == (decay ? p0[4] * (float)(1.0 - (double)lr * CFG.weight_decay) : p0[4]));
        /* g = eps: half a step. */
        CHECK_NEAR(p[2], p0[2] * (decay ? 1.0 - (double)lr * CFG.weight_decay : 1.0) - 0.5 * lr,
                   1e-6);
    }
}

/* Several steps against the header's formula in double; decay only where
 * asked, and the moments do not depend on it. */
static void test_steps_vs_double(void)
{
    enum { N = 300, T = 6 };
    float p[2][N], m[2][N], v[2][N], g[N];
    double pd[2][N], md[N], vd[N];
    aes_rng r;
    aes_rng_init(&r, 12345);
    for (int i = 0; i < N; i++) {
        const float x = aes_rng_normal(&r);
        for (int d = 0; d < 2; d++) {
            p[d][i] = x;
            pd[d][i] = x;
            m[d][i] = v[d][i] = 0.0f;
        }
        md[i] = vd[i] = 0.0;
    }
    const float lr = 3e-3f;
    const double b1 = CFG.beta1, b2 = CFG.beta2, eps = CFG.eps;
    for (int t = 1; t <= T; t++) {
        for (int i = 0; i < N; i++) g[i] = aes_rng_normal(&r) * (i % 3 == 0 ? 1e-3f : 1.0f);
        for (int d = 0; d < 2; d++) aes_adamw_step(p[d], g, m[d], v[d], N, lr, &CFG, d, t);
        const double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
        for (int i = 0; i < N; i++) {
            md[i] = b1 * md[i] + (1.0 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1.0 - b2) * (double)g[i] * g[i];
            const double upd = (double)lr * (md[i] / bc1) / (sqrt(vd[i] / bc2) + eps);
            pd[0][i] -= upd;
            pd[1][i] = pd[1][i] * (1.0 - (double)lr * CFG.weight_decay) - upd;
        }
    }
    /* m crosses zero, so its error is taken relative to its norm. */
    double dm = 0, nm = 0, ev = 0, ep = 0;
    int moments_same = 1;
    for (int i = 0; i < N; i++) {
        dm += (m[0][i] - md[i]) * (m[0][i] - md[i]);
        nm += md[i] * md[i];
        ev = fmax(ev, fabs(v[0][i] - vd[i]) / vd[i]);
        for (int d = 0; d < 2; d++)
            ep = fmax(ep, fabs(p[d][i] - pd[d][i]) / fmax(1.0, fabs(pd[d][i])));
        moments_same &= m[0][i] == m[1][i] && v[0][i] == v[1][i];
    }
    const double em = sqrt(dm / nm);
    printf("adamw vs double, %d steps: m rel %.3g, v max rel %.3g, p max rel %.3g\n", T, em, ev, ep);
    CHECK_MSG(em < 1e-6, "m rel err %g", em);
    CHECK_MSG(ev < 2e-6, "v rel err %g", ev);
    /* The float rounding of p itself (half an ulp a step) dominates. */
    CHECK_MSG(ep < 1e-6, "p err %g", ep);
    CHECK(moments_same);
    /* Decay made a difference where asked. */
    CHECK(fabs(p[1][0] - p[0][0]) > 0.5 * fabs(pd[1][0] - pd[0][0]));
}

/* Elementwise, so any thread count gives the same bits. */
static void test_adamw_threads(void)
{
    const size_t n = 100003;
    float *p = aes_malloc(6 * n * sizeof(float), "test");
    float *g = p + n, *m1 = p + 2 * n, *v1 = p + 3 * n, *m2 = p + 4 * n, *v2 = p + 5 * n;
    float *p2 = aes_malloc(n * sizeof(float), "test");
    aes_rng r;
    aes_rng_init(&r, 7);
    for (size_t i = 0; i < n; i++) {
        p[i] = p2[i] = aes_rng_normal(&r);
        g[i] = aes_rng_normal(&r);
        m1[i] = m2[i] = 0.1f * aes_rng_normal(&r);
        v1[i] = v2[i] = (float)aes_rng_uniform(&r);
    }
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    aes_adamw_step(p, g, m1, v1, n, 1e-3f, &CFG, 1, 5);
    omp_set_num_threads(3);
    aes_adamw_step(p2, g, m2, v2, n, 1e-3f, &CFG, 1, 5);
    omp_set_num_threads(saved);
    CHECK(memcmp(p, p2, n * sizeof(float)) == 0);
    CHECK(memcmp(m1, m2, n * sizeof(float)) == 0);
    CHECK(memcmp(v1, v2, n * sizeof(float)) == 0);
    free(p);
    free(p2);
}

/* Clipping folded into the step: the same bits as scaling g in place and
 * stepping, and g itself untouched. */
static void test_adamw_scaled(void)
{
    const size_t n = 4099;
    float *buf = aes_malloc(8 * n * sizeof(float), "test");
    float *p1 = buf, *p2 = buf + n, *g = buf + 2 * n, *gs = buf + 3 * n;
    float *m1 = buf + 4 * n, *m2 = buf + 5 * n, *v1 = buf + 6 * n, *v2 = buf + 7 * n;
    aes_rng r;
    aes_rng_init(&r, 11);
    for (size_t i = 0; i < n; i++) {
        p1[i] = p2[i] = aes_rng_normal(&r);
        g[i] = gs[i] = 3.0f * aes_rng_normal(&r);
        m1[i] = m2[i] = 0.1f * aes_rng_normal(&r);
        v1[i] = v2[i] = (float)aes_rng_uniform(&r);
    }
    const float s = aes_clip_factor(sqrt(aes_sumsq(g, n)), 1.0f);
    CHECK(s < 0.1f);
    aes_scale(gs, n, s);
    aes_adamw_step(p1, gs, m1, v1, n, 1e-3f, &CFG, 1, 3);
    aes_adamw_step_scaled(p2, g, s, m2, v2, n, 1e-3f, &CFG, 1, 3);
    CHECK(memcmp(p1, p2, n * sizeof(float)) == 0);
    CHECK(memcmp(m1, m2, n * sizeof(float)) == 0);
    CHECK(memcmp(v1, v2, n * sizeof(float)) == 0);
    aes_rng_init(&r, 11); /* g again, as drawn above */
    for (size_t i = 0; i < n; i++) {
        (void)aes_rng_normal(&r);
        CHECK_MSG(g[i] == 3.0f * aes_rng_normal(&r), "g[%zu] changed", i);
        (void)aes_rng_normal(&r), (void)aes_rng_uniform(&r);
    }
    free(buf);
}

static void check_rel(float got, double want, double tol)
{
    CHECK_MSG(fabs(got - want) <= tol * fabs(want), "lr %.9g vs %.9g", got, want);
}

static void test_schedule(void)
{
    const float base = 3e-4f, ratio = 0.1f;
    const int64_t W = 100, T = 1100;
    const double b = base, lo = b * ratio;
    check_rel(aes_lr_schedule(0, base, W, T, ratio), b / W, 1e-7);
    check_rel(aes_lr_schedule(49, base, W, T, ratio), b * 50 / W, 1e-7);
    check_rel(aes_lr_schedule(W - 1, base, W, T, ratio), b, 1e-7);
    check_rel(aes_lr_schedule(W, base, W, T, ratio), b, 1e-7);
    check_rel(aes_lr_schedule((W + T) / 2, base, W, T, ratio), (b + lo) / 2, 1e-7);
    /* A quarter of the way: lo + (b - lo) (1 + cos(pi/4)) / 2. */
    check_rel(aes_lr_schedule(W + (T - W) / 4, base, W, T, ratio),
              lo + (b - lo) * (1 + sqrt(0.5)) / 2, 1e-7);
    check_rel(aes_lr_schedule(T, base, W, T, ratio), lo, 1e-7);
    check_rel(aes_lr_schedule(T + 12345, base, W, T, ratio), lo, 1e-7);
    /* No warm-up: base at step 0. */
    check_rel(aes_lr_schedule(0, base, 0, T, ratio), b, 1e-7);
    check_rel(aes_lr_schedule(T / 2, base, 0, T, ratio), (b + lo) / 2, 1e-7);
    /* min_ratio 0 decays to 0. */
    CHECK(aes_lr_schedule(T, base, W, T, 0.0f) == 0.0f);
    /* Rising through warm-up, never rising after. */
    int up = 1, down = 1;
    for (int64_t s = 1; s < W; s++)
        up &= aes_lr_schedule(s, base, W, T, ratio) > aes_lr_schedule(s - 1, base, W, T, ratio);
    for (int64_t s = W + 1; s < T + 5; s++)
        down &= aes_lr_schedule(s, base, W, T, ratio) <= aes_lr_schedule(s - 1, base, W, T, ratio);
    CHECK(up);
    CHECK(down);
}

static void test_sumsq(void)
{
    /* Spans more than one group of blocks and ends in a short block. */
    const size_t n = 3 * 256 * 4096 + 1234;
    float *g = aes_malloc(n * sizeof(float), "test");
    aes_rng r;
    aes_rng_init(&r, 99);
    for (size_t i = 0; i < n; i++) g[i] = aes_rng_normal(&r) * (i % 1000 == 0 ? 100.0f : 1.0f);
    long double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (long double)g[i] * g[i];
    const int saved = omp_get_max_threads();
    double s[4];
    const int threads[4] = {1, 2, 3, 8};
    for (int k = 0; k < 4; k++) {
        omp_set_num_threads(threads[k]);
        s[k] = aes_sumsq(g, n);
    }
    omp_set_num_threads(saved);
    CHECK_MSG(fabs(s[0] - (double)ref) <= 1e-13 * (double)ref, "%.17g vs %.17g", s[0],
              (double)ref);
    for (int k = 1; k < 4; k++)
        CHECK_MSG(memcmp(&s[0], &s[k], sizeof(double)) == 0, "%d threads: %.17g vs %.17g",
                  threads[k], s[k], s[0]);
    /* Small and empty inputs, exact. */
    const float x[5] = {3, 4, 0, -12, 0.5f};
    CHECK(aes_sumsq(x, 2) == 25.0);
    CHECK(aes_sumsq(x, 5) == 169.25);
    CHECK(aes_sumsq(x, 0) == 0.0);
    free(g);
}

static void test_clip(void)
{
    CHECK(aes_clip_factor(0.5, 1.0f) == 1.0f);
    CHECK(aes_clip_factor(0.0, 1.0f) == 1.0f);
    CHECK(aes_clip_factor(100.0, 0.0f) == 1.0f);
    CHECK(aes_clip_factor(100.0, -1.0f) == 1.0f);
    /* torch's float arithmetic: max_norm / (norm + 1e-6). */
    CHECK(aes_clip_factor(2.0, 1.0f) == 1.0f / (2.0f + 1e-6f));
    CHECK_NEAR(aes_clip_factor(2.0, 1.0f), 0.5, 1e-6);
    CHECK_NEAR(aes_clip_factor(40.0, 5.0f), 0.125, 1e-7);
    /* At norm == max_norm torch's factor is just below 1. */
    const float c = aes_clip_factor(1.0, 1.0f);
    CHECK(c < 1.0f && c > 0.999998f);
    /* A clipped gradient has norm max_norm (to float precision). */
    float g[4] = {3, -4, 12, 0};
    const float f = aes_clip_factor(sqrt(aes_sumsq(g, 4)), 6.5f);
    aes_scale(g, 4, f);
    CHECK_NEAR(sqrt(aes_sumsq(g, 4)), 6.5, 1e-5);
    float h[3] = {1, -2, 3};
    aes_scale(h, 3, 0.5f);
    CHECK(h[0] == 0.5f && h[1] == -1.0f && h[2] == 1.5f);
}

int main(void)
{
    test_first_step();
    test_steps_vs_double();
    test_adamw_threads();
    test_adamw_scaled();
    test_schedule();
    test_sumsq();
    test_clip();
    return check_report();
}
