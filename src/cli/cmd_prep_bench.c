/*
 * aesnet prep bench: throughput of the training reader, per rank.
 * Run under mpirun to see W ranks read their shards at once.
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"
#include "aesnet/dataset.h"
#include "aesnet/loader.h"
#include "aesnet_build_info.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: [mpirun -np W] aesnet prep bench FILE.h5 [options]\n"
            "\n"
            "Read, augment and normalise training batches as `aesnet train` does, with no\n"
            "model, and report images/s per rank.\n"
            "\n"
            "  --batch B        local batch per rank (default 64; global = B x W)\n"
            "  --steps N        timed steps (default 20, after 2 untimed)\n"
            "  --size R         output image side (default: the stored size)\n"
            "  --no-augment     no random resized crop or flip\n"
            "  --workers T      loader threads per rank (default 1)\n"
            "  --prefetch P     batches built ahead (default 2)\n"
            "  --seed K         (default 0)\n"
            "  --json OUT       also write the figures as JSON\n");
}

int cmd_prep_bench(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *path = NULL, *json = NULL;
    int B = 64, steps = 20, warm = 2;
    aes_loader_cfg cfg;
    aes_loader_cfg_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            if (rank == 0) usage(stdout);
            cli_mpi_finalize();
            return 0;
        } else if (!strcmp(a, "--batch")) B = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 1 << 20);
        else if (!strcmp(a, "--steps")) steps = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 1 << 30);
        else if (!strcmp(a, "--size")) cfg.out_size = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 8, 4096);
        else if (!strcmp(a, "--no-augment")) cfg.augment = 0;
        else if (!strcmp(a, "--workers")) cfg.workers = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 256);
        else if (!strcmp(a, "--prefetch")) cfg.prefetch = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 256);
        else if (!strcmp(a, "--seed")) cfg.seed = (uint64_t)cli_parse_long(a, cli_need_value(argc, argv, &i), 0, INT64_MAX);
        else if (!strcmp(a, "--json")) json = cli_need_value(argc, argv, &i);
        else if (a[0] == '-') aes_user_error("prep bench: unknown option '%s' (try --help)", a);
        else if (!path) path = a;
        else aes_user_error("prep bench: one data set at a time ('%s' is extra)", a);
    }
    if (!path) aes_user_error("prep bench: which data set? (aesnet prep bench FILE.h5)");
    aes_dataset ds;
    aes_dataset_open(&ds, path);
    cfg.global_batch = (int64_t)B * world;
    cfg.rank = rank;
    cfg.world = world;
    aes_loader *ld = aes_loader_open(&ds, &cfg);
    const int R = cfg.out_size > 0 ? cfg.out_size : ds.S;

    for (int s = 0; s < warm; s++) aes_loader_next(ld);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = aes_now(), w0 = aes_loader_wait_seconds(ld);
    double checksum = 0;
    for (int s = 0; s < steps; s++) {
        const aes_batch *b = aes_loader_next(ld);
        checksum += b->images[0]; /* touch the data so nothing is optimised away */
    }
    double el = aes_now() - t0;
    double rate = (double)B * steps / el;
    double *all = rank == 0 ? aes_malloc(sizeof(double) * (size_t)world, "rates") : NULL;
    MPI_Gather(&rate, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    (void)w0;
    if (rank == 0) {
        double mn = all[0], mx = all[0], sum = 0;
        for (int r = 0; r < world; r++) {
            sum += all[r];
            if (all[r] < mn) mn = all[r];
            if (all[r] > mx) mx = all[r];
        }
        printf("reader bench: %s, stored %dx%d -> %dx%d, augment %s, %d worker(s)/rank, batch %d/rank, %d ranks, %d steps\n",
               path, ds.S, ds.S, R, R, cfg.augment ? "on" : "off", cfg.workers, B, world, steps);
        printf("images/s per rank: mean %.1f, min %.1f, max %.1f; all ranks %.1f\n", sum / world,
               mn, mx, sum);
        if (json) {
            FILE *f = fopen(json, "w");
            if (!f) aes_user_error("%s: cannot write (--json)", json);
            fprintf(f,
                    "{\"data\": \"%s\", \"stored_size\": %d, \"size\": %d, \"augment\": %s, \"workers\": %d, "
                    "\"batch_per_rank\": %d, \"ranks\": %d, \"steps\": %d, \"images_per_s_per_rank\": [",
                    path, ds.S, R, cfg.augment ? "true" : "false", cfg.workers, B, world, steps);
            for (int r = 0; r < world; r++) fprintf(f, "%s%.3f", r ? ", " : "", all[r]);
            fprintf(f, "], \"images_per_s_total\": %.3f, \"version\": \"%s\"}\n", sum, AESNET_GIT_REV);
            if (fclose(f) != 0) aes_user_error("%s: cannot write (--json)", json);
        }
        free(all);
    }
    if (checksum != checksum) aes_warn("non-finite pixel in the benchmark batches");
    aes_loader_close(ld);
    aes_dataset_close(&ds);
    cli_mpi_finalize();
    return 0;
}
