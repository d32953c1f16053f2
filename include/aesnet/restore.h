/*
 * Models for use after training (evaluation, embedding, export): rebuilt
 * from a checkpoint alone (the architecture from its stored config; the
 * attribute names, vocabulary and context length from its tensors), or
 * randomly initialised from a config and a data set (the baseline every
 * result is shown against).
 */
#ifndef AESNET_RESTORE_H
#define AESNET_RESTORE_H

#include "aesnet/config.h"
#include "aesnet/dataset.h"
#include "aesnet/model.h"

#include "aesnet/checkpoint.h"

/* A checkpoint's meta data and stored configuration (user errors name the
 * file). */
void aes_ckpt_read_config(const char *path, aes_ckpt_meta *meta, aes_config *cfg);

/* The model configuration of a run's config, for an image side R, a text
 * vocabulary and context length and A attributes named names[A] (no
 * frozen reference: training sets that). */
void aes_model_cfg_from_config(aes_model_cfg *mc, const aes_config *c, int R, int vocab,
                               int context, int A, char **names);

/* image_size: the side the image encoder will see (ResNets take any; a
 * ViT's comes from its position embedding and this is checked against
 * it; 0 = the ViT's own, or 224). cfg_out may be NULL. Bad files are user
 * errors naming the file. Batch norm is left in training mode: set
 * m->image.train = 0 for evaluation. */
void aes_model_from_checkpoint(aes_model *m, const char *path, int image_size, int maxB,
                               aes_config *cfg_out);
/* A fresh model of cfg's architecture for the data set ds (which must have
 * descriptions and a tokenizer), initialised from cfg's seed. */
void aes_model_from_config(aes_model *m, const aes_config *cfg, const aes_dataset *ds,
                           int image_size, int maxB);

#endif
