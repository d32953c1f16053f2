/*
 * The command-line layer: one file per subcommand. Only this layer parses
 * arguments, installs the fatal-error hook and decides the exit code.
 */
#ifndef AESNET_CLI_H
#define AESNET_CLI_H

#include <stdint.h>

int cmd_prep(int argc, char **argv);
int cmd_prep_build(int argc, char **argv);
int cmd_prep_synth(int argc, char **argv);
int cmd_prep_info(int argc, char **argv);
int cmd_prep_bench(int argc, char **argv);

struct aes_dataset;
/* Print a data set's summary (what `prep info` shows) with n examples. */
void prep_print_summary(struct aes_dataset *ds, int examples);
/* After prep build/synth: reopen the new file and print its summary (and a
 * warning if descriptions were cut), unless --quiet. */
void prep_report_output(const char *path);
/* Show progress of a long loop on stderr, at most about once a second. */
typedef struct {
    const char *what;
    int64_t total;
    double t0, last;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *what, int64_t total);
void cli_progress_update(cli_progress *p, int64_t done);
void cli_progress_end(cli_progress *p, int64_t done);
/* Whether argv[i] is --help or -h. */
int cli_is_help(const char *arg);
int cmd_version(void);
int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_ckpt(int argc, char **argv);

/* Install the fatal-error hook; mpi: whether MPI is (or will be) initialised. */
void cli_install_fatal_hook(void);
/* Initialise MPI for subcommands that run on ranks; sets the log rank. */
void cli_mpi_init(int *argc, char ***argv);
void cli_mpi_finalize(void);

/* Load a config file over the defaults, apply n `key=value` overrides and
 * run the cross-key checks. */
struct aes_config;
void cli_load_config(struct aes_config *c, const char *path, const char *const *sets, int n);

/* Argument helpers: report bad values as user errors naming the flag. */
long cli_parse_long(const char *flag, const char *value, long lo, long hi);
double cli_parse_double(const char *flag, const char *value, double lo, double hi);
const char *cli_need_value(int argc, char **argv, int *i);

#endif
