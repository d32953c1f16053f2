/*
 * Prints the documentation of every configuration key (the table in
 * configs/README.md; test_config checks that the README holds it as the
 * code prints it now). Regenerate with: build/test/config_doc
 */
#include <stdio.h>

#include "aesnet/config.h"

int main(void)
{
    aes_config_print_doc(stdout);
    return 0;
}
