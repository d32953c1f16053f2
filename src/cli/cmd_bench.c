/*
 * aesnet bench CONFIG: a few training steps, timed phase by phase (data
 * wait, forward, all-gather, loss, reduce-scatter, backward, gradient
 * all-reduce, optimizer), reported as a table and, with --json, for the
 * scaling drivers (jobs/bench-train.sh) to parse. Writes nothing else.
 */
#include <mpi.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/config.h"
#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "aesnet/train.h"
#include "aesnet_build_info.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: [mpirun -np W] aesnet bench CONFIG [options]\n"
            "\n"
            "Run a few AesNet training steps of CONFIG (no checkpoints, no metrics file) and\n"
            "report images/s and the time of each phase of a step, averaged over ranks.\n"
            "\n"
            "  --set key=value   override a config key (repeatable)\n"
            "  --steps N         timed steps (default 5, after 2 untimed)\n"
            "  --json OUT        also write the figures as JSON\n");
}

enum { P_DATA, P_FWD, P_GATHER, P_LOSS, P_SCATTER, P_BWD, P_ALLREDUCE, P_OPT, P_N };
static const char *names[P_N] = {"data_wait", "forward", "all_gather", "loss", "reduce_scatter",
                                 "backward", "all_reduce", "optimizer"};

int cmd_bench(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *cfg_path = NULL, *json = NULL;
    int steps = 5, warm = 2;
    aes_config cfg;
    const char **sets = aes_calloc((size_t)argc, sizeof(char *), "overrides");
    int nsets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            if (rank == 0) usage(stdout);
            cli_mpi_finalize();
            return 0;
        } else if (!strcmp(a, "--set")) sets[nsets++] = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--steps")) steps = (int)cli_parse_long(a, cli_need_value(argc, argv, &i), 1, 100000);
        else if (!strcmp(a, "--json")) json = cli_need_value(argc, argv, &i);
        else if (a[0] == '-') aes_user_error("bench: unknown option '%s' (try --help)", a);
        else if (!cfg_path) cfg_path = a;
        else aes_user_error("bench: one config file at a time ('%s' is extra)", a);
    }
    if (!cfg_path) aes_user_error("bench: which config? (aesnet bench CONFIG)");
    cli_load_config(&cfg, cfg_path, sets, nsets);
    cfg.steps = warm + steps;
    if (cfg.warmup > cfg.steps) cfg.warmup = 0;
    aes_config_validate(&cfg);

    aes_trainer t;
    aes_trainer_init(&t, &cfg, NULL, MPI_COMM_WORLD);
    double ph[P_N] = {0};
    double total = 0;
    for (int s = 0; s < warm + steps; s++) {
        aes_dist *d = &t.dist;
        double g0 = d->t_gather, s0 = d->t_scatter, a0 = d->t_grads, m0 = d->t_small;
        aes_step_stats st;
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = aes_now();
        aes_trainer_step(&t, &st);
        double el = aes_now() - t0;
        if (s < warm) continue;
        double gather = d->t_gather - g0, scatter = d->t_scatter - s0, grads = d->t_grads - a0,
               small = d->t_small - m0;
        ph[P_DATA] += st.t_data;
        ph[P_FWD] += st.t_forward;
        ph[P_GATHER] += gather;
        ph[P_LOSS] += st.t_loss - gather - scatter;
        ph[P_SCATTER] += scatter;
        ph[P_BWD] += st.t_backward;
        ph[P_ALLREDUCE] += grads + small;
        ph[P_OPT] += st.t_update;
        total += el;
    }
    /* Averages over ranks, and the slowest rank's step time. */
    double avg[P_N], worst = total;
    MPI_Allreduce(ph, avg, P_N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    const double step_s = worst / steps, ips = (double)cfg.global_batch / step_s;
    if (rank == 0) {
        printf("aesnet bench %s: %d rank(s) x %d threads, global batch %lld, %d timed steps, BLAS %s\n",
               cfg_path, world, omp_get_max_threads(), (long long)cfg.global_batch, steps, aes_blas_core());
        printf("  %.1f ms per step, %.1f images/s (%.1f per rank)\n", 1e3 * step_s, ips, ips / world);
        for (int p = 0; p < P_N; p++)
            printf("  %-15s %9.2f ms  %5.1f%%\n", names[p], 1e3 * avg[p] / world / steps,
                   100 * avg[p] / world / steps / step_s);
        if (json) {
            FILE *f = fopen(json, "w");
            if (!f) aes_user_error("%s: cannot write (--json)", json);
            fprintf(f, "{\"config\": \"%s\", \"ranks\": %d, \"threads\": %d, \"global_batch\": %lld, "
                       "\"steps\": %d, \"step_ms\": %.4f, \"images_per_s\": %.4f, "
                       "\"images_per_s_per_rank\": %.4f, \"blas_core\": \"%s\", \"version\": \"%s\", "
                       "\"breakdown_ms\": {",
                    cfg_path, world, omp_get_max_threads(), (long long)cfg.global_batch, steps,
                    1e3 * step_s, ips, ips / world, aes_blas_core(), AESNET_GIT_REV);
            for (int p = 0; p < P_N; p++)
                fprintf(f, "%s\"%s\": %.4f", p ? ", " : "", names[p], 1e3 * avg[p] / world / steps);
            fprintf(f, "}}\n");
            if (fclose(f) != 0) aes_user_error("%s: cannot write (--json)", json);
        }
    }
    aes_trainer_free(&t);
    free(sets);
    cli_mpi_finalize();
    return 0;
}
