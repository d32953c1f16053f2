/* The CUDA queries in a build configured with AESNET_CUDA=OFF. */
#include <stdio.h>

int aes_cuda_describe(char *out, size_t cap);
int aes_cuda_describe(char *out, size_t cap)
{
    snprintf(out, cap, "not built with CUDA (configure with -DAESNET_CUDA=ON)");
    return 0;
}
