/*
 * Training: one data-parallel AesNet step and the loop around it (logging,
 * metrics, validation, checkpoints, stop decisions). See DESIGN.md, "One
 * training step", and docs/training.md.
 */
#ifndef AESNET_TRAIN_H
#define AESNET_TRAIN_H

#include <stdint.h>

#include "aesnet/config.h"
#include "aesnet/dataset.h"
#include "aesnet/dist.h"
#include "aesnet/loader.h"
#include "aesnet/model.h"

/* Exit codes of `aesnet train`: 0 done (or stopped by a STOP file), 1 bad
 * input, 2 internal fault, AES_EXIT_REQUEUE stopped by a signal or the
 * walltime after writing a checkpoint: requeue me. */
#define AES_EXIT_REQUEUE 3

typedef struct aes_step_stats {
    double loss, mac, sa;
    double loss_a[AES_MAX_ATTR];
    double grad_norm;
    float lr;
    int skipped;             /* non-finite: update skipped */
    double t_data, t_forward, t_loss, t_backward, t_comm, t_update;
} aes_step_stats;

typedef struct aes_trainer {
    aes_config cfg;
    aes_dist dist;
    aes_dataset ds;
    aes_loader *loader;
    aes_model model;
    int A, B, Bg, D;
    int mb;                  /* micro-batch rows per forward (= B without accumulation) */
    float *xl, *yl, *vl, *vrefl; /* this rank's embeddings, all its rows */
    int32_t *mtok;           /* [A, mb, L] a micro-batch's tokens */
    uint8_t *mmask;          /* [A, mb] */
    float *mdx, *mdy;        /* [A, mb, D] a micro-batch's loss gradients */
    float *bufsave;          /* batch-norm running statistics, kept across re-runs */
    int affinity;            /* 0 none, 1 kl, 2 mse */
    int ref_features;        /* reference from the data set's content features */
    float weights[AES_MAX_ATTR];
    float *m1, *m2;          /* AdamW moments [n_trainable] */
    int64_t step;            /* optimizer steps done */
    int64_t nonfinite_run, nonfinite_total;
    /* gathered buffers and loss gradients */
    float *x_all, *y_all, *v_all, *ref_all, *dx_all, *dy_all, *dv_all, *dx, *dy, *dv;
    uint8_t *mask_all;
    uint64_t *hash_all;
    float *scratch;
    float dls[AES_MAX_ATTR];
    /* the fixed validation batch (this rank's share) */
    int has_val, Bv;
    aes_batch val;
    /* train.device = "cuda": the GPU state (src/train/train_gpu.c), else NULL */
    struct aes_trainer_gpu *gpu;
} aes_trainer;

/* Everything before the first step: config checks against the data set,
 * model, optimizer state, optional resume from a checkpoint. */
void aes_trainer_init(aes_trainer *t, const aes_config *cfg, const char *resume_path,
                      MPI_Comm comm);
void aes_trainer_free(aes_trainer *t);
/* One optimizer step on the next batch. */
void aes_trainer_step(aes_trainer *t, aes_step_stats *st);
/* Loss on the fixed validation batch (no update). */
double aes_trainer_val_loss(aes_trainer *t);
/* Run to cfg.steps (or a stop); returns the process exit code. */
int aes_trainer_run(aes_trainer *t, const char *config_text);

#endif
