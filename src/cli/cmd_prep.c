/*
 * aesnet prep: data set tools. Dispatches to build, synth, info, bench.
 */
#include <stdio.h>
#include <string.h>

#include "aesnet/core.h"
#include "cli/cli.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: aesnet prep <command> [options]\n"
            "\n"
            "commands:\n"
            "  build   make a data set from a folder of images and a JSON Lines manifest\n"
            "  synth   generate the embedded demo data set (rendered scenes with known attributes)\n"
            "  info    validate a data set and print its summary\n"
            "  bench   measure the training reader's throughput (run under mpirun for many ranks)\n"
            "\n"
            "aesnet prep <command> --help describes each one.\n");
}

int cmd_prep(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "build")) return cmd_prep_build(argc - 1, argv + 1);
    if (!strcmp(sub, "synth")) return cmd_prep_synth(argc - 1, argv + 1);
    if (!strcmp(sub, "info")) return cmd_prep_info(argc - 1, argv + 1);
    if (!strcmp(sub, "bench")) return cmd_prep_bench(argc - 1, argv + 1);
    aes_user_error("prep: unknown command '%s' (try aesnet prep --help)", sub);
}
