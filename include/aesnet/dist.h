/*
 * The few collectives a training step needs, over MPI on host buffers:
 * all-gather of per-attribute embeddings into the global batch layout,
 * reduce-scatter of the gathered columns' gradients back to their owners,
 * small all-reduces (losses, batch-norm sums, decisions), and the bucketed
 * non-blocking all-reduce of parameter gradients that overlaps backward.
 *
 * Layout: rank r holds global rows r*B .. r*B + B - 1 of every [A, Bg, .]
 * tensor (all ranks have the same local batch B).
 */
#ifndef AESNET_DIST_H
#define AESNET_DIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "aesnet/nn.h"

/* An MPI call that must succeed: else an internal error with the call and
 * MPI's message (communicators here return errors instead of aborting). */
#define AES_MPI_CHECK(call)                                                      \
    do {                                                                         \
        int rc_ = (call);                                                        \
        if (rc_ != MPI_SUCCESS) {                                                \
            char msg_[MPI_MAX_ERROR_STRING];                                     \
            int len_ = 0;                                                        \
            MPI_Error_string(rc_, msg_, &len_);                                  \
            aes_internal_error("MPI: %s: %s", #call, msg_);                      \
        }                                                                        \
    } while (0)

typedef struct aes_dist {
    MPI_Comm comm;
    int rank, world;
    float *stage;          /* rank-major staging for gathers and scatters */
    size_t stage_n;
    aes_reducer bn;        /* batch-norm statistics over all ranks */
    double comm_seconds;   /* time inside collectives (blocking parts) */
    double t_gather, t_scatter, t_grads, t_small; /* the same by kind */
    /* bucketed gradient all-reduce */
    float *grad;
    size_t grad_n, bucket;     /* floats; bucket size */
    size_t pending_lo;         /* grad[pending_lo, launched_lo) is ready, not sent */
    size_t launched_lo;        /* grad[launched_lo, grad_n) is in flight or done */
    MPI_Request *req;
    int n_req, cap_req;
} aes_dist;

void aes_dist_init(aes_dist *d, MPI_Comm comm);
void aes_dist_free(aes_dist *d);

/* local [A, B, C] -> global [A, W*B, C] (C values per row); T = float,
 * uint8 or uint64 by size. */
void aes_dist_allgather_rows(aes_dist *d, const void *local, void *global, int A, int B, int C,
                             size_t elem);
/* global [A, W*B, C] summed over ranks, this rank's rows -> local [A, B, C]. */
void aes_dist_reduce_scatter_rows(aes_dist *d, const float *global, float *local, int A, int B,
                                  int C);
void aes_dist_allreduce_sum_f64(aes_dist *d, double *buf, int n);
/* Rank 0's value for everyone (stop decisions). */
int aes_dist_bcast_int(aes_dist *d, int v);

/* Gradient all-reduce over grad[0, n): call begin before backward; report
 * that grad[lo, n) is final whenever backward has finished the parameters
 * above lo (reports must not increase lo); buckets of `bucket` floats are
 * sent as soon as they fill; end sends the rest and waits. */
void aes_dist_grads_begin(aes_dist *d, float *grad, size_t n, size_t bucket);
void aes_dist_grads_ready(aes_dist *d, size_t lo);
void aes_dist_grads_end(aes_dist *d);

#endif
