/*
 * bench_transformer [REPEATS] [--variants]: times forward + backward of
 * one pre-LN transformer block built from the nn.h layers at the two
 * shapes the encoders use:
 *   ViT-B/16 image block  B = 8,  T = 197, C = 768, NH = 12, not causal;
 *   text block            B*A = 40, T = 77, C = 512, NH = 8, causal;
 * and prints the best of REPEATS steps (after a warm-up) in milliseconds
 * and GFLOP/s (counting the GEMM work only: linear 2NC*OC forward, twice
 * that backward; attention 2 B NH T^2 hs per product, T (T + 1) / 2 pairs
 * instead of T^2 when causal, two products forward and four backward),
 * its ratio to a plain sgemm of 2048^3 measured here (the better of a
 * reading before the blocks and one after), and the time split into
 * linear layers, attention and the rest (layer norm, GELU, residual adds,
 * zeroing the activation gradients), the first two with their ratio to
 * the peak.
 *
 * --variants also times attention alone (forward + backward) three ways,
 * to back the threading choice in src/nn/attention.c:
 *   omp-heads   the library: heads over OpenMP, each on the AVX-512 head
 *               kernels (or one-thread sgemm calls without AVX-512);
 *   blas-heads  heads one after another, OpenBLAS threading each sgemm;
 *   omp-loops   heads over OpenMP, the products as plain C loops.
 * Causal heads are credited with their T (T + 1) / 2 pairs on all three,
 * though the last two compute all T^2: their GFLOP/s are rates of useful
 * work.
 *
 * OpenBLAS 0.3.21 takes this CPU for Prescott (SSE3 kernels) unless
 * OPENBLAS_CORETYPE=SkylakeX is set; the core it uses is printed.
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/nn.h"

static aes_rng rng;

static float *uni(size_t n, float a)
{
    float *x = aes_malloc(n * sizeof(float), "bench");
    for (size_t i = 0; i < n; i++) x[i] = a * (2.0f * (float)aes_rng_uniform(&rng) - 1.0f);
    return x;
}

static float *zeros(size_t n) { return aes_calloc(n, sizeof(float), "bench"); }

static void add_to(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---- one block ------------------------------------------------------------ */

typedef struct {
    int B, T, C, NH, H, causal;
    /* parameters and their gradients */
    float *ln1w, *ln1b, *qkvw, *qkvb, *prw, *prb, *ln2w, *ln2b, *fcw, *fcb, *f2w, *f2b;
    float *g[12];
    /* activations and their gradients */
    float *x, *h1, *m1, *r1, *qkv, *att, *a, *x1, *h2, *m2, *r2, *f, *gl, *y;
    float *dy, *dx, *dx1, *dgl, *df, *dh2, *da, *dqkv, *dh1, *scratch;
} blk;

static void blk_init(blk *k, int B, int T, int C, int NH, int causal)
{
    memset(k, 0, sizeof *k);
    k->B = B, k->T = T, k->C = C, k->NH = NH, k->H = 4 * C, k->causal = causal;
    const size_t N = (size_t)B * T, Cs = (size_t)C, H = (size_t)k->H;
    const float wc = 1.0f / sqrtf((float)C), wh = 1.0f / sqrtf((float)H);
    k->ln1w = uni(Cs, 1), k->ln1b = uni(Cs, 0.1f), k->ln2w = uni(Cs, 1), k->ln2b = uni(Cs, 0.1f);
    k->qkvw = uni(3 * Cs * Cs, wc), k->qkvb = uni(3 * Cs, 0.1f);
    k->prw = uni(Cs * Cs, wc), k->prb = uni(Cs, 0.1f);
    k->fcw = uni(H * Cs, wc), k->fcb = uni(H, 0.1f);
    k->f2w = uni(Cs * H, wh), k->f2b = uni(Cs, 0.1f);
    const size_t sz[12] = {Cs, Cs, 3 * Cs * Cs, 3 * Cs, Cs * Cs, Cs, Cs, Cs, H * Cs, H, Cs * H, Cs};
    for (int i = 0; i < 12; i++) k->g[i] = zeros(sz[i]);
    k->x = uni(N * Cs, 1);
    k->h1 = zeros(N * Cs), k->m1 = zeros(N), k->r1 = zeros(N), k->qkv = zeros(3 * N * Cs);
    k->att = zeros((size_t)B * NH * T * T), k->a = zeros(N * Cs), k->x1 = zeros(N * Cs);
    k->h2 = zeros(N * Cs), k->m2 = zeros(N), k->r2 = zeros(N), k->f = zeros(N * H);
    k->gl = zeros(N * H), k->y = zeros(N * Cs);
    k->dy = uni(N * Cs, 1), k->dx = zeros(N * Cs), k->dx1 = zeros(N * Cs);
    k->dgl = zeros(N * H), k->df = zeros(N * H), k->dh2 = zeros(N * Cs), k->da = zeros(N * Cs);
    k->dqkv = zeros(3 * N * Cs), k->dh1 = zeros(N * Cs);
    k->scratch = zeros((size_t)omp_get_max_threads() * attention_scratch_floats(T, C, NH));
}

static void blk_free(blk *k)
{
    float *all[] = {k->ln1w, k->ln1b, k->qkvw, k->qkvb, k->prw, k->prb, k->ln2w, k->ln2b,
                    k->fcw,  k->fcb,  k->f2w,  k->f2b,  k->x,   k->h1,  k->m1,  k->r1,
                    k->qkv,  k->att,  k->a,    k->x1,   k->h2,  k->m2,  k->r2,  k->f,
                    k->gl,   k->y,    k->dy,   k->dx,   k->dx1, k->dgl, k->df,  k->dh2,
                    k->da,   k->dqkv, k->dh1,  k->scratch};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    for (int i = 0; i < 12; i++) free(k->g[i]);
}

enum { T_LIN, T_ATT, T_OTHER, NT };

/* One forward + backward; t[] accumulates seconds per kind of work.
 * Activation gradients are zeroed first, as a training step does. */
static void blk_step(blk *k, double t[NT])
{
    const int N = k->B * k->T, C = k->C, H = k->H;
    const size_t nc = (size_t)N * C;
    double t0 = aes_now(), t1;
#define LAP(slot) (t1 = aes_now(), t[slot] += t1 - t0, t0 = t1)
    memset(k->dx, 0, nc * sizeof(float));
    memset(k->dx1, 0, nc * sizeof(float));
    memset(k->dgl, 0, (size_t)N * H * sizeof(float));
    memset(k->df, 0, (size_t)N * H * sizeof(float));
    memset(k->dh2, 0, nc * sizeof(float));
    memset(k->da, 0, nc * sizeof(float));
    memset(k->dqkv, 0, 3 * nc * sizeof(float));
    memset(k->dh1, 0, nc * sizeof(float));
    LAP(T_OTHER);
    layernorm_forward(k->h1, k->m1, k->r1, k->x, k->ln1w, k->ln1b, N, C, 1e-5f);
    LAP(T_OTHER);
    linear_forward(k->qkv, k->h1, k->qkvw, k->qkvb, N, C, 3 * C);
    LAP(T_LIN);
    attention_forward(k->a, k->att, k->qkv, k->B, k->T, C, k->NH, k->causal);
    LAP(T_ATT);
    linear_forward(k->x1, k->a, k->prw, k->prb, N, C, C);
    LAP(T_LIN);
    add_to(k->x1, k->x, nc);
    layernorm_forward(k->h2, k->m2, k->r2, k->x1, k->ln2w, k->ln2b, N, C, 1e-5f);
    LAP(T_OTHER);
    linear_forward(k->f, k->h2, k->fcw, k->fcb, N, C, H);
    LAP(T_LIN);
    gelu_forward(k->gl, k->f, (size_t)N * H);
    LAP(T_OTHER);
    linear_forward(k->y, k->gl, k->f2w, k->f2b, N, H, C);
    LAP(T_LIN);
    add_to(k->y, k->x1, nc);
    add_to(k->dx1, k->dy, nc);
    LAP(T_OTHER);
    linear_backward(k->dgl, k->g[10], k->g[11], k->dy, k->gl, k->f2w, N, H, C);
    LAP(T_LIN);
    gelu_backward(k->df, k->dgl, k->f, (size_t)N * H);
    LAP(T_OTHER);
    linear_backward(k->dh2, k->g[8], k->g[9], k->df, k->h2, k->fcw, N, C, H);
    LAP(T_LIN);
    layernorm_backward(k->dx1, k->g[6], k->g[7], k->dh2, k->x1, k->ln2w, k->m2, k->r2, N, C);
    add_to(k->dx, k->dx1, nc);
    LAP(T_OTHER);
    linear_backward(k->da, k->g[4], k->g[5], k->dx1, k->a, k->prw, N, C, C);
    LAP(T_LIN);
    attention_backward(k->dqkv, k->scratch, k->da, k->qkv, k->att, k->B, k->T, C, k->NH,
                       k->causal);
    LAP(T_ATT);
    linear_backward(k->dh1, k->g[2], k->g[3], k->dqkv, k->h1, k->qkvw, N, C, 3 * C);
    LAP(T_LIN);
    layernorm_backward(k->dx, k->g[0], k->g[1], k->dh1, k->x, k->ln1w, k->m1, k->r1, N, C);
    LAP(T_OTHER);
#undef LAP
}

static double blk_flops(const blk *k, double *lin, double *att)
{
    const double N = (double)k->B * k->T, C = k->C, H = k->H;
    const double hs = (double)k->C / k->NH;
    /* forward 2*N*C*OC per linear; backward twice that (dinp and dw) */
    *lin = 3.0 * 2.0 * N * (C * 3 * C + C * C + C * H + H * C);
    /* QK^T and PV forward, four products of the same size backward; with
     * the causal mask only the T(T+1)/2 entries on and below the diagonal
     * are needed (the AVX-512 kernels skip the rest) */
    const double pairs = k->causal ? 0.5 * k->T * (k->T + 1.0) : (double)k->T * k->T;
    *att = 6.0 * 2.0 * k->B * k->NH * pairs * hs;
    return *lin + *att;
}

static double sgemm_peak(void)
{
    const int n = 2048;
    float *a = uni((size_t)n * n, 1), *b = uni((size_t)n * n, 1), *c = zeros((size_t)n * n);
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        const double t0 = aes_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        const double dt = aes_now() - t0;
        if (r > 0 && dt < best) best = dt; /* the first run pays for warm-up */
    }
    const double gf = 2.0 * n * n * (double)n / best * 1e-9;
    printf("sgemm %d^3: %.1f ms, %.1f GFLOP/s\n", n, best * 1e3, gf);
    free(a), free(b), free(c);
    return gf;
}

typedef struct {
    const char *name;
    int B, T, C, NH, causal;
    double dt, fl, lin, att, t[NT];
} block_result;

static block_result bench_block(const char *name, int B, int T, int C, int NH, int causal,
                                int reps)
{
    block_result res = {name, B, T, C, NH, causal, 1e30, 0, 0, 0, {0}};
    blk k;
    blk_init(&k, B, T, C, NH, causal);
    /* Best of reps (after one warm-up step): on a shared machine the
     * fastest step is the one least disturbed by other work. */
    for (int r = 0; r <= reps; r++) {
        double tr[NT] = {0};
        const double t0 = aes_now();
        blk_step(&k, tr);
        const double d = aes_now() - t0;
        if (r > 0 && d < res.dt) res.dt = d, memcpy(res.t, tr, sizeof tr);
    }
    res.fl = blk_flops(&k, &res.lin, &res.att);
    blk_free(&k);
    return res;
}

static void print_block(const block_result *r, double peak)
{
    const double gf = r->fl / r->dt * 1e-9, lin = r->lin / r->t[T_LIN] * 1e-9,
                 att = r->att / r->t[T_ATT] * 1e-9;
    printf("%s B=%d T=%d C=%d NH=%d%s: fwd+bwd %.1f ms, %.1f GFLOP/s (%.0f%% of sgemm peak)\n",
           r->name, r->B, r->T, r->C, r->NH, r->causal ? " causal" : "", r->dt * 1e3, gf,
           100.0 * gf / peak);
    printf("    linear %.1f ms (%.1f GFLOP/s, %.0f%%), attention %.1f ms (%.1f GFLOP/s, %.0f%%), "
           "other %.1f ms\n",
           r->t[T_LIN] * 1e3, lin, 100.0 * lin / peak, r->t[T_ATT] * 1e3, att,
           100.0 * att / peak, r->t[T_OTHER] * 1e3);
}

/* ---- attention threading alternatives (--variants) ---------------------------- */

static void att_blas_heads(float *out, float *att, float *dqkv, float *ds, const float *dout,
                           const float *qkv, int B, int T, int C, int NH, int causal)
{
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
        const float *q = qkv + off, *kk = q + C, *v = q + 2 * C;
        float *p = att + (size_t)bh * T * T, *o = out + (size_t)b * T * C + (size_t)h * hs;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, kk, C3, 0.0f,
                    p, T);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            float *row = p + (size_t)t * T;
            const int n = causal ? t + 1 : T;
            float mx = -INFINITY, s = 0.0f;
            for (int j = 0; j < n; j++) mx = fmaxf(mx, row[j]);
            for (int j = 0; j < n; j++) s += row[j] = expf(row[j] - mx);
            for (int j = 0; j < n; j++) row[j] /= s;
            for (int j = n; j < T; j++) row[j] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v, C3, 0.0f,
                    o, C);
    }
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
        const float *q = qkv + off, *kk = q + C, *v = q + 2 * C;
        float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
        const float *p = att + (size_t)bh * T * T;
        const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dO, C, v, C3, 0.0f,
                    ds, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dO, C, 1.0f,
                    dv, C3);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            const float *pr = p + (size_t)t * T;
            float *dr = ds + (size_t)t * T, dot = 0.0f;
            for (int j = 0; j < T; j++) dot += dr[j] * pr[j];
            for (int j = 0; j < T; j++) dr[j] = scale * pr[j] * (dr[j] - dot);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, kk, C3, 1.0f,
                    dq, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, q, C3, 1.0f,
                    dk, C3);
    }
}

static void att_omp_loops(float *out, float *att, float *dqkv, float *scratch, const float *dout,
                          const float *qkv, int B, int T, int C, int NH, int causal)
{
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel
    {
        float *ds = scratch + (size_t)omp_get_thread_num() * T * T;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + off, *kk = q + C, *v = q + 2 * C;
            float *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
            float *p = att + (size_t)bh * T * T, *o = out + (size_t)b * T * C + (size_t)h * hs;
            const float *dO = dout + (size_t)b * T * C + (size_t)h * hs;
            for (int t = 0; t < T; t++) {
                const int n = causal ? t + 1 : T;
                float *row = p + (size_t)t * T, mx = -INFINITY, s = 0.0f;
                for (int j = 0; j < n; j++) {
                    float d = 0.0f;
                    const float *qt = q + (size_t)t * C3, *kj = kk + (size_t)j * C3;
                    for (int i = 0; i < hs; i++) d += qt[i] * kj[i];
                    row[j] = d * scale;
                    mx = fmaxf(mx, row[j]);
                }
                for (int j = 0; j < n; j++) s += row[j] = expf(row[j] - mx);
                for (int j = 0; j < n; j++) row[j] /= s;
                for (int j = n; j < T; j++) row[j] = 0.0f;
                float *ot = o + (size_t)t * C;
                for (int i = 0; i < hs; i++) ot[i] = 0.0f;
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < hs; i++) ot[i] += row[j] * v[(size_t)j * C3 + i];
            }
            for (int t = 0; t < T; t++) {
                const int n = causal ? t + 1 : T;
                const float *pr = p + (size_t)t * T, *dot_ = dO + (size_t)t * C;
                float *dr = ds + (size_t)t * T, dot = 0.0f;
                for (int j = 0; j < n; j++) {
                    float d = 0.0f;
                    for (int i = 0; i < hs; i++) d += dot_[i] * v[(size_t)j * C3 + i];
                    dr[j] = d;
                    dot += d * pr[j];
                    for (int i = 0; i < hs; i++) dv[(size_t)j * C3 + i] += pr[j] * dot_[i];
                }
                for (int j = 0; j < n; j++) dr[j] = scale * pr[j] * (dr[j] - dot);
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < hs; i++) {
                        dq[(size_t)t * C3 + i] += dr[j] * kk[(size_t)j * C3 + i];
                        dk[(size_t)j * C3 + i] += dr[j] * q[(size_t)t * C3 + i];
                    }
            }
        }
    }
}

static void bench_variants(const char *name, int B, int T, int C, int NH, int causal, int reps)
{
    const size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
    float *qkv = uni(nq, 1), *dout = uni(no, 1), *out = zeros(no), *dqkv = zeros(nq);
    float *att = zeros((size_t)B * NH * T * T);
    float *scratch = zeros((size_t)omp_get_max_threads() * attention_scratch_floats(T, C, NH));
    /* as blk_flops: causal heads count their T (T + 1) / 2 visible pairs */
    const double pairs = causal ? T * (T + 1.0) / 2.0 : (double)T * T;
    const double fl = 6.0 * 2.0 * B * NH * pairs * (C / NH);
    for (int v = 0; v < 3; v++) {
        double best = 1e30;
        for (int r = 0; r <= reps; r++) {
            const double t0 = aes_now();
            if (v == 0) {
                attention_forward(out, att, qkv, B, T, C, NH, causal);
                attention_backward(dqkv, scratch, dout, qkv, att, B, T, C, NH, causal);
            } else if (v == 1) {
                att_blas_heads(out, att, dqkv, scratch, dout, qkv, B, T, C, NH, causal);
            } else {
                att_omp_loops(out, att, dqkv, scratch, dout, qkv, B, T, C, NH, causal);
            }
            const double dt = aes_now() - t0;
            if (r > 0 && dt < best) best = dt;
        }
        static const char *vn[3] = {"omp-heads", "blas-heads", "omp-loops"};
        printf("attention %s %-10s fwd+bwd %.1f ms, %.1f GFLOP/s\n", name, vn[v], best * 1e3,
               fl / best * 1e-9);
    }
    free(qkv), free(dout), free(out), free(dqkv), free(att), free(scratch);
}

int main(int argc, char **argv)
{
    int reps = 3, variants = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--variants"))
            variants = 1;
        else if (atoi(argv[i]) > 0)
            reps = atoi(argv[i]);
        else {
            fprintf(stderr, "usage: bench_transformer [REPEATS] [--variants]\n");
            return 2;
        }
    }
    aes_rng_init(&rng, aes_key(1, 0, 0, AES_RNG_INIT));
    printf("OpenBLAS %s, core %s, %d OpenBLAS threads, %d OpenMP threads\n",
           openblas_get_config(), openblas_get_corename(), openblas_get_num_threads(),
           omp_get_max_threads());
    /* Timings on a shared machine mean little without the load beside them. */
    FILE *la = fopen("/proc/loadavg", "r");
    char line[128];
    if (la && fgets(line, sizeof line, la)) printf("load average at start: %s", line);
    if (la) fclose(la);
    double peak = sgemm_peak();
    const block_result vit = bench_block("vit-b/16 block", 8, 197, 768, 12, 0, reps);
    const block_result text = bench_block("text block", 40, 77, 512, 8, 1, reps);
    /* The peak again, the better of the two readings: one reading alone
     * has come out low enough (this VM's speed drifts) to print 121%. */
    const double peak2 = sgemm_peak();
    if (peak2 > peak) peak = peak2;
    print_block(&vit, peak);
    print_block(&text, peak);
    if (variants) {
        bench_variants("vit", 8, 197, 768, 12, 0, reps);
        bench_variants("text", 40, 77, 512, 8, 1, reps);
    }
    return 0;
}
