/* Shared by the layer files, not part of the public API. */
#ifndef AESNET_NN_INTERNAL_H
#define AESNET_NN_INTERNAL_H

/* OpenBLAS to one thread while OpenMP threads call it (one thread pool at
 * a time: the two pools spinning on two cores slow each other down).
 * Returns the count to restore, 0 when nothing was changed. Only the
 * pthread build of OpenBLAS needs it: the OpenMP build already runs
 * single-threaded inside a parallel region, and there
 * openblas_set_num_threads would set OpenMP's own thread count. */
int aes_blas_serial_begin(void);
void aes_blas_serial_end(int saved);

#endif
