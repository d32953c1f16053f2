/*
 * The sharded, prefetching reader that training uses.
 *
 * Global step s of the run maps to epoch e = s / steps_per_epoch and batch
 * p = s % steps_per_epoch; the epoch's permutation of the chosen split is a
 * function of (seed, e); the global batch is perm[p*Bg .. (p+1)*Bg), and
 * rank r of W takes its slice [r*B, (r+1)*B) with B = Bg / W. The tail of an
 * epoch that does not fill a global batch is dropped. Every random draw
 * (crop, flip, which description) is keyed by (seed, epoch, row, purpose),
 * never by rank: a sample gets the same data on any number of ranks.
 *
 * Worker threads build whole batches ahead of the consumer; all HDF5 reads
 * go through the process-wide HDF5 lock.
 */
#ifndef AESNET_LOADER_H
#define AESNET_LOADER_H

#include <stdint.h>

#include "aesnet/dataset.h"

typedef struct aes_loader_cfg {
    uint64_t seed;
    int64_t global_batch; /* Bg: must divide by world */
    int rank, world;
    int split;            /* AES_SPLIT_* rows to draw from */
    int shuffle;          /* 0: rows in file order every epoch (evaluation) */
    int out_size;         /* R: side of the output images (0: the stored size) */
    int augment;          /* random resized crop + horizontal flip */
    float crop_scale_min; /* smallest crop area as a fraction of the image (e.g. 0.6) */
    float crop_ratio_max; /* aspect ratio within [1/r, r] (e.g. 1.25) */
    float flip_prob;      /* e.g. 0.5 */
    float mean[3], std[3];/* per-channel normalisation after scaling to [0, 1] */
    int workers;          /* background threads (>= 1) */
    int prefetch;         /* batches built ahead (>= 1) */
    int64_t start_step;   /* resume point, in global steps */
} aes_loader_cfg;

/* Defaults: CLIP's mean/std, crop scale [0.6, 1], ratio [0.8, 1.25], flip
 * 0.5, one worker, two batches ahead. */
void aes_loader_cfg_defaults(aes_loader_cfg *cfg);

typedef struct aes_batch {
    int64_t step, epoch;
    int B, A, L, R, F;
    int64_t *row;      /* [B] data set row of each sample */
    float *images;     /* [B, 3, R, R] normalised */
    int32_t *tokens;   /* [A, B, L] the drawn description per attribute */
    uint8_t *mask;     /* [A, B] 1 where the image has a description */
    uint64_t *hash;    /* [A, B] token-sequence hash (0 where masked) */
    float *scores;     /* [B] NaN where unknown */
    int32_t *labels;   /* [B] -1 where unknown */
    float *features;   /* [B, F] content features, NULL when the set has none */
} aes_batch;

typedef struct aes_loader aes_loader;

/* A deep copy of a batch (to keep one beyond the next aes_loader_next),
 * and the release of such a copy. */
void aes_batch_copy(aes_batch *dst, const aes_batch *src);
void aes_batch_free(aes_batch *b);

/* The data set must stay open while the loader runs. User errors (a global
 * batch that does not divide by world, a split with too few rows) are
 * found here, identically on every rank. */
aes_loader *aes_loader_open(aes_dataset *ds, const aes_loader_cfg *cfg);
/* Rows of the split, and global steps per epoch. */
int64_t aes_loader_rows(const aes_loader *ld);
int64_t aes_loader_steps_per_epoch(const aes_loader *ld);
/* The next batch; valid until the next call. Blocks until it is ready. */
const aes_batch *aes_loader_next(aes_loader *ld);
/* Seconds the consumer spent waiting inside aes_loader_next, in total. */
double aes_loader_wait_seconds(const aes_loader *ld);
void aes_loader_close(aes_loader *ld);

/* The global batch of a step, without loading it: rows[Bg]. For tests and
 * for checking that ranks agree. */
void aes_loader_global_rows(const aes_loader *ld, int64_t step, int64_t *rows);

#endif
