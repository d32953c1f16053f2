/*
 * aesnet eval: judge a frozen image encoder as IAC papers do. A ridge
 * probe from its standardised features to the score (penalty chosen on
 * val), reported on test (SRCC, PLCC, binary accuracy, RMSE, MAE), and per
 * attribute image<->text retrieval recall@1/@5 among the test rows that
 * have that attribute. With --finetune, on a data set with vote
 * distributions, also NIMA's EMD fine-tune (src/eval/finetune.c). Runs on
 * one process.
 */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/eval.h"
#include "aesnet_build_info.h"
#include "cli/cli.h"

#define EVAL_BATCH 32

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet eval --ckpt C|random [--config CFG] --data D [options]\n"
            "\n"
            "Freeze the image encoder, fit a ridge regression from its standardised features\n"
            "to the score on the train split (penalty from 10^-4..10^4 chosen by val RMSE)\n"
            "and report on test: SRCC, PLCC, binary accuracy (above the midpoint of the\n"
            "score range), RMSE, MAE; and per attribute image->text and text->image\n"
            "recall@1/@5 among the test rows with that attribute (images embedded without\n"
            "fusion). One process (not under mpirun).\n"
            "\n"
            "  --ckpt C             a checkpoint, or 'random': a fresh model of --config's\n"
            "                       architecture (the baseline)\n"
            "  --config CFG         the architecture for --ckpt random\n"
            "  --data D             an aesnet data set with scores in train, val and test\n"
            "  --json OUT           also write the numbers as JSON\n"
            "  --train-fraction F   fit on a seeded fraction F of the train rows (0.2: the\n"
            "                       few-shot setting; default 1)\n"
            "  --seed K             seed of that draw and of the fine-tune (default 0)\n"
            "  --predictions OUT    write the test rows' predictions as CSV: row, score, the\n"
            "                       probe's score, and with --finetune its score and the\n"
            "                       10 bin probabilities\n"
            "\n"
            "Fine-tune (needs the data set's 10-bin vote distributions, /votes):\n"
            "  --finetune           also train the encoder and a 10-way softmax head on the\n"
            "                       train rows' vote distributions with the EMD loss (r=2),\n"
            "                       keep the epoch with the lowest val EMD and report test\n"
            "                       EMD r=1 and r=2 and the metrics of the predicted mean\n"
            "  --ft-epochs E        epochs (default 20)\n"
            "  --ft-batch B         batch size (default 32)\n"
            "  --ft-lr LR           peak learning rate of the encoder (default 1e-4)\n"
            "  --ft-head-lr LR      of the head (default 1e-3)\n"
            "  --ft-weight-decay W  AdamW weight decay (default 1e-4)\n");
}

static void json_num(FILE *f, const char *key, double x, const char *sep)
{
    if (isfinite(x)) fprintf(f, "\"%s\": %.17g%s", key, x, sep);
    else fprintf(f, "\"%s\": null%s", key, sep);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* A text output written under a temporary name and renamed when complete
 * (a failed run leaves nothing); flag names the option in errors. */
static FILE *out_open(const char *path, const char *flag, char *tmp, size_t cap)
{
    aes_tmp_name(path, tmp, cap);
    FILE *f = fopen(tmp, "w");
    if (!f) aes_user_error("%s: cannot write (%s)", path, flag);
    aes_tmpfile_register(tmp);
    return f;
}

static void out_close(FILE *f, const char *path, const char *flag, const char *tmp)
{
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        aes_user_error("%s: cannot write (%s)", path, flag);
    aes_tmpfile_forget(tmp);
}

typedef struct {
    double r[4]; /* i2t@1, i2t@5, t2i@1, t2i@5 */
    int64_t n;
} retr;

int cmd_eval(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *ckpt = NULL, *data = NULL, *json = NULL, *config = NULL;
    const char *predictions = NULL;
    double fraction = 1.0;
    uint64_t seed = 0;
    int finetune = 0;
    aes_finetune_cfg fc = {.epochs = 20, .batch = 32, .lr = 1e-4f, .head_lr = 1e-3f,
                           .weight_decay = 1e-4f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            if (aes_rank() <= 0) usage(stdout);
            cli_mpi_finalize();
            return 0;
        } else if (!strcmp(a, "--ckpt")) ckpt = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--config")) config = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--data")) data = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--json")) json = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--train-fraction"))
            fraction = cli_parse_double(a, cli_need_value(argc, argv, &i), 1e-6, 1.0);
        else if (!strcmp(a, "--seed"))
            seed = (uint64_t)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, INT64_MAX);
        else if (!strcmp(a, "--predictions")) predictions = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--finetune")) finetune = 1;
        else if (!strcmp(a, "--ft-epochs"))
            fc.epochs = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 100000);
        else if (!strcmp(a, "--ft-batch"))
            fc.batch = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 2, 4096);
        else if (!strcmp(a, "--ft-lr"))
            fc.lr = (float)cli_parse_double(a, cli_need_value(argc, argv, &i), 0.0, 1.0);
        else if (!strcmp(a, "--ft-head-lr"))
            fc.head_lr = (float)cli_parse_double(a, cli_need_value(argc, argv, &i), 0.0, 1.0);
        else if (!strcmp(a, "--ft-weight-decay"))
            fc.weight_decay = (float)cli_parse_double(a, cli_need_value(argc, argv, &i), 0.0, 1.0);
        else aes_user_error("eval: unknown option '%s' (try --help)", a);
    }
    if (world > 1) aes_user_error("eval: runs on one process, not %d (start it without mpirun)", world);
    if (!ckpt) aes_user_error("eval: which checkpoint? (--ckpt C, or --ckpt random --config CFG)");
    if (!data) aes_user_error("eval: which data set? (--data D)");

    aes_dataset ds;
    aes_dataset_open(&ds, data);
    /* Scored rows per split: the probe needs each. */
    int64_t nsc[3] = {0, 0, 0};
    for (int64_t i = 0; i < ds.N; i++)
        if (ds.split[i] < 3 && isfinite(ds.scores[i])) nsc[ds.split[i]]++;
    for (int s = 0; s < 3; s++)
        if (nsc[s] < (s == AES_SPLIT_TRAIN ? 2 : 1))
            aes_user_error("%s: /meta/score: no scores in the %s split (eval fits on train, picks "
                           "the penalty on val and reports on test)",
                           data, aes_split_names[s]);

    if (finetune) {
        if (!ds.has_votes)
            aes_user_error("%s: /votes: no vote distributions in this data set (--finetune trains "
                           "on them; prep build reads them as 10 vote counts in 'score')",
                           data);
        int64_t nv[3] = {0, 0, 0};
        for (int64_t i = 0; i < ds.N; i++)
            if (ds.split[i] < 3 && isfinite(ds.votes[(size_t)i * AES_NBINS])) nv[ds.split[i]]++;
        for (int s = 0; s < 3; s++)
            if (nv[s] < (s == AES_SPLIT_TRAIN ? 2 : 1))
                aes_user_error("%s: /votes: no vote distributions in the %s split (--finetune "
                               "trains on train, keeps the best epoch on val, reports on test)",
                               data, aes_split_names[s]);
    }

    aes_model m;
    int64_t step = -1;
    int maxB = finetune && fc.batch > EVAL_BATCH ? fc.batch : EVAL_BATCH;
    if (maxB > ds.N) maxB = (int)ds.N;
    if (fc.batch > maxB) fc.batch = maxB;
    aes_eval_open_model(&m, ckpt, config, &ds, maxB, &step);
    aes_embedder e;
    aes_embedder_init(&e, &m, &ds, maxB);
    const int64_t N = ds.N;
    const int A = e.A, D = e.D, F = e.Fv;

    /* Features of every row; embeddings of the test rows for retrieval. */
    double *X = aes_malloc(sizeof(double) * (size_t)N * F, "features");
    int64_t ntest = 0;
    for (int64_t i = 0; i < N; i++) ntest += ds.split[i] == AES_SPLIT_TEST;
    float *tx = NULL, *ty = NULL;
    uint8_t *tm = NULL;
    if (A > 0) {
        tx = aes_malloc(sizeof(float) * (size_t)A * (ntest ? ntest : 1) * D, "test image emb");
        ty = aes_malloc(sizeof(float) * (size_t)A * (ntest ? ntest : 1) * D, "test text emb");
        tm = aes_calloc((size_t)A * (ntest ? ntest : 1), 1, "test mask");
    }
    cli_progress pr;
    cli_progress_start(&pr, "features", N);
    int64_t t = 0;
    for (int64_t i0 = 0; i0 < N; i0 += maxB) {
        int B = (int)(N - i0 < maxB ? N - i0 : maxB);
        aes_embedder_run(&e, i0, B);
        for (int b = 0; b < B; b++) {
            for (int f = 0; f < F; f++) X[(size_t)(i0 + b) * F + f] = e.v[(size_t)b * F + f];
            if (A > 0 && ds.split[i0 + b] == AES_SPLIT_TEST) {
                for (int a = 0; a < A; a++) {
                    memcpy(tx + ((size_t)a * ntest + t) * D, e.x + ((size_t)a * B + b) * D, sizeof(float) * D);
                    memcpy(ty + ((size_t)a * ntest + t) * D, e.y + ((size_t)a * B + b) * D, sizeof(float) * D);
                    tm[(size_t)a * ntest + t] = e.mask[(size_t)a * B + b];
                }
                t++;
            }
        }
        cli_progress_update(&pr, i0 + B);
    }
    cli_progress_end(&pr, N);

    /* The probe's rows: scored rows per split, a seeded fraction of train. */
    int64_t *rows[3];
    int64_t n[3] = {0, 0, 0};
    for (int s = 0; s < 3; s++) rows[s] = aes_malloc(sizeof(int64_t) * (size_t)nsc[s], "rows");
    for (int64_t i = 0; i < N; i++)
        if (ds.split[i] < 3 && isfinite(ds.scores[i])) rows[ds.split[i]][n[ds.split[i]]++] = i;
    if (fraction < 1.0) {
        int64_t keep = (int64_t)ceil(fraction * (double)n[0]);
        if (keep < 2) keep = 2;
        if (keep > n[0]) keep = n[0];
        aes_rng r;
        aes_rng_init(&r, aes_key(seed, 0, 0, AES_RNG_SPLIT));
        for (int64_t k = 0; k < keep; k++) { /* partial Fisher-Yates */
            int64_t j = k + (int64_t)aes_rng_below(&r, (uint64_t)(n[0] - k));
            int64_t tmp = rows[0][k];
            rows[0][k] = rows[0][j];
            rows[0][j] = tmp;
        }
        n[0] = keep;
    }
    double *Xs[3], *ys[3];
    for (int s = 0; s < 3; s++) {
        Xs[s] = aes_malloc(sizeof(double) * (size_t)n[s] * F, "split features");
        ys[s] = aes_malloc(sizeof(double) * (size_t)n[s], "split scores");
        for (int64_t k = 0; k < n[s]; k++) {
            memcpy(Xs[s] + (size_t)k * F, X + (size_t)rows[s][k] * F, sizeof(double) * F);
            ys[s][k] = ds.scores[rows[s][k]];
        }
    }
    free(X);
    double grid[AES_RIDGE_GRID], *w = aes_malloc(sizeof(double) * F, "w"), b = 0, lam = NAN,
                                 vrmse = NAN;
    aes_ridge_grid(grid);
    if (aes_ridge_probe(Xs[0], ys[0], n[0], Xs[1], ys[1], n[1], F, grid, AES_RIDGE_GRID, w, &b, &lam,
                        &vrmse) != 0)
        aes_internal_error("ridge probe: no penalty of the grid gave a solution");
    double *pred = aes_malloc(sizeof(double) * (size_t)n[2], "predictions");
    aes_ridge_predict(Xs[2], n[2], F, w, b, pred);
    const double mid = 0.5 * (ds.score_min + ds.score_max);
    aes_reg_metrics rm;
    aes_regression_metrics(pred, ys[2], n[2], mid, &rm);

    retr *rt = A > 0 ? aes_calloc((size_t)A, sizeof(retr), "retrieval") : NULL;
    for (int a = 0; a < A; a++) {
        float *qx = aes_malloc(sizeof(float) * (size_t)(ntest ? ntest : 1) * D, "queries");
        float *qy = aes_malloc(sizeof(float) * (size_t)(ntest ? ntest : 1) * D, "keys");
        int64_t k = 0;
        for (int64_t j = 0; j < ntest; j++)
            if (tm[(size_t)a * ntest + j]) {
                memcpy(qx + (size_t)k * D, tx + ((size_t)a * ntest + j) * D, sizeof(float) * D);
                memcpy(qy + (size_t)k * D, ty + ((size_t)a * ntest + j) * D, sizeof(float) * D);
                k++;
            }
        rt[a].n = k;
        rt[a].r[0] = aes_recall_at_k(qx, qy, k, D, 1);
        rt[a].r[1] = aes_recall_at_k(qx, qy, k, D, 5);
        rt[a].r[2] = aes_recall_at_k(qy, qx, k, D, 1);
        rt[a].r[3] = aes_recall_at_k(qy, qx, k, D, 5);
        free(qx);
        free(qy);
    }

    /* The fine-tune: the probe's rows that have votes. */
    aes_finetune_result fr;
    memset(&fr, 0, sizeof fr);
    float *ft_dist = NULL;
    int64_t *ft_rows[3] = {NULL, NULL, NULL}, ft_n[3] = {0, 0, 0};
    if (finetune) {
        for (int s = 0; s < 3; s++) {
            ft_rows[s] = aes_malloc(sizeof(int64_t) * (size_t)(n[s] ? n[s] : 1), "fine-tune rows");
            for (int64_t k = 0; k < n[s]; k++)
                if (isfinite(ds.votes[(size_t)rows[s][k] * AES_NBINS]))
                    ft_rows[s][ft_n[s]++] = rows[s][k];
        }
        if (ft_n[0] < 2)
            aes_user_error("%s: /votes: fewer than 2 train rows with votes in the --train-fraction "
                           "draw (raise it)",
                           data);
        fc.seed = seed;
        ft_dist = aes_malloc(sizeof(float) * (size_t)ft_n[2] * AES_NBINS, "test distributions");
        aes_finetune_emd(&e, &fc, ft_rows, ft_n, ft_dist, &fr);
    }

    const char *what = strcmp(ckpt, "random") ? ckpt : "random initialisation";
    printf("eval: %s", what);
    if (step >= 0) printf(" (step %lld)", (long long)step);
    printf(" on %s\n", data);
    printf("ridge probe: %d features, %lld train%s / %lld val / %lld test rows, penalty %g "
           "(val RMSE %.4f)\n",
           F, (long long)n[0], fraction < 1.0 ? " (fraction)" : "", (long long)n[1],
           (long long)n[2], lam, vrmse);
    printf("  %-8s %-8s %-8s %-8s %-8s\n", "SRCC", "PLCC", "ACC", "RMSE", "MAE");
    printf("  %-8.4f %-8.4f %-8.4f %-8.4f %-8.4f\n", rm.srcc, rm.plcc, rm.acc, rm.rmse, rm.mae);
    if (A > 0) {
        printf("retrieval on test (recall, %%):\n");
        printf("  %-16s %6s %7s %7s %7s %7s\n", "attribute", "n", "i2t@1", "i2t@5", "t2i@1", "t2i@5");
        for (int a = 0; a < A; a++)
            printf("  %-16s %6lld %7.1f %7.1f %7.1f %7.1f\n", ds.attr_names[a], (long long)rt[a].n,
                   100 * rt[a].r[0], 100 * rt[a].r[1], 100 * rt[a].r[2], 100 * rt[a].r[3]);
    }
    if (finetune) {
        printf("EMD fine-tune: %lld train / %lld val / %lld test rows with votes, %d epochs "
               "(best on val: %d), %.0f s\n",
               (long long)fr.n[0], (long long)fr.n[1], (long long)fr.n[2], fc.epochs,
               fr.best_epoch, fr.seconds);
        printf("  %-8s %-8s %-8s %-8s %-8s %-8s %-8s\n", "EMD1", "EMD2", "SRCC", "PLCC", "ACC",
               "RMSE", "MAE");
        printf("  %-8.4f %-8.4f %-8.4f %-8.4f %-8.4f %-8.4f %-8.4f\n", fr.emd1, fr.emd2, fr.rm.srcc,
               fr.rm.plcc, fr.rm.acc, fr.rm.rmse, fr.rm.mae);
        printf("  (the train rows' mean distribution for every image: EMD1 %.4f, EMD2 %.4f)\n",
               fr.base_emd1, fr.base_emd2);
    }
    if (predictions) {
        char tmp[4200];
        FILE *f = out_open(predictions, "--predictions", tmp, sizeof tmp);
        fprintf(f, "row,score,probe");
        if (finetune) {
            fprintf(f, ",finetune");
            for (int k = 1; k <= AES_NBINS; k++) fprintf(f, ",p%d", k);
        }
        fprintf(f, "\n");
        int64_t j = 0; /* the next fine-tuned test row */
        for (int64_t k = 0; k < n[2]; k++) {
            const int64_t r = rows[2][k];
            fprintf(f, "%lld,%.9g,%.9g", (long long)r, ys[2][k], pred[k]);
            if (finetune) {
                if (j < ft_n[2] && ft_rows[2][j] == r) {
                    const float *p = ft_dist + (size_t)j * AES_NBINS;
                    double mu = 0;
                    for (int b = 0; b < AES_NBINS; b++) mu += (b + 1) * (double)p[b];
                    fprintf(f, ",%.9g", mu);
                    for (int b = 0; b < AES_NBINS; b++) fprintf(f, ",%.9g", p[b]);
                    j++;
                } else {
                    for (int b = 0; b <= AES_NBINS; b++) fprintf(f, ",");
                }
            }
            fprintf(f, "\n");
        }
        out_close(f, predictions, "--predictions", tmp);
    }
    if (json) {
        char tmp[4200];
        FILE *f = out_open(json, "--json", tmp, sizeof tmp);
        fprintf(f, "{");
        json_num(f, "srcc", rm.srcc, ", ");
        json_num(f, "plcc", rm.plcc, ", ");
        json_num(f, "acc", rm.acc, ", ");
        json_num(f, "rmse", rm.rmse, ", ");
        json_num(f, "mae", rm.mae, ", ");
        if (finetune) {
            json_num(f, "emd1", fr.emd1, ", ");
            json_num(f, "emd2", fr.emd2, ", ");
            fprintf(f, "\"finetune\": {");
            json_num(f, "emd1", fr.emd1, ", ");
            json_num(f, "emd2", fr.emd2, ", ");
            json_num(f, "srcc", fr.rm.srcc, ", ");
            json_num(f, "plcc", fr.rm.plcc, ", ");
            json_num(f, "acc", fr.rm.acc, ", ");
            json_num(f, "rmse", fr.rm.rmse, ", ");
            json_num(f, "mae", fr.rm.mae, ", ");
            json_num(f, "baseline_emd1", fr.base_emd1, ", ");
            json_num(f, "baseline_emd2", fr.base_emd2, ", ");
            json_num(f, "val_emd2", fr.val_emd2, ", ");
            fprintf(f, "\"best_epoch\": %d, \"epochs\": %d, \"batch\": %d, ", fr.best_epoch,
                    fc.epochs, fc.batch);
            json_num(f, "lr", fc.lr, ", ");
            json_num(f, "head_lr", fc.head_lr, ", ");
            json_num(f, "weight_decay", fc.weight_decay, ", ");
            fprintf(f, "\"n_train\": %lld, \"n_val\": %lld, \"n_test\": %lld}, ",
                    (long long)fr.n[0], (long long)fr.n[1], (long long)fr.n[2]);
        }
        fprintf(f, "\"n_train\": %lld, \"n_val\": %lld, \"n_test\": %lld, ", (long long)n[0],
                (long long)n[1], (long long)n[2]);
        json_num(f, "penalty", lam, ", ");
        json_num(f, "val_rmse", vrmse, ", ");
        json_num(f, "train_fraction", fraction, ", ");
        fprintf(f, "\"seed\": %llu, \"features\": %d, \"step\": %lld, \"checkpoint\": ",
                (unsigned long long)seed, F, (long long)step);
        json_str(f, ckpt);
        fprintf(f, ", \"data\": ");
        json_str(f, data);
        fprintf(f, ", \"version\": \"%s\", \"retrieval\": {", AESNET_GIT_REV);
        static const char *keys[4] = {"i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"};
        for (int a = 0; a < A; a++) {
            fprintf(f, "%s", a ? ", " : "");
            json_str(f, ds.attr_names[a]);
            fprintf(f, ": {");
            for (int k = 0; k < 4; k++) json_num(f, keys[k], rt[a].r[k], ", ");
            fprintf(f, "\"n\": %lld}", (long long)rt[a].n);
        }
        fprintf(f, "}}\n");
        out_close(f, json, "--json", tmp);
    }

    for (int s = 0; s < 3; s++) {
        free(ft_rows[s]);
        free(rows[s]);
        free(Xs[s]);
        free(ys[s]);
    }
    free(w);
    free(pred);
    free(ft_dist);
    free(rt);
    free(tx);
    free(ty);
    free(tm);
    aes_embedder_free(&e);
    aes_model_free(&m);
    aes_dataset_close(&ds);
    cli_mpi_finalize();
    return 0;
}
