/*
 * CUDA runtime queries: what the build was compiled against and what the
 * machine offers at run time (driver, devices). A machine without a GPU or
 * driver is reported, not treated as a fault.
 */
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int aes_cuda_describe(char *out, size_t cap)
{
    int rt = 0, drv = 0, ndev = 0;
    cudaRuntimeGetVersion(&rt);
    cudaError_t e = cudaDriverGetVersion(&drv);
    if (e != cudaSuccess || drv == 0) {
        snprintf(out, cap, "CUDA runtime %d.%d (built for sm_80, sm_90); no CUDA driver on this machine",
                 rt / 1000, (rt % 1000) / 10);
        return 0;
    }
    e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess) {
        snprintf(out, cap, "CUDA runtime %d.%d, driver %d.%d; no usable GPU (%s)", rt / 1000,
                 (rt % 1000) / 10, drv / 1000, (drv % 1000) / 10, cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    snprintf(out, cap, "CUDA runtime %d.%d, driver %d.%d, %d GPU(s)", rt / 1000, (rt % 1000) / 10,
             drv / 1000, (drv % 1000) / 10, ndev);
    return ndev;
}
