/*
 * aesnet prep synth: the embedded demo data set. Two passes over the same
 * deterministic generator: the first collects descriptions to learn the
 * tokenizer, the second renders and writes.
 */
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/synth.h"
#include "aesnet/tokenizer.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet prep synth --out FILE.h5 [options]\n"
            "\n"
            "Generate the demo data set: rendered scenes whose colour, light, composition,\n"
            "focus and subject are known and visible, one description per attribute, a score\n"
            "(a noisy function of the attribute qualities, scale 1-10) with the 10-bin vote\n"
            "distribution it is the mean of, a content class and a content feature per image.\n"
            "Deterministic for a seed.\n"
            "\n"
            "  --out FILE.h5          output data set (required)\n"
            "  --n N                  images (default 2000)\n"
            "  --size S               image side in pixels (default 64)\n"
            "  --seed K               generator and split seed (default 0)\n"
            "  --vocab-size V         BPE vocabulary size (default 1024)\n"
            "  --context-length L     tokens per description (default 32)\n"
            "  --features F           content feature width, 0 for none (default 64)\n"
            "  --caption              one description per image (attribute \"caption\": the five\n"
            "                         joined) instead of one per attribute; default L becomes 96\n"
            "  --compress LEVEL       deflate level 0-9 for images (default 0)\n"
            "  --force                replace an existing output\n"
            "  --quiet                no progress or summary\n");
}

/* The five descriptions as one caption. */
static const char *synth_join(const aes_synth_sample *m, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (int a = 0; a < AES_SYNTH_NATTR && o < cap; a++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", a ? "; " : "", m->desc[a]);
    return out;
}

int cmd_prep_synth(int argc, char **argv)
{
    const char *out = NULL;
    int64_t N = 2000;
    int S = 64, V = 1024, L = 32, F = 64, compress = 0, force = 0, caption = 0, L_given = 0;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out")) out = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--n")) N = cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 100000000);
        else if (!strcmp(a, "--size")) S = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 16, 1024);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, INT64_MAX);
        else if (!strcmp(a, "--vocab-size")) V = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), AES_TOK_FIRST_MERGE, 1 << 20);
        else if (!strcmp(a, "--context-length")) {
            L = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 4, 1024);
            L_given = 1;
        } else if (!strcmp(a, "--caption")) caption = 1;
        else if (!strcmp(a, "--features")) F = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, 65536);
        else if (!strcmp(a, "--compress")) compress = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, 9);
        else if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(a, "--quiet")) aes_log_set_level(AES_LOG_QUIET);
        else aes_user_error("prep synth: unknown option '%s' (try --help)", a);
    }
    if (!out) aes_user_error("prep synth: --out is required");
    if (aes_file_exists(out) && !force) aes_user_error("%s: output exists (use --force to replace it)", out);

    /* --caption: the single-caption baseline, all attributes in one text. */
    const int A = caption ? 1 : AES_SYNTH_NATTR, K = 1;
    if (caption && !L_given) L = 96;
    static const char *const caption_name[1] = {"caption"};
    aes_synth_sample meta;
    char joined[AES_SYNTH_NATTR * AES_SYNTH_DESC_CAP + 16];
    uint8_t *rgb = aes_malloc((size_t)S * S * 3, "image");

    /* Pass 1: descriptions only, to learn the tokenizer. */
    char **texts = aes_malloc(sizeof(char *) * (size_t)N * A, "descriptions");
    for (int64_t i = 0; i < N; i++) {
        aes_synth_generate(seed, i, 16, rgb, &meta); /* text does not depend on S */
        if (caption) texts[i] = aes_strdup(synth_join(&meta, joined, sizeof joined));
        else
            for (int a = 0; a < A; a++) texts[i * A + a] = aes_strdup(meta.desc[a]);
    }
    aes_tokenizer tok;
    aes_tokenizer_learn(&tok, (const char *const *)texts, (size_t)(N * A), V);

    char prov[512];
    snprintf(prov, sizeof prov,
             "aesnet prep synth --n %lld --size %d --seed %llu --vocab-size %d --context-length %d --features %d%s",
             (long long)N, S, (unsigned long long)seed, V, L, F, caption ? " --caption" : "");
    aes_dataset_spec spec = {
        .N = N, .S = S, .A = A, .K = K, .L = L,
        .attr_names = caption ? caption_name : aes_synth_attr_names,
        .F = F, .n_classes = AES_SYNTH_NCLASS, .class_names = aes_synth_class_names,
        .score_min = 1, .score_max = 10, .has_votes = 1, .compress = compress, .provenance = prov,
    };
    aes_dsw *w = aes_dsw_create(out, &spec, force);
    int32_t *tokens = aes_malloc(sizeof(int32_t) * (size_t)A * K * L, "tokens");
    float *feat = F ? aes_malloc(sizeof(float) * (size_t)F, "feature") : NULL;
    uint8_t count[AES_SYNTH_NATTR];
    memset(count, 1, sizeof count);
    /* The generator's ground truth, for analysis and tests: the attribute
     * values each image was rendered with. */
    enum { NLEV = 8 };
    int32_t *levels = aes_malloc(sizeof(int32_t) * (size_t)N * NLEV, "levels");
    int64_t trunc = 0;
    cli_progress pr;
    cli_progress_start(&pr, "prep synth", N);
    for (int64_t i = 0; i < N; i++) {
        aes_synth_generate(seed, i, S, rgb, &meta);
        const char *d[AES_SYNTH_NATTR];
        if (caption) d[0] = synth_join(&meta, joined, sizeof joined);
        else
            for (int a = 0; a < A; a++) d[a] = meta.desc[a];
        trunc += aes_encode_descriptions(&tok, d, count, A, K, L, tokens);
        aes_dsw_put_image(w, i, rgb);
        aes_dsw_put_text(w, i, tokens, count, d);
        if (F) aes_synth_content_feature(seed, meta.content, i, feat, F);
        aes_dsw_put_meta(w, i, meta.score, meta.votes, aes_split_draw(seed, i), meta.content, feat);
        const int32_t lv[NLEV] = {meta.harmony,   meta.saturation, meta.exposure, meta.contrast,
                                  meta.placement, meta.tilt,       meta.focus,    meta.clutter};
        memcpy(levels + i * NLEV, lv, sizeof lv);
        cli_progress_update(&pr, i + 1);
    }
    aes_dsw_put_matrix_i32(w, "synth/levels", levels, N, NLEV,
                           "harmony,saturation,exposure,contrast,placement,tilt,focus,clutter");
    free(levels);
    aes_dsw_finish(w, &tok, trunc);
    cli_progress_end(&pr, N);

    for (int64_t i = 0; i < N * A; i++) free(texts[i]);
    free(texts);
    free(tokens);
    free(feat);
    free(rgb);
    aes_tokenizer_free(&tok);
    prep_report_output(out);
    return 0;
}
