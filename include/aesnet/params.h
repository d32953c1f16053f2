/*
 * The parameter table: every trainable tensor of the model lives in one
 * contiguous float buffer (and its gradient in a second one of the same
 * layout), with a named view per tensor, such as
 * "image/stage2/block0/conv1/weight" — the names checkpoints use. One
 * all-reduce, one checkpoint write. Non-trainable state that is saved with
 * the parameters (batch-norm running statistics) sits after the trainable
 * part of the same buffer and has no gradient.
 */
#ifndef AESNET_PARAMS_H
#define AESNET_PARAMS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    AES_INIT_ZERO,
    AES_INIT_ONE,
    AES_INIT_UNIFORM, /* U(-a, a) */
    AES_INIT_NORMAL,  /* N(0, a^2) */
    AES_INIT_CONST,   /* a */
} aes_init_kind;

#define AES_MAX_NAME 128

typedef struct aes_tensor {
    char name[AES_MAX_NAME];
    int ndim;
    int shape[4];
    size_t numel;
    size_t offset;     /* in floats, into data (and grad when trainable) */
    int trainable;     /* 0: a buffer (running statistics), no gradient */
    int decay;         /* AdamW weight decay applies */
    aes_init_kind init;
    float init_a;
} aes_tensor;

typedef struct aes_params {
    aes_tensor *t;
    int n, cap;
    size_t n_trainable; /* floats in the trainable prefix of data / all of grad */
    size_t n_total;     /* floats in data */
    float *data;        /* [n_total] */
    float *grad;        /* [n_trainable] */
    /* The GPU copy (aes_params_to_device), NULL on the CPU path: the
     * device's data is then the current one and data a staging copy. */
    float *d_data, *d_grad;
} aes_params;

void aes_params_init_table(aes_params *p);
/* Declare a tensor; returns its index. Trainable tensors must all be
 * declared before aes_params_alloc lays them out (buffers go last). */
int aes_params_add(aes_params *p, const char *name, int ndim, const int *shape, int trainable,
                   int decay, aes_init_kind init, float init_a);
/* Lay out and allocate data and grad (zeroed). */
void aes_params_alloc(aes_params *p);
/* Fill every tensor from its init rule; tensor k draws from a stream keyed
 * by (seed, hash of its name), so adding a tensor does not change others. */
void aes_params_initialize(aes_params *p, uint64_t seed);
float *aes_params_data(const aes_params *p, int idx);
float *aes_params_grad(const aes_params *p, int idx); /* NULL for buffers */
int aes_params_find(const aes_params *p, const char *name);
/* Trainable floats whose name starts with prefix ("image/", "text/", ...). */
size_t aes_params_count(const aes_params *p, const char *prefix);
void aes_params_zero_grad(aes_params *p);
void aes_params_free(aes_params *p);

/* The GPU copy (CUDA builds; needs aes_gpu_init): allocate d_data and
 * d_grad, upload data, zero d_grad. */
void aes_params_to_device(aes_params *p);
/* data <- d_data (for a checkpoint or an analysis on the host). */
void aes_params_download(aes_params *p);
/* grad <- d_grad. */
void aes_params_download_grad(aes_params *p);

#endif
