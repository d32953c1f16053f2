/*
 * aesnet: the single executable. Dispatches to one subcommand per file.
 */
#include <stdio.h>
#include <string.h>

#include "aesnet/core.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet <command> [options]\n"
            "\n"
            "commands:\n"
            "  prep      build, generate, inspect and benchmark data sets (aesnet prep --help)\n"
            "  train     AesNet pre-training over MPI ranks (aesnet train --help)\n"
            "  bench     time the phases of a few training steps (aesnet bench --help)\n"
            "  embed     features and embeddings of every row of a data set (aesnet embed --help)\n"
            "  eval      ridge probe and retrieval of a frozen encoder (aesnet eval --help)\n"
            "  ckpt      inspect and compare checkpoints, export the image encoder (aesnet ckpt --help)\n"
            "\n"
            "options:\n"
            "  --version   code version, build flags and library versions\n"
            "  --help      this text\n");
}

int main(int argc, char **argv)
{
    cli_install_fatal_hook();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) return cmd_version();
    if (!strcmp(cmd, "prep")) return cmd_prep(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed")) return cmd_embed(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "ckpt")) return cmd_ckpt(argc - 1, argv + 1);
    aes_user_error("unknown command '%s' (try aesnet --help)", cmd);
}
