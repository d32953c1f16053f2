/*
 * Image decoding (JPEG via libjpeg-turbo, PNG via libpng) to 8-bit RGB, and
 * the resize used to build data sets: the shorter side is scaled to S, then
 * the centre S x S is cropped. Downscaling averages exact pixel areas (each
 * output pixel is the area-weighted mean of the source pixels it covers);
 * upscaling is bilinear with pixel centres at +0.5 (align_corners = false).
 */
#ifndef AESNET_IMAGE_H
#define AESNET_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "aesnet/core.h"

typedef struct {
    int w, h;     /* pixels */
    uint8_t *rgb; /* [h, w, 3] */
} aes_image;

/* Decode a JPEG or PNG file (detected from its first bytes, not its name).
 * Grey, palette, 16-bit and alpha inputs become 8-bit RGB (alpha dropped).
 * Returns 0, or -1 with a one-line reason in err (no path in it). */
int aes_image_load(const char *path, aes_image *img, aes_err *err);
/* Same, from bytes in memory. */
int aes_image_decode(const uint8_t *data, size_t n, aes_image *img, aes_err *err);
void aes_image_free(aes_image *img);

/* Resize the shorter side of src [h, w, 3] to S and crop the centre S x S
 * into dst [S, S, 3]. */
void aes_image_resize_crop(const uint8_t *src, int w, int h, uint8_t *dst, int S);

/* General separable resize of a float image [h, w, C] (HWC) to [oh, ow, C]
 * from the source window (x0, y0, cw, ch), area filter when shrinking and
 * bilinear when growing, per axis. Used by augmentation and by the above. */
void aes_image_resample_f32(const float *src, int w, int h, int C, double x0, double y0,
                            double cw, double ch, float *dst, int ow, int oh);

/* Write 8-bit RGB as PNG (for tests and for looking at the demo data). */
int aes_image_write_png(const char *path, const uint8_t *rgb, int w, int h, aes_err *err);

#endif
