/*
 * Downstream evaluation of a pre-trained image encoder (aesnet eval and
 * aesnet embed): the metrics aesthetics papers report (SRCC, PLCC, binary
 * accuracy, RMSE, MAE), the ridge-regression linear probe, per-attribute
 * image-text retrieval recall, and the feature extractor both commands
 * share (every row of a data set, no augmentation, batch norm from its
 * running statistics, images embedded without fusion).
 */
#ifndef AESNET_EVAL_H
#define AESNET_EVAL_H

#include <stdint.h>

#include "aesnet/dataset.h"
#include "aesnet/model.h"

/* ---- metrics ---------------------------------------------------------- */

/* Ranks 1..n of x, ties given the average of the ranks they span. */
void aes_average_ranks(const double *x, int64_t n, double *ranks);
/* Pearson correlation; NaN when n < 2 or either side is constant. */
double aes_plcc(const double *x, const double *y, int64_t n);
/* Spearman: Pearson of the average ranks. */
double aes_srcc(const double *x, const double *y, int64_t n);

typedef struct aes_reg_metrics {
    double srcc, plcc;
    double acc;  /* fraction where (pred > mid) == (truth > mid) */
    double rmse, mae;
} aes_reg_metrics;
void aes_regression_metrics(const double *pred, const double *truth, int64_t n, double mid,
                            aes_reg_metrics *out);

/* ---- ridge regression -------------------------------------------------- */

/* Sufficient statistics of a training set for ridge regression on
 * standardised features: z = (x - mean) / scale (population standard
 * deviation; 1 for a constant feature), centred target. The penalty lam
 * multiplies ||w||^2 next to the summed squared error; the intercept is not
 * penalised:  min_w,b  sum_i (y_i - b - z_i.w)^2 + lam ||w||^2. */
typedef struct aes_ridge {
    int F;
    int64_t n;
    double *mean, *scale; /* [F] */
    double *G;            /* [F, F] Z^T Z */
    double *c;            /* [F] Z^T (y - ybar) */
    double ybar;
} aes_ridge;

/* X [n, F] row-major, y [n]. */
void aes_ridge_prepare(aes_ridge *r, const double *X, const double *y, int64_t n, int F);
/* Solve for lam (LAPACK dposv); w [F] and b are returned for the RAW
 * features (pred = x.w + b). 0, or -1 when the system is not positive
 * definite (lam too small for collinear features). */
int aes_ridge_solve(const aes_ridge *r, double lam, double *w, double *b);
void aes_ridge_free(aes_ridge *r);
/* pred [n] = X w + b. */
void aes_ridge_predict(const double *X, int64_t n, int F, const double *w, double b, double *pred);

/* The penalty grid 10^-4 .. 10^4, half a decade apart (17 values). */
#define AES_RIDGE_GRID 17
void aes_ridge_grid(double *grid);
/* Fit on (Xtr, ytr) for each penalty of grid, keep the one with the lowest
 * RMSE on (Xva, yva) (the smaller penalty on a tie); w, b its fit.
 * 0, or -1 when no penalty gave a solution. */
int aes_ridge_probe(const double *Xtr, const double *ytr, int64_t ntr, const double *Xva,
                    const double *yva, int64_t nva, int F, const double *grid, int ngrid, double *w,
                    double *b, double *penalty, double *val_rmse);

/* ---- retrieval ---------------------------------------------------------- */

/* Recall@K of queries q [n, D] against keys k [n, D], query i's one
 * positive being key i, by cosine similarity. Ties count against the
 * query (pessimistic): query i is a hit when fewer than K other keys have
 * a similarity >= its positive's. */
double aes_recall_at_k(const float *q, const float *k, int64_t n, int D, int K);

/* ---- models and features for evaluation ---------------------------------- */

/* Open the model to evaluate on ds: ckpt a checkpoint path, or "random"
 * with config (a config file: a fresh model of its architecture, from its
 * seed). A checkpoint whose tokenizer differs from the data set's, or
 * whose attributes differ, is a user error naming both files. ResNets take
 * the data set's stored image side; a ViT its own. Batch norm is set to its
 * running statistics. step_out (may be NULL): the checkpoint's step, -1
 * for random. */
void aes_eval_open_model(aes_model *m, const char *ckpt, const char *config, const aes_dataset *ds,
                         int maxB, int64_t *step_out);

/* Features of rows [i0, i0 + B) of a data set, in batches of up to maxB. */
typedef struct aes_embedder {
    aes_model *m;
    aes_dataset *ds;
    int maxB, R, text; /* text: the data set has descriptions to embed */
    int A, D, Fv;
    int img_proj[AES_MAX_ATTR], txt_proj[AES_MAX_ATTR]; /* head parameter ids per data-set attribute */
    uint8_t *rgb;      /* [S, S, 3] */
    float *hwc, *rs;   /* [S, S, 3], [R, R, 3] */
    float *images;     /* [maxB, 3, R, R] */
    int32_t *tok_row;  /* [A, K, L] */
    int32_t *tok;      /* [A * maxB, L] the present descriptions, attribute-major */
    float *yp;         /* [A * maxB, D] */
    /* outputs of the last batch */
    float *v;          /* [maxB, Fv] encoder features */
    float *x;          /* [A, B, D] image embeddings n(P_a v), no fusion */
    float *y;          /* [A, B, D] text embeddings of description 0, NaN where absent */
    uint8_t *mask;     /* [A, B] whether row i has a description of attribute a */
    float *norm;       /* [A * maxB] scratch */
} aes_embedder;

void aes_embedder_init(aes_embedder *e, aes_model *m, aes_dataset *ds, int maxB);
/* Row i's image as the training loader gives it without augmentation
 * (resized to the model's side, normalised), mirrored left-right when
 * flip, into dst [3, R, R]. */
void aes_embedder_load(aes_embedder *e, int64_t i, int flip, float *dst);
void aes_embedder_run(aes_embedder *e, int64_t i0, int B);
void aes_embedder_free(aes_embedder *e);

/* ---- EMD fine-tune (src/eval/finetune.c) ------------------------------------- */

/* EMD_r (r = 1 or 2) between distributions p and q over the 10 ordered
 * bins: ( (1/10) sum_k |CDF_p(k) - CDF_q(k)|^r )^(1/r). */
double aes_emd(const float *p, const float *q, int r);
/* The fine-tune loss: the mean over B rows of EMD_2(softmax(logits_i),
 * target_i), target rows summing to 1. dlogits [B, 10] (may be NULL) is
 * overwritten with its gradient. */
double aes_emd_loss(const float *logits, const float *target, int B, float *dlogits);

typedef struct aes_finetune_cfg {
    int epochs, batch;
    float lr;            /* peak learning rate of the encoder */
    float head_lr;       /* of the 10-way head */
    float weight_decay;  /* AdamW, on weights (not norms or biases) */
    uint64_t seed;       /* head initialisation, shuffling, flips */
    int quiet;           /* no line per epoch */
} aes_finetune_cfg;

typedef struct aes_finetune_result {
    int64_t n[3];              /* rows per split */
    int best_epoch;            /* the epoch kept: lowest val EMD_2 */
    double val_emd2;
    double emd1, emd2;         /* test, mean over rows */
    double base_emd1, base_emd2; /* test, predicting the train rows' mean distribution */
    aes_reg_metrics rm;        /* of the predicted mean score sum_k k p_k */
    double seconds;
} aes_finetune_result;

/* Fine-tune e's image encoder (changed in place) and a new head on the
 * vote distributions of rows[0] (AdamW, one epoch of linear warm-up, then
 * cosine decay; random left-right flips), keep the epoch with the lowest
 * mean EMD_2 on rows[1], and fill out with its results on rows[2];
 * test_dist [n[2], 10] gets its predicted distributions. Every row given
 * must have votes. */
void aes_finetune_emd(aes_embedder *e, const aes_finetune_cfg *c, int64_t *const rows[3],
                      const int64_t n[3], float *test_dist, aes_finetune_result *out);

#endif
