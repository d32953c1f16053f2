/*
 * Checkpoints: one HDF5 file per save (format "aesnet-checkpoint"),
 * documented in docs/checkpoint-format.md. One data set per parameter (and
 * batch-norm buffer) under /model by its path, the AdamW moments under
 * /optim/m and /optim/v, the resolved config text, the step, epoch, data
 * cursor, seed, world size, code version, build flags and library versions.
 * Written by one rank to a temporary name, flushed, fsynced and renamed;
 * the `latest` link is replaced atomically; the last keep_last are kept.
 */
#ifndef AESNET_CHECKPOINT_H
#define AESNET_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "aesnet/params.h"

#define AES_CKPT_FORMAT "aesnet-checkpoint"
#define AES_CKPT_VERSION 1

typedef struct aes_ckpt_meta {
    int64_t step;          /* optimizer steps done */
    int64_t epoch;         /* epoch of the next step */
    int64_t cursor;        /* global samples consumed (step * global batch) */
    int64_t world_size;    /* ranks that wrote it (information: resume on any) */
    int64_t nonfinite;     /* updates skipped for non-finite values so far */
    uint64_t seed;
    uint64_t tokenizer_hash; /* aes_tokenizer_hash of the training data's tokenizer (0: unknown) */
} aes_ckpt_meta;

/* Save to out_dir/checkpoints/step_%08lld.h5 (directories made as needed),
 * update out_dir/checkpoints/latest, remove all but the newest keep_last
 * step_*.h5. m and v may be NULL (no optimizer state). The written path
 * goes to path_out. A failure to write is a user error naming the path
 * (disk full, permissions); the previous checkpoints are untouched. */
void aes_ckpt_save(const char *out_dir, const aes_params *P, const float *m, const float *v,
                   const aes_ckpt_meta *meta, const char *config_text, int keep_last,
                   char *path_out, size_t cap);

/* Read meta and config text (caller frees) without touching a model: what
 * resume needs before it can build one. User errors name the file. */
void aes_ckpt_peek(const char *path, aes_ckpt_meta *meta, char **config_text);

/* Load every tensor of P (by name; each must exist with P's shape; extra
 * tensors in the file are an error too), and m/v when not NULL (the file
 * must then have them). */
void aes_ckpt_load(const char *path, aes_params *P, float *m, float *v);

/* Whether path is a complete, readable checkpoint: 0, or -1 with the
 * reason in why. Never exits. */
int aes_ckpt_check(const char *path, char *why, size_t cap);

/* The newest complete checkpoint in out_dir/checkpoints (by step), skipping
 * (with a warning naming each and why) any that is truncated, missing or
 * fails to open. Returns 1 and fills path, or 0 when there is none. */
int aes_ckpt_find_latest(const char *out_dir, char *path, size_t cap);

#endif
