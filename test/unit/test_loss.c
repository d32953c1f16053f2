/*
 * The AesNet losses (src/loss): central finite differences of every
 * gradient (MAC: dx, dy, dlogscale with masks and repeated descriptions in
 * both duplicates modes; SA: dv for kl and mse), known values (aligned
 * embeddings give ~0, random ones ~log Bg, the log k floor of repeated
 * descriptions with duplicates as negatives and its removal with
 * duplicates as positives, SA zero when the encoder matches the
 * reference), the row-block property (the shares of W blocks, uneven and
 * empty ones included, add up to the one-block loss and gradients), the
 * handling of an attribute without valid rows, and repeatability.
 */
#include "aesnet/loss.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "check.h"

/* ---- inputs --------------------------------------------------------- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static double urand(void)
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

static float nrand(void)
{
    double u1 = urand(), u2 = urand();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* n rows of width D, each a random unit vector. */
static void unit_rows(float *p, int n, int D)
{
    for (int i = 0; i < n; i++) {
        double ss = 0.0;
        for (int k = 0; k < D; k++) {
            p[(size_t)i * D + k] = nrand();
            ss += (double)p[(size_t)i * D + k] * p[(size_t)i * D + k];
        }
        for (int k = 0; k < D; k++) p[(size_t)i * D + k] = (float)(p[(size_t)i * D + k] / sqrt(ss));
    }
}

static float *fnew(size_t n) { return aes_calloc(n ? n : 1, sizeof(float), "test floats"); }

typedef struct {
    int A, D, Bg, dup;
    float *x, *y, *logscale, *weights;
    uint8_t *mask;
    uint64_t *hash;
} mac_prob;

static mac_prob mac_new(int A, int D, int Bg)
{
    mac_prob p = {.A = A, .D = D, .Bg = Bg};
    p.x = fnew((size_t)A * Bg * D);
    p.y = fnew((size_t)A * Bg * D);
    p.logscale = fnew(A);
    p.weights = fnew(A);
    p.mask = aes_calloc((size_t)A * Bg, 1, "mask");
    p.hash = aes_calloc((size_t)A * Bg, sizeof(uint64_t), "hash");
    for (int a = 0; a < A; a++) p.weights[a] = 1.0f;
    memset(p.mask, 1, (size_t)A * Bg);
    for (int i = 0; i < A * Bg; i++) p.hash[i] = aes_hash64((uint64_t)i + 1);
    return p;
}

static void mac_free(mac_prob *p)
{
    free(p->x);
    free(p->y);
    free(p->logscale);
    free(p->weights);
    free(p->mask);
    free(p->hash);
}

/* Random embeddings, every attribute's descriptions drawn from `groups`
 * hash values, about a quarter of the entries masked (never all of one
 * attribute), logit scales near `scale`. */
static mac_prob mac_random(int A, int D, int Bg, int groups, float scale)
{
    mac_prob p = mac_new(A, D, Bg);
    unit_rows(p.x, A * Bg, D);
    unit_rows(p.y, A * Bg, D);
    for (int a = 0; a < A; a++) {
        p.logscale[a] = logf(scale) + 0.3f * (float)(urand() - 0.5);
        p.weights[a] = 0.5f + (float)a;
        for (int i = 0; i < Bg; i++) {
            p.hash[(size_t)a * Bg + i] = aes_hash64(1000 + (uint64_t)(urand() * groups));
            p.mask[(size_t)a * Bg + i] = i == 0 || urand() > 0.25;
        }
    }
    return p;
}

static double mac_eval(const mac_prob *p, int B, int row0, double *loss_a, float *dx, float *dy,
                       float *dls)
{
    aes_mac_args args = {.A = p->A, .D = p->D, .Bg = p->Bg, .B = B, .row0 = row0, .x = p->x,
                         .y = p->y, .mask = p->mask, .hash = p->hash, .logscale = p->logscale,
                         .weights = p->weights, .duplicates_positive = p->dup};
    float *scratch = fnew(aes_mac_scratch_floats(B, p->Bg));
    double l = aes_mac_loss(&args, scratch, loss_a, dx, dy, dls);
    free(scratch);
    return l;
}

static double mac_loss(const mac_prob *p) { return mac_eval(p, p->Bg, 0, NULL, NULL, NULL, NULL); }

typedef struct {
    int Bg, F, Fr;
    float *v, *ref, tau;
    aes_affinity_kind kind;
} sa_prob;

static sa_prob sa_random(int Bg, int F, int Fr, float tau, aes_affinity_kind kind)
{
    sa_prob p = {.Bg = Bg, .F = F, .Fr = Fr, .tau = tau, .kind = kind};
    p.v = fnew((size_t)Bg * F);
    p.ref = fnew((size_t)Bg * Fr);
    for (int i = 0; i < Bg; i++) {
        float sc = 0.5f + 2.0f * (float)urand(); /* not normalised */
        for (int k = 0; k < F; k++) p.v[(size_t)i * F + k] = sc * nrand();
        for (int k = 0; k < Fr; k++) p.ref[(size_t)i * Fr + k] = nrand();
    }
    return p;
}

static void sa_free(sa_prob *p)
{
    free(p->v);
    free(p->ref);
}

static double sa_eval(const sa_prob *p, int B, int row0, float *dv)
{
    aes_sa_args args = {.Bg = p->Bg, .B = B, .row0 = row0, .F = p->F, .Fr = p->Fr, .v = p->v,
                        .ref = p->ref, .tau = p->tau, .kind = p->kind};
    float *scratch = fnew(aes_sa_scratch_floats(B, p->Bg, p->F, p->Fr));
    double l = aes_sa_loss(&args, scratch, dv);
    free(scratch);
    return l;
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* ---- finite differences ---------------------------------------------- */

/* Central differences of loss(p) over `count` random coordinates of
 * buf[n]; compares with grad. Returns the worst |fd - grad| scaled by
 * (atol + rtol |grad|), so <= 1 passes. */
typedef double (*loss_fn)(void *prob);

static double fd_check(loss_fn f, void *prob, float *buf, const float *grad, size_t n, int count,
                       float h, double atol, double rtol, const char *what)
{
    double worst = 0.0;
    for (int c = 0; c < count; c++) {
        size_t k = (size_t)(urand() * n);
        float keep = buf[k];
        buf[k] = keep + h;
        double lp = f(prob);
        buf[k] = keep - h;
        double lm = f(prob);
        buf[k] = keep;
        double fd = (lp - lm) / (2.0 * h);
        double r = fabs(fd - grad[k]) / (atol + rtol * fabs(grad[k]));
        if (r > worst) worst = r;
        CHECK_MSG(r <= 1.0, "%s[%zu]: finite difference %.7g, gradient %.7g", what, k, fd,
                  (double)grad[k]);
    }
    return worst;
}

static double mac_fn(void *p) { return mac_loss(p); }

static void test_mac_gradients(int dup)
{
    mac_prob p = mac_random(3, 8, 14, 4, 4.0f);
    p.dup = dup;
    /* an attribute with repeated descriptions where a masked column
     * shares a valid row's hash */
    p.mask[2 * 14 + 5] = 0;
    p.hash[2 * 14 + 5] = p.hash[2 * 14 + 6];
    size_t n = (size_t)p.A * p.Bg * p.D;
    float *dx = fnew(n), *dy = fnew(n), *dls = fnew(p.A);
    double la[3];
    double L = mac_eval(&p, p.Bg, 0, la, dx, dy, dls);
    CHECK(isfinite(L) && L > 0.0);
    double w1 = fd_check(mac_fn, &p, p.x, dx, n, 60, 1e-3f, 3e-4, 1e-2, "dx");
    double w2 = fd_check(mac_fn, &p, p.y, dy, n, 60, 1e-3f, 3e-4, 1e-2, "dy");
    double w3 = fd_check(mac_fn, &p, p.logscale, dls, p.A, 3, 1e-3f, 3e-4, 1e-2, "dlogscale");
    printf("mac dup=%d: loss %.6f, worst fd ratio dx %.3f dy %.3f dlogscale %.3f\n", dup, L, w1,
           w2, w3);
    /* masked rows get no gradient of their own but none reaches their
     * columns either: every entry of a masked image/description is 0 */
    int zero = 1;
    for (int k = 0; k < p.D; k++)
        zero &= dx[((size_t)2 * p.Bg + 5) * p.D + k] == 0.0f &&
                dy[((size_t)2 * p.Bg + 5) * p.D + k] == 0.0f;
    CHECK_MSG(zero, "masked entry has a gradient");
    /* L_mac = sum_a w_a L_a / sum_a w_a */
    double num = 0.0, den = 0.0;
    for (int a = 0; a < p.A; a++) {
        num += p.weights[a] * la[a];
        den += p.weights[a];
    }
    CHECK_NEAR(L, num / den, 1e-12);
    free(dx);
    free(dy);
    free(dls);
    mac_free(&p);
}

static double sa_fn(void *p) { return sa_eval(p, ((sa_prob *)p)->Bg, 0, NULL); }

static void test_sa_gradients(aes_affinity_kind kind, float tau)
{
    sa_prob p = sa_random(11, 9, 6, tau, kind);
    size_t n = (size_t)p.Bg * p.F;
    float *dv = fnew(n);
    double L = sa_eval(&p, p.Bg, 0, dv);
    CHECK(isfinite(L) && L > 0.0);
    double w = fd_check(sa_fn, &p, p.v, dv, n, 80, 1e-3f, 3e-5, 1e-2, "dv");
    printf("sa %s tau %.2f: loss %.6f, worst fd ratio dv %.3f\n", kind ? "mse" : "kl", tau, L, w);
    /* the loss is invariant to the scale of each v_i, so dv_i is
     * orthogonal to v_i */
    double worst = 0.0;
    for (int i = 0; i < p.Bg; i++) {
        double dot = 0.0, nv = 0.0, ng = 0.0;
        for (int k = 0; k < p.F; k++) {
            dot += (double)dv[(size_t)i * p.F + k] * p.v[(size_t)i * p.F + k];
            nv += (double)p.v[(size_t)i * p.F + k] * p.v[(size_t)i * p.F + k];
            ng += (double)dv[(size_t)i * p.F + k] * dv[(size_t)i * p.F + k];
        }
        double r = fabs(dot) / (sqrt(nv * ng) + 1e-30);
        if (r > worst) worst = r;
    }
    CHECK_MSG(worst < 1e-5, "dv not orthogonal to v: %g", worst);
    free(dv);
    sa_free(&p);
}

/* ---- known values ------------------------------------------------------ */

static void test_mac_values(void)
{
    /* aligned: x == y, scale 100, distinct descriptions */
    for (int dup = 0; dup < 2; dup++) {
        mac_prob p = mac_new(2, 64, 16);
        p.dup = dup;
        unit_rows(p.x, p.A * p.Bg, p.D);
        memcpy(p.y, p.x, sizeof(float) * p.A * p.Bg * p.D);
        p.logscale[0] = p.logscale[1] = logf(100.0f);
        double L = mac_loss(&p);
        printf("mac aligned dup=%d: %.3g\n", dup, L);
        CHECK_MSG(L >= 0.0 && L < 1e-5, "aligned loss %g", L);
        mac_free(&p);
    }
    /* random embeddings at scale 1: logits ~ 0, each CE ~ log Bg */
    {
        mac_prob p = mac_new(2, 1024, 64);
        unit_rows(p.x, p.A * p.Bg, p.D);
        unit_rows(p.y, p.A * p.Bg, p.D);
        double la[2];
        double L = mac_eval(&p, p.Bg, 0, la, NULL, NULL, NULL);
        printf("mac random: %.5f (log Bg %.5f)\n", L, log(64.0));
        CHECK_NEAR(L, log(64.0), 0.02);
        CHECK_NEAR(la[0], log(64.0), 0.03);
        CHECK_NEAR(la[1], log(64.0), 0.03);
        mac_free(&p);
    }
    /* every description repeated k times, perfectly aligned: log k floor
     * with duplicates as negatives, none as positives */
    const int k = 4, groups = 6, D = 64, Bg = 24;
    float *u = fnew((size_t)groups * D);
    unit_rows(u, groups, D);
    for (int dup = 0; dup < 2; dup++) {
        mac_prob p = mac_new(1, D, Bg);
        p.dup = dup;
        p.logscale[0] = logf(100.0f);
        for (int i = 0; i < Bg; i++) {
            int g = i % groups;
            memcpy(p.x + (size_t)i * D, u + (size_t)g * D, sizeof(float) * D);
            memcpy(p.y + (size_t)i * D, u + (size_t)g * D, sizeof(float) * D);
            p.hash[i] = aes_hash64(77 + (uint64_t)g);
        }
        float *dx = fnew((size_t)Bg * D), *dy = fnew((size_t)Bg * D), dls;
        double L = mac_eval(&p, Bg, 0, NULL, dx, dy, &dls);
        printf("mac repeated k=%d dup=%d: %.6f (log k %.6f)\n", k, dup, L, log((double)k));
        if (dup)
            CHECK_MSG(L >= -1e-6 && L < 1e-5, "multi-positive floor %g", L);
        else
            CHECK_NEAR(L, log((double)k), 1e-5);
        mac_free(&p);
        free(dx);
        free(dy);
    }
    free(u);
}

static void test_sa_values(void)
{
    for (int kind = 0; kind < 2; kind++) {
        sa_prob p = sa_random(20, 12, 12, 0.1f, (aes_affinity_kind)kind);
        double Lr = sa_eval(&p, p.Bg, 0, NULL);
        /* the same features, rescaled: the cosines and so the loss vanish */
        for (size_t i = 0; i < (size_t)p.Bg * p.F; i++) p.ref[i] = 3.0f * p.v[i];
        float *dv = fnew((size_t)p.Bg * p.F);
        double L0 = sa_eval(&p, p.Bg, 0, dv);
        double gmax = 0.0;
        for (size_t i = 0; i < (size_t)p.Bg * p.F; i++) gmax = fmax(gmax, fabs(dv[i]));
        printf("sa %s: random ref %.5f, v == ref %.3g (max |dv| %.3g)\n", kind ? "mse" : "kl",
               Lr, L0, gmax);
        CHECK_MSG(Lr > 1e-3, "random reference loss %g", Lr);
        CHECK_MSG(fabs(L0) < 1e-6, "v == ref loss %g", L0);
        CHECK_MSG(gmax < 1e-5, "v == ref gradient %g", gmax);
        free(dv);
        sa_free(&p);
    }
    /* one image: no pairs, no loss */
    sa_prob p = sa_random(1, 4, 4, 0.1f, AES_AFFINITY_KL);
    float dv[4] = {1, 1, 1, 1};
    CHECK(sa_eval(&p, 1, 0, dv) == 0.0 && dv[0] == 0.0f && dv[3] == 0.0f);
    sa_free(&p);
}

/* ---- row blocks ---------------------------------------------------------- */

/* Splits of Bg rows into W blocks: uneven, and one with an empty block. */
static void split(int Bg, int W, int variant, int *start)
{
    start[0] = 0;
    for (int w = 1; w < W; w++) {
        if (variant == 0)
            start[w] = (int)((long)Bg * w / W);
        else if (variant == 1)
            start[w] = start[w - 1] + 1 + (w * 7) % 5; /* uneven */
        else
            start[w] = w == 1 ? 0 : start[w - 1] + 3; /* empty first block */
        if (start[w] > Bg) start[w] = Bg;
    }
    start[W] = Bg;
}

static void test_mac_blocks(int dup)
{
    mac_prob p = mac_random(3, 16, 23, 5, 8.0f);
    p.dup = dup;
    size_t n = (size_t)p.A * p.Bg * p.D;
    float *dx1 = fnew(n), *dy1 = fnew(n), dl1[3];
    float *dx = fnew(n), *dy = fnew(n), dl[3];
    float *sx = fnew(n), *sy = fnew(n);
    double la1[3], la[3];
    double L1 = mac_eval(&p, p.Bg, 0, la1, dx1, dy1, dl1);
    double worst = 0.0;
    for (int W = 2; W <= 4; W++) {
        for (int variant = 0; variant < 3; variant++) {
            int start[5];
            split(p.Bg, W, variant, start);
            double L = 0.0, sla[3] = {0, 0, 0};
            float sl[3] = {0, 0, 0};
            memset(sx, 0, sizeof(float) * n);
            memset(sy, 0, sizeof(float) * n);
            for (int w = 0; w < W; w++) {
                L += mac_eval(&p, start[w + 1] - start[w], start[w], la, dx, dy, dl);
                for (size_t i = 0; i < n; i++) {
                    sx[i] += dx[i];
                    sy[i] += dy[i];
                }
                for (int a = 0; a < 3; a++) {
                    sla[a] += la[a];
                    sl[a] += dl[a];
                }
            }
            double e[5] = {fabs(L - L1) / fabs(L1), rel_err(sx, dx1, n), rel_err(sy, dy1, n),
                           rel_err(sl, dl1, 3), 0.0};
            for (int a = 0; a < 3; a++) e[4] = fmax(e[4], fabs(sla[a] - la1[a]) / fabs(la1[a]));
            for (int q = 0; q < 5; q++) {
                worst = fmax(worst, e[q]);
                CHECK_MSG(e[q] <= 1e-6, "mac dup=%d W=%d split %d quantity %d: rel err %g", dup,
                          W, variant, q, e[q]);
            }
        }
    }
    printf("mac dup=%d row blocks: worst rel err %.3g\n", dup, worst);
    free(dx1);
    free(dy1);
    free(dx);
    free(dy);
    free(sx);
    free(sy);
    mac_free(&p);
}

static void test_sa_blocks(aes_affinity_kind kind)
{
    sa_prob p = sa_random(23, 10, 7, 0.2f, kind);
    size_t n = (size_t)p.Bg * p.F;
    float *dv1 = fnew(n), *dv = fnew(n), *sv = fnew(n);
    double L1 = sa_eval(&p, p.Bg, 0, dv1);
    double worst = 0.0;
    for (int W = 2; W <= 4; W++) {
        for (int variant = 0; variant < 3; variant++) {
            int start[5];
            split(p.Bg, W, variant, start);
            double L = 0.0;
            memset(sv, 0, sizeof(float) * n);
            for (int w = 0; w < W; w++) {
                L += sa_eval(&p, start[w + 1] - start[w], start[w], dv);
                for (size_t i = 0; i < n; i++) sv[i] += dv[i];
            }
            double e1 = fabs(L - L1) / fabs(L1), e2 = rel_err(sv, dv1, n);
            worst = fmax(worst, fmax(e1, e2));
            CHECK_MSG(e1 <= 1e-6 && e2 <= 1e-6, "sa %d W=%d split %d: loss %g, dv %g", kind, W,
                      variant, e1, e2);
        }
    }
    printf("sa %s row blocks: worst rel err %.3g\n", kind ? "mse" : "kl", worst);
    free(dv1);
    free(dv);
    free(sv);
    sa_free(&p);
}

/* ---- masks ------------------------------------------------------------- */

static void test_mac_empty_attribute(void)
{
    for (int dup = 0; dup < 2; dup++) {
        mac_prob p = mac_random(3, 8, 12, 3, 5.0f);
        p.dup = dup;
        memset(p.mask + 12, 0, 12); /* attribute 1 has no valid rows */
        size_t slab = (size_t)12 * 8, n = 3 * slab;
        float *dx = fnew(n), *dy = fnew(n), dls[3];
        double la[3];
        double L = mac_eval(&p, 12, 0, la, dx, dy, dls);
        /* the same without attribute 1 at all */
        mac_prob q = mac_new(2, 8, 12);
        q.dup = dup;
        int src[2] = {0, 2};
        for (int b = 0; b < 2; b++) {
            int a = src[b];
            memcpy(q.x + b * slab, p.x + a * slab, sizeof(float) * slab);
            memcpy(q.y + b * slab, p.y + a * slab, sizeof(float) * slab);
            memcpy(q.mask + b * 12, p.mask + a * 12, 12);
            memcpy(q.hash + b * 12, p.hash + a * 12, sizeof(uint64_t) * 12);
            q.logscale[b] = p.logscale[a];
            q.weights[b] = p.weights[a];
        }
        float *qx = fnew(2 * slab), *qy = fnew(2 * slab), qls[2];
        double qa[2];
        double Lq = mac_eval(&q, 12, 0, qa, qx, qy, qls);
        CHECK_NEAR(L, Lq, 1e-12 * fabs(Lq));
        CHECK(la[1] == 0.0 && dls[1] == 0.0f);
        CHECK(la[0] == qa[0] && la[2] == qa[1]);
        int zero = 1;
        for (size_t i = slab; i < 2 * slab; i++) zero &= dx[i] == 0.0f && dy[i] == 0.0f;
        CHECK_MSG(zero, "empty attribute has a gradient");
        CHECK(rel_err(dx, qx, slab) == 0.0 && rel_err(dx + 2 * slab, qx + slab, slab) == 0.0);
        CHECK(rel_err(dy, qy, slab) == 0.0 && rel_err(dy + 2 * slab, qy + slab, slab) == 0.0);
        CHECK(dls[0] == qls[0] && dls[2] == qls[1]);
        /* and no valid rows anywhere: 0, no gradient */
        memset(p.mask, 0, 36);
        dx[0] = 1.0f;
        CHECK(mac_eval(&p, 12, 0, la, dx, dy, dls) == 0.0 && dx[0] == 0.0f && la[0] == 0.0);
        free(dx);
        free(dy);
        free(qx);
        free(qy);
        mac_free(&q);
        mac_free(&p);
    }
}

/* ---- repeatability ------------------------------------------------------ */

static void test_repeatable(void)
{
    mac_prob p = mac_random(2, 32, 40, 6, 10.0f);
    p.dup = 1;
    size_t n = (size_t)2 * 40 * 32;
    float *a = fnew(2 * n), *b = fnew(2 * n), la[2], lb[2];
    double L1 = mac_eval(&p, 17, 11, NULL, a, a + n, la);
    double L2 = mac_eval(&p, 17, 11, NULL, b, b + n, lb);
    CHECK(L1 == L2 && memcmp(a, b, sizeof(float) * 2 * n) == 0 && memcmp(la, lb, sizeof la) == 0);
    free(a);
    free(b);
    mac_free(&p);
}

int main(void)
{
    test_mac_gradients(0);
    test_mac_gradients(1);
    test_sa_gradients(AES_AFFINITY_KL, 0.2f);
    test_sa_gradients(AES_AFFINITY_KL, 1.0f);
    test_sa_gradients(AES_AFFINITY_MSE, 1.0f);
    test_mac_values();
    test_sa_values();
    test_mac_blocks(0);
    test_mac_blocks(1);
    test_sa_blocks(AES_AFFINITY_KL);
    test_sa_blocks(AES_AFFINITY_MSE);
    test_mac_empty_attribute();
    test_repeatable();
    return check_report();
}
