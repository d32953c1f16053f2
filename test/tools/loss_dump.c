/*
 * loss_dump OUT.h5: runs the AesNet losses on generated inputs and writes
 * inputs, losses and gradients for test/py/test_loss_torch.py, which
 * recomputes them with torch. One group per case:
 *   /mac/NAME: x, y [A, Bg, D]; mask, groups [A, Bg] (int32; the hash of a
 *     description is aes_hash64(group + 1), so equal groups mean equal
 *     descriptions); logscale, weights [A]; dup [1]; outputs loss [1] and
 *     loss_a [A] (float64), dx, dy, dlogscale; and the same summed over
 *     three uneven row blocks: loss_blocks, dx_blocks, dy_blocks,
 *     dlogscale_blocks.
 *   /sa/NAME: v [Bg, F], ref [Bg, Fr], tau [1], kind [1] (0 kl, 1 mse);
 *     outputs loss [1] (float64), dv; loss_blocks, dv_blocks.
 *   /emd/NAME: the EMD fine-tune loss of aesnet eval: logits, target
 *     [B, 10] (target rows sum to 1); outputs loss [1] (float64), dlogits
 *     [B, 10], and per row emd1, emd2 [B] (float64) of softmax(logits).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/eval.h"
#include "aesnet/loss.h"
#include "dump.h"

static uint64_t g_rng = 0x2545f4914f6cdd1dull;

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

static void dump_f64(hid_t f, const char *name, const double *x, int ndim, const int *dims)
{
    dump_any(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, x, ndim, dims);
}

static void put(hid_t f, const char *group, const char *name, const float *x, int ndim,
                const int *dims)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, name);
    dump_f32(f, path, x, ndim, dims);
}

static void put_i(hid_t f, const char *group, const char *name, const int32_t *x, int ndim,
                  const int *dims)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, name);
    dump_i32(f, path, x, ndim, dims);
}

static void put_d(hid_t f, const char *group, const char *name, const double *x, int n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", group, name);
    dump_f64(f, path, x, 1, &n);
}

/* Three uneven row blocks of Bg (the first may be small). */
static void blocks3(int Bg, int *start)
{
    start[0] = 0;
    start[1] = Bg / 5;
    start[2] = start[1] + Bg / 2;
    start[3] = Bg;
}

/* groups: descriptions per attribute drawn from this many values
 * (0: all distinct); pmask: probability of a masked entry; empty: an
 * attribute with no valid rows (-1: none). */
static void mac_case(hid_t f, const char *name, int A, int D, int Bg, int groups, double pmask,
                     int empty, float scale, int dup, uint64_t seed)
{
    g_rng = seed;
    size_t n = (size_t)A * Bg * D;
    float *x = aes_malloc(sizeof(float) * n, "x"), *y = aes_malloc(sizeof(float) * n, "y");
    uint8_t *mask = aes_malloc((size_t)A * Bg, "mask");
    uint64_t *hash = aes_malloc(sizeof(uint64_t) * A * Bg, "hash");
    int32_t *mask_i = aes_malloc(sizeof(int32_t) * A * Bg, "mask");
    int32_t *grp = aes_malloc(sizeof(int32_t) * A * Bg, "groups");
    float *logscale = aes_malloc(sizeof(float) * A, "ls"), *w = aes_malloc(sizeof(float) * A, "w");
    unit_rows(x, A * Bg, D);
    unit_rows(y, A * Bg, D);
    /* pull matching pairs together a little so the losses are not all
     * near log Bg */
    for (size_t i = 0; i < n; i++) y[i] = 0.6f * y[i] + 0.8f * x[i];
    for (int a = 0; a < A; a++) {
        logscale[a] = logf(scale) + 0.5f * (float)(urand() - 0.5);
        w[a] = 0.25f + (float)urand();
        for (int i = 0; i < Bg; i++) {
            size_t k = (size_t)a * Bg + i;
            grp[k] = groups ? (int32_t)(urand() * groups) : i;
            mask[k] = a != empty && (i == 0 || urand() >= pmask);
            mask_i[k] = mask[k];
            hash[k] = aes_hash64((uint64_t)grp[k] + 1);
        }
    }
    aes_mac_args args = {.A = A, .D = D, .Bg = Bg, .B = Bg, .row0 = 0, .x = x, .y = y,
                         .mask = mask, .hash = hash, .logscale = logscale, .weights = w,
                         .duplicates_positive = dup};
    float *scratch = aes_malloc(sizeof(float) * aes_mac_scratch_floats(Bg, Bg), "scratch");
    float *dx = aes_malloc(sizeof(float) * n, "dx"), *dy = aes_malloc(sizeof(float) * n, "dy");
    float *dls = aes_malloc(sizeof(float) * A, "dls");
    double *loss_a = aes_malloc(sizeof(double) * A, "loss_a");
    double loss = aes_mac_loss(&args, scratch, loss_a, dx, dy, dls);

    char g[128];
    snprintf(g, sizeof g, "mac/%s", name);
    int d3[3] = {A, Bg, D}, d2[2] = {A, Bg}, d1 = A, one = 1;
    put(f, g, "x", x, 3, d3);
    put(f, g, "y", y, 3, d3);
    put_i(f, g, "mask", mask_i, 2, d2);
    put_i(f, g, "groups", grp, 2, d2);
    put(f, g, "logscale", logscale, 1, &d1);
    put(f, g, "weights", w, 1, &d1);
    int32_t dup32 = dup;
    put_i(f, g, "dup", &dup32, 1, &one);
    put_d(f, g, "loss", &loss, 1);
    put_d(f, g, "loss_a", loss_a, A);
    put(f, g, "dx", dx, 3, d3);
    put(f, g, "dy", dy, 3, d3);
    put(f, g, "dlogscale", dls, 1, &d1);

    /* the shares of three ranks, summed */
    float *sx = aes_calloc(n, sizeof(float), "sx"), *sy = aes_calloc(n, sizeof(float), "sy");
    float *sls = aes_calloc(A, sizeof(float), "sls");
    double sloss = 0.0;
    int start[4];
    blocks3(Bg, start);
    for (int r = 0; r < 3; r++) {
        args.row0 = start[r];
        args.B = start[r + 1] - start[r];
        sloss += aes_mac_loss(&args, scratch, loss_a, dx, dy, dls);
        for (size_t i = 0; i < n; i++) {
            sx[i] += dx[i];
            sy[i] += dy[i];
        }
        for (int a = 0; a < A; a++) sls[a] += dls[a];
    }
    put_d(f, g, "loss_blocks", &sloss, 1);
    put(f, g, "dx_blocks", sx, 3, d3);
    put(f, g, "dy_blocks", sy, 3, d3);
    put(f, g, "dlogscale_blocks", sls, 1, &d1);

    free(x), free(y), free(mask), free(hash), free(mask_i), free(grp), free(logscale), free(w);
    free(scratch), free(dx), free(dy), free(dls), free(loss_a), free(sx), free(sy), free(sls);
}

static void sa_case(hid_t f, const char *name, int Bg, int F, int Fr, float tau,
                    aes_affinity_kind kind, int zero_row, uint64_t seed)
{
    g_rng = seed;
    float *v = aes_malloc(sizeof(float) * Bg * F, "v"), *ref = aes_malloc(sizeof(float) * Bg * Fr, "ref");
    for (int i = 0; i < Bg; i++) {
        float sc = 0.3f + 3.0f * (float)urand();
        for (int k = 0; k < F; k++) v[(size_t)i * F + k] = sc * nrand();
        for (int k = 0; k < Fr; k++) ref[(size_t)i * Fr + k] = nrand();
    }
    /* the encoder partly agrees with the reference, on the shared width */
    int m = F < Fr ? F : Fr;
    for (int i = 0; i < Bg; i++)
        for (int k = 0; k < m; k++) v[(size_t)i * F + k] += 0.7f * ref[(size_t)i * Fr + k];
    if (zero_row >= 0) memset(v + (size_t)zero_row * F, 0, sizeof(float) * F);
    aes_sa_args args = {.Bg = Bg, .B = Bg, .row0 = 0, .F = F, .Fr = Fr, .v = v, .ref = ref,
                        .tau = tau, .kind = kind};
    float *scratch = aes_malloc(sizeof(float) * aes_sa_scratch_floats(Bg, Bg, F, Fr), "scratch");
    float *dv = aes_malloc(sizeof(float) * Bg * F, "dv");
    double loss = aes_sa_loss(&args, scratch, dv);

    char g[128];
    snprintf(g, sizeof g, "sa/%s", name);
    int dv2[2] = {Bg, F}, dr2[2] = {Bg, Fr}, one = 1;
    int32_t kind32 = kind;
    put(f, g, "v", v, 2, dv2);
    put(f, g, "ref", ref, 2, dr2);
    put(f, g, "tau", &tau, 1, &one);
    put_i(f, g, "kind", &kind32, 1, &one);
    put_d(f, g, "loss", &loss, 1);
    put(f, g, "dv", dv, 2, dv2);

    float *sv = aes_calloc((size_t)Bg * F, sizeof(float), "sv");
    double sloss = 0.0;
    int start[4];
    blocks3(Bg, start);
    for (int r = 0; r < 3; r++) {
        args.row0 = start[r];
        args.B = start[r + 1] - start[r];
        sloss += aes_sa_loss(&args, scratch, dv);
        for (size_t i = 0; i < (size_t)Bg * F; i++) sv[i] += dv[i];
    }
    put_d(f, g, "loss_blocks", &sloss, 1);
    put(f, g, "dv_blocks", sv, 2, dv2);
    free(v), free(ref), free(scratch), free(dv), free(sv);
}

static void emd_case(hid_t f, const char *name, int B, float spread, int exact_row,
                     uint64_t seed)
{
    g_rng = seed;
    float *z = aes_malloc(sizeof(float) * B * AES_NBINS, "logits");
    float *q = aes_malloc(sizeof(float) * B * AES_NBINS, "target");
    float *dz = aes_malloc(sizeof(float) * B * AES_NBINS, "dlogits");
    double *e1 = aes_malloc(sizeof(double) * B, "emd1"), *e2 = aes_malloc(sizeof(double) * B, "emd2");
    for (int i = 0; i < B; i++) {
        double s = 0;
        for (int k = 0; k < AES_NBINS; k++) {
            z[i * AES_NBINS + k] = spread * nrand();
            /* vote counts, some bins empty */
            q[i * AES_NBINS + k] = urand() < 0.2 ? 0.0f : (float)floor(50 * urand());
            s += q[i * AES_NBINS + k];
        }
        if (s == 0) q[i * AES_NBINS + 4] = 1, s = 1;
        for (int k = 0; k < AES_NBINS; k++) q[i * AES_NBINS + k] /= (float)s;
    }
    if (exact_row >= 0) { /* a one-bin target the logits nearly hit */
        for (int k = 0; k < AES_NBINS; k++) {
            q[exact_row * AES_NBINS + k] = k == 6;
            z[exact_row * AES_NBINS + k] = k == 6 ? 12.0f : -12.0f;
        }
    }
    double loss = aes_emd_loss(z, q, B, dz);
    for (int i = 0; i < B; i++) {
        float p[AES_NBINS], mx = -INFINITY;
        double sum = 0;
        for (int k = 0; k < AES_NBINS; k++) mx = fmaxf(mx, z[i * AES_NBINS + k]);
        for (int k = 0; k < AES_NBINS; k++) sum += exp((double)z[i * AES_NBINS + k] - mx);
        for (int k = 0; k < AES_NBINS; k++)
            p[k] = (float)(exp((double)z[i * AES_NBINS + k] - mx) / sum);
        e1[i] = aes_emd(p, q + i * AES_NBINS, 1);
        e2[i] = aes_emd(p, q + i * AES_NBINS, 2);
    }
    char g[128];
    snprintf(g, sizeof g, "emd/%s", name);
    int d2[2] = {B, AES_NBINS};
    put(f, g, "logits", z, 2, d2);
    put(f, g, "target", q, 2, d2);
    put(f, g, "dlogits", dz, 2, d2);
    put_d(f, g, "loss", &loss, 1);
    put_d(f, g, "emd1", e1, B);
    put_d(f, g, "emd2", e2, B);
    free(z), free(q), free(dz), free(e1), free(e2);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: loss_dump OUT.h5\n");
        return 2;
    }
    hid_t f = dump_open(argv[1]);
    /*      name               A  D   Bg  groups pmask empty scale dup seed */
    mac_case(f, "neg_plain", 3, 16, 12, 0, 0.0, -1, 10.0f, 0, 11);
    mac_case(f, "neg_dups_masked", 3, 16, 20, 5, 0.25, -1, 10.0f, 0, 12);
    mac_case(f, "pos_dups_masked", 3, 16, 20, 5, 0.25, -1, 10.0f, 1, 12);
    mac_case(f, "pos_plain", 2, 16, 12, 0, 0.0, -1, 5.0f, 1, 13);
    mac_case(f, "pos_empty_attr", 3, 16, 16, 3, 0.2, 1, 14.0f, 1, 14);
    mac_case(f, "neg_empty_attr", 3, 16, 16, 3, 0.2, 1, 14.0f, 0, 14);
    mac_case(f, "pos_wide", 2, 64, 48, 6, 0.1, -1, 30.0f, 1, 15);
    mac_case(f, "neg_scale1", 2, 32, 33, 4, 0.1, -1, 1.0f, 0, 16);
    /*     name          Bg  F   Fr  tau   kind  zero_row seed */
    sa_case(f, "kl_tau01", 20, 24, 10, 0.1f, AES_AFFINITY_KL, -1, 21);
    sa_case(f, "kl_tau1", 20, 24, 10, 1.0f, AES_AFFINITY_KL, -1, 22);
    sa_case(f, "kl_tau005_wide", 48, 64, 32, 0.05f, AES_AFFINITY_KL, -1, 23);
    sa_case(f, "mse", 20, 24, 10, 0.1f, AES_AFFINITY_MSE, -1, 24);
    sa_case(f, "mse_wide", 48, 64, 32, 0.1f, AES_AFFINITY_MSE, -1, 25);
    sa_case(f, "kl_two", 2, 5, 3, 0.2f, AES_AFFINITY_KL, -1, 26);
    sa_case(f, "kl_zero_row", 12, 8, 8, 0.2f, AES_AFFINITY_KL, 4, 27);
    emd_case(f, "small", 4, 1.0f, -1, 31);
    emd_case(f, "batch32", 32, 2.0f, -1, 32);
    emd_case(f, "near_exact_row", 8, 0.5f, 3, 33);
    dump_close(f);
    return 0;
}
