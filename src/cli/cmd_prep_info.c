/*
 * aesnet prep info: validate a data set (every row) and print its summary.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/h5.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet prep info FILE.h5 [--examples N]\n"
            "\n"
            "Validate an aesnet data set (header, every field's type and shape, every token\n"
            "row) and print N, image size, attributes, split sizes, score statistics,\n"
            "vocabulary, truncations and a few decoded descriptions (default 3 images).\n");
}

/* A set of 64-bit hashes, for counting distinct descriptions. */
typedef struct {
    uint64_t *k;
    size_t cap, n;
} hset;

static void hset_add(hset *s, uint64_t h)
{
    if (h == 0) h = 1;
    if (2 * (s->n + 1) > s->cap) {
        hset t = {aes_calloc(s->cap ? 2 * s->cap : 1024, sizeof(uint64_t), "hash set"),
                  s->cap ? 2 * s->cap : 1024, 0};
        for (size_t i = 0; i < s->cap; i++)
            if (s->k[i]) hset_add(&t, s->k[i]);
        free(s->k);
        *s = t;
    }
    size_t i = h & (s->cap - 1);
    while (s->k[i] && s->k[i] != h) i = (i + 1) & (s->cap - 1);
    if (!s->k[i]) {
        s->k[i] = h;
        s->n++;
    }
}

void prep_print_summary(aes_dataset *ds, int examples)
{
    const int64_t N = ds->N;
    const int A = ds->A, K = ds->K, L = ds->L;
    int64_t nsplit[3] = {0, 0, 0};
    for (int64_t i = 0; i < N; i++) nsplit[ds->split[i]]++;
    printf("data set     %s (%s v%d; %s)\n", ds->path, AES_DATASET_FORMAT, AES_DATASET_VERSION,
           ds->created_by);
    printf("rows         %lld (train %lld, val %lld, test %lld)\n", (long long)N,
           (long long)nsplit[0], (long long)nsplit[1], (long long)nsplit[2]);
    printf("images       %d x %d RGB uint8\n", ds->S, ds->S);
    if (A > 0) {
        printf("attributes   %d:", A);
        for (int a = 0; a < A; a++) printf("%s %s", a ? "," : "", ds->attr_names[a]);
        printf("\n");
        /* Present, missing and distinct descriptions per attribute. */
        int32_t *t = aes_malloc(sizeof(int32_t) * (size_t)A * K * L, "tokens");
        hset *sets = aes_calloc((size_t)A, sizeof(hset), "hash sets");
        int64_t *present = aes_calloc((size_t)A, sizeof(int64_t), "counts");
        int64_t *missing = aes_calloc((size_t)A, sizeof(int64_t), "counts");
        for (int64_t i = 0; i < N; i++) {
            aes_dataset_read_tokens(ds, i, t);
            for (int a = 0; a < A; a++) {
                int c = ds->count[i * A + a];
                present[a] += c;
                missing[a] += c == 0;
                for (int k = 0; k < c; k++)
                    hset_add(&sets[a], aes_tokens_hash(t + ((size_t)a * K + k) * L, L));
            }
        }
        printf("descriptions up to %d per image and attribute\n", K);
        for (int a = 0; a < A; a++) {
            printf("  %-12s %lld present, %lld distinct, %lld images without\n", ds->attr_names[a],
                   (long long)present[a], (long long)sets[a].n, (long long)missing[a]);
            free(sets[a].k);
        }
        free(sets);
        free(present);
        free(missing);
        free(t);
    } else {
        printf("attributes   none (an evaluation-only set: images and scores)\n");
    }
    if (ds->has_tokenizer)
        printf("tokenizer    byte-level BPE, vocabulary %d (%d merges), context %d, %lld truncated\n",
               ds->tok.vocab_size, ds->tok.n_merges, L, (long long)ds->truncations);
    int64_t known = 0;
    double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < N; i++) {
        float s = ds->scores[i];
        if (isnan(s)) continue;
        known++;
        sum += s;
        sq += (double)s * s;
        if (s < mn) mn = s;
        if (s > mx) mx = s;
    }
    printf("scores       scale [%g, %g]; ", ds->score_min, ds->score_max);
    if (known) {
        double mean = sum / known, sd = sqrt(fmax(0, sq / known - mean * mean));
        printf("%lld known: mean %.3f, sd %.3f, min %.3f, max %.3f\n", (long long)known, mean, sd,
               mn, mx);
    } else {
        printf("none known\n");
    }
    if (ds->has_votes) {
        int64_t nv = 0;
        for (int64_t i = 0; i < N; i++) nv += !isnan(ds->votes[i * AES_NBINS]);
        printf("votes        10-bin distributions for %lld images\n", (long long)nv);
    }
    if (ds->has_labels) {
        int64_t *per = aes_calloc((size_t)ds->n_classes + 1, sizeof(int64_t), "class counts");
        for (int64_t i = 0; i < N; i++) per[ds->labels[i] + 1]++;
        printf("content      %d classes:", ds->n_classes);
        for (int c = 0; c < ds->n_classes; c++)
            printf("%s %s %lld", c ? "," : "", ds->class_names[c], (long long)per[c + 1]);
        if (per[0]) printf(", unlabelled %lld", (long long)per[0]);
        printf("\n");
        free(per);
    }
    if (ds->F) printf("features     %d-d content features\n", ds->F);
    if (ds->provenance[0]) printf("made by      %s\n", ds->provenance);
    for (int64_t i = 0; i < N && i < examples && A > 0; i++) {
        printf("example      row %lld (%s, score %.2f%s%s)\n", (long long)i,
               aes_split_names[ds->split[i]], ds->scores[i], ds->has_labels && ds->labels[i] >= 0 ? ", " : "",
               ds->has_labels && ds->labels[i] >= 0 ? ds->class_names[ds->labels[i]] : "");
        int32_t *t = aes_malloc(sizeof(int32_t) * (size_t)A * K * L, "tokens");
        aes_dataset_read_tokens(ds, i, t);
        for (int a = 0; a < A; a++) {
            if (ds->count[i * A + a] == 0) {
                printf("  %-12s (none)\n", ds->attr_names[a]);
                continue;
            }
            char text[4096];
            aes_tokenizer_decode(&ds->tok, t + (size_t)a * K * L, L, text, sizeof text);
            printf("  %-12s %s\n", ds->attr_names[a], text);
        }
        free(t);
    }
    fflush(stdout);
}

void prep_report_output(const char *path)
{
    if (aes_log_get_level() < AES_LOG_INFO) return;
    aes_dataset ds;
    aes_dataset_open(&ds, path);
    if (ds.truncations > 0)
        aes_warn("%s: %lld descriptions were longer than the context length %d and were cut",
                 path, (long long)ds.truncations, ds.L);
    prep_print_summary(&ds, 3);
    aes_dataset_close(&ds);
}

int cmd_prep_info(int argc, char **argv)
{
    const char *path = NULL;
    int examples = 3;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--examples")) {
            examples = (int)cli_parse_long(argv[i], cli_need_value(argc, argv, &i), 0, 1000000);
        } else if (argv[i][0] == '-') {
            aes_user_error("prep info: unknown option '%s' (try --help)", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            aes_user_error("prep info: one data set at a time ('%s' is extra)", argv[i]);
        }
    }
    if (!path) aes_user_error("prep info: which data set? (aesnet prep info FILE.h5)");
    aes_dataset ds;
    aes_dataset_open(&ds, path);
    prep_print_summary(&ds, examples);
    printf("valid        yes: header, fields and %lld rows checked\n", (long long)ds.N);
    aes_dataset_close(&ds);
    return 0;
}
