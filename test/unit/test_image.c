/*
 * Image decoding and resampling: hand-computed area and bilinear values,
 * invariants of the resize, PNG round trips, colour-type conversions
 * (grey, grey+alpha, RGBA, palette, 16-bit, grey and CMYK JPEG) and the
 * error messages for truncated, corrupt, foreign and empty input.
 */
#define _GNU_SOURCE
#include "aesnet/image.h"

#include <jpeglib.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static char g_dir[] = "/tmp/aesnet_test_image_XXXXXX";

static void path_in_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g_dir, name);
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ---- writers for test inputs (independent of the code under test) ---- */

/* Write PNG bytes of any colour type and bit depth; rows already packed. */
static int write_png_raw(const char *path, int w, int h, int ctype, int depth,
                         uint8_t *const *rows, const png_color *pal, int npal)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    png_write_image(png, (png_bytepp)rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return 0;
}

/* Encode a JPEG into memory; comps 1 (grey), 3 (RGB) or 4 (CMYK). */
static unsigned char *encode_jpeg(const uint8_t *pix, int w, int h, int comps, int quality,
                                  unsigned long *n)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *buf = NULL;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    *n = 0;
    jpeg_mem_dest(&ci, &buf, n);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return buf;
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* ---- resampling ------------------------------------------------------ */

static void test_constant_stays_constant(void)
{
    /* Any window, any direction, any channel count: weights sum to one. */
    const int sizes[][4] = {{37, 23, 224, 224}, {512, 384, 224, 224}, {5, 3, 17, 40},
                            {300, 7, 13, 13},   {1, 1, 8, 8},         {64, 64, 64, 64}};
    const double windows[][4] = {{0, 0, 1, 1}, {0.3, 0.7, 0.5, 0.25}, {0.25, 0.1, 0.7, 0.9}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1], ow = sizes[s][2], oh = sizes[s][3];
        for (int C = 1; C <= 4; C++) {
            float *src = malloc(sizeof(float) * w * h * C);
            float *dst = malloc(sizeof(float) * ow * oh * C);
            for (int i = 0; i < w * h * C; i++) src[i] = 37.25f + (float)(i % C);
            for (size_t k = 0; k < sizeof windows / sizeof windows[0]; k++) {
                const double *wf = windows[k];
                aes_image_resample_f32(src, w, h, C, wf[0] * w, wf[1] * h, wf[2] * w, wf[3] * h,
                                       dst, ow, oh);
                double worst = 0;
                for (int i = 0; i < ow * oh * C; i++) {
                    double d = fabs(dst[i] - (37.25 + i % C));
                    if (d > worst) worst = d;
                }
                CHECK_MSG(worst < 1e-4, "%dx%d C=%d -> %dx%d window %zu: off by %g", w, h, C, ow,
                          oh, k, worst);
            }
            free(src);
            free(dst);
        }
        uint8_t *s8 = malloc((size_t)w * h * 3);
        memset(s8, 201, (size_t)w * h * 3);
        int S = ow;
        uint8_t *d8 = malloc((size_t)S * S * 3);
        aes_image_resize_crop(s8, w, h, d8, S);
        int all = 1;
        for (int i = 0; i < S * S * 3; i++) all &= d8[i] == 201;
        CHECK_MSG(all, "resize_crop %dx%d -> %d not constant", w, h, S);
        free(s8);
        free(d8);
    }
}

static void test_area_halving(void)
{
    /* 4 x 4, one channel, halved: each output is its 2 x 2 block mean. */
    const float src[16] = {1, 2, 10, 20,  //
                           3, 4, 30, 40,  //
                           5, 7, 0, 100,  //
                           9, 11, 0, 200};
    const float want[4] = {2.5f, 25, 8, 75};
    float dst[4];
    aes_image_resample_f32(src, 4, 4, 1, 0, 0, 4, 4, dst, 2, 2);
    for (int i = 0; i < 4; i++) CHECK_NEAR(dst[i], want[i], 1e-5);

    /* 3 -> 2 on one axis: each output covers 1.5 pixels, the middle one
     * split in half: (a + b/2) / 1.5 and (b/2 + c) / 1.5. */
    const float row[3] = {3, 6, 12};
    float out[2];
    aes_image_resample_f32(row, 3, 1, 1, 0, 0, 3, 1, out, 2, 1);
    CHECK_NEAR(out[0], (3 + 3) / 1.5, 1e-5);
    CHECK_NEAR(out[1], (3 + 12) / 1.5, 1e-5);

    /* A window at a fractional offset: [0.5, 2.5) onto one pixel is
     * (0.5 * 3 + 6 + 0.5 * 12) / 2. */
    aes_image_resample_f32(row, 3, 1, 1, 0.5, 0, 2, 1, out, 1, 1);
    CHECK_NEAR(out[0], (1.5 + 6 + 6) / 2, 1e-5);

    /* The uint8 path: the same 4 x 4 (plus c in channel c) halved by
     * resize_crop, block means rounded half up. */
    uint8_t s8[4 * 4 * 3], d8[2 * 2 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++) s8[(y * 4 + x) * 3 + c] = (uint8_t)(src[y * 4 + x] + c);
    aes_image_resize_crop(s8, 4, 4, d8, 2);
    const int want8[4] = {3, 25, 8, 75};
    for (int i = 0; i < 4; i++) {
        CHECK(d8[i * 3] == want8[i]);
        CHECK(d8[i * 3 + 1] == (int)floor(want[i] + 1 + 0.5));
        CHECK(d8[i * 3 + 2] == (int)floor(want[i] + 2 + 0.5));
    }
}

static void test_bilinear_upscale(void)
{
    /* 2 x 2 -> 4 x 4: sample positions (i + 0.5) / 2 - 0.5 =
     * -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1) per axis. */
    const float src[4] = {0, 4, 8, 12};
    const float want[16] = {0, 1, 3,  4,  //
                            2, 3, 5,  6,  //
                            6, 7, 9,  10, //
                            8, 9, 11, 12};
    float dst[16];
    aes_image_resample_f32(src, 2, 2, 1, 0, 0, 2, 2, dst, 4, 4);
    for (int i = 0; i < 16; i++) CHECK_NEAR(dst[i], want[i], 1e-5);

    /* Identity: same size, integer window, bilinear at exact centres. */
    float img[5 * 3 * 2], out[5 * 3 * 2];
    for (int i = 0; i < 30; i++) img[i] = (float)(i * i % 17);
    aes_image_resample_f32(img, 5, 3, 2, 0, 0, 5, 3, out, 5, 3);
    int same = 1;
    for (int i = 0; i < 30; i++) same &= fabsf(out[i] - img[i]) < 1e-6f;
    CHECK(same);

    /* The window [1, 3) of a 3-pixel row onto 4 pixels: positions
     * 1 + (i + 0.5) / 2 - 0.5 = 0.75, 1.25, 1.75, 2.25 (clamped to 2). */
    const float row[3] = {0, 10, 30};
    float o4[4];
    aes_image_resample_f32(row, 3, 1, 1, 1, 0, 2, 1, o4, 4, 1);
    CHECK_NEAR(o4[0], 7.5, 1e-5);
    CHECK_NEAR(o4[1], 15, 1e-5);
    CHECK_NEAR(o4[2], 25, 1e-5);
    CHECK_NEAR(o4[3], 30, 1e-5);
}

static void test_resize_crop_geometry(void)
{
    /* A 6 x 2 image whose columns are 0, 10, .., 50 resized to S = 2: the
     * window is columns 2..3 (x0 = 2), a copy. */
    uint8_t src[2 * 6 * 3], dst[2 * 2 * 3];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 6; x++)
            for (int c = 0; c < 3; c++) src[(y * 6 + x) * 3 + c] = (uint8_t)(10 * x);
    aes_image_resize_crop(src, 6, 2, dst, 2);
    CHECK(dst[0] == 20 && dst[3] == 30 && dst[6] == 20 && dst[9] == 30);
    /* 5 x 2 to S = 2: x0 = 1.5, so columns cover [1.5, 2.5) and [2.5, 3.5):
     * (10 + 20) / 2 = 15 and (20 + 30) / 2 = 25. */
    uint8_t src5[2 * 5 * 3];
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 5; x++)
            for (int c = 0; c < 3; c++) src5[(y * 5 + x) * 3 + c] = (uint8_t)(10 * x);
    aes_image_resize_crop(src5, 5, 2, dst, 2);
    CHECK_MSG(dst[0] == 15 && dst[3] == 25, "%d %d", dst[0], dst[3]);
}

/* ---- decoding --------------------------------------------------------- */

static void test_png_round_trip(void)
{
    int w = 37, h = 23;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    uint32_t s = 7;
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)lcg(&s);
    char path[256];
    path_in_dir(path, sizeof path, "rt.png");
    aes_err err = {{0}};
    CHECK(aes_image_write_png(path, rgb, w, h, &err) == 0);
    aes_image img;
    int rc = aes_image_load(path, &img, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(img.w == w && img.h == h);
        CHECK(memcmp(img.rgb, rgb, (size_t)w * h * 3) == 0);
        aes_image_free(&img);
    }
    CHECK(img.rgb == NULL);
    free(rgb);
}

static void test_png_colour_types(void)
{
    enum { W = 9, H = 5 };
    char path[256];
    aes_err err = {{0}};
    aes_image img;
    uint8_t buf[H][W * 8];
    uint8_t *rows[H];
    for (int y = 0; y < H; y++) rows[y] = buf[y];
    uint32_t s = 11;
    for (int y = 0; y < H; y++)
        for (int i = 0; i < W * 8; i++) buf[y][i] = (uint8_t)lcg(&s);

    /* grey 8-bit: R = G = B = grey */
    path_in_dir(path, sizeof path, "grey.png");
    CHECK(write_png_raw(path, W, H, PNG_COLOR_TYPE_GRAY, 8, rows, NULL, 0) == 0);
    CHECK(aes_image_load(path, &img, &err) == 0);
    int ok = img.w == W && img.h == H;
    for (int y = 0; ok && y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) ok &= img.rgb[(y * W + x) * 3 + c] == buf[y][x];
    CHECK_MSG(ok, "grey PNG");
    aes_image_free(&img);

    /* grey + alpha: alpha dropped */
    path_in_dir(path, sizeof path, "greya.png");
    CHECK(write_png_raw(path, W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, rows, NULL, 0) == 0);
    CHECK(aes_image_load(path, &img, &err) == 0);
    ok = img.w == W && img.h == H;
    for (int y = 0; ok && y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) ok &= img.rgb[(y * W + x) * 3 + c] == buf[y][2 * x];
    CHECK_MSG(ok, "grey+alpha PNG");
    aes_image_free(&img);

    /* RGBA: alpha dropped, colour untouched (not premultiplied) */
    path_in_dir(path, sizeof path, "rgba.png");
    CHECK(write_png_raw(path, W, H, PNG_COLOR_TYPE_RGB_ALPHA, 8, rows, NULL, 0) == 0);
    CHECK(aes_image_load(path, &img, &err) == 0);
    ok = img.w == W && img.h == H;
    for (int y = 0; ok && y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) ok &= img.rgb[(y * W + x) * 3 + c] == buf[y][4 * x + c];
    CHECK_MSG(ok, "RGBA PNG");
    aes_image_free(&img);

    /* 16-bit RGB: the high byte of each (big-endian) sample */
    path_in_dir(path, sizeof path, "rgb16.png");
    CHECK(write_png_raw(path, W, H, PNG_COLOR_TYPE_RGB, 16, rows, NULL, 0) == 0);
    CHECK(aes_image_load(path, &img, &err) == 0);
    ok = img.w == W && img.h == H;
    for (int y = 0; ok && y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) ok &= img.rgb[(y * W + x) * 3 + c] == buf[y][6 * x + 2 * c];
    CHECK_MSG(ok, "16-bit RGB PNG");
    aes_image_free(&img);

    /* palette, 4-bit indices */
    png_color pal[16];
    for (int i = 0; i < 16; i++)
        pal[i] = (png_color){(png_byte)(i * 16), (png_byte)(255 - i), (png_byte)(i * 7)};
    path_in_dir(path, sizeof path, "pal.png");
    CHECK(write_png_raw(path, W, H, PNG_COLOR_TYPE_PALETTE, 4, rows, pal, 16) == 0);
    CHECK(aes_image_load(path, &img, &err) == 0);
    ok = img.w == W && img.h == H;
    for (int y = 0; ok && y < H; y++)
        for (int x = 0; x < W; x++) {
            int idx = (buf[y][x / 2] >> (x % 2 ? 0 : 4)) & 15;
            const uint8_t *p = img.rgb + (y * W + x) * 3;
            ok &= p[0] == pal[idx].red && p[1] == pal[idx].green && p[2] == pal[idx].blue;
        }
    CHECK_MSG(ok, "palette PNG");
    aes_image_free(&img);

    /* 1-bit grey: 0 -> 0, 1 -> 255 */
    path_in_dir(path, sizeof path, "bw.png");
    CHECK(write_png_raw(path, W, H, PNG_COLOR_TYPE_GRAY, 1, rows, NULL, 0) == 0);
    CHECK(aes_image_load(path, &img, &err) == 0);
    ok = img.w == W && img.h == H;
    for (int y = 0; ok && y < H; y++)
        for (int x = 0; x < W; x++) {
            int bit = (buf[y][x / 8] >> (7 - x % 8)) & 1;
            ok &= img.rgb[(y * W + x) * 3] == (bit ? 255 : 0);
        }
    CHECK_MSG(ok, "1-bit PNG");
    aes_image_free(&img);
}

static void test_jpeg(void)
{
    enum { W = 64, H = 48 };
    aes_err err = {{0}};
    aes_image img;
    /* a smooth RGB image survives quality 100 within a few levels */
    uint8_t *rgb = malloc(W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            rgb[(y * W + x) * 3] = (uint8_t)(x * 3);
            rgb[(y * W + x) * 3 + 1] = (uint8_t)(y * 4);
            rgb[(y * W + x) * 3 + 2] = (uint8_t)(100 + x + y);
        }
    unsigned long n;
    unsigned char *jpg = encode_jpeg(rgb, W, H, 3, 100, &n);
    int rc = aes_image_decode(jpg, n, &img, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        CHECK(img.w == W && img.h == H);
        int worst = 0;
        for (int i = 0; i < W * H * 3; i++) {
            int d = abs(img.rgb[i] - rgb[i]);
            if (d > worst) worst = d;
        }
        CHECK_MSG(worst <= 4, "JPEG q100 off by %d", worst);
        aes_image_free(&img);
    }

    /* truncated: half the bytes */
    rc = aes_image_decode(jpg, n / 2, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(strcmp(err.msg, "truncated JPEG") == 0, "'%s'", err.msg);
    CHECK(img.rgb == NULL);
    /* truncated inside the header */
    rc = aes_image_decode(jpg, 20, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(strcmp(err.msg, "truncated JPEG") == 0, "'%s'", err.msg);
    /* and through the file path */
    char path[256];
    path_in_dir(path, sizeof path, "half.jpg");
    CHECK(write_file(path, jpg, n / 2) == 0);
    rc = aes_image_load(path, &img, &err);
    CHECK(rc == -1 && strcmp(err.msg, "truncated JPEG") == 0);

    /* corrupt: the JPEG magic followed by garbage */
    uint8_t bad[600];
    memcpy(bad, jpg, 3);
    uint32_t s = 3;
    for (size_t i = 3; i < sizeof bad; i++) bad[i] = (uint8_t)lcg(&s);
    rc = aes_image_decode(bad, sizeof bad, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(starts_with(err.msg, "corrupt JPEG: ") && strlen(err.msg) > 14, "'%s'", err.msg);
    /* a damaged frame header (SOF precision byte) is an error, not a warning */
    unsigned char *dam = malloc(n);
    memcpy(dam, jpg, n);
    for (unsigned long i = 2; i + 4 < n; i++)
        if (dam[i] == 0xFF && dam[i + 1] == 0xC0) {
            dam[i + 4] = 3; /* sample precision */
            break;
        }
    rc = aes_image_decode(dam, n, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(starts_with(err.msg, "corrupt JPEG: "), "'%s'", err.msg);
    free(dam);
    free(jpg);

    /* grey JPEG: R = G = B */
    uint8_t grey[W * H];
    for (int i = 0; i < W * H; i++) grey[i] = (uint8_t)(i % W * 4);
    jpg = encode_jpeg(grey, W, H, 1, 95, &n);
    rc = aes_image_decode(jpg, n, &img, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        int ok = 1, worst = 0;
        for (int i = 0; i < W * H; i++) {
            ok &= img.rgb[3 * i] == img.rgb[3 * i + 1] && img.rgb[3 * i] == img.rgb[3 * i + 2];
            int d = abs(img.rgb[3 * i] - grey[i]);
            if (d > worst) worst = d;
        }
        CHECK(ok);
        CHECK_MSG(worst <= 6, "grey JPEG off by %d", worst);
        aes_image_free(&img);
    }
    free(jpg);

    /* CMYK JPEG, Adobe (inverted) convention: R = C K / 255 on the stored
     * values. A constant image: (200, 100, 255, 128) -> (100, 50, 128). */
    uint8_t *cmyk = malloc(W * H * 4);
    for (int i = 0; i < W * H; i++) {
        cmyk[4 * i] = 200;
        cmyk[4 * i + 1] = 100;
        cmyk[4 * i + 2] = 255;
        cmyk[4 * i + 3] = 128;
    }
    jpg = encode_jpeg(cmyk, W, H, 4, 100, &n);
    rc = aes_image_decode(jpg, n, &img, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc == 0) {
        const uint8_t *p = img.rgb + (H / 2 * W + W / 2) * 3;
        CHECK_MSG(abs(p[0] - 100) <= 2 && abs(p[1] - 50) <= 2 && abs(p[2] - 128) <= 2,
                  "CMYK -> %d %d %d", p[0], p[1], p[2]);
        aes_image_free(&img);
    }
    free(jpg);
    free(cmyk);
    free(rgb);
}

static void test_bad_input(void)
{
    aes_err err = {{0}};
    aes_image img;
    char path[256];

    /* truncated PNG */
    int w = 40, h = 30;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    uint32_t s = 5;
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)lcg(&s);
    path_in_dir(path, sizeof path, "full.png");
    CHECK(aes_image_write_png(path, rgb, w, h, &err) == 0);
    FILE *f = fopen(path, "rb");
    uint8_t data[16384];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    CHECK(n > 100 && n < sizeof data);
    int rc = aes_image_decode(data, n / 2, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(strcmp(err.msg, "truncated PNG") == 0, "'%s'", err.msg);
    path_in_dir(path, sizeof path, "half.png");
    CHECK(write_file(path, data, n / 2) == 0);
    rc = aes_image_load(path, &img, &err);
    CHECK(rc == -1 && strcmp(err.msg, "truncated PNG") == 0);
    /* cut just after the signature */
    rc = aes_image_decode(data, 12, &img, &err);
    CHECK(rc == -1 && strcmp(err.msg, "truncated PNG") == 0);

    /* corrupt PNG: flip a byte inside IDAT, the CRC catches it */
    for (size_t i = 8; i + 8 < n; i++)
        if (memcmp(data + i, "IDAT", 4) == 0) {
            data[i + 10] ^= 0x55;
            break;
        }
    rc = aes_image_decode(data, n, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(starts_with(err.msg, "corrupt PNG: "), "'%s'", err.msg);
    CHECK(img.rgb == NULL);
    free(rgb);

    /* random garbage */
    uint8_t junk[1000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)lcg(&s);
    junk[0] = 'G'; /* never a JPEG or PNG magic */
    rc = aes_image_decode(junk, sizeof junk, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(strcmp(err.msg, "not a JPEG or PNG file") == 0, "'%s'", err.msg);
    path_in_dir(path, sizeof path, "junk.jpg");
    CHECK(write_file(path, junk, sizeof junk) == 0);
    rc = aes_image_load(path, &img, &err);
    CHECK(rc == -1 && strcmp(err.msg, "not a JPEG or PNG file") == 0);
    /* two bytes of a JPEG magic are not enough */
    const uint8_t two[2] = {0xFF, 0xD8};
    CHECK(aes_image_decode(two, 2, &img, &err) == -1);
    CHECK(strcmp(err.msg, "not a JPEG or PNG file") == 0);

    /* empty file */
    path_in_dir(path, sizeof path, "empty.png");
    CHECK(write_file(path, "", 0) == 0);
    rc = aes_image_load(path, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(strcmp(err.msg, "empty file") == 0, "'%s'", err.msg);
    CHECK(aes_image_decode(junk, 0, &img, &err) == -1 && strcmp(err.msg, "empty file") == 0);

    /* missing file and directory */
    path_in_dir(path, sizeof path, "no_such.png");
    rc = aes_image_load(path, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(strcmp(err.msg, "cannot read: No such file or directory") == 0, "'%s'", err.msg);
    rc = aes_image_load(g_dir, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(starts_with(err.msg, "cannot read: "), "'%s'", err.msg);

    /* oversized: a PNG header claiming 40000 x 10 */
    uint8_t row[40000 * 3 / 8 + 8];
    memset(row, 0, sizeof row);
    uint8_t *rows[10];
    for (int i = 0; i < 10; i++) rows[i] = row;
    path_in_dir(path, sizeof path, "wide.png");
    CHECK(write_png_raw(path, 40000, 10, PNG_COLOR_TYPE_GRAY, 1, rows, NULL, 0) == 0);
    rc = aes_image_load(path, &img, &err);
    CHECK(rc == -1);
    CHECK_MSG(starts_with(err.msg, "image too large"), "'%s'", err.msg);
}

int main(void)
{
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_constant_stays_constant();
    test_area_halving();
    test_bilinear_upscale();
    test_resize_crop_geometry();
    test_png_round_trip();
    test_png_colour_types();
    test_jpeg();
    test_bad_input();

    const char *names[] = {"rt.png",    "grey.png", "greya.png", "rgba.png",  "rgb16.png",
                           "pal.png",   "bw.png",   "half.jpg",  "full.png",  "half.png",
                           "junk.jpg",  "empty.png", "wide.png"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_in_dir(path, sizeof path, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
    return check_report();
}
