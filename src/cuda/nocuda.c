/* The CUDA entry points of a build configured with AESNET_CUDA=OFF: the
 * queries say so, and asking for a GPU is refused with that reason. */
#include <stdio.h>

#include "aesnet/gpu.h"

int aes_cuda_describe(char *out, size_t cap);
int aes_cuda_describe(char *out, size_t cap)
{
    snprintf(out, cap, "not built with CUDA (configure with -DAESNET_CUDA=ON)");
    return 0;
}

int aes_gpu_available(char *why, size_t cap)
{
    snprintf(why, cap, "this aesnet was built without CUDA (configure with -DAESNET_CUDA=ON)");
    return 0;
}

int aes_gpu_init(aes_gpu *g, int local_rank, aes_gpu_math math, aes_err *err)
{
    (void)g, (void)local_rank, (void)math;
    aes_err_set(err, "this aesnet was built without CUDA (configure with -DAESNET_CUDA=ON)");
    return -1;
}

aes_gpu *aes_gpu_current(void) { return NULL; }
