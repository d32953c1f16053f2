/*
 * The parameter table: named views into one contiguous buffer.
 */
#include "aesnet/params.h"

#ifdef AESNET_WITH_CUDA
#include "aesnet/gpu.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"

void aes_params_init_table(aes_params *p) { memset(p, 0, sizeof *p); }

int aes_params_add(aes_params *p, const char *name, int ndim, const int *shape, int trainable,
                   int decay, aes_init_kind init, float init_a)
{
    AES_CHECK(p->data == NULL && ndim >= 1 && ndim <= 4);
    if (aes_params_find(p, name) >= 0) aes_internal_error("parameter %s declared twice", name);
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 64;
        p->t = aes_realloc(p->t, sizeof(aes_tensor) * (size_t)p->cap, "parameter table");
    }
    aes_tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    if (strlen(name) >= AES_MAX_NAME) aes_internal_error("parameter name too long: %s", name);
    strcpy(t->name, name);
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        AES_CHECK(shape[i] > 0);
        t->shape[i] = shape[i];
        t->numel *= (size_t)shape[i];
    }
    t->trainable = trainable;
    t->decay = decay;
    t->init = init;
    t->init_a = init_a;
    return p->n++;
}

void aes_params_alloc(aes_params *p)
{
    size_t off = 0;
    for (int pass = 1; pass >= 0; pass--) {
        for (int k = 0; k < p->n; k++) {
            if (p->t[k].trainable != pass) continue;
            p->t[k].offset = off;
            off += p->t[k].numel;
        }
        if (pass == 1) p->n_trainable = off;
    }
    p->n_total = off;
    p->data = aes_calloc(p->n_total, sizeof(float), "parameters");
    p->grad = aes_calloc(p->n_trainable, sizeof(float), "gradients");
}

void aes_params_initialize(aes_params *p, uint64_t seed)
{
    for (int k = 0; k < p->n; k++) {
        aes_tensor *t = &p->t[k];
        float *x = p->data + t->offset;
        aes_rng r;
        aes_rng_init(&r, aes_key(seed, 0, aes_fnv1a(t->name, strlen(t->name)), AES_RNG_INIT));
        for (size_t i = 0; i < t->numel; i++) {
            switch (t->init) {
            case AES_INIT_ZERO: x[i] = 0; break;
            case AES_INIT_ONE: x[i] = 1; break;
            case AES_INIT_CONST: x[i] = t->init_a; break;
            case AES_INIT_UNIFORM: x[i] = (float)((2 * aes_rng_uniform(&r) - 1) * t->init_a); break;
            case AES_INIT_NORMAL: x[i] = aes_rng_normal(&r) * t->init_a; break;
            }
        }
    }
}

float *aes_params_data(const aes_params *p, int idx)
{
    AES_CHECK(idx >= 0 && idx < p->n && p->data);
    return p->data + p->t[idx].offset;
}

float *aes_params_grad(const aes_params *p, int idx)
{
    AES_CHECK(idx >= 0 && idx < p->n && p->grad);
    return p->t[idx].trainable ? p->grad + p->t[idx].offset : NULL;
}

int aes_params_find(const aes_params *p, const char *name)
{
    for (int k = 0; k < p->n; k++)
        if (!strcmp(p->t[k].name, name)) return k;
    return -1;
}

size_t aes_params_count(const aes_params *p, const char *prefix)
{
    size_t n = 0, lp = strlen(prefix);
    for (int k = 0; k < p->n; k++)
        if (p->t[k].trainable && !strncmp(p->t[k].name, prefix, lp)) n += p->t[k].numel;
    return n;
}

void aes_params_zero_grad(aes_params *p) { memset(p->grad, 0, sizeof(float) * p->n_trainable); }

#ifdef AESNET_WITH_CUDA
void aes_params_to_device(aes_params *p)
{
    AES_CHECK(p->data && !p->d_data);
    p->d_data = aes_gpu_malloc(sizeof(float) * (p->n_total ? p->n_total : 1), "parameters");
    p->d_grad = aes_gpu_malloc(sizeof(float) * (p->n_trainable ? p->n_trainable : 1), "gradients");
    aes_gpu_upload(p->d_data, p->data, sizeof(float) * p->n_total);
    aes_gpu_zero(p->d_grad, sizeof(float) * p->n_trainable);
}

void aes_params_download(aes_params *p)
{
    AES_CHECK(p->d_data);
    aes_gpu_download(p->data, p->d_data, sizeof(float) * p->n_total);
}

void aes_params_download_grad(aes_params *p)
{
    AES_CHECK(p->d_grad);
    aes_gpu_download(p->grad, p->d_grad, sizeof(float) * p->n_trainable);
}
#endif

void aes_params_free(aes_params *p)
{
#ifdef AESNET_WITH_CUDA
    aes_gpu_free_mem(p->d_data);
    aes_gpu_free_mem(p->d_grad);
#endif
    free(p->t);
    free(p->data);
    free(p->grad);
    memset(p, 0, sizeof *p);
}
