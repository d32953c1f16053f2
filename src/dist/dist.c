/*
 * Collectives over MPI for the training step (see include/aesnet/dist.h).
 */
#include "aesnet/dist.h"

#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"

static void bn_allreduce(double *buf, int n, void *ctx)
{
    aes_dist_allreduce_sum_f64(ctx, buf, n);
}

void aes_dist_init(aes_dist *d, MPI_Comm comm)
{
    memset(d, 0, sizeof *d);
    d->comm = comm;
    AES_MPI_CHECK(MPI_Comm_rank(comm, &d->rank));
    AES_MPI_CHECK(MPI_Comm_size(comm, &d->world));
    AES_MPI_CHECK(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
    d->bn.allreduce_sum = bn_allreduce;
    d->bn.ctx = d;
}

void aes_dist_free(aes_dist *d)
{
    free(d->stage);
    free(d->req);
    memset(d, 0, sizeof *d);
}

static void *stage(aes_dist *d, size_t bytes)
{
    size_t n = (bytes + sizeof(float) - 1) / sizeof(float);
    if (n > d->stage_n) {
        free(d->stage);
        d->stage = aes_malloc(sizeof(float) * n, "communication staging");
        d->stage_n = n;
    }
    return d->stage;
}

void aes_dist_allgather_rows(aes_dist *d, const void *local, void *global, int A, int B, int C,
                             size_t elem)
{
    const size_t row = (size_t)C * elem, per = (size_t)A * B * row;
    double t0 = aes_now();
    if (d->world == 1) {
        memcpy(global, local, per);
        return;
    }
    char *st = stage(d, per * (size_t)d->world);
    AES_MPI_CHECK(MPI_Allgather(local, (int)per, MPI_BYTE, st, (int)per, MPI_BYTE, d->comm));
    /* [W, A, B, C] -> [A, W*B, C] */
    char *g = global;
    for (int r = 0; r < d->world; r++)
        for (int a = 0; a < A; a++)
            memcpy(g + ((size_t)a * d->world * B + (size_t)r * B) * row,
                   st + (size_t)r * per + (size_t)a * B * row, (size_t)B * row);
    d->comm_seconds += aes_now() - t0;
    d->t_gather += aes_now() - t0;
}

void aes_dist_reduce_scatter_rows(aes_dist *d, const float *global, float *local, int A, int B,
                                  int C)
{
    const size_t per = (size_t)A * B * C;
    double t0 = aes_now();
    if (d->world == 1) {
        memcpy(local, global, sizeof(float) * per);
        return;
    }
    float *st = stage(d, sizeof(float) * per * (size_t)d->world);
    /* [A, W*B, C] -> [W, A, B, C] */
    for (int r = 0; r < d->world; r++)
        for (int a = 0; a < A; a++)
            memcpy(st + (size_t)r * per + (size_t)a * B * C,
                   global + ((size_t)a * d->world * B + (size_t)r * B) * C,
                   sizeof(float) * (size_t)B * C);
    AES_MPI_CHECK(MPI_Reduce_scatter_block(st, local, (int)per, MPI_FLOAT, MPI_SUM, d->comm));
    d->comm_seconds += aes_now() - t0;
    d->t_scatter += aes_now() - t0;
}

void aes_dist_allreduce_sum_f64(aes_dist *d, double *buf, int n)
{
    if (d->world == 1) return;
    double t0 = aes_now();
    AES_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, d->comm));
    d->comm_seconds += aes_now() - t0;
    d->t_small += aes_now() - t0;
}

int aes_dist_bcast_int(aes_dist *d, int v)
{
    if (d->world == 1) return v;
    AES_MPI_CHECK(MPI_Bcast(&v, 1, MPI_INT, 0, d->comm));
    return v;
}

/* ---- bucketed gradient all-reduce ------------------------------------ */

static void launch(aes_dist *d, size_t lo, size_t hi)
{
    /* MPI counts are int: split huge ranges. */
    while (hi > lo) {
        size_t n = hi - lo;
        if (n > (size_t)1 << 30) n = (size_t)1 << 30;
        if (d->n_req == d->cap_req) {
            d->cap_req = d->cap_req ? 2 * d->cap_req : 64;
            d->req = aes_realloc(d->req, sizeof(MPI_Request) * (size_t)d->cap_req, "requests");
        }
        AES_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, d->grad + hi - n, (int)n, MPI_FLOAT, MPI_SUM,
                                 d->comm, &d->req[d->n_req++]));
        hi -= n;
    }
}

void aes_dist_grads_begin(aes_dist *d, float *grad, size_t n, size_t bucket)
{
    d->grad = grad;
    d->grad_n = n;
    d->bucket = bucket ? bucket : n;
    d->pending_lo = d->launched_lo = n;
    d->n_req = 0;
}

void aes_dist_grads_ready(aes_dist *d, size_t lo)
{
    if (d->world == 1) return;
    if (lo < d->pending_lo) d->pending_lo = lo;
    if (d->launched_lo - d->pending_lo >= d->bucket) {
        launch(d, d->pending_lo, d->launched_lo);
        d->launched_lo = d->pending_lo;
    }
    /* Open MPI progresses non-blocking collectives inside MPI calls: poke it. */
    if (d->n_req) {
        int done;
        AES_MPI_CHECK(MPI_Testall(d->n_req, d->req, &done, MPI_STATUSES_IGNORE));
        if (done) d->n_req = 0;
    }
}

void aes_dist_grads_end(aes_dist *d)
{
    if (d->world == 1) return;
    double t0 = aes_now();
    if (d->launched_lo > 0) launch(d, 0, d->launched_lo);
    d->launched_lo = d->pending_lo = 0;
    if (d->n_req) AES_MPI_CHECK(MPI_Waitall(d->n_req, d->req, MPI_STATUSES_IGNORE));
    d->n_req = 0;
    d->comm_seconds += aes_now() - t0;
    d->t_grads += aes_now() - t0;
}
