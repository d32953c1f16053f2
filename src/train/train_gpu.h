/*
 * The GPU side of the training step (src/train/train_gpu.c), called by
 * src/train/train.c when train.device = "cuda". In a build without CUDA,
 * init refuses with the reason.
 */
#ifndef AESNET_TRAIN_GPU_H
#define AESNET_TRAIN_GPU_H

#include "aesnet/train.h"

/* A user error, with the reason, when this build or machine cannot run
 * train.device = "cuda" (called before anything starts). */
void aes_train_gpu_check(aes_trainer *t);
/* After the model is built (and a checkpoint loaded) and the host buffers
 * allocated: pick the GPU, move the model and the optimizer state to it. */
void aes_train_gpu_init(aes_trainer *t);
/* Frees the GPU state and the model (whose memory lives on the GPU). */
void aes_train_gpu_free(aes_trainer *t);
/* forward_loss and the backward pass plus update of train.c, on the GPU. */
double aes_train_gpu_forward_loss(aes_trainer *t, const aes_batch *b, int B, int64_t step,
                                  int want_grad, aes_step_stats *st);
void aes_train_gpu_backward_update(aes_trainer *t, const aes_batch *b, aes_step_stats *st);
/* Parameters and AdamW moments to the host buffers (before a checkpoint). */
void aes_train_gpu_to_host(aes_trainer *t);

/* train.c's: the learning rate and the non-finite skip of a step whose
 * loss and gradient norm are in st, alike on every rank (1: update; a
 * run of non-finite steps ends training); */
int aes_trainer_decide(aes_trainer *t, aes_step_stats *st);
/* the step statistics from the loss shares summed over ranks (parts: MAC,
 * SA, then per attribute) and the phase clocks, returning the loss; */
double aes_trainer_loss_stats(aes_trainer *t, const double *parts, double t0, double t1, double c0,
                              aes_step_stats *st);
/* and rows [i0, i0 + n) of a batch through the model. */
void aes_trainer_micro_forward(aes_trainer *t, const aes_batch *b, int B, int i0, int n,
                               int64_t step);

#endif
