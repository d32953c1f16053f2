/*
 * Drives the training reader under mpirun for the W-ranks tests.
 *   loader_check DATA.h5 GLOBAL_BATCH STEPS SEED OUT.txt
 * Every rank loads its shard of STEPS global batches; rank 0 gathers one
 * record per sample (row and hashes of its image, drawn tokens, mask and
 * features), sorts each step's records by row and writes them to OUT.txt.
 * Runs with W = 1, 2, 3 must write identical files. Rank 0 also checks
 * that each step's union over ranks is exactly that step's global batch,
 * with no row twice, and that an epoch never repeats a row; it exits 1 on
 * any failure.
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/loader.h"
#include "cli/cli.h"

typedef struct {
    int64_t row;
    uint64_t image, tokens, mask, hash, feature;
    float score;
    int32_t label;
} rec;

static int cmp_rec(const void *a, const void *b)
{
    int64_t x = ((const rec *)a)->row, y = ((const rec *)b)->row;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    cli_install_fatal_hook();
    cli_mpi_init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc != 6) aes_user_error("usage: loader_check DATA.h5 GLOBAL_BATCH STEPS SEED OUT.txt");
    aes_dataset ds;
    aes_dataset_open(&ds, argv[1]);
    aes_loader_cfg cfg;
    aes_loader_cfg_defaults(&cfg);
    cfg.global_batch = atol(argv[2]);
    cfg.seed = (uint64_t)atol(argv[4]);
    cfg.rank = rank;
    cfg.world = world;
    cfg.workers = 2; /* several workers must not change what a step holds */
    const int steps = atoi(argv[3]);
    aes_loader *ld = aes_loader_open(&ds, &cfg);
    const int64_t Bg = cfg.global_batch, spe = aes_loader_steps_per_epoch(ld);
    const int B = (int)(Bg / world);

    rec *mine = aes_malloc(sizeof(rec) * (size_t)B, "records");
    rec *all = aes_malloc(sizeof(rec) * (size_t)Bg, "records");
    int64_t *want = aes_malloc(sizeof(int64_t) * (size_t)Bg, "rows");
    int64_t *seen = aes_calloc((size_t)ds.N, sizeof(int64_t), "seen");
    FILE *out = rank == 0 ? fopen(argv[5], "w") : NULL;
    if (rank == 0 && !out) aes_user_error("%s: cannot write", argv[5]);
    int failures = 0;
    for (int s = 0; s < steps; s++) {
        const aes_batch *b = aes_loader_next(ld);
        if (b->step != s) failures++;
        const size_t img = (size_t)3 * b->R * b->R;
        for (int i = 0; i < B; i++) {
            rec *r = &mine[i];
            memset(r, 0, sizeof *r);
            r->row = b->row[i];
            r->image = aes_fnv1a(b->images + i * img, sizeof(float) * img);
            for (int a = 0; a < b->A; a++) {
                r->tokens ^= aes_hash64(aes_fnv1a(b->tokens + ((size_t)a * B + i) * b->L,
                                                  sizeof(int32_t) * (size_t)b->L) + (uint64_t)a);
                r->mask = r->mask * 2 + b->mask[(size_t)a * B + i];
                r->hash ^= aes_hash64(b->hash[(size_t)a * B + i] + (uint64_t)a);
            }
            if (b->features) r->feature = aes_fnv1a(b->features + (size_t)i * b->F, sizeof(float) * (size_t)b->F);
            r->score = b->scores[i];
            r->label = b->labels[i];
        }
        MPI_Gather(mine, (int)(sizeof(rec) * (size_t)B), MPI_BYTE, all, (int)(sizeof(rec) * (size_t)B),
                   MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rank != 0) continue;
        qsort(all, (size_t)Bg, sizeof(rec), cmp_rec);
        aes_loader_global_rows(ld, s, want);
        qsort(want, (size_t)Bg, sizeof(int64_t), cmp_i64);
        for (int64_t i = 0; i < Bg; i++) {
            if (all[i].row != want[i]) {
                fprintf(stderr, "step %d: rank union differs from the global batch\n", s);
                failures++;
                break;
            }
            if (i > 0 && all[i].row == all[i - 1].row) {
                fprintf(stderr, "step %d: row %lld twice\n", s, (long long)all[i].row);
                failures++;
            }
            if (ds.split[all[i].row] != AES_SPLIT_TRAIN) {
                fprintf(stderr, "step %d: row %lld is not in the train split\n", s, (long long)all[i].row);
                failures++;
            }
            int64_t epoch = s / spe;
            if (seen[all[i].row] == epoch + 1) {
                fprintf(stderr, "epoch %lld repeats row %lld\n", (long long)epoch, (long long)all[i].row);
                failures++;
            }
            seen[all[i].row] = epoch + 1;
            fprintf(out, "%d %lld %016llx %016llx %llx %016llx %016llx %.6f %d\n", s,
                    (long long)all[i].row, (unsigned long long)all[i].image,
                    (unsigned long long)all[i].tokens, (unsigned long long)all[i].mask,
                    (unsigned long long)all[i].hash, (unsigned long long)all[i].feature,
                    all[i].score, all[i].label);
        }
    }
    if (rank == 0) {
        fclose(out);
        printf("loader_check: %d ranks, %d steps of %lld (%lld per epoch): %s\n", world, steps,
               (long long)Bg, (long long)spe, failures ? "FAILED" : "ok");
    }
    MPI_Bcast(&failures, 1, MPI_INT, 0, MPI_COMM_WORLD);
    aes_loader_close(ld);
    aes_dataset_close(&ds);
    free(mine);
    free(all);
    free(want);
    free(seen);
    cli_mpi_finalize();
    return failures ? 1 : 0;
}
