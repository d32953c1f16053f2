/*
 * The AesNet losses in row-block form: this rank's B rows (global rows
 * row0 .. row0 + B - 1) against all Bg gathered columns, never the Bg x Bg
 * matrix. Each function returns this rank's share of the loss and writes
 * this rank's share of the gradient for ALL Bg gathered rows; summing the
 * shares over ranks (an all-reduce of the loss, a reduce-scatter of the
 * gradients back to their owners) gives exactly the one-rank loss and
 * gradients. The loss is normalised once, over the global batch. With one
 * rank (B = Bg, row0 = 0) these are the ordinary losses.
 *
 * The formulas are written out in docs/method.md.
 */
#ifndef AESNET_LOSS_H
#define AESNET_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* ---- multi-attribute contrastive loss ---------------------------------
 * For attribute a, with valid rows V_a = {i : mask[a, i]} (n_a = |V_a| over
 * the global batch) and logits l_ij = s_a <x_ai, y_aj> (s_a = exp(logscale[a])),
 *   L_a = 1/(2 n_a) sum_{i in V_a} [ KL(t_i. || p_i.) + KL(t_i. || p'_i.) ]
 * where p, p' are the softmaxes of the rows of l and of l^T over valid
 * columns only and the target t_i. is one-hot on i (duplicates_positive = 0:
 * KL is then the usual cross-entropy) or spread evenly over every valid
 * column whose description hash equals hash[a, i] (duplicates_positive = 1:
 * the cross-entropy less the target's entropy log |G_i|, so a perfect model
 * reaches 0; the gradient is the cross-entropy's).
 *   L_mac = sum_a w_a L_a / sum_{a : n_a > 0} w_a.                        */
typedef struct aes_mac_args {
    int A, D;
    int Bg;                 /* global batch (columns) */
    int B, row0;            /* this rank's rows */
    const float *x;         /* [A, Bg, D] image embeddings (L2-normalised), gathered */
    const float *y;         /* [A, Bg, D] text embeddings (L2-normalised), gathered */
    const uint8_t *mask;    /* [A, Bg] 1 where image j has a description of attribute a */
    const uint64_t *hash;   /* [A, Bg] description token-sequence hashes */
    const float *logscale;  /* [A] log of the logit scale */
    const float *weights;   /* [A] attribute weights w_a */
    int duplicates_positive;
} aes_mac_args;

/* Scratch floats aes_mac_loss needs (B x Bg logits and targets). */
size_t aes_mac_scratch_floats(int B, int Bg);
/* Returns this rank's share of L_mac; loss_a[A] gets the shares of each L_a
 * (unweighted). dx, dy [A, Bg, D] and dlogscale [A] are OVERWRITTEN with
 * this rank's shares of dL_mac. */
double aes_mac_loss(const aes_mac_args *args, float *scratch, double *loss_a, float *dx, float *dy,
                    float *dlogscale);

/* ---- semantic affinity loss ---------------------------------------------
 * c_ij = cos(v_i, v_j) of the encoder's features, r_ij = cos(ref_i, ref_j)
 * of the frozen reference; over j != i,
 *   P_i = softmax_j(r_ij / tau), Q_i = softmax_j(c_ij / tau)
 *   kl:  L_sa = 1/Bg sum_i sum_{j != i} P_ij (log P_ij - log Q_ij)
 *   mse: L_sa = 1/(Bg (Bg - 1)) sum_i sum_{j != i} (c_ij - r_ij)^2       */
typedef enum { AES_AFFINITY_KL = 0, AES_AFFINITY_MSE = 1 } aes_affinity_kind;

typedef struct aes_sa_args {
    int Bg, B, row0;
    int F;              /* feature width of v */
    int Fr;             /* feature width of the reference */
    const float *v;     /* [Bg, F] encoder features (not normalised), gathered */
    const float *ref;   /* [Bg, Fr] reference features (not normalised), gathered */
    float tau;
    aes_affinity_kind kind;
} aes_sa_args;

size_t aes_sa_scratch_floats(int B, int Bg, int F, int Fr);
/* Returns this rank's share of L_sa; dv [Bg, F] is OVERWRITTEN with this
 * rank's share of dL_sa/dv. */
double aes_sa_loss(const aes_sa_args *args, float *scratch, float *dv);

#endif
