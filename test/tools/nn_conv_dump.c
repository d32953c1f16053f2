/*
 * nn_conv_dump OUT.h5: runs the convolutional layers (conv2d, batch norm,
 * max/avg/global pooling, relu) on fixed random inputs and writes, per
 * case, the inputs, the parameters, the upstream gradient dout, and
 * aesnet's outputs and gradients (accumulated into zeroed buffers), for
 * test/py/test_nn_conv_torch.py to recompute with torch.
 *
 * Layout: /<layer>/<case>/<tensor>, with the case's hyperparameters as a
 * small int tensor "shape" (and "hyper" = [momentum, eps] for batch norm):
 *   conv:                 shape = [N, C, H, W, OC, KH, KW, stride, pad, has_bias]
 *   bn_train, bn_eval:    shape = [N, C, HW]
 *   maxpool, avgpool:     shape = [N, C, H, W, K, stride, pad]
 *   gap: shape = [N, C, H, W];  relu: shape = [n]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "dump.h"

static float *normal(size_t n, uint64_t key, float scale)
{
    float *x = aes_calloc(n ? n : 1, sizeof(float), "dump tensor");
    aes_rng r;
    aes_rng_init(&r, key);
    for (size_t i = 0; i < n; i++) x[i] = scale * aes_rng_normal(&r);
    return x;
}

static float *zeros(size_t n) { return aes_calloc(n ? n : 1, sizeof(float), "dump tensor"); }

static void put(hid_t f, const char *grp, const char *name, const float *x, int ndim,
                const int *dims)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", grp, name);
    dump_f32(f, path, x, ndim, dims);
}

static void put_i(hid_t f, const char *grp, const char *name, const int32_t *x, int n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", grp, name);
    dump_i32(f, path, x, 1, &n);
}

/* ---- conv2d ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int N, C, H, W, OC, KH, KW, stride, pad, bias;
} conv_case;

static void dump_conv(hid_t f, const conv_case *k, uint64_t key)
{
    char g[128];
    snprintf(g, sizeof g, "conv/%s", k->name);
    const int OH = (k->H + 2 * k->pad - k->KH) / k->stride + 1;
    const int OW = (k->W + 2 * k->pad - k->KW) / k->stride + 1;
    const int din[4] = {k->N, k->C, k->H, k->W}, dw[4] = {k->OC, k->C, k->KH, k->KW},
              dout[4] = {k->N, k->OC, OH, OW}, db[1] = {k->OC};
    const size_t nin = (size_t)k->N * k->C * k->H * k->W, nw = (size_t)k->OC * k->C * k->KH * k->KW,
                 nout = (size_t)k->N * k->OC * OH * OW;
    float *x = normal(nin, key + 1, 1.0f), *w = normal(nw, key + 2, 0.3f);
    float *b = k->bias ? normal(k->OC, key + 3, 0.5f) : NULL;
    float *dy = normal(nout, key + 4, 1.0f), *y = zeros(nout);
    float *dx = zeros(nin), *gw = zeros(nw), *gb = k->bias ? zeros(k->OC) : NULL;
    float *col =
        zeros(conv2d_scratch_floats(k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW, k->stride, k->pad));

    conv2d_forward(y, col, x, w, b, k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW, k->stride,
                   k->pad);
    conv2d_backward(dx, gw, gb, col, dy, x, w, k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW,
                    k->stride, k->pad);

    const int32_t shape[10] = {k->N, k->C, k->H, k->W, k->OC, k->KH, k->KW, k->stride, k->pad,
                               k->bias};
    put_i(f, g, "shape", shape, 10);
    put(f, g, "inp", x, 4, din);
    put(f, g, "w", w, 4, dw);
    put(f, g, "dout", dy, 4, dout);
    put(f, g, "out", y, 4, dout);
    put(f, g, "dinp", dx, 4, din);
    put(f, g, "dw", gw, 4, dw);
    if (k->bias) {
        put(f, g, "b", b, 1, db);
        put(f, g, "db", gb, 1, db);
    }
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(gw), free(gb), free(col);
}

/* ---- batch norm ---------------------------------------------------------- */

static void dump_bn(hid_t f, const char *name, int N, int C, int HW, int train, uint64_t key)
{
    char g[128];
    snprintf(g, sizeof g, "%s/%s", train ? "bn_train" : "bn_eval", name);
    const float momentum = 0.1f, eps = 1e-5f;
    const size_t n = (size_t)N * C * HW;
    float *x = normal(n, key + 1, 1.5f);
    for (size_t i = 0; i < n; i++) x[i] += 0.7f * (float)((i / HW) % C) - 1.0f;
    float *gamma = normal(C, key + 2, 0.3f), *beta = normal(C, key + 3, 0.3f);
    for (int c = 0; c < C; c++) gamma[c] += 1.0f;
    float *rm = normal(C, key + 5, 0.2f), *rv = normal(C, key + 6, 0.2f);
    for (int c = 0; c < C; c++) rv[c] = 1.0f + (rv[c] < 0 ? -rv[c] : rv[c]);
    float *dy = normal(n, key + 4, 1.0f), *y = zeros(n), *mean = zeros(C), *rstd = zeros(C);
    float *dx = zeros(n), *dg = zeros(C), *dbt = zeros(C);

    const int dx3[3] = {N, C, HW}, dc[1] = {C};
    const int32_t shape[3] = {N, C, HW};
    const float hyper[2] = {momentum, eps};
    const int d2[1] = {2};
    put_i(f, g, "shape", shape, 3);
    put(f, g, "hyper", hyper, 1, d2);
    put(f, g, "inp", x, 3, dx3);
    put(f, g, "gamma", gamma, 1, dc);
    put(f, g, "beta", beta, 1, dc);
    put(f, g, "running_mean0", rm, 1, dc);
    put(f, g, "running_var0", rv, 1, dc);

    batchnorm_forward(y, mean, rstd, x, gamma, beta, rm, rv, N, C, HW, train, momentum, eps,
                      NULL);
    put(f, g, "out", y, 3, dx3);
    put(f, g, "mean", mean, 1, dc);
    put(f, g, "rstd", rstd, 1, dc);
    put(f, g, "running_mean1", rm, 1, dc);
    put(f, g, "running_var1", rv, 1, dc);
    if (train) {
        batchnorm_backward(dx, dg, dbt, dy, x, mean, rstd, gamma, N, C, HW, NULL);
        put(f, g, "dout", dy, 3, dx3);
        put(f, g, "dinp", dx, 3, dx3);
        put(f, g, "dgamma", dg, 1, dc);
        put(f, g, "dbeta", dbt, 1, dc);
    }
    free(x), free(gamma), free(beta), free(rm), free(rv), free(dy), free(y), free(mean),
        free(rstd), free(dx), free(dg), free(dbt);
}

/* ---- pooling and relu ------------------------------------------------------- */

static void dump_pool(hid_t f, const char *layer, const char *name, int N, int C, int H, int W,
                      int K, int stride, int pad, uint64_t key)
{
    char g[128];
    snprintf(g, sizeof g, "%s/%s", layer, name);
    const int is_max = strcmp(layer, "maxpool") == 0;
    const int OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
    const size_t nin = (size_t)N * C * H * W, nout = (size_t)N * C * OH * OW;
    const int din[4] = {N, C, H, W}, dout[4] = {N, C, OH, OW};
    float *x = normal(nin, key + 1, 1.0f), *dy = normal(nout, key + 2, 1.0f);
    float *y = zeros(nout), *dx = zeros(nin);
    int32_t *am = aes_calloc(nout, sizeof(int32_t), "argmax");
    if (is_max) {
        maxpool2d_forward(y, am, x, N, C, H, W, K, stride, pad);
        maxpool2d_backward(dx, dy, am, N, C, H, W, K, stride, pad);
    } else {
        avgpool2d_forward(y, x, N, C, H, W, K, stride, pad);
        avgpool2d_backward(dx, dy, N, C, H, W, K, stride, pad);
    }
    const int32_t shape[7] = {N, C, H, W, K, stride, pad};
    put_i(f, g, "shape", shape, 7);
    put(f, g, "inp", x, 4, din);
    put(f, g, "dout", dy, 4, dout);
    put(f, g, "out", y, 4, dout);
    put(f, g, "dinp", dx, 4, din);
    if (is_max) {
        char path[256];
        snprintf(path, sizeof path, "%s/argmax", g);
        dump_i32(f, path, am, 4, dout);
    }
    free(x), free(dy), free(y), free(dx), free(am);
}

static void dump_gap(hid_t f, const char *name, int N, int C, int H, int W, uint64_t key)
{
    char g[128];
    snprintf(g, sizeof g, "gap/%s", name);
    const size_t nin = (size_t)N * C * H * W, nout = (size_t)N * C;
    const int din[4] = {N, C, H, W}, dout[2] = {N, C};
    float *x = normal(nin, key + 1, 1.0f), *dy = normal(nout, key + 2, 1.0f);
    float *y = zeros(nout), *dx = zeros(nin);
    gap_forward(y, x, N, C, H * W);
    gap_backward(dx, dy, N, C, H * W);
    const int32_t shape[4] = {N, C, H, W};
    put_i(f, g, "shape", shape, 4);
    put(f, g, "inp", x, 4, din);
    put(f, g, "dout", dy, 2, dout);
    put(f, g, "out", y, 2, dout);
    put(f, g, "dinp", dx, 4, din);
    free(x), free(dy), free(y), free(dx);
}

static void dump_relu(hid_t f, const char *name, int n, uint64_t key)
{
    char g[128];
    snprintf(g, sizeof g, "relu/%s", name);
    float *x = normal(n, key + 1, 1.0f), *dy = normal(n, key + 2, 1.0f);
    float *y = zeros(n), *dx = zeros(n);
    relu_forward(y, x, n);
    relu_backward(dx, dy, y, n);
    const int32_t shape[1] = {n};
    const int d[1] = {n};
    put_i(f, g, "shape", shape, 1);
    put(f, g, "inp", x, 1, d);
    put(f, g, "dout", dy, 1, d);
    put(f, g, "out", y, 1, d);
    put(f, g, "dinp", dx, 1, d);
    free(x), free(dy), free(y), free(dx);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.h5\n", argv[0]);
        return 2;
    }
    hid_t f = dump_open(argv[1]);

    static const conv_case convs[] = {
        {"3x3_s1_p1", 2, 3, 8, 8, 4, 3, 3, 1, 1, 1},
        {"3x3_s2_p1_odd", 3, 4, 9, 7, 6, 3, 3, 2, 1, 1},
        {"1x1_s1_p0", 3, 5, 6, 6, 7, 1, 1, 1, 0, 1},
        {"1x1_s2_p0_nobias", 2, 4, 7, 9, 3, 1, 1, 2, 0, 0},
        {"7x7_s2_p3", 2, 3, 23, 21, 8, 7, 7, 2, 3, 1},
        {"3x3_s1_p0_N1", 1, 2, 5, 6, 3, 3, 3, 1, 0, 1},
        {"3x1_s1_p1_nobias", 2, 3, 7, 8, 4, 3, 1, 1, 1, 0},
        {"2x2_s2_p1_N5", 5, 2, 6, 5, 3, 2, 2, 2, 1, 1},
        {"3x3_s1_p1_wide", 3, 32, 14, 14, 48, 3, 3, 1, 1, 0},
        {"1x1_s1_p0_wide", 4, 64, 7, 7, 96, 1, 1, 1, 0, 0},
        /* several col blocks of output rows (12 rows each; single rows) */
        {"3x3_s1_p1_blocks", 3, 64, 36, 36, 16, 3, 3, 1, 1, 1},
        {"3x3_s2_p1_rowblocks", 2, 300, 5, 199, 6, 3, 3, 2, 1, 1},
    };
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
        dump_conv(f, &convs[i], 100 + 10 * i);

    dump_bn(f, "hw1", 8, 6, 1, 1, 300);
    dump_bn(f, "hw12", 4, 5, 12, 1, 310);
    dump_bn(f, "hw49_c64", 3, 64, 49, 1, 320);
    dump_bn(f, "hw12", 4, 5, 12, 0, 330);
    dump_bn(f, "hw1", 8, 6, 1, 0, 340);

    dump_pool(f, "maxpool", "k3_s2_p1", 2, 3, 11, 10, 3, 2, 1, 400);
    dump_pool(f, "maxpool", "k3_s2_p1_even", 2, 4, 16, 16, 3, 2, 1, 410);
    dump_pool(f, "maxpool", "k2_s2_p0", 1, 3, 7, 6, 2, 2, 0, 420);
    dump_pool(f, "avgpool", "k3_s2_p1", 2, 3, 11, 10, 3, 2, 1, 430);
    dump_pool(f, "avgpool", "k2_s2_p0", 2, 3, 8, 7, 2, 2, 0, 440);
    dump_gap(f, "7x7", 3, 16, 7, 7, 500);
    dump_gap(f, "5x3", 2, 5, 5, 3, 510);
    dump_relu(f, "n1000", 1000, 600);
    dump_relu(f, "n100000", 100000, 610); /* the parallel branch */

    dump_close(f);
    return 0;
}
