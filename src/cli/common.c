/*
 * What every subcommand shares: the fatal-error hook, MPI start-up and
 * argument parsing helpers.
 */
#include <errno.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aesnet/config.h"
#include "aesnet/core.h"
#include "aesnet/h5.h"
#include "cli/cli.h"

static int mpi_size(void)
{
    int init = 0, fin = 0, size = 1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &size);
    else return 0;
    return size;
}

static void fatal_hook(aes_err_kind kind, const char *file, int line, const char *func,
                       const char *msg)
{
    int size = mpi_size();
    if (kind == AES_ERR_USER && !aes_user_errors_collective() && size > 1) {
        /* Found by this rank alone (during training): the others would wait
         * for it in a collective forever. */
        fprintf(stderr, "aesnet: error (rank %d): %s\n", aes_rank(), msg);
        fflush(NULL);
        MPI_Abort(MPI_COMM_WORLD, 1);
        _exit(1);
    }
    if (kind == AES_ERR_USER) {
        /* User errors are found identically on every rank before work starts:
         * rank 0 speaks, everyone exits cleanly. */
        if (aes_rank() <= 0) fprintf(stderr, "aesnet: error: %s\n", msg);
        fflush(NULL);
        /* MPI_Finalize ends HDF5 too: hold its lock so that no loader
         * thread is inside the library, or enters it, meanwhile (unless
         * a thread that failed too holds it, parked in aes_fatal). */
        aes_h5_lock_within(2.0);
        if (size > 0) MPI_Finalize();
        /* _exit: HDF5's exit handler would try to flush files that just
         * failed to write (and were unlinked) and crash on the way out. */
        _exit(1);
    }
    if (aes_rank() >= 0)
        fprintf(stderr, "aesnet: rank %d: internal error at %s:%d (%s): %s\n", aes_rank(), file,
                line, func, msg);
    else
        fprintf(stderr, "aesnet: internal error at %s:%d (%s): %s\n", file, line, func, msg);
    fflush(NULL);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, 2);
    _exit(2);
}

void cli_install_fatal_hook(void) { aes_set_fatal_hook(fatal_hook); }

void cli_mpi_init(int *argc, char ***argv)
{
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        aes_internal_error("MPI_Init_thread failed");
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    aes_set_rank(rank);
}

void cli_mpi_finalize(void)
{
    if (mpi_size() > 0) MPI_Finalize();
}

const char *cli_need_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) aes_user_error("option %s needs a value", argv[*i]);
    *i += 1;
    return argv[*i];
}

long cli_parse_long(const char *flag, const char *value, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end)
        aes_user_error("%s: '%s' is not an integer", flag, value);
    if (v < lo || v > hi) aes_user_error("%s: %ld is out of range [%ld, %ld]", flag, v, lo, hi);
    return v;
}

double cli_parse_double(const char *flag, const char *value, double lo, double hi)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end)
        aes_user_error("%s: '%s' is not a number", flag, value);
    if (!(v >= lo && v <= hi)) aes_user_error("%s: %g is out of range [%g, %g]", flag, v, lo, hi);
    return v;
}

int cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

void cli_progress_start(cli_progress *p, const char *what, int64_t total)
{
    p->what = what;
    p->total = total;
    p->t0 = p->last = aes_now();
}

static void progress_line(cli_progress *p, int64_t done, double now)
{
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "%s: %lld/%lld images, %.0f images/s, elapsed %.0f s, ETA %.0f s\n", p->what,
            (long long)done, (long long)p->total, rate, el, eta);
    fflush(stderr);
}

void cli_progress_update(cli_progress *p, int64_t done)
{
    if (aes_log_get_level() < AES_LOG_INFO) return;
    double now = aes_now();
    if (now - p->last < 1.0) return;
    p->last = now;
    progress_line(p, done, now);
}

void cli_progress_end(cli_progress *p, int64_t done)
{
    if (aes_log_get_level() < AES_LOG_INFO) return;
    progress_line(p, done, aes_now());
}

void cli_load_config(aes_config *c, const char *path, const char *const *sets, int n)
{
    aes_config_defaults(c);
    aes_config_load(c, path);
    for (int k = 0; k < n; k++) aes_config_set(c, sets[k]);
}
