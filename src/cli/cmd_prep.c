#include "aesnet/core.h"
#include "cli/cli.h"
int cmd_prep(int argc, char **argv) { (void)argc; (void)argv; aes_user_error("prep: not yet"); }
