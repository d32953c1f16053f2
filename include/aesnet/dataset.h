/*
 * The aesnet data set: one HDF5 file (format "aesnet-dataset"), documented
 * in docs/dataset-format.md. A writer that builds it under a temporary name
 * and renames it at the end, and a reader that validates it and reads rows.
 */
#ifndef AESNET_DATASET_H
#define AESNET_DATASET_H

#include <hdf5.h>
#include <stdint.h>

#include "aesnet/core.h"
#include "aesnet/tokenizer.h"

#define AES_DATASET_FORMAT "aesnet-dataset"
#define AES_DATASET_VERSION 1
#define AES_NBINS 10

enum { AES_SPLIT_TRAIN = 0, AES_SPLIT_VAL = 1, AES_SPLIT_TEST = 2 };
extern const char *const aes_split_names[3];

/* What a writer must know before the first row. */
typedef struct aes_dataset_spec {
    int64_t N;
    int S;                 /* image side */
    int A;                 /* attributes (0: an evaluation-only set without text) */
    int K;                 /* descriptions kept per image and attribute */
    int L;                 /* context length */
    const char *const *attr_names; /* [A] */
    int has_votes;         /* store [N, 10] vote distributions */
    int F;                 /* content feature width, 0 for none */
    int n_classes;         /* content label classes, 0 for none */
    const char *const *class_names; /* [n_classes] */
    double score_min, score_max;    /* range of the score scale */
    int compress;          /* deflate level for images, 0 = none */
    const char *provenance; /* the command that made the file */
} aes_dataset_spec;

typedef struct aes_dsw aes_dsw;

/* Create path's temporary twin (refused if path exists and !force). */
aes_dsw *aes_dsw_create(const char *path, const aes_dataset_spec *spec, int force);
void aes_dsw_put_image(aes_dsw *w, int64_t i, const uint8_t *rgb);
/* tokens [A, K, L], count [A], strings [A * K] (NULL entries for absent). */
void aes_dsw_put_text(aes_dsw *w, int64_t i, const int32_t *tokens, const uint8_t *count,
                      const char *const *strings);
/* votes [10] or NULL, feature [F] or NULL, label -1 when unknown. */
void aes_dsw_put_meta(aes_dsw *w, int64_t i, float score, const float *votes, int split,
                      int label, const float *feature);
/* An extra int32 [rows, cols] field at path (groups made as needed), with
 * its column names as the attribute "columns" (comma-separated). */
void aes_dsw_put_matrix_i32(aes_dsw *w, const char *path, const int32_t *x, int64_t rows,
                            int cols, const char *columns);
/* Write the tokenizer (may be NULL for A == 0), close, fsync, rename. */
void aes_dsw_finish(aes_dsw *w, const aes_tokenizer *tok, int64_t truncations);
/* Close and delete the temporary file. */
void aes_dsw_abandon(aes_dsw *w);

/* A data set opened for reading. Small per-row fields live in memory;
 * images, tokens, strings and features are read per row. */
typedef struct aes_dataset {
    char path[4096];
    hid_t file;
    int64_t N;
    int S, A, K, L, F, n_classes;
    int has_scores, has_votes, has_labels;
    double score_min, score_max;
    int64_t truncations;
    char **attr_names;  /* [A] */
    char **class_names; /* [n_classes] */
    char provenance[1024];
    char created_by[256];
    float *scores;   /* [N], NaN where unknown */
    float *votes;    /* [N, 10] or NULL */
    uint8_t *split;  /* [N] */
    int32_t *labels; /* [N] or NULL; -1 unknown */
    uint8_t *count;  /* [N, A] descriptions per image and attribute */
    int has_tokenizer;
    aes_tokenizer tok;
    hid_t d_images, d_tokens, d_strings, d_features;
} aes_dataset;

/* Open and validate; bad files are user errors naming the file and field. */
void aes_dataset_open(aes_dataset *ds, const char *path);
void aes_dataset_close(aes_dataset *ds);

/* Row readers; each takes the HDF5 lock. Token rows are checked as they
 * are read (ids in the vocabulary, <sot> ... <eot> then <pad>, absent
 * slots all <pad>): a bad row is a user error naming the field and row. */
void aes_dataset_read_image(aes_dataset *ds, int64_t i, uint8_t *rgb);
void aes_dataset_read_tokens(aes_dataset *ds, int64_t i, int32_t *tokens); /* [A, K, L] */
/* The same without the check, and the check alone (0, or -1 with a message
 * naming the file, field and row): for threads that must not exit. */
void aes_dataset_read_tokens_raw(aes_dataset *ds, int64_t i, int32_t *tokens);
int aes_dataset_check_tokens(const aes_dataset *ds, int64_t i, const int32_t *tokens, aes_err *err);
void aes_dataset_read_feature(aes_dataset *ds, int64_t i, float *feature); /* [F] */
/* Description k of attribute a of row i; caller frees. */
char *aes_dataset_read_string(aes_dataset *ds, int64_t i, int a, int k);

/* The default split of row i when none is given: a seeded 80/10/10 draw. */
int aes_split_draw(uint64_t seed, int64_t i);

/* Encode a row's descriptions desc[A * K] (count[a] present per attribute)
 * into tokens [A, K, L], <pad> where absent. Returns truncations. */
int aes_encode_descriptions(const aes_tokenizer *tok, const char *const *desc,
                            const uint8_t *count, int A, int K, int L, int32_t *tokens);

/* 64-bit hash of a token sequence up to and including <eot>: equal
 * descriptions (same tokens) hash equal on every rank. */
uint64_t aes_tokens_hash(const int32_t *tokens, int L);

#endif
