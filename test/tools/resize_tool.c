/*
 * resize_tool IN OUT.png S: decode IN (JPEG or PNG), resize its shorter
 * side to S and crop the centre S x S (aes_image_resize_crop), write PNG.
 * With S = 0 the decoded image is written unchanged, so a test can compare
 * the decoder itself against another one. Used by
 * test/py/test_image_reference.py.
 */
#include <stdio.h>
#include <stdlib.h>

#include "aesnet/image.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: resize_tool IN OUT.png S (S = 0: decode only)\n");
        return 2;
    }
    char *end;
    long S = strtol(argv[3], &end, 10);
    if (*end || S < 0 || S > 30000) {
        fprintf(stderr, "resize_tool: bad size '%s'\n", argv[3]);
        return 2;
    }
    aes_err err;
    aes_image img;
    if (aes_image_load(argv[1], &img, &err) != 0) {
        fprintf(stderr, "resize_tool: %s: %s\n", argv[1], err.msg);
        return 1;
    }
    int rc = 0;
    if (S == 0) {
        rc = aes_image_write_png(argv[2], img.rgb, img.w, img.h, &err);
    } else {
        uint8_t *out = aes_malloc((size_t)S * S * 3, "resized image");
        aes_image_resize_crop(img.rgb, img.w, img.h, out, (int)S);
        rc = aes_image_write_png(argv[2], out, (int)S, (int)S, &err);
        free(out);
    }
    aes_image_free(&img);
    if (rc != 0) {
        fprintf(stderr, "resize_tool: %s: %s\n", argv[2], err.msg);
        return 1;
    }
    return 0;
}
