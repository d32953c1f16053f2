/*
 * aesnet prep build: images + JSON Lines manifest -> aesnet data set.
 * Reads and checks the whole manifest, checks every image path exists,
 * learns (or reuses) the tokenizer, then decodes and resizes images in
 * blocks on all cores and writes rows in manifest order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/h5.h"
#include "aesnet/image.h"
#include "aesnet/manifest.h"
#include "aesnet/tokenizer.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet prep build --images DIR --manifest FILE.jsonl --out FILE.h5 [options]\n"
            "\n"
            "One JSON object per manifest line:\n"
            "  {\"image\": \"rel/path.jpg\", \"descriptions\": {\"color\": \"...\", \"light\": [\"...\", \"...\"]},\n"
            "   \"score\": 5.4 or [10 vote counts], \"split\": \"train\"|\"val\"|\"test\", \"content\": \"dog\"}\n"
            "Only image is required. The attribute set is the first line's, on every line.\n"
            "\n"
            "  --images DIR            folder the image paths are relative to (required)\n"
            "  --manifest FILE.jsonl   the manifest (required)\n"
            "  --out FILE.h5           output data set (required)\n"
            "  --size S                image side after resize and centre crop (default 224)\n"
            "  --max-descriptions K    descriptions kept per image and attribute (default 8)\n"
            "  --vocab-size V          BPE vocabulary to learn (default 8192)\n"
            "  --context-length L      tokens per description (default 77)\n"
            "  --tokenizer FROM.h5     reuse FROM.h5's tokenizer (and context length) instead\n"
            "  --features F.h5         attach content features: float32 /features [N, F] in\n"
            "                          manifest order (e.g. from a pre-trained network)\n"
            "  --score-range LO,HI     the score scale (default: 1,10 with votes, else the\n"
            "                          observed range rounded out to integers)\n"
            "  --seed K                seed of the default 80/10/10 split (default 0)\n"
            "  --compress LEVEL        deflate level 0-9 for images (default 0)\n"
            "  --threads T             decoding threads (default: all cores)\n"
            "  --force                 replace an existing output\n"
            "  --quiet                 no progress or summary\n");
}

typedef struct {
    const aes_manifest *m;
    char **paths;
    int S;
    int64_t lo, hi; /* block */
    int tid, nthreads;
    uint8_t *pixels; /* [hi - lo, S, S, 3] */
    aes_err *errs;   /* [hi - lo] */
    int *failed;
} decode_job;

static void *decode_block(void *arg)
{
    decode_job *j = arg;
    const size_t img = (size_t)j->S * j->S * 3;
    for (int64_t i = j->lo + j->tid; i < j->hi; i += j->nthreads) {
        aes_image im;
        int64_t k = i - j->lo;
        if (aes_image_load(j->paths[i], &im, &j->errs[k]) != 0) {
            j->failed[k] = 1;
            continue;
        }
        aes_image_resize_crop(im.rgb, im.w, im.h, j->pixels + (size_t)k * img, j->S);
        aes_image_free(&im);
    }
    return NULL;
}

static float *read_features(const char *path, int64_t N, int *F)
{
    aes_h5_lock();
    if (!aes_file_exists(path)) aes_user_error("%s: no such file (--features)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) aes_user_error("%s: not an HDF5 file (--features)", path);
    if (!aes_h5_exists(f, "features"))
        aes_user_error("%s: field /features: missing (expected float32 [N, F])", path);
    hid_t d = H5_CHECK(H5Dopen2(f, "features", H5P_DEFAULT));
    hid_t s = H5_CHECK(H5Dget_space(d));
    hid_t t = H5_CHECK(H5Dget_type(d));
    hsize_t dims[2] = {0, 0};
    int rank = H5Sget_simple_extent_ndims(s);
    if (rank != 2 || H5Tget_class(t) != H5T_FLOAT)
        aes_user_error("%s: field /features: expected a 2-D float array [N, F]", path);
    H5Sget_simple_extent_dims(s, dims, NULL);
    if ((int64_t)dims[0] != N)
        aes_user_error("%s: field /features: has %llu rows, the manifest has %lld", path,
                       (unsigned long long)dims[0], (long long)N);
    if (dims[1] < 1 || dims[1] > 65536)
        aes_user_error("%s: field /features: width %llu is out of range [1, 65536]", path,
                       (unsigned long long)dims[1]);
    float *x = aes_malloc(sizeof(float) * dims[0] * dims[1], "features");
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        aes_user_error("%s: field /features: cannot read: %s", path, aes_h5_errmsg());
    for (size_t i = 0; i < dims[0] * dims[1]; i++)
        if (!isfinite(x[i]))
            aes_user_error("%s: field /features: row %llu is not finite", path, (unsigned long long)(i / dims[1]));
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    aes_h5_unlock();
    *F = (int)dims[1];
    return x;
}

int cmd_prep_build(int argc, char **argv)
{
    const char *images = NULL, *manifest = NULL, *out = NULL, *tok_from = NULL, *feat_path = NULL;
    int S = 224, K = 8, V = 8192, L = 77, compress = 0, force = 0, L_given = 0;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double lo = NAN, hi = NAN;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--images")) images = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--manifest")) manifest = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--out")) out = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--tokenizer")) tok_from = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--features")) feat_path = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--size")) S = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 8, 4096);
        else if (!strcmp(a, "--max-descriptions")) K = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 255);
        else if (!strcmp(a, "--vocab-size")) V = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), AES_TOK_FIRST_MERGE, 1 << 20);
        else if (!strcmp(a, "--context-length")) {
            L = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 4, 4096);
            L_given = 1;
        } else if (!strcmp(a, "--seed")) seed = (uint64_t)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, INT64_MAX);
        else if (!strcmp(a, "--compress")) compress = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, 9);
        else if (!strcmp(a, "--threads")) threads = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 1024);
        else if (!strcmp(a, "--score-range")) {
            const char *v = cli_need_value(argc, argv, &i);
            char *end;
            lo = strtod(v, &end);
            if (*end != ',') aes_user_error("--score-range: expected LO,HI, got '%s'", v);
            hi = strtod(end + 1, &end);
            if (*end || !(hi > lo)) aes_user_error("--score-range: expected LO,HI with LO < HI, got '%s'", v);
        } else if (!strcmp(a, "--force")) force = 1;
        else if (!strcmp(a, "--quiet")) aes_log_set_level(AES_LOG_QUIET);
        else aes_user_error("prep build: unknown option '%s' (try --help)", a);
    }
    if (!images) aes_user_error("prep build: --images is required");
    if (!manifest) aes_user_error("prep build: --manifest is required");
    if (!out) aes_user_error("prep build: --out is required");
    struct stat st;
    if (stat(images, &st) != 0 || !S_ISDIR(st.st_mode))
        aes_user_error("%s: not a folder (--images)", images);
    if (aes_file_exists(out) && !force) aes_user_error("%s: output exists (use --force to replace it)", out);

    aes_manifest m;
    aes_manifest_read(&m, manifest, K);
    const int64_t N = m.n;
    const int A = m.A;
    K = m.K;

    /* Every image must be there before hours of decoding start. */
    char **paths = aes_malloc(sizeof(char *) * (size_t)N, "paths");
    for (int64_t i = 0; i < N; i++) {
        const char *rel = m.rows[i].image;
        if (rel[0] == '/') paths[i] = aes_strdup(rel);
        else if (asprintf(&paths[i], "%s/%s", images, rel) < 0) aes_internal_error("asprintf");
        if (access(paths[i], R_OK) != 0)
            aes_user_error("%s (%s:%d): cannot read the image: %s", paths[i], manifest,
                           m.rows[i].line, strerror(errno));
    }

    int F = 0;
    float *features = feat_path ? read_features(feat_path, N, &F) : NULL;

    aes_tokenizer tok;
    int have_tok = 0;
    if (tok_from) {
        aes_dataset from;
        aes_dataset_open(&from, tok_from);
        if (!from.has_tokenizer) aes_user_error("%s: group /tokenizer: missing (--tokenizer)", tok_from);
        if (aes_tokenizer_from_merges(&tok, from.tok.merges, from.tok.n_merges) != 0)
            aes_internal_error("copying the tokenizer of %s", tok_from);
        if (!L_given && from.L > 0) L = from.L;
        aes_dataset_close(&from);
        have_tok = 1;
    } else if (A > 0) {
        size_t nt = 0;
        const char **texts = aes_malloc(sizeof(char *) * ((size_t)N * A * K + 1), "texts");
        for (int64_t i = 0; i < N; i++)
            for (int j = 0; j < A * K; j++)
                if (m.rows[i].desc[j]) texts[nt++] = m.rows[i].desc[j];
        aes_log("prep build: learning a %d-token BPE vocabulary on %zu descriptions", V, nt);
        aes_tokenizer_learn(&tok, texts, nt, V);
        free(texts);
        have_tok = 1;
    }

    if (isnan(lo)) {
        if (m.any_votes) lo = 1, hi = 10;
        else if (m.any_score) {
            lo = floor(m.score_lo);
            hi = ceil(m.score_hi);
            if (hi <= lo) hi = lo + 1;
        } else lo = 0, hi = 1;
    }
    char prov[1024];
    snprintf(prov, sizeof prov,
             "aesnet prep build --images %s --manifest %s --size %d --max-descriptions %d "
             "--context-length %d%s%s%s%s",
             images, manifest, S, K, L, tok_from ? " --tokenizer " : "", tok_from ? tok_from : "",
             feat_path ? " --features " : "", feat_path ? feat_path : "");
    aes_dataset_spec spec = {
        .N = N, .S = S, .A = A, .K = K, .L = A > 0 ? L : 0,
        .attr_names = (const char *const *)m.attr_names,
        .has_votes = m.any_votes, .F = F,
        .n_classes = m.n_classes, .class_names = (const char *const *)m.class_names,
        .score_min = lo, .score_max = hi, .compress = compress, .provenance = prov,
    };
    aes_dsw *w = aes_dsw_create(out, &spec, force);

    const int64_t block = 64;
    const size_t img = (size_t)S * S * 3;
    uint8_t *pixels = aes_malloc(img * (size_t)block, "pixels");
    aes_err *errs = aes_calloc((size_t)block, sizeof(aes_err), "errors");
    int *failed = aes_calloc((size_t)block, sizeof(int), "errors");
    int32_t *tokens = aes_malloc(sizeof(int32_t) * ((size_t)A * K * L + 1), "tokens");
    pthread_t *th = aes_malloc(sizeof(pthread_t) * (size_t)threads, "threads");
    decode_job *jobs = aes_malloc(sizeof(decode_job) * (size_t)threads, "jobs");
    int64_t trunc = 0;
    cli_progress pr;
    cli_progress_start(&pr, "prep build", N);
    for (int64_t b0 = 0; b0 < N; b0 += block) {
        int64_t b1 = b0 + block < N ? b0 + block : N;
        memset(failed, 0, sizeof(int) * (size_t)block);
        for (int t = 0; t < threads; t++) {
            jobs[t] = (decode_job){.m = &m, .paths = paths, .S = S, .lo = b0, .hi = b1, .tid = t,
                                   .nthreads = threads, .pixels = pixels, .errs = errs,
                                   .failed = failed};
            if (pthread_create(&th[t], NULL, decode_block, &jobs[t]) != 0)
                aes_internal_error("cannot start decoding thread");
        }
        for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
        for (int64_t i = b0; i < b1; i++) {
            const aes_manifest_row *r = &m.rows[i];
            if (failed[i - b0])
                aes_user_error("%s (%s:%d): %s", paths[i], manifest, r->line, errs[i - b0].msg);
            aes_dsw_put_image(w, i, pixels + (size_t)(i - b0) * img);
            if (A > 0) {
                trunc += aes_encode_descriptions(&tok, (const char *const *)r->desc, r->count, A, K, L, tokens);
                aes_dsw_put_text(w, i, tokens, r->count, (const char *const *)r->desc);
            }
            int split = r->split >= 0 ? r->split : aes_split_draw(seed, i);
            aes_dsw_put_meta(w, i, r->score, r->has_votes ? r->votes : NULL, split, r->content,
                             features ? features + (size_t)i * F : NULL);
        }
        cli_progress_update(&pr, b1);
    }
    aes_dsw_finish(w, have_tok ? &tok : NULL, trunc);
    cli_progress_end(&pr, N);
    if (m.dropped > 0)
        aes_warn("%lld descriptions beyond --max-descriptions %d were not kept", (long long)m.dropped, K);

    free(jobs);
    free(th);
    free(tokens);
    free(failed);
    free(errs);
    free(pixels);
    free(features);
    for (int64_t i = 0; i < N; i++) free(paths[i]);
    free(paths);
    if (have_tok) aes_tokenizer_free(&tok);
    aes_manifest_free(&m);
    prep_report_output(out);
    return 0;
}
