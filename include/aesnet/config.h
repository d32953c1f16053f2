/*
 * Run configuration: libconfig files (configs/NAME.cfg), every key described
 * by one schema table in src/io/config.c (type, default, range, meaning),
 * overridable with `--set key=value` (libconfig value syntax). Unknown keys,
 * wrong types and out-of-range values are user errors naming the file, the
 * line and the key. The resolved configuration prints back as libconfig
 * text that reads in again to the same values: it is stored in every
 * checkpoint.
 */
#ifndef AESNET_CONFIG_H
#define AESNET_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define AES_CFG_MAX_ATTR 64

typedef struct aes_config {
    char path[4096]; /* the file it came from ("" for defaults only) */
    /* run */
    char out_dir[4096];
    int64_t seed;
    /* data */
    char train_data[4096];  /* data.train */
    int image_size;         /* data.image_size: 0 = the data set's stored size */
    int augment;            /* data.augment */
    double crop_scale_min;  /* data.crop_scale_min */
    double crop_ratio_max;  /* data.crop_ratio_max */
    double flip_prob;       /* data.flip_prob */
    int workers;            /* data.workers */
    int prefetch;           /* data.prefetch */
    /* model */
    char image[16];         /* model.image: "resnet" | "vit" */
    int resnet_depth;       /* model.resnet_depth: 18 | 34 | 50 */
    double resnet_width;    /* model.resnet_width */
    int vit_patch, vit_width, vit_depth, vit_heads;
    int text_width, text_depth, text_heads;
    int embed_dim;          /* model.embed_dim: D */
    char fusion[16];        /* model.fusion: "none" | "mlp" | "transformer" */
    int fusion_width;       /* model.fusion_width: MLP hidden or transformer token width */
    int fusion_heads;
    char logit_scale[16];   /* model.logit_scale: "learned" | "fixed" */
    double temperature;     /* model.temperature: initial (or fixed) 1/scale, 0.07 */
    /* loss */
    int n_weights;                       /* loss.attribute_weights: [] = all 1 */
    double weights[AES_CFG_MAX_ATTR];
    char duplicates[16];    /* loss.duplicates: "positive" | "negative" */
    char affinity[16];      /* loss.affinity: "none" | "kl" | "mse" */
    double affinity_weight; /* loss.affinity_weight: lambda */
    double affinity_tau;    /* loss.affinity_tau */
    char affinity_reference[16]; /* loss.affinity_reference: "features" | "frozen" */
    /* train */
    int64_t steps;
    int64_t global_batch;
    int64_t micro_batch;    /* train.micro_batch: 0 = no accumulation */
    double lr, min_lr_ratio;
    int64_t warmup;
    double weight_decay, beta1, beta2, eps, clip;
    int64_t ckpt_every, keep_last, log_every, val_every, val_batch;
    double max_walltime;    /* seconds, 0 = none */
    char batchnorm[16];     /* train.batchnorm: "global" | "local" */
    char device[16];        /* train.device: "cpu" | "cuda" */
    char precision[16];     /* train.precision: "fp32" | "tf32" | "bf16" */
    int threads;            /* train.threads: 0 = OMP default */
    int64_t max_nonfinite;  /* train.max_nonfinite: skipped steps in a row before abort */
} aes_config;

/* Defaults for every key (out_dir and data.train empty). */
void aes_config_defaults(aes_config *c);
/* Read a file over the defaults; bad input is a user error naming the
 * file, line and key. */
void aes_config_load(aes_config *c, const char *path);
/* Apply one `key=value` override (value in libconfig syntax: 5, 1e-3,
 * "text", true, [1.0, 2.0]); errors name the override. */
void aes_config_set(aes_config *c, const char *assignment);
/* Cross-key checks (run.out_dir and data.train set, global batch
 * divisible by micro batch, ...): user errors naming the key. */
void aes_config_validate(const aes_config *c);
/* The resolved configuration as libconfig text (every key, grouped), into
 * a buffer the caller frees. */
char *aes_config_to_text(const aes_config *c);
/* Parse text produced by aes_config_to_text (from a checkpoint). origin
 * names it in errors. */
void aes_config_from_text(aes_config *c, const char *text, const char *origin);
/* Keys whose values differ between a and b, comma-separated, into out;
 * returns their number. */
int aes_config_diff(const aes_config *a, const aes_config *b, char *out, size_t cap);
/* Whether a key may change on resume (run length and output only). */
int aes_config_key_resumable(const char *key);
/* Print the documentation of every key (aesnet train --help-config). */
void aes_config_print_doc(void *file);

#endif
