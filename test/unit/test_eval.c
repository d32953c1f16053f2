/* Evaluation metrics, the ridge probe and retrieval recall on hand cases
 * whose answers are known exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/eval.h"
#include "check.h"

static void test_correlations(void)
{
    double x[5] = {1, 2, 3, 4, 5}, y[5] = {2, 4, 6, 8, 10}, r[5] = {5, 4, 3, 2, 1};
    CHECK_NEAR(aes_srcc(x, y, 5), 1.0, 1e-12);
    CHECK_NEAR(aes_plcc(x, y, 5), 1.0, 1e-12);
    CHECK_NEAR(aes_srcc(x, r, 5), -1.0, 1e-12);
    CHECK_NEAR(aes_plcc(x, r, 5), -1.0, 1e-12);
    /* Monotone but not linear: Spearman 1, Pearson below 1. */
    double e[5] = {1, 10, 100, 1000, 10000};
    CHECK_NEAR(aes_srcc(x, e, 5), 1.0, 1e-12);
    CHECK(aes_plcc(x, e, 5) < 0.9);
    /* Ties get average ranks: [1, 2, 2, 3] -> [1, 2.5, 2.5, 4]. */
    double t[4] = {1, 2, 2, 3}, rk[4];
    aes_average_ranks(t, 4, rk);
    CHECK_NEAR(rk[0], 1.0, 0);
    CHECK_NEAR(rk[1], 2.5, 0);
    CHECK_NEAR(rk[2], 2.5, 0);
    CHECK_NEAR(rk[3], 4.0, 0);
    /* Spearman with ties by hand: ranks of a = [1, 2.5, 2.5, 4], of b =
     * [1, 2, 3, 4]; Pearson of those = 4.5 / sqrt(4.5 * 5) = 0.9486833. */
    double b[4] = {10, 20, 30, 40};
    CHECK_NEAR(aes_srcc(t, b, 4), 4.5 / sqrt(4.5 * 5.0), 1e-12);
    double c[3] = {1, 1, 1};
    CHECK(isnan(aes_plcc(c, x, 3)));
    CHECK(isnan(aes_srcc(x, y, 1)));
}

static void test_regression_metrics(void)
{
    double pred[4] = {2, 6, 7, 4}, truth[4] = {3, 5, 7, 6};
    aes_reg_metrics m;
    aes_regression_metrics(pred, truth, 4, 5.5, &m);
    /* above 5.5: pred F T T F; truth F F T T -> 2 of 4 agree */
    CHECK_NEAR(m.acc, 0.5, 0);
    CHECK_NEAR(m.rmse, sqrt((1 + 1 + 0 + 4) / 4.0), 1e-12);
    CHECK_NEAR(m.mae, (1 + 1 + 0 + 2) / 4.0, 1e-12);
}

static void test_ridge(void)
{
    /* Noiseless y = 3 + X w: a tiny penalty recovers w and the intercept. */
    enum { N = 200, F = 6 };
    double *X = malloc(sizeof(double) * N * F), y[N], w_true[F] = {1.5, -2, 0.25, 4, 0, -0.75};
    aes_rng r;
    aes_rng_init(&r, 42);
    for (int i = 0; i < N; i++) {
        y[i] = 3;
        for (int f = 0; f < F; f++) {
            X[i * F + f] = (f + 1) * aes_rng_normal(&r) + f; /* varied scale and offset */
            y[i] += X[i * F + f] * w_true[f];
        }
    }
    aes_ridge rg;
    aes_ridge_prepare(&rg, X, y, N, F);
    double w[F], b = 0;
    CHECK(aes_ridge_solve(&rg, 1e-9, w, &b) == 0);
    for (int f = 0; f < F; f++) CHECK_NEAR(w[f], w_true[f], 1e-6);
    CHECK_NEAR(b, 3.0, 1e-6);
    /* A large penalty shrinks the weights towards 0 and the prediction
     * towards the mean. */
    double w2[F], b2;
    CHECK(aes_ridge_solve(&rg, 1e9, w2, &b2) == 0);
    for (int f = 0; f < F; f++) CHECK(fabs(w2[f]) < 1e-3);
    aes_ridge_free(&rg);

    /* The probe picks the smallest penalty on noiseless data. */
    double grid[AES_RIDGE_GRID], pen = 0, vr = 0;
    aes_ridge_grid(grid);
    CHECK_NEAR(grid[0], 1e-4, 1e-18);
    CHECK_NEAR(grid[AES_RIDGE_GRID - 1], 1e4, 1e-8);
    CHECK(aes_ridge_probe(X, y, 150, X + 150 * F, y + 150, 50, F, grid, AES_RIDGE_GRID, w, &b, &pen,
                          &vr) == 0);
    CHECK_NEAR(pen, 1e-4, 1e-18);
    CHECK(vr < 1e-3);
    double pred[N];
    aes_ridge_predict(X, N, F, w, b, pred);
    CHECK_NEAR(pred[7], y[7], 1e-3);
    free(X);
}

static void test_recall(void)
{
    /* 4 keys on axes; query i is nearest key i except query 3, whose own
     * key is third closest. */
    float k[4 * 4] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    float q[4 * 4] = {1, 0.1f, 0, 0,  0, 2, 0, 0,  0.1f, 0, 1, 0,  0.9f, 0.8f, 0, 0.5f};
    CHECK_NEAR(aes_recall_at_k(q, k, 4, 4, 1), 0.75, 0);
    CHECK_NEAR(aes_recall_at_k(q, k, 4, 4, 2), 0.75, 0);
    CHECK_NEAR(aes_recall_at_k(q, k, 4, 4, 3), 1.0, 0);
    /* Ties are counted against the query: identical keys. */
    float kt[2 * 2] = {1, 0, 1, 0}, qt[2 * 2] = {1, 0, 1, 0};
    CHECK_NEAR(aes_recall_at_k(qt, kt, 2, 2, 1), 0.0, 0);
    CHECK_NEAR(aes_recall_at_k(qt, kt, 2, 2, 2), 1.0, 0);
    /* Cosine: the keys' lengths do not matter. */
    float ks[4 * 4] = {5, 0, 0, 0, 0, 0.1f, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0.2f};
    CHECK_NEAR(aes_recall_at_k(q, ks, 4, 4, 1), 0.75, 0);
}

/* EMD in closed form, and the loss gradient against central differences. */
static void test_emd(void)
{
    float a[10] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, b[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    /* the CDFs differ by 1 at k = 1..9 */
    CHECK_NEAR(aes_emd(a, b, 1), 0.9, 1e-12);
    CHECK_NEAR(aes_emd(a, b, 2), sqrt(0.9), 1e-12);
    CHECK_NEAR(aes_emd(a, a, 1), 0.0, 0);
    /* moving mass 0.5 by one bin: one CDF entry differs by 0.5 */
    float c[10] = {0.5f, 0.5f, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK_NEAR(aes_emd(a, c, 1), 0.05, 1e-9);
    CHECK_NEAR(aes_emd(a, c, 2), sqrt(0.025), 1e-9);
    /* EMD_1 is the distance between the means over 10 for distributions
     * whose CDFs do not cross */
    CHECK_NEAR(aes_emd(b, c, 1), (10 - 1.5) / 10.0, 1e-7);

    enum { B = 5 };
    float z[B * 10], q[B * 10], dz[B * 10];
    aes_rng r;
    aes_rng_init(&r, 77);
    for (int i = 0; i < B; i++) {
        float s = 0;
        for (int k = 0; k < 10; k++) {
            z[i * 10 + k] = aes_rng_normal(&r);
            q[i * 10 + k] = (float)aes_rng_uniform(&r);
            s += q[i * 10 + k];
        }
        for (int k = 0; k < 10; k++) q[i * 10 + k] /= s;
    }
    aes_emd_loss(z, q, B, dz);
    double worst = 0;
    for (int j = 0; j < B * 10; j++) {
        const float h = 1e-2f, z0 = z[j];
        z[j] = z0 + h;
        double lp = aes_emd_loss(z, q, B, NULL);
        z[j] = z0 - h;
        double lm = aes_emd_loss(z, q, B, NULL);
        z[j] = z0;
        double fd = (lp - lm) / (2.0 * h), e = fabs(fd - dz[j]);
        if (e > worst) worst = e;
    }
    CHECK_MSG(worst < 2e-5, "EMD loss gradient vs central differences: %g", worst);
    /* a perfect prediction has loss 0 and gradient 0 */
    float zz[10], qq[10], dd[10];
    for (int k = 0; k < 10; k++) zz[k] = 0, qq[k] = 0.1f;
    CHECK_NEAR(aes_emd_loss(zz, qq, 1, dd), 0.0, 1e-7);
    for (int k = 0; k < 10; k++) CHECK_NEAR(dd[k], 0.0, 1e-6);
}

int main(void)
{
    test_emd();
    test_correlations();
    test_regression_metrics();
    test_ridge();
    test_recall();
    return check_report();
}
