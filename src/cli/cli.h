/*
 * The command-line layer: one file per subcommand. Only this layer parses
 * arguments, installs the fatal-error hook and decides the exit code.
 */
#ifndef AESNET_CLI_H
#define AESNET_CLI_H

int cmd_prep(int argc, char **argv);
int cmd_version(void);

/* Install the fatal-error hook; mpi: whether MPI is (or will be) initialised. */
void cli_install_fatal_hook(void);
/* Initialise MPI for subcommands that run on ranks; sets the log rank. */
void cli_mpi_init(int *argc, char ***argv);
void cli_mpi_finalize(void);

/* Argument helpers: report bad values as user errors naming the flag. */
long cli_parse_long(const char *flag, const char *value, long lo, long hi);
double cli_parse_double(const char *flag, const char *value, double lo, double hi);
const char *cli_need_value(int argc, char **argv, int *i);

#endif
