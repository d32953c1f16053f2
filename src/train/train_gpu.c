/*
 * The training step with train.device = "cuda": the same step as
 * src/train/train.c (see there and docs/training.md), with the model, both
 * losses, the gradient norm, clipping and AdamW on the rank's GPU.
 *
 * What crosses to the host, and why:
 * - the batch (images, tokens, masks) from the loader, uploaded;
 * - the loss values (a few doubles) after the losses: the all-reduce of
 *   the shares, the metrics and the non-finite decision need them;
 * - the squared gradient norm (one double), copied asynchronously into
 *   pinned memory for the log and the count of skipped steps: the clip
 *   factor and the non-finite skip are decided on the GPU from the same
 *   numbers (aes_step_control_gpu) and steer the AdamW kernels, so the
 *   update runs while the host logs and reads the next batch;
 * - with more than one rank and an MPI that is not CUDA-aware, the
 *   gathered embeddings, the column gradients and the parameter gradients,
 *   staged through the host buffers of the CPU path, pinned (page-locked)
 *   for the copies. With a CUDA-aware MPI (Open MPI's
 *   MPIX_Query_cuda_support() at run time; AESNET_CUDA_AWARE=0 or 1
 *   overrides) the collectives take the device buffers directly. The
 *   overlap of the gradient all-reduce with backward is the next step;
 * - parameters and AdamW moments before a checkpoint.
 * Batch norm's global statistics go through the reduction hook as on the
 * CPU (a host round trip per layer with more than one rank).
 *
 * train.precision: fp32 (TF32 off), tf32, or bf16 (the layers' GEMMs
 * multiply bf16 inputs on tensor cores with fp32 accumulation; storage,
 * master weights, the losses and AdamW stay fp32; convolutions use TF32).
 */
#include "train/train_gpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/loss.h"
#include "aesnet/optim.h"

#include "aesnet/gpu.h"

void aes_train_gpu_check(aes_trainer *t)
{
    char why[256];
    if (!aes_gpu_available(why, sizeof why))
        aes_user_error("%s: train.device = \"cuda\": %s", t->cfg.path, why);
}

#ifndef AESNET_WITH_CUDA
void aes_train_gpu_init(aes_trainer *t) { aes_train_gpu_check(t); }
void aes_train_gpu_free(aes_trainer *t) { (void)t; }
double aes_train_gpu_forward_loss(aes_trainer *t, const aes_batch *b, int B, int64_t step,
                                  int want_grad, aes_step_stats *st)
{
    (void)t, (void)b, (void)B, (void)step, (void)want_grad, (void)st;
    aes_internal_error("GPU step in a build without CUDA");
}
void aes_train_gpu_backward_update(aes_trainer *t, const aes_batch *b, aes_step_stats *st)
{
    (void)t, (void)b, (void)st;
    aes_internal_error("GPU step in a build without CUDA");
}
void aes_train_gpu_to_host(aes_trainer *t) { (void)t; }
#else
#include <cuda_runtime.h>
#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h>
#endif

struct aes_trainer_gpu {
    aes_gpu g;
    int cuda_aware;                     /* MPI takes device pointers */
    void *pinned[16];                   /* host buffers registered for fast copies */
    int n_pinned;
    void *dstage;                       /* device staging for the collectives [W, A, B, C] */
    size_t dstage_bytes;
    /* device buffers, sized as the host ones of the trainer */
    float *xl, *yl, *vl, *vrefl;        /* [A, B, D], [A, B, D], [B, Fv], [B, Fv] */
    float *x_all, *y_all, *v_all, *ref_all, *dx_all, *dy_all, *dv_all, *dx, *dy, *dv;
    uint8_t *mask_all;
    uint64_t *hash_all;
    float *ls, *dls, *dls0;             /* [A] log scales, their gradient, zeros */
    float *mdx, *mdy;                   /* [A, mb, D] */
    float *m1, *m2;                     /* AdamW moments [n_trainable] */
    float *bufsave;                     /* batch-norm buffers across re-runs */
    float *scratch;                     /* the losses' */
    double *out;                        /* [A + 2]: MAC loss_a, MAC share, SA share */
    double *sumsq;                      /* aes_sumsq_scratch_gpu() */
    float *ctrl;                        /* [2] clip factor, update flag */
    double *h_stats;                    /* pinned: the squared gradient norm */
    cudaEvent_t stats_ready;
};

#define CUDA_RT(call)                                                                      \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) aes_internal_error("%s: %s", #call, cudaGetErrorString(e_)); \
    } while (0)

static void *dmalloc(size_t bytes, const char *what)
{
    void *p = aes_gpu_malloc(bytes ? bytes : 1, what);
    aes_gpu_zero(p, bytes);
    return p;
}

/* Whether MPI accepts device pointers: AESNET_CUDA_AWARE=0|1 decides,
 * else Open MPI's run-time query; other MPIs are assumed not to. */
static int mpi_cuda_aware(void)
{
    const char *e = getenv("AESNET_CUDA_AWARE");
    if (e && *e) return atoi(e) != 0;
#if defined(MPIX_CUDA_AWARE_SUPPORT)
    return MPIX_Query_cuda_support() == 1;
#else
    return 0;
#endif
}

/* Page-lock a host buffer of the CPU path that stages device data. */
static void pin(struct aes_trainer_gpu *G, void *p, size_t bytes)
{
    if (!p || !bytes || G->n_pinned == (int)(sizeof G->pinned / sizeof G->pinned[0])) return;
    if (cudaHostRegister(p, bytes, cudaHostRegisterDefault) == cudaSuccess)
        G->pinned[G->n_pinned++] = p;
    else cudaGetLastError(); /* unpinned still works, only slower */
}

/* The rank's index among the ranks of its node. */
static int local_rank(aes_dist *d)
{
    MPI_Comm node;
    int r = 0;
    if (MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node) !=
        MPI_SUCCESS)
        return d->rank;
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
    return r;
}

void aes_train_gpu_init(aes_trainer *t)
{
    const aes_config *c = &t->cfg;
    struct aes_trainer_gpu *G = aes_calloc(1, sizeof *G, "GPU state");
    aes_err err;
    const aes_gpu_math math = !strcmp(c->precision, "tf32")   ? AES_MATH_TF32
                              : !strcmp(c->precision, "bf16") ? AES_MATH_BF16
                                                              : AES_MATH_FP32;
    if (aes_gpu_init(&G->g, local_rank(&t->dist), math, &err) != 0) {
        free(G);
        aes_user_error("%s: train.device = \"cuda\": %s", c->path, err.msg);
    }
    t->gpu = G;
    aes_model *m = &t->model;
    /* One rank holds the global batch: no host round trip for batch norm. */
    if (t->dist.world == 1) m->image.red = NULL;
    aes_model_to_device(m);
    const int A = t->A, Bg = t->Bg, B = t->B, D = t->D, Fv = m->Fv;
    const int Fr = t->ref_features ? t->ds.F : Fv;
    const size_t f = sizeof(float);
    G->xl = dmalloc(f * A * B * D, "x");
    G->yl = dmalloc(f * A * B * D, "y");
    G->vl = dmalloc(f * B * Fv, "v");
    G->vrefl = dmalloc(f * B * Fv, "reference features");
    G->x_all = dmalloc(f * A * Bg * D, "x");
    G->y_all = dmalloc(f * A * Bg * D, "y");
    G->v_all = dmalloc(f * Bg * Fv, "v");
    G->ref_all = dmalloc(f * Bg * Fr, "reference");
    G->dx_all = dmalloc(f * A * Bg * D, "dx");
    G->dy_all = dmalloc(f * A * Bg * D, "dy");
    G->dv_all = dmalloc(f * Bg * Fv, "dv");
    G->dx = dmalloc(f * A * B * D, "dx");
    G->dy = dmalloc(f * A * B * D, "dy");
    G->dv = dmalloc(f * B * Fv, "dv");
    G->mask_all = dmalloc((size_t)A * Bg, "mask");
    G->hash_all = dmalloc(sizeof(uint64_t) * A * Bg, "hashes");
    G->ls = dmalloc(f * A, "log scales");
    G->dls = dmalloc(f * A, "d log scales");
    G->dls0 = dmalloc(f * A, "zeros");
    G->mdx = dmalloc(f * A * t->mb * D, "micro-batch dx");
    G->mdy = dmalloc(f * A * t->mb * D, "micro-batch dy");
    G->m1 = dmalloc(f * m->P.n_trainable, "AdamW m");
    G->m2 = dmalloc(f * m->P.n_trainable, "AdamW v");
    aes_gpu_upload(G->m1, t->m1, f * m->P.n_trainable); /* zeros, or the checkpoint's */
    aes_gpu_upload(G->m2, t->m2, f * m->P.n_trainable);
    G->bufsave = dmalloc(f * (m->P.n_total - m->P.n_trainable + 1), "buffers");
    G->scratch = dmalloc(f * (aes_mac_scratch_floats_gpu(B, Bg, A) +
                              aes_sa_scratch_floats_gpu(B, Bg, Fv, Fr)),
                         "loss scratch");
    G->out = dmalloc(sizeof(double) * (A + 2), "losses");
    G->sumsq = dmalloc(sizeof(double) * aes_sumsq_scratch_gpu(), "norm");
    G->ctrl = dmalloc(sizeof(float) * 2, "step control");
    CUDA_RT(cudaMallocHost((void **)&G->h_stats, sizeof(double) * 2));
    CUDA_RT(cudaEventCreateWithFlags(&G->stats_ready, cudaEventDisableTiming));
    if (t->dist.world > 1) {
        G->cuda_aware = mpi_cuda_aware();
        if (G->cuda_aware) {
            /* the largest collective: [W, A, B, D] floats, or the hashes */
            const size_t a = f * A * Bg * D, b = sizeof(uint64_t) * A * Bg;
            const size_t c = f * Bg * (Fv > Fr ? Fv : Fr);
            G->dstage_bytes = a > b ? (a > c ? a : c) : (b > c ? b : c);
            G->dstage = dmalloc(G->dstage_bytes, "collective staging");
        } else {
            pin(G, t->xl, f * A * B * D), pin(G, t->yl, f * A * B * D);
            pin(G, t->x_all, f * A * Bg * D), pin(G, t->y_all, f * A * Bg * D);
            pin(G, t->dx_all, f * A * Bg * D), pin(G, t->dy_all, f * A * Bg * D);
            pin(G, t->dx, f * A * B * D), pin(G, t->dy, f * A * B * D);
            pin(G, t->vl, f * B * Fv), pin(G, t->v_all, f * Bg * Fv);
            pin(G, t->dv_all, f * Bg * Fv), pin(G, t->dv, f * B * Fv);
            pin(G, t->ref_all, f * Bg * Fr), pin(G, t->vrefl, f * B * Fv);
            pin(G, m->P.grad, f * m->P.n_trainable);
        }
    }
    if (t->dist.rank == 0 && t->dist.world > 1)
        aes_log("GPU collectives: %s", G->cuda_aware ? "CUDA-aware MPI on device buffers"
                                                    : "staged through pinned host buffers");
    if (t->dist.rank == 0)
        aes_log("GPU: %s (device %d of %d on this node), %s", G->g.name, G->g.device,
                G->g.n_devices,
                math == AES_MATH_TF32   ? "TF32 tensor cores"
                : math == AES_MATH_BF16 ? "bf16 GEMMs with fp32 accumulation and master weights"
                                        : "fp32");
}

void aes_train_gpu_free(aes_trainer *t)
{
    struct aes_trainer_gpu *G = t->gpu;
    if (!G) return;
    void *p[] = {G->xl,     G->yl,      G->vl,       G->vrefl, G->x_all, G->y_all, G->v_all,
                 G->ref_all, G->dx_all, G->dy_all,   G->dv_all, G->dx,   G->dy,    G->dv,
                 G->mask_all, G->hash_all, G->ls,    G->dls,   G->dls0,  G->mdx,   G->mdy,
                 G->m1,     G->m2,      G->bufsave,  G->scratch, G->out, G->sumsq, G->dstage,
                 G->ctrl};
    aes_gpu_sync(&G->g);
    /* unpinned before the model frees its gradient buffer (one of them) */
    for (int k = 0; k < G->n_pinned; k++) cudaHostUnregister(G->pinned[k]);
    /* the model's device memory goes with the model, before the context */
    aes_model_free(&t->model);
    for (size_t k = 0; k < sizeof p / sizeof p[0]; k++) aes_gpu_free_mem(p[k]);
    cudaFreeHost(G->h_stats);
    cudaEventDestroy(G->stats_ready);
    aes_gpu_free(&G->g);
    free(G);
    t->gpu = NULL;
}

/* Between [W][A][B][C] (rank-major, as MPI gathers and scatters) and
 * [A][W*B][C] (the layout of the gathered buffers): one strided copy per
 * rank, in the direction to_rows says. */
static void relayout(void *dst, const void *src, int W, int A, int B, int C, size_t elem,
                     int to_rows)
{
    const size_t row = (size_t)B * C * elem; /* a rank's rows of one attribute */
    const cudaStream_t sm = (cudaStream_t)aes_gpu_current()->stream;
    for (int r = 0; r < W; r++) {
        const size_t rows_at = r * row, major_at = r * row * A;
        if (to_rows)
            CUDA_RT(cudaMemcpy2DAsync((char *)dst + rows_at, row * W, (const char *)src + major_at,
                                      row, row, A, cudaMemcpyDeviceToDevice, sm));
        else
            CUDA_RT(cudaMemcpy2DAsync((char *)dst + major_at, row, (const char *)src + rows_at,
                                      row * W, row, A, cudaMemcpyDeviceToDevice, sm));
    }
}

/* Host rows (from the loader) into the global device buffer. */
static void gather_host(aes_trainer *t, const void *hlocal, void *hglobal, void *dglobal, int A,
                        int B, int C, size_t elem)
{
    const size_t per = (size_t)A * B * C * elem;
    if (t->dist.world == 1) {
        aes_gpu_upload(dglobal, hlocal, per);
        return;
    }
    aes_dist_allgather_rows(&t->dist, hlocal, hglobal, A, B, C, elem);
    aes_gpu_upload(dglobal, hglobal, per * t->dist.world);
}

/* Gather this rank's rows into the global buffer: a copy on one rank,
 * MPI on the device buffers with a CUDA-aware MPI, else through the host
 * buffers of the CPU path. */
static void gather(aes_trainer *t, const void *dlocal, void *hlocal, void *hglobal, void *dglobal,
                   int A, int B, int C, size_t elem)
{
    const size_t per = (size_t)A * B * C * elem;
    if (t->dist.world == 1) {
        aes_gpu_copy(dglobal, dlocal, per);
        return;
    }
    struct aes_trainer_gpu *G = t->gpu;
    if (G->cuda_aware) {
        const double t0 = aes_now();
        aes_gpu_sync(&G->g); /* dlocal complete before MPI reads it */
        AES_MPI_CHECK(MPI_Allgather(dlocal, (int)per, MPI_BYTE, G->dstage, (int)per, MPI_BYTE,
                                    t->dist.comm));
        relayout(dglobal, G->dstage, t->dist.world, A, B, C, elem, 1);
        t->dist.comm_seconds += aes_now() - t0;
        return;
    }
    aes_gpu_download(hlocal, dlocal, per);
    gather_host(t, hlocal, hglobal, dglobal, A, B, C, elem);
}

static void scatter(aes_trainer *t, const float *dglobal, float *hglobal, float *hlocal,
                    float *dlocal, int A, int B, int C)
{
    const size_t per = sizeof(float) * (size_t)A * B * C;
    if (t->dist.world == 1) {
        aes_gpu_copy(dlocal, dglobal, per);
        return;
    }
    struct aes_trainer_gpu *G = t->gpu;
    if (G->cuda_aware) {
        const double t0 = aes_now();
        relayout(G->dstage, dglobal, t->dist.world, A, B, C, sizeof(float), 0);
        aes_gpu_sync(&G->g);
        AES_MPI_CHECK(MPI_Reduce_scatter_block(G->dstage, dlocal, (int)(per / sizeof(float)),
                                               MPI_FLOAT, MPI_SUM, t->dist.comm));
        t->dist.comm_seconds += aes_now() - t0;
        return;
    }
    aes_gpu_download(hglobal, dglobal, per * t->dist.world);
    aes_dist_reduce_scatter_rows(&t->dist, hglobal, hlocal, A, B, C);
    aes_gpu_upload(dlocal, hlocal, per);
}

/* Rows [i0, i0 + n) of [A, B, C] from src [A, n, C] (or back). */
static void rows_in(float *dst, const float *src, int A, int B, int i0, int n, int C)
{
    for (int a = 0; a < A; a++)
        aes_gpu_copy(dst + ((size_t)a * B + i0) * C, src + (size_t)a * n * C,
                     sizeof(float) * (size_t)n * C);
}

static void rows_out(float *dst, const float *src, int A, int B, int i0, int n, int C)
{
    for (int a = 0; a < A; a++)
        aes_gpu_copy(dst + (size_t)a * n * C, src + ((size_t)a * B + i0) * C,
                     sizeof(float) * (size_t)n * C);
}

double aes_train_gpu_forward_loss(aes_trainer *t, const aes_batch *b, int B, int64_t step,
                                  int want_grad, aes_step_stats *st)
{
    struct aes_trainer_gpu *G = t->gpu;
    aes_dist *d = &t->dist;
    aes_model *m = &t->model;
    const int A = t->A, D = t->D, Fv = m->Fv, W = d->world, Bg = B * W;
    double t0 = aes_now(), c0 = d->comm_seconds;
    for (int i0 = 0; i0 < B; i0 += t->mb) {
        const int n = B - i0 < t->mb ? B - i0 : t->mb;
        aes_trainer_micro_forward(t, b, B, i0, n, step);
        rows_in(G->xl, m->x, A, B, i0, n, D);
        rows_in(G->yl, m->y, A, B, i0, n, D);
        rows_in(G->vl, m->v, 1, B, i0, n, Fv);
        if (m->cfg.frozen_reference) rows_in(G->vrefl, m->vref, 1, B, i0, n, Fv);
    }
    double t1 = aes_now();
    gather(t, G->xl, t->xl, t->x_all, G->x_all, A, B, D, sizeof(float));
    gather(t, G->yl, t->yl, t->y_all, G->y_all, A, B, D, sizeof(float));
    gather_host(t, b->mask, t->mask_all, G->mask_all, A, B, 1, 1);
    gather_host(t, b->hash, t->hash_all, G->hash_all, A, B, 1, sizeof(uint64_t));
    for (int a = 0; a < A; a++)
        aes_gpu_copy(G->ls + a, m->P.d_data + m->P.t[m->p_scale[a]].offset, sizeof(float));
    aes_mac_args ma = {.A = A, .D = D, .Bg = Bg, .B = B, .row0 = d->rank * B, .x = G->x_all,
                       .y = G->y_all, .mask = G->mask_all, .hash = G->hash_all, .logscale = G->ls,
                       .weights = t->weights,
                       .duplicates_positive = !strcmp(t->cfg.duplicates, "positive")};
    float *sc_mac = G->scratch, *sc_sa = G->scratch + aes_mac_scratch_floats_gpu(B, Bg, A);
    aes_mac_loss_gpu(&ma, sc_mac, G->out, want_grad ? G->dx_all : NULL,
                     want_grad ? G->dy_all : NULL, want_grad ? G->dls : NULL);
    double parts[2 + AES_MAX_ATTR] = {0}, out[AES_MAX_ATTR + 2];
    int Fr = Fv;
    if (t->affinity) {
        gather(t, G->vl, t->vl, t->v_all, G->v_all, 1, B, Fv, sizeof(float));
        if (t->ref_features) {
            Fr = t->ds.F;
            gather_host(t, b->features, t->ref_all, G->ref_all, 1, B, Fr, sizeof(float));
        } else {
            gather(t, G->vrefl, t->vrefl, t->ref_all, G->ref_all, 1, B, Fv, sizeof(float));
        }
        aes_sa_args sa = {.Bg = Bg, .B = B, .row0 = d->rank * B, .F = Fv, .Fr = Fr, .v = G->v_all,
                          .ref = G->ref_all, .tau = (float)t->cfg.affinity_tau,
                          .kind = t->affinity == 2 ? AES_AFFINITY_MSE : AES_AFFINITY_KL};
        aes_sa_loss_gpu(&sa, sc_sa, G->out + A + 1, want_grad ? G->dv_all : NULL);
    }
    /* The loss values: a few doubles, for the sum over ranks and the log. */
    aes_gpu_download(out, G->out, sizeof(double) * (A + (t->affinity ? 2 : 1)));
    parts[0] = out[A];
    parts[1] = t->affinity ? out[A + 1] : 0.0;
    for (int a = 0; a < A; a++) parts[2 + a] = out[a];
    aes_dist_allreduce_sum_f64(d, parts, 2 + A);
    if (want_grad) {
        scatter(t, G->dx_all, t->dx_all, t->dx, G->dx, A, B, D);
        scatter(t, G->dy_all, t->dy_all, t->dy, G->dy, A, B, D);
        if (t->affinity) {
            scatter(t, G->dv_all, t->dv_all, t->dv, G->dv, 1, B, Fv);
            aes_scale_gpu(G->dv, (size_t)B * Fv, (float)t->cfg.affinity_weight);
        }
        /* d/dlogscale: every rank's share adds up in the gradient all-reduce */
    }
    return aes_trainer_loss_stats(t, parts, t0, t1, c0, st);
}

void aes_train_gpu_backward_update(aes_trainer *t, const aes_batch *b, aes_step_stats *st)
{
    struct aes_trainer_gpu *G = t->gpu;
    aes_model *m = &t->model;
    aes_dist *d = &t->dist;
    const aes_config *c = &t->cfg;
    const int A = t->A, D = t->D, B = t->B, Fv = m->Fv;
    const size_t nbuf = m->P.n_total - m->P.n_trainable, nt = m->P.n_trainable;
    const int several = t->mb < B;
    double t2 = aes_now(), c0 = d->comm_seconds;
    aes_gpu_zero(m->P.d_grad, sizeof(float) * nt);
    for (int i0 = 0; i0 < B; i0 += t->mb) {
        const int n = t->mb;
        if (several) {
            aes_gpu_copy(G->bufsave, m->P.d_data + nt, sizeof(float) * nbuf);
            aes_trainer_micro_forward(t, b, B, i0, n, t->step);
            aes_gpu_copy(m->P.d_data + nt, G->bufsave, sizeof(float) * nbuf);
        }
        rows_out(G->mdx, G->dx, A, B, i0, n, D);
        rows_out(G->mdy, G->dy, A, B, i0, n, D);
        aes_model_backward(m, G->mdx, G->mdy, t->affinity ? G->dv + (size_t)i0 * Fv : NULL,
                           i0 == 0 ? G->dls : G->dls0);
    }
    if (d->world > 1 && G->cuda_aware) {
        const double c1 = aes_now();
        aes_gpu_sync(&G->g);
        for (size_t o = 0; o < nt; o += (size_t)1 << 30) { /* MPI counts are int */
            const size_t n = nt - o < ((size_t)1 << 30) ? nt - o : (size_t)1 << 30;
            AES_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, m->P.d_grad + o, (int)n, MPI_FLOAT, MPI_SUM,
                                        d->comm));
        }
        d->comm_seconds += aes_now() - c1;
    } else if (d->world > 1) { /* staged through the host's gradient buffer */
        aes_gpu_download(m->P.grad, m->P.d_grad, sizeof(float) * nt);
        aes_dist_grads_begin(d, m->P.grad, nt, 0);
        aes_dist_grads_end(d);
        aes_gpu_upload(m->P.d_grad, m->P.grad, sizeof(float) * nt);
    }
    double t3 = aes_now();
    st->t_comm += d->comm_seconds - c0;
    st->t_backward = t3 - t2 - (d->comm_seconds - c0);

    /* The same summed gradient on every rank: the same decisions, taken on
     * the GPU (clip factor, skip) and, from the same two numbers, on the
     * host (the log, the run of skipped steps). Neither waits for the
     * other: the host waits only for the norm's copy, not the update. */
    cudaStream_t sm = (cudaStream_t)G->g.stream;
    aes_sumsq_gpu(m->P.d_grad, nt, G->sumsq);
    aes_step_control_gpu(G->ctrl, G->sumsq, st->loss, (float)c->clip);
    CUDA_RT(cudaMemcpyAsync(G->h_stats, G->sumsq, sizeof(double), cudaMemcpyDeviceToHost, sm));
    CUDA_RT(cudaEventRecord(G->stats_ready, sm));
    const float lr =
        aes_lr_schedule(t->step, (float)c->lr, c->warmup, c->steps, (float)c->min_lr_ratio);
    const aes_adamw opt = {.beta1 = (float)c->beta1, .beta2 = (float)c->beta2, .eps = (float)c->eps,
                           .weight_decay = (float)c->weight_decay};
    for (int k = 0; k < m->P.n; k++) {
        const aes_tensor *p = &m->P.t[k];
        if (p->trainable) /* t: a skipped step does not count, as on the CPU */
            aes_adamw_step_gpu_ctrl(m->P.d_data + p->offset, m->P.d_grad + p->offset,
                                    G->m1 + p->offset, G->m2 + p->offset, p->numel, lr, &opt,
                                    p->decay, t->step + 1 - t->nonfinite_total, G->ctrl);
    }
    const float cap = logf(100.0f); /* a no-op on a skipped step: nothing moved */
    for (int a = 0; a < A; a++)
        aes_clamp_max_gpu(m->P.d_data + m->P.t[m->p_scale[a]].offset, 1, cap);
    CUDA_RT(cudaEventSynchronize(G->stats_ready));
    st->grad_norm = sqrt(G->h_stats[0]);
    aes_trainer_decide(t, st); /* the same verdict as ctrl: same loss, same norm */
    st->t_update = aes_now() - t3;
}

void aes_train_gpu_to_host(aes_trainer *t)
{
    struct aes_trainer_gpu *G = t->gpu;
    aes_model *m = &t->model;
    aes_params_download(&m->P);
    aes_gpu_download(t->m1, G->m1, sizeof(float) * m->P.n_trainable);
    aes_gpu_download(t->m2, G->m2, sizeof(float) * m->P.n_trainable);
}
#endif
