/*
 * ckpt_tool OUT_DIR: saves a checkpoint of a small parameter table (with
 * AdamW moments) into OUT_DIR/checkpoints, for the h5py client check.
 * Values follow a formula the checker recomputes:
 *   tensor k (0-based, in the order printed), element i:
 *   param = (k + 1) + i / 1024,  m = param / 4,  v = param / 8
 * (all exact in float32). Prints the written path, then one line per
 * tensor: "tensor NAME TRAINABLE D0xD1x..." and the meta as "meta KEY VALUE".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "aesnet/checkpoint.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ckpt_tool OUT_DIR\n");
        return 2;
    }
    static const struct {
        const char *name;
        int ndim, shape[4], trainable;
    } spec[] = {
        {"image/stage1/block0/conv1/weight", 4, {8, 4, 3, 3}, 1},
        {"image/stage1/block0/bn1/weight", 1, {8}, 1},
        {"image/stage1/block0/bn1/bias", 1, {8}, 1},
        {"heads/color/image_proj", 2, {16, 8}, 1},
        {"text/positional", 3, {2, 5, 6}, 1},
        {"logit_scale", 1, {1}, 1},
        {"image/stage1/block0/bn1/running_mean", 1, {8}, 0},
        {"image/stage1/block0/bn1/running_var", 1, {8}, 0},
    };
    const int n = (int)(sizeof spec / sizeof spec[0]);
    aes_params P;
    aes_params_init_table(&P);
    for (int k = 0; k < n; k++)
        aes_params_add(&P, spec[k].name, spec[k].ndim, spec[k].shape, spec[k].trainable, 1,
                       AES_INIT_ZERO, 0);
    aes_params_alloc(&P);
    float *m = calloc(P.n_trainable, sizeof(float)), *v = calloc(P.n_trainable, sizeof(float));
    for (int k = 0; k < n; k++) {
        const aes_tensor *t = &P.t[k];
        for (size_t i = 0; i < t->numel; i++) {
            float x = (float)(k + 1) + (float)i / 1024.0f;
            P.data[t->offset + i] = x;
            if (t->trainable) m[t->offset + i] = x / 4, v[t->offset + i] = x / 8;
        }
    }
    aes_ckpt_meta meta = {
        .step = 42, .epoch = 2, .cursor = 42 * 64, .world_size = 2, .nonfinite = 1, .seed = 7,
        .tokenizer_hash = 99};
    const char *config = "seed = 7;\nmodel = { backbone = \"resnet18\"; };\n";
    char path[4096];
    aes_ckpt_save(argv[1], &P, m, v, &meta, config, 2, path, sizeof path);
    printf("path %s\n", path);
    for (int k = 0; k < n; k++) {
        const aes_tensor *t = &P.t[k];
        printf("tensor %s %d ", t->name, t->trainable);
        for (int d = 0; d < t->ndim; d++) printf("%s%d", d ? "x" : "", t->shape[d]);
        printf("\n");
    }
    printf("meta step %" PRId64 "\nmeta epoch %" PRId64 "\nmeta cursor %" PRId64
           "\nmeta world_size %" PRId64 "\nmeta nonfinite %" PRId64 "\nmeta seed %" PRIu64 "\n",
           meta.step, meta.epoch, meta.cursor, meta.world_size, meta.nonfinite, meta.seed);
    aes_params_free(&P);
    free(m);
    free(v);
    return 0;
}
