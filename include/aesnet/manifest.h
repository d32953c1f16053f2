/*
 * The JSON Lines manifest that `prep build` reads: one object per line,
 *   {"image": "rel/path.jpg", "descriptions": {"color": "..." | ["...", ...], ...},
 *    "score": 5.4 | [10 vote counts], "split": "train"|"val"|"test", "content": "dog"}
 * image is required; the rest optional. The attribute set is the first
 * line's keys, in order, and every line must have the same set. Every
 * error names the file and line.
 */
#ifndef AESNET_MANIFEST_H
#define AESNET_MANIFEST_H

#include <stdint.h>

typedef struct aes_manifest_row {
    char *image;      /* as written in the manifest */
    int line;         /* 1-based line number */
    char **desc;      /* [A * K]: descriptions kept, NULL where absent */
    uint8_t *count;   /* [A] */
    float score;      /* NaN where absent */
    float votes[10];  /* when has_votes */
    int has_votes;
    int split;        /* -1 unspecified, else AES_SPLIT_* */
    int content;      /* class index, -1 absent */
} aes_manifest_row;

typedef struct aes_manifest {
    char path[4096];
    int64_t n;
    int A, K;
    char **attr_names;  /* [A] */
    int n_classes;
    char **class_names; /* in order of first appearance */
    int any_votes, any_score;
    double score_lo, score_hi;   /* observed range of scores */
    int64_t dropped;    /* descriptions beyond K that were not kept */
    aes_manifest_row *rows;
} aes_manifest;

/* Read and check the whole manifest, keeping up to K descriptions per image
 * and attribute (K <= 0: no cap but 255). The stored K is the smaller of the
 * cap and the largest set found, so a one-caption manifest gets K = 1.
 * Bad input is a user error naming the file and line. */
void aes_manifest_read(aes_manifest *m, const char *path, int K);
void aes_manifest_free(aes_manifest *m);

#endif
