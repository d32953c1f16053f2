/*
 * Models rebuilt from a checkpoint, or fresh from a config (see
 * include/aesnet/restore.h).
 */
#include "aesnet/restore.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/checkpoint.h"
#include "aesnet/core.h"
#include "aesnet/h5.h"

void aes_model_cfg_from_config(aes_model_cfg *mc, const aes_config *c, int R, int vocab,
                               int context, int A, char **names)
{
    memset(mc, 0, sizeof *mc);
    mc->image = strcmp(c->image, "vit") == 0 ? AES_IMAGE_VIT : AES_IMAGE_RESNET;
    mc->resnet = (aes_resnet_cfg){.depth = c->resnet_depth, .width = (float)c->resnet_width, .image_size = R};
    mc->vit = (aes_vit_cfg){.image_size = R, .patch = c->vit_patch, .width = c->vit_width,
                            .depth = c->vit_depth, .heads = c->vit_heads};
    mc->text = (aes_text_cfg){.vocab = vocab, .context = context, .width = c->text_width,
                              .depth = c->text_depth, .heads = c->text_heads};
    mc->A = A;
    for (int a = 0; a < A; a++) mc->attr_names[a] = names[a];
    mc->D = c->embed_dim;
    mc->fusion = !strcmp(c->fusion, "mlp") ? AES_FUSION_MLP
                 : !strcmp(c->fusion, "transformer") ? AES_FUSION_TRANSFORMER
                                                     : AES_FUSION_NONE;
    mc->fusion_hidden = c->fusion_width;
    mc->fusion_heads = c->fusion_heads;
    mc->learn_scale = strcmp(c->logit_scale, "learned") == 0;
    mc->init_scale = (float)(1.0 / c->temperature);
    mc->frozen_reference = 0;
    mc->seed = (uint64_t)c->seed;
}

void aes_model_from_config(aes_model *m, const aes_config *cfg, const aes_dataset *ds,
                           int image_size, int maxB)
{
    if (ds->A == 0 || !ds->has_tokenizer)
        aes_user_error("%s: the model needs a data set with descriptions and a tokenizer (for "
                       "its attribute heads and text encoder)", ds->path);
    aes_model_cfg mc;
    aes_model_cfg_from_config(&mc, cfg, image_size > 0 ? image_size : ds->S, ds->tok.vocab_size, ds->L, ds->A,
             ds->attr_names);
    aes_model_build(m, &mc, maxB);
}

typedef struct {
    char **names;
    int n;
} name_list;

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    name_list *l = data;
    if (l->n >= AES_MAX_ATTR) return 1;
    l->names[l->n++] = aes_strdup(name);
    return 0;
}

static int dims_of(hid_t f, const char *path, hsize_t *dims)
{
    if (!aes_h5_exists(f, path)) return -1;
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t s = H5Dget_space(d);
    int r = H5Sget_simple_extent_ndims(s);
    if (r > 0 && r <= 4) H5Sget_simple_extent_dims(s, dims, NULL);
    H5Sclose(s);
    H5Dclose(d);
    return r;
}

void aes_ckpt_read_config(const char *path, aes_ckpt_meta *meta, aes_config *cfg)
{
    char *text = NULL;
    aes_ckpt_peek(path, meta, &text);
    aes_config_defaults(cfg);
    aes_config_from_text(cfg, text, path);
    free(text);
}

void aes_model_from_checkpoint(aes_model *m, const char *path, int image_size, int maxB,
                               aes_config *cfg_out)
{
    aes_ckpt_meta meta;
    aes_config cfg;
    aes_ckpt_read_config(path, &meta, &cfg);

    /* What the stored tensors say: attributes (in creation order, which is
     * the data set's), vocabulary, context, and a ViT's resolution. */
    name_list l = {aes_calloc(AES_MAX_ATTR, sizeof(char *), "names"), 0};
    hsize_t emb[4] = {0}, pos[4] = {0}, vpos[4] = {0};
    aes_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) aes_user_error("%s: cannot open: %s", path, aes_h5_errmsg());
    hid_t g = aes_h5_exists(f, "model/head") ? H5Gopen2(f, "model/head", H5P_DEFAULT) : -1;
    if (g < 0) aes_user_error("%s: /model/head: missing (not an aesnet pre-training checkpoint)", path);
    hid_t gcpl = H5Gget_create_plist(g);
    unsigned order = 0;
    H5Pget_link_creation_order(gcpl, &order);
    H5Pclose(gcpl);
    hsize_t idx = 0;
    H5Literate(g, (order & H5P_CRT_ORDER_TRACKED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME, H5_ITER_INC,
               &idx, collect, &l);
    H5Gclose(g);
    int ok = dims_of(f, "model/text/token_embedding", emb) == 2 &&
             dims_of(f, "model/text/position_embedding", pos) == 2;
    int vit = !strcmp(cfg.image, "vit");
    if (vit && dims_of(f, "model/image/position_embedding", vpos) != 2) ok = 0;
    H5Fclose(f);
    aes_h5_unlock();
    if (!ok || l.n == 0) aes_user_error("%s: /model: the text encoder or the heads are missing", path);

    int R = image_size;
    if (vit) {
        int grid = (int)lround(sqrt((double)vpos[0] - 1));
        int own = grid * cfg.vit_patch;
        if (R > 0 && R != own)
            aes_user_error("%s: a ViT trained at %d px cannot take %d px images", path, own, R);
        R = own;
    } else if (R <= 0) {
        R = cfg.image_size > 0 ? cfg.image_size : 224;
    }
    aes_model_cfg mc;
    aes_model_cfg_from_config(&mc, &cfg, R, (int)emb[0], (int)pos[0], l.n, l.names);
    aes_model_build(m, &mc, maxB);
    aes_ckpt_load(path, &m->P, NULL, NULL);
    for (int a = 0; a < l.n; a++) free(l.names[a]);
    free(l.names);
    if (cfg_out) *cfg_out = cfg;
}
