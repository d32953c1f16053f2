/*
 * aesnet train CONFIG [--set key=value ...] [--resume auto|PATH]
 * Data-parallel AesNet pre-training over the ranks of MPI_COMM_WORLD.
 */
#include <dirent.h>
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/checkpoint.h"
#include "aesnet/config.h"
#include "aesnet/core.h"
#include "aesnet/nn.h"
#include "aesnet/restore.h"
#include "aesnet/train.h"
#include "cli/cli.h"

void aes_train_request_stop(int sig);

static void usage(FILE *f)
{
    fprintf(f,
            "usage: [mpirun -np W | srun] aesnet train CONFIG [options]\n"
            "\n"
            "AesNet pre-training on the data set named by data.train in the libconfig file\n"
            "CONFIG, with the contrastive and affinity losses over the global batch of all\n"
            "ranks; checkpoints and metrics.csv go to run.out_dir.\n"
            "\n"
            "  --set key=value      override a config key (libconfig syntax; repeatable),\n"
            "                       e.g. --set train.steps=100 --set model.fusion=\\\"none\\\"\n"
            "  --resume auto|PATH   continue from a checkpoint (auto: the newest complete one\n"
            "                       in run.out_dir/checkpoints, or a fresh start if none)\n"
            "  --help-config        every config key with its type, default and meaning\n"
            "\n"
            "Stopping: SIGTERM or SIGUSR1, a file run.out_dir/STOP, or train.max_walltime\n"
            "nearly spent: every rank finishes the step, a checkpoint is written, and the\n"
            "exit code is %d (requeue me) after a signal or the walltime, 0 after STOP.\n",
            AES_EXIT_REQUEUE);
}

static void on_signal(int sig) { aes_train_request_stop(sig); }

/* Checkpoints of a later step than the one resumed from belong to a run
 * that is being redone (or are broken): move them aside, so they are not
 * taken for this run's newest after the next interruption. */
static void set_aside_later(const char *out_dir, int64_t step)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoints", out_dir);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail[8];
        if (sscanf(e->d_name, "step_%lld.h%1[5]%1s", &s, tail, tail + 2) != 2 || s <= step) continue;
        char from[4500], to[4600];
        snprintf(from, sizeof from, "%s/%s", dir, e->d_name);
        snprintf(to, sizeof to, "%s.stale", from);
        if (rename(from, to) == 0) aes_warn("moved %s aside to %s: later than the resumed step", from, to);
    }
    closedir(d);
}

int cmd_train(int argc, char **argv)
{
    cli_mpi_init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *cfg_path = NULL, *resume = NULL;
    const char **sets = aes_calloc((size_t)argc, sizeof(char *), "overrides");
    int nsets = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            if (rank == 0) usage(stdout);
            cli_mpi_finalize();
            return 0;
        } else if (!strcmp(a, "--help-config")) {
            if (rank == 0) aes_config_print_doc(stdout);
            cli_mpi_finalize();
            return 0;
        } else if (!strcmp(a, "--set")) sets[nsets++] = cli_need_value(argc, argv, &i);
        else if (!strcmp(a, "--resume")) resume = cli_need_value(argc, argv, &i);
        else if (a[0] == '-') aes_user_error("train: unknown option '%s' (try --help)", a);
        else if (!cfg_path) cfg_path = a;
        else aes_user_error("train: one config file at a time ('%s' is extra)", a);
    }
    if (!cfg_path) aes_user_error("train: which config? (aesnet train CONFIG; see configs/)");
    aes_err berr;
    if (aes_blas_selfcheck(&berr) != 0) {
        const char *ct = getenv("OPENBLAS_CORETYPE");
        aes_user_error("OpenBLAS's %s kernels compute wrong results on this CPU (%s)%s",
                       aes_blas_core(), berr.msg,
                       ct ? ": unset OPENBLAS_CORETYPE or pick another core type" : "");
    }

    conv2d_path(); /* a bad AESNET_CONV stops here, before anything is written */

    aes_config want;
    cli_load_config(&want, cfg_path, sets, nsets);
    aes_config_validate(&want);

    /* Which checkpoint, if any: rank 0 looks, everyone gets its answer. */
    char ckpt[4096] = "";
    if (resume) {
        if (!strcmp(resume, "auto")) {
            if (rank == 0 && !aes_ckpt_find_latest(want.out_dir, ckpt, sizeof ckpt)) ckpt[0] = 0;
            MPI_Bcast(ckpt, sizeof ckpt, MPI_CHAR, 0, MPI_COMM_WORLD);
            if (!ckpt[0] && rank == 0)
                aes_log("no checkpoint in %s/checkpoints: starting fresh", want.out_dir);
        } else {
            snprintf(ckpt, sizeof ckpt, "%s", resume);
        }
    }
    aes_config cfg = want;
    if (ckpt[0]) {
        /* The checkpoint's configuration rules; only run-length and output
         * keys may change. */
        aes_ckpt_meta meta;
        aes_config saved;
        aes_ckpt_read_config(ckpt, &meta, &saved);
        char diff[4096];
        int n = aes_config_diff(&saved, &want, diff, sizeof diff);
        if (n > 0) {
            char *save = NULL;
            for (char *key = strtok_r(diff, ",", &save); key; key = strtok_r(NULL, ",", &save)) {
                while (*key == ' ') key++;
                if (!aes_config_key_resumable(key))
                    aes_user_error("%s: %s differs from the checkpoint %s; only run length and "
                                   "output keys may change on resume",
                                   cfg_path, key, ckpt);
            }
        }
        cfg = saved;
        cfg.steps = want.steps;
        cfg.ckpt_every = want.ckpt_every;
        cfg.keep_last = want.keep_last;
        cfg.log_every = want.log_every;
        cfg.val_every = want.val_every;
        cfg.max_walltime = want.max_walltime;
        snprintf(cfg.out_dir, sizeof cfg.out_dir, "%s", want.out_dir);
        snprintf(cfg.path, sizeof cfg.path, "%s", want.path);
        if (meta.step >= cfg.steps && rank == 0)
            aes_log("%s is at step %lld of %lld: nothing to do", ckpt, (long long)meta.step,
                    (long long)cfg.steps);
        if (rank == 0) aes_log("resuming from %s (step %lld)", ckpt, (long long)meta.step);
        if (rank == 0) set_aside_later(want.out_dir, meta.step);
    }
    char *text = aes_config_to_text(&cfg);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    aes_trainer t;
    aes_trainer_init(&t, &cfg, ckpt[0] ? ckpt : NULL, MPI_COMM_WORLD);
    /* Printed once every check has passed: what this run really uses. */
    if (rank == 0) {
        printf("# resolved configuration\n%s", text);
        fflush(stdout);
    }
    int code = aes_trainer_run(&t, text);
    aes_trainer_free(&t);
    free(text);
    free(sets);
    cli_mpi_finalize();
    return code;
}
