/*
 * Image decoding (JPEG through libjpeg-turbo, PNG through libpng) to 8-bit
 * RGB, the separable area/bilinear resampler, the data-set resize
 * (shorter side to S, centre crop) and a PNG writer.
 *
 * Decoding never exits or prints: the libraries' error handlers longjmp
 * back here and their message goes into the caller's aes_err. Everything
 * is reentrant (no globals), so loader threads may decode concurrently.
 */
#define _GNU_SOURCE
#include "aesnet/image.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

/* Larger images are almost certainly hostile or broken, and one would
 * take gigabytes to decode. */
#define AES_IMAGE_MAX_DIM 30000

static int dims_ok(long w, long h, aes_err *err)
{
    if (w <= 0 || h <= 0) {
        aes_err_set(err, "image has no pixels (%ld x %ld)", w, h);
        return 0;
    }
    if (w > AES_IMAGE_MAX_DIM || h > AES_IMAGE_MAX_DIM) {
        aes_err_set(err, "image too large (%ld x %ld, limit %d x %d)", w, h, AES_IMAGE_MAX_DIM,
                    AES_IMAGE_MAX_DIM);
        return 0;
    }
    return 1;
}

/* The pixel buffer comes from malloc, not aes_malloc: a huge image in a
 * data set is bad input to report, not a reason to stop the run. */
static uint8_t *alloc_pixels(int w, int h, aes_err *err)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    if (!p) aes_err_set(err, "out of memory for a %d x %d image", w, h);
    return p;
}

/* ---- JPEG ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jb;
    int truncated;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err_ctx;

static void jpeg_on_error(j_common_ptr ci)
{
    jpeg_err_ctx *e = (jpeg_err_ctx *)ci->err;
    (*ci->err->format_message)(ci, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings are silent, except that running out of data is an error: the
 * library would otherwise pad the image with grey and carry on. */
static void jpeg_on_message(j_common_ptr ci, int level)
{
    jpeg_err_ctx *e = (jpeg_err_ctx *)ci->err;
    if (level < 0) {
        if (ci->err->msg_code == JWRN_JPEG_EOF) {
            e->truncated = 1;
            longjmp(e->jb, 1);
        }
        ci->err->num_warnings++;
    }
}

static void jpeg_on_output(j_common_ptr ci) { (void)ci; }

static int decode_jpeg(const uint8_t *data, size_t n, aes_image *img, aes_err *err)
{
    struct jpeg_decompress_struct ci;
    jpeg_err_ctx je;
    uint8_t *volatile pix = NULL;
    uint8_t *volatile cmyk_row = NULL;
    volatile int failed_dims = 0;

    memset(&je, 0, sizeof je);
    ci.err = jpeg_std_error(&je.pub);
    je.pub.error_exit = jpeg_on_error;
    je.pub.emit_message = jpeg_on_message;
    je.pub.output_message = jpeg_on_output;
    if (setjmp(je.jb)) {
        jpeg_destroy_decompress(&ci);
        free(pix);
        free(cmyk_row);
        if (failed_dims) return -1; /* err already set */
        if (je.truncated)
            aes_err_set(err, "truncated JPEG");
        else
            aes_err_set(err, "corrupt JPEG: %s", je.msg);
        return -1;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, data, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);

    if (!dims_ok((long)ci.image_width, (long)ci.image_height, err)) {
        failed_dims = 1;
        longjmp(je.jb, 1);
    }
    /* libjpeg-turbo converts grey and YCbCr to RGB itself but not CMYK;
     * those come out as CMYK and are converted below. */
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    ci.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&ci);

    int w = (int)ci.output_width, h = (int)ci.output_height;
    if (ci.output_components != (cmyk ? 4 : 3)) {
        snprintf(je.msg, sizeof je.msg, "unexpected %d output components",
                 ci.output_components);
        longjmp(je.jb, 1);
    }
    pix = alloc_pixels(w, h, err);
    if (!pix) {
        failed_dims = 1;
        longjmp(je.jb, 1);
    }
    if (cmyk) {
        cmyk_row = malloc((size_t)w * 4);
        if (!cmyk_row) {
            aes_err_set(err, "out of memory for a %d x %d image", w, h);
            failed_dims = 1;
            longjmp(je.jb, 1);
        }
    }
    while (ci.output_scanline < ci.output_height) {
        int y = (int)ci.output_scanline;
        if (!cmyk) {
            JSAMPROW rows[16];
            int k = 0;
            for (; k < 16 && y + k < h; k++) rows[k] = pix + (size_t)(y + k) * w * 3;
            jpeg_read_scanlines(&ci, rows, (JDIMENSION)k);
        } else {
            JSAMPROW row = cmyk_row;
            if (jpeg_read_scanlines(&ci, &row, 1) != 1) continue;
            /* CMYK JPEGs are stored inverted (Adobe's convention, 255 = no
             * ink); like PIL and browsers, assume that whatever the
             * markers say. Naive CMYK -> RGB: R = (1 - C)(1 - K). */
            uint8_t *o = pix + (size_t)y * w * 3;
            for (int x = 0; x < w; x++) {
                unsigned c = cmyk_row[4 * x], m = cmyk_row[4 * x + 1], yy = cmyk_row[4 * x + 2],
                         k = cmyk_row[4 * x + 3];
                o[3 * x] = (uint8_t)((c * k + 127) / 255);
                o[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
                o[3 * x + 2] = (uint8_t)((yy * k + 127) / 255);
            }
        }
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    free(cmyk_row);
    img->w = w;
    img->h = h;
    img->rgb = pix;
    return 0;
}

/* ---- PNG ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *data;
    size_t n, pos;
    jmp_buf jb;
    int truncated;
    char msg[256];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown error");
    longjmp(c->jb, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, size_t len)
{
    png_ctx *c = png_get_io_ptr(png);
    if (len > c->n - c->pos) {
        c->truncated = 1;
        png_error(png, "truncated");
    }
    memcpy(out, c->data + c->pos, len);
    c->pos += len;
}

static int decode_png(const uint8_t *data, size_t n, aes_image *img, aes_err *err)
{
    png_ctx c;
    png_structp png;
    png_infop info;
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    volatile int err_set = 0;

    memset(&c, 0, sizeof c);
    c.data = data;
    c.n = n;
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error, png_on_warning);
    info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        aes_err_set(err, "cannot create a PNG reader");
        return -1;
    }
    if (setjmp(c.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        if (err_set) return -1;
        if (c.truncated)
            aes_err_set(err, "truncated PNG");
        else
            aes_err_set(err, "corrupt PNG: %s", c.msg);
        return -1;
    }
    png_set_read_fn(png, &c, png_read_mem);
    png_read_info(png, info);

    png_uint_32 w32, h32;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w32, &h32, &depth, &ctype, &interlace, NULL, NULL);
    if (!dims_ok((long)w32, (long)h32, err)) {
        err_set = 1;
        longjmp(c.jb, 1);
    }
    int w = (int)w32, h = (int)h32;
    /* Everything becomes 8-bit RGB. 16-bit samples keep their high byte
     * (as PIL does); tRNS transparency is ignored since alpha is dropped
     * anyway; gamma chunks are ignored, as by PIL and torchvision. */
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3)
        png_error(png, "unexpected row size after conversion to RGB");

    pix = alloc_pixels(w, h, err);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!pix || !rows) {
        if (pix) aes_err_set(err, "out of memory for a %d x %d image", w, h);
        err_set = 1;
        longjmp(c.jb, 1);
    }
    for (int y = 0; y < h; y++) rows[y] = pix + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    img->w = w;
    img->h = h;
    img->rgb = pix;
    return 0;
}

/* ---- decode entry points ------------------------------------------------ */

int aes_image_decode(const uint8_t *data, size_t n, aes_image *img, aes_err *err)
{
    static const uint8_t png_sig[8] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A};
    img->w = img->h = 0;
    img->rgb = NULL;
    if (n == 0) {
        aes_err_set(err, "empty file");
        return -1;
    }
    if (n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(data, n, img, err);
    if (n >= 8 && memcmp(data, png_sig, 8) == 0) return decode_png(data, n, img, err);
    aes_err_set(err, "not a JPEG or PNG file");
    return -1;
}

int aes_image_load(const char *path, aes_image *img, aes_err *err)
{
    img->w = img->h = 0;
    img->rgb = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        char buf[128];
        aes_err_set(err, "cannot read: %s", strerror_r(errno, buf, sizeof buf));
        return -1;
    }
    struct stat st;
    const char *why = NULL;
    char buf[128];
    if (fstat(fd, &st) != 0)
        why = strerror_r(errno, buf, sizeof buf);
    else if (S_ISDIR(st.st_mode))
        why = "is a directory";
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    if (why) {
        close(fd);
        aes_err_set(err, "cannot read: %s", why);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    if (n == 0) {
        close(fd);
        aes_err_set(err, "empty file");
        return -1;
    }
    uint8_t *data = malloc(n);
    if (!data) {
        close(fd);
        aes_err_set(err, "out of memory reading a %zu-byte file", n);
        return -1;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, data + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            char buf[128];
            aes_err_set(err, "cannot read: %s", strerror_r(errno, buf, sizeof buf));
            close(fd);
            free(data);
            return -1;
        }
        if (r == 0) break; /* shrank while we read: decode what is there */
        got += (size_t)r;
    }
    close(fd);
    int rc = aes_image_decode(data, got, img, err);
    free(data);
    return rc;
}

void aes_image_free(aes_image *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

/* ---- resampling ----------------------------------------------------------- */

/* Per-axis filter: output i reads source pixels start[i] .. start[i] +
 * count[i] - 1 with weights wt[i * K ..], which sum to one. T > 0 when
 * every count is T (see axis_equalise). */
typedef struct {
    int *start, *count;
    float *wt;
    int K, T;
} axis_filter;

/* Window [x0, x0 + c) of an axis of n source pixels (pixel j covers
 * [j, j + 1)) onto o output pixels.
 *
 * Shrinking (c > o): output i covers [x0 + i c/o, x0 + (i + 1) c/o) and is
 *   the mean of the source over that interval, each pixel weighted by its
 *   overlap (partial at both ends).
 * Otherwise: bilinear at s = x0 + (i + 0.5) c/o - 0.5, s clamped to
 *   [0, n - 1], between floor(s) and the next pixel (torch's
 *   interpolate(mode='bilinear', align_corners=False) when the window is
 *   the whole axis).
 * Parts of a window outside the image read the edge pixel. */
static int axis_taps(double c, int o) { return c > o ? (int)ceil(c / o) + 2 : 2; }

static void axis_build(axis_filter *f, int n, double x0, double c, int o)
{
    int K = f->K;
    if (c > o) {
        for (int i = 0; i < o; i++) {
            double a = x0 + (double)i * c / o, b = x0 + (double)(i + 1) * c / o;
            float *w = f->wt + (size_t)i * K;
            int cnt = 0, st = 0;
            double sum = 0;
            for (long j = (long)floor(a); j < (long)ceil(b); j++) {
                double ov = fmin(b, (double)j + 1) - fmax(a, (double)j);
                if (ov <= 1e-9) continue;
                int jj = j < 0 ? 0 : j >= n ? n - 1 : (int)j;
                if (cnt == 0) {
                    st = jj;
                    w[cnt++] = 0;
                }
                while (cnt <= jj - st) w[cnt++] = 0;
                w[jj - st] += (float)ov;
                sum += ov;
            }
            if (cnt == 0) { /* degenerate window: read the nearest pixel */
                long j = (long)floor(a);
                st = j < 0 ? 0 : j >= n ? n - 1 : (int)j;
                w[0] = 1;
                cnt = 1;
                sum = 1;
            }
            for (int k = 0; k < cnt; k++) w[k] = (float)(w[k] / sum);
            f->start[i] = st;
            f->count[i] = cnt;
        }
    } else {
        double scale = c / o;
        for (int i = 0; i < o; i++) {
            double s = x0 + (i + 0.5) * scale - 0.5;
            if (s < 0) s = 0;
            if (s > n - 1) s = n - 1;
            int j0 = (int)floor(s);
            float *w = f->wt + (size_t)i * K;
            f->start[i] = j0;
            if (j0 + 1 < n) {
                double t = s - j0;
                w[0] = (float)(1 - t);
                w[1] = (float)t;
                f->count[i] = 2;
            } else {
                w[0] = 1;
                f->count[i] = 1;
            }
        }
    }
}

/* Give every output of the horizontal filter the same tap count, padding
 * with zero weights (shifted left at the right edge), so the inner loop
 * has a constant trip count: a ragged 3-or-4 count costs a branch
 * misprediction per output pixel, more than the extra multiply. */
static void axis_equalise(axis_filter *f, int n, int o)
{
    int T = 0;
    for (int i = 0; i < o; i++)
        if (f->count[i] > T) T = f->count[i];
    f->T = 0;
    if (T > n) return; /* tiny image: stay ragged */
    for (int i = 0; i < o; i++) {
        int c = f->count[i], st = f->start[i];
        if (c == T) continue;
        float *w = f->wt + (size_t)i * f->K;
        int ns = st + T <= n ? st : n - T, off = st - ns;
        memmove(w + off, w, sizeof(float) * (size_t)c);
        for (int k = 0; k < off; k++) w[k] = 0;
        for (int k = off + c; k < T; k++) w[k] = 0;
        f->start[i] = ns;
        f->count[i] = T;
    }
    f->T = T;
}

/* Horizontal pass for rows [y0, y1) of src into tmp [y1 - y0, ow, C].
 * uint8 rows (the data-set resize) are first widened to float in rowbuf:
 * a vectorised loop, far cheaper than converting inside the tap loop. For
 * RGB there is one body per common tap count so that loop unrolls. */
#define HPASS_RGB(TAPS)                                               \
    for (int i = 0; i < ow; i++) {                                    \
        const float *p = row + (size_t)fx->start[i] * 3;              \
        const float *wt = fx->wt + (size_t)i * fx->K;                 \
        float r = 0, g = 0, b = 0;                                    \
        for (int k = 0; k < (TAPS); k++) {                            \
            r += wt[k] * p[3 * k];                                    \
            g += wt[k] * p[3 * k + 1];                                \
            b += wt[k] * p[3 * k + 2];                                \
        }                                                             \
        out[3 * i] = r;                                               \
        out[3 * i + 1] = g;                                           \
        out[3 * i + 2] = b;                                           \
    }

static void hpass(const float *srcf, const uint8_t *src8, int w, int C, int y0, int y1,
                  const axis_filter *fx, float *tmp, int ow, float *rowbuf)
{
    size_t n = (size_t)w * C;
    /* only the columns the filter reads */
    size_t xa = (size_t)fx->start[0] * C, xb = (size_t)(fx->start[ow - 1] + fx->count[ow - 1]) * C;
    for (int y = y0; y < y1; y++) {
        const float *row;
        if (srcf) {
            row = srcf + (size_t)y * n;
        } else {
            const uint8_t *s = src8 + (size_t)y * n;
            for (size_t x = xa; x < xb; x++) rowbuf[x] = (float)s[x];
            row = rowbuf;
        }
        float *out = tmp + (size_t)(y - y0) * ow * C;
        if (C == 3) {
            switch (fx->T) {
            case 1: HPASS_RGB(1) break;
            case 2: HPASS_RGB(2) break;
            case 3: HPASS_RGB(3) break;
            case 4: HPASS_RGB(4) break;
            case 5: HPASS_RGB(5) break;
            case 6: HPASS_RGB(6) break;
            default: HPASS_RGB(fx->count[i]) break;
            }
        } else {
            for (int i = 0; i < ow; i++) {
                const float *p = row + (size_t)fx->start[i] * C;
                const float *wt = fx->wt + (size_t)i * fx->K;
                for (int ch = 0; ch < C; ch++) {
                    float acc = 0;
                    for (int k = 0; k < fx->count[i]; k++) acc += wt[k] * p[(size_t)k * C + ch];
                    out[(size_t)i * C + ch] = acc;
                }
            }
        }
    }
}
#undef HPASS_RGB

/* Clamp to [0, 255] and round half up (truncation is floor once v >= 0).
 * The compiler leaves the clamps as branches, a third of the uint8
 * resize, hence SSE2 (every x86-64) where available. */
static void round_u8(const float *o, uint8_t *d, int n)
{
    int x = 0;
#if defined(__SSE2__)
    const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps(255.0f), half = _mm_set1_ps(0.5f);
    for (; x + 16 <= n; x += 16) {
        __m128i q[4];
        for (int k = 0; k < 4; k++) {
            __m128 v = _mm_min_ps(_mm_max_ps(_mm_loadu_ps(o + x + 4 * k), zero), top);
            q[k] = _mm_cvttps_epi32(_mm_add_ps(v, half));
        }
        __m128i lo = _mm_packs_epi32(q[0], q[1]), hi = _mm_packs_epi32(q[2], q[3]);
        _mm_storeu_si128((__m128i *)(d + x), _mm_packus_epi16(lo, hi));
    }
#endif
    for (; x < n; x++) {
        float v = o[x] > 0 ? o[x] : 0;
        v = v < 255 ? v : 255;
        d[x] = (uint8_t)(v + 0.5f);
    }
}

/* Vertical pass: output row i is a weighted sum of whole tmp rows, a
 * contiguous ow * C loop the compiler vectorises. Writes float, or uint8
 * rounded half up and clamped when dst8 is set. */
static void vpass(const float *tmp, int y0, const axis_filter *fy, int oh, int rowlen,
                  float *dst, uint8_t *dst8, float *acc)
{
    for (int i = 0; i < oh; i++) {
        const float *wt = fy->wt + (size_t)i * fy->K;
        float *o = dst8 ? acc : dst + (size_t)i * rowlen;
        const float *r0 = tmp + (size_t)(fy->start[i] - y0) * rowlen;
        float w0 = wt[0];
        for (int x = 0; x < rowlen; x++) o[x] = w0 * r0[x];
        for (int k = 1; k < fy->count[i]; k++) {
            const float *r = r0 + (size_t)k * rowlen;
            float wk = wt[k];
            for (int x = 0; x < rowlen; x++) o[x] += wk * r[x];
        }
        if (dst8) {
            uint8_t *d = dst8 + (size_t)i * rowlen;
            round_u8(o, d, rowlen);
        }
    }
}

/* One allocation for both tables, the intermediate and (for uint8) the
 * row accumulator. */
static void resample(const float *srcf, const uint8_t *src8, int w, int h, int C, double x0,
                     double y0, double cw, double ch, float *dstf, uint8_t *dst8, int ow, int oh)
{
    AES_CHECK(w > 0 && h > 0 && C > 0 && ow > 0 && oh > 0);
    AES_CHECK(cw > 0 && ch > 0 && isfinite(x0) && isfinite(y0) && isfinite(cw) && isfinite(ch));
    axis_filter fx = {.K = axis_taps(cw, ow)}, fy = {.K = axis_taps(ch, oh)};
    size_t nint = 2 * (size_t)(ow + oh);
    size_t nwt = (size_t)ow * fx.K + (size_t)oh * fy.K;
    int *ibuf = aes_malloc(nint * sizeof(int), "resample index tables");
    fx.start = ibuf;
    fx.count = ibuf + ow;
    fy.start = ibuf + 2 * ow;
    fy.count = ibuf + 2 * ow + oh;
    size_t rowlen = (size_t)ow * C;
    float *fbuf_w = aes_malloc(nwt * sizeof(float), "resample weight tables");
    fx.wt = fbuf_w;
    fy.wt = fbuf_w + (size_t)ow * fx.K;
    axis_build(&fx, w, x0, cw, ow);
    axis_build(&fy, h, y0, ch, oh);
    axis_equalise(&fx, w, ow);

    /* Only the source rows the vertical filter reads get a horizontal pass. */
    int ya = fy.start[0], yb = fy.start[oh - 1] + fy.count[oh - 1];
    size_t ntmp = (size_t)(yb - ya) * rowlen;
    size_t nrow = src8 ? (size_t)w * C : 0;     /* uint8 rows widened to float */
    size_t nacc = dst8 ? rowlen : 0;            /* vertical sums before rounding */
    float *tmp = aes_malloc((ntmp + nrow + nacc) * sizeof(float), "resample intermediate");
    hpass(srcf, src8, w, C, ya, yb, &fx, tmp, ow, tmp + ntmp);
    vpass(tmp, ya, &fy, oh, (int)rowlen, dstf, dst8, tmp + ntmp + nrow);
    free(tmp);
    free(fbuf_w);
    free(ibuf);
}

void aes_image_resample_f32(const float *src, int w, int h, int C, double x0, double y0,
                            double cw, double ch, float *dst, int ow, int oh)
{
    resample(src, NULL, w, h, C, x0, y0, cw, ch, dst, NULL, ow, oh);
}

/* The data-set resize, exactly (the Python reference test re-implements
 * this definition independently):
 *   short = min(w, h); the source window is the centred square
 *   x0 = (w - short) / 2.0, y0 = (h - short) / 2.0, cw = ch = short
 *   (x0 or y0 is a half pixel when w - h is odd); it is resampled to
 *   S x S per axis by the rule above (exact area mean when short > S,
 *   bilinear with half-pixel centres when short <= S), computed in float,
 *   and each value is rounded half up, floor(v + 0.5), clamped to
 *   [0, 255]. */
void aes_image_resize_crop(const uint8_t *src, int w, int h, uint8_t *dst, int S)
{
    AES_CHECK(S > 0);
    int s = w < h ? w : h;
    resample(NULL, src, w, h, 3, (w - s) / 2.0, (h - s) / 2.0, s, s, NULL, dst, S, S);
}

/* ---- PNG writer ----------------------------------------------------------- */

typedef struct {
    jmp_buf jb;
    char msg[256];
} png_wctx;

static void png_w_on_error(png_structp png, png_const_charp msg)
{
    png_wctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown error");
    longjmp(c->jb, 1);
}

int aes_image_write_png(const char *path, const uint8_t *rgb, int w, int h, aes_err *err)
{
    if (w <= 0 || h <= 0) {
        aes_err_set(err, "cannot write a %d x %d PNG", w, h);
        return -1;
    }
    FILE *volatile f = fopen(path, "wb");
    if (!f) {
        char buf[128];
        aes_err_set(err, "cannot write: %s", strerror_r(errno, buf, sizeof buf));
        return -1;
    }
    png_wctx c;
    memset(&c, 0, sizeof c);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, png_w_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        remove(path);
        aes_err_set(err, "cannot create a PNG writer");
        return -1;
    }
    if (setjmp(c.jb)) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(path);
        aes_err_set(err, "cannot write PNG: %s", c.msg);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        char buf[128];
        aes_err_set(err, "cannot write: %s", strerror_r(errno, buf, sizeof buf));
        remove(path);
        return -1;
    }
    return 0;
}
