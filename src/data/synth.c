/*
 * The embedded demo data set: a procedural renderer of simple outdoor scenes
 * (sky and ground split by a horizon, one subject shape, optional clutter)
 * whose aesthetic attributes are drawn first and then made visible in the
 * pixels, a description per attribute in varied wording, a noisy score, and
 * content features from class prototypes.
 *
 * The scene is built in a luma/chroma space (Y, Cb, Cr as in BT.601) so that
 * light and colour can be controlled apart: exposure and contrast set the
 * mean and spread of the luma exactly, saturation scales the chroma, and
 * harmony chooses the hue angles of the regions. Geometry is drawn in
 * coordinates relative to the image size, so one sample is the same scene at
 * every S. Each sample uses independent sub-streams of the key
 * aes_key(seed, 0, index, AES_RNG_SYNTH) for its values, its rendering, its
 * wording and its score noise: changing how one is drawn leaves the others.
 */
#include "aesnet/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aesnet/core.h"

const char *const aes_synth_attr_names[AES_SYNTH_NATTR] = {"color", "light", "composition",
                                                           "focus", "subject"};
const char *const aes_synth_class_names[AES_SYNTH_NCLASS] = {"ball", "box",  "tree",
                                                             "flower", "ring", "star"};

enum { CLS_BALL, CLS_BOX, CLS_TREE, CLS_FLOWER, CLS_RING, CLS_STAR };
enum { SUB_VALUES = 1, SUB_RENDER, SUB_TEXT, SUB_SCORE, SUB_PROTO, SUB_FEATNOISE, SUB_VOTES };

#define PI_F 3.14159265358979f
#define LAT 16 /* value-noise lattice, periodic */
#define MAX_CLUTTER 10
#define MAX_PARTS 8

static void sub_rng(aes_rng *r, uint64_t seed, uint64_t index, uint64_t sub)
{
    uint64_t k = aes_key(seed, 0, index, AES_RNG_SYNTH);
    aes_rng_init(r, aes_hash64(k ^ (sub * 0xd1b54a32d192ed03ULL)));
}

static float unif(aes_rng *r, float a, float b) { return a + (b - a) * (float)aes_rng_uniform(r); }
static float clampf(float x, float a, float b) { return x < a ? a : (x > b ? b : x); }
static int below(aes_rng *r, int n) { return (int)aes_rng_below(r, (uint64_t)n); }

/* ---- scene description ------------------------------------------------ */

typedef struct {
    int kind; /* 0 disc, 1 annulus, 2 polygon */
    float cx, cy, r, r_in; /* pixels, relative to the image origin */
    int n;
    float vx[10], vy[10];
    float lum, cb, cr; /* colour of the part */
    float shade;       /* luma gradient across the part (fake lighting) */
} part;

typedef struct {
    float hy, ang;                  /* horizon height, tilt (radians; > 0: right side lower) */
    float sky_top, sky_hor, ground; /* base luma of the regions */
    float cloud_amt, stripe_amt, stripe_freq, grain_amt;
    float hue_sky, hue_ground, hue_subj; /* angles in the Cb-Cr plane */
    float m_sky, m_ground;               /* chroma magnitudes (relative) */
    float sx, sy, rs, rot;               /* subject centre, radius (fractions of S), rotation */
    float ys;                            /* subject base luma */
    int side, qx, qy;                    /* edge side (0 l, 1 r, 2 top, 3 bottom) / thirds point */
    int nclut;
    struct {
        float x, y, r, rot, lum, hue, m;
        int kind;
    } clut[MAX_CLUTTER];
    float blur;           /* box radius as a fraction of S */
    float mean_t, std_t;  /* target luma mean and standard deviation */
    float csat;           /* chroma scale from saturation */
    float off[6];         /* noise offsets */
    float lat[LAT * LAT]; /* value noise lattice in [-0.5, 0.5] */
} scene;

static float smooth01(float t) { return t * t * (3.f - 2.f * t); }

/* How much chroma a luma leaves room for: the RGB gamut closes towards black
 * and white. Chroma is stored scaled by this of the luma it was drawn at, so
 * that blurring mixes colours as light would (a dark red next to a blue sky
 * blurs to a dark blue, not to a red fringe). */
static inline float chroma_room(float y)
{
    y = y < 0.f ? 0.f : (y > 1.f ? 1.f : y);
    float g = 2.2f * sqrtf(y * (1.f - y));
    return g < 1.f ? g : 1.f;
}

static inline float vnoise(const float *lat, float x, float y)
{
    int ix = (int)x, iy = (int)y; /* floor, without the libm call */
    ix -= x < (float)ix, iy -= y < (float)iy;
    float tx = smooth01(x - (float)ix), ty = smooth01(y - (float)iy);
    int x0 = ix & (LAT - 1), x1 = (ix + 1) & (LAT - 1);
    int y0 = iy & (LAT - 1), y1 = (iy + 1) & (LAT - 1);
    float a = lat[y0 * LAT + x0], b = lat[y0 * LAT + x1];
    float c = lat[y1 * LAT + x0], d = lat[y1 * LAT + x1];
    float top = a + (b - a) * tx, bot = c + (d - c) * tx;
    return top + (bot - top) * ty;
}

/* Base luma of the background at a point without texture: used to pick a
 * subject luma that stands out from where it sits. */
static float bg_luma_at(const scene *sc, float u, float v)
{
    float du = u - 0.5f, dv = v - sc->hy;
    float d = dv * cosf(sc->ang) - du * sinf(sc->ang);
    if (d < 0) {
        float g = clampf(-d / 0.6f, 0.f, 1.f);
        return sc->sky_hor + (sc->sky_top - sc->sky_hor) * g;
    }
    return sc->ground + 0.06f * d;
}

static void draw_values(uint64_t seed, int64_t index, aes_synth_sample *m)
{
    aes_rng r;
    sub_rng(&r, seed, (uint64_t)index, SUB_VALUES);
    m->content = below(&r, AES_SYNTH_NCLASS);
    m->harmony = below(&r, 2);
    m->saturation = below(&r, 3);
    m->exposure = below(&r, 3);
    m->contrast = below(&r, 3);
    m->placement = below(&r, 3);
    m->tilt = below(&r, 2);
    m->focus = below(&r, 3);
    m->clutter = below(&r, 3);
}

static void draw_scene(uint64_t seed, int64_t index, const aes_synth_sample *m, scene *sc)
{
    aes_rng r;
    sub_rng(&r, seed, (uint64_t)index, SUB_RENDER);
    for (int i = 0; i < LAT * LAT; i++) sc->lat[i] = (float)aes_rng_uniform(&r) - 0.5f;
    for (int i = 0; i < 6; i++) sc->off[i] = unif(&r, 0.f, (float)LAT);

    /* horizon */
    sc->hy = unif(&r, 0.5f, 0.7f);
    float sgn = aes_rng_uniform(&r) < 0.5 ? -1.f : 1.f;
    float deg = m->tilt ? unif(&r, 8.f, 16.f) : unif(&r, 0.f, 0.6f);
    sc->ang = sgn * deg * PI_F / 180.f;

    /* background luma and texture */
    sc->sky_top = unif(&r, 0.55f, 0.7f);
    sc->sky_hor = sc->sky_top + unif(&r, 0.08f, 0.16f);
    sc->ground = unif(&r, 0.22f, 0.38f);
    sc->cloud_amt = unif(&r, 0.6f, 1.f);
    sc->stripe_amt = unif(&r, 0.05f, 0.08f);
    sc->stripe_freq = unif(&r, 8.f, 12.f);
    sc->grain_amt = unif(&r, 0.10f, 0.16f);

    /* palette: analogous hues, or a complementary sky/ground with the
     * subject a quarter turn away from both */
    float h0 = unif(&r, 0.f, 2.f * PI_F);
    sc->hue_sky = h0;
    if (m->harmony) {
        float s1 = aes_rng_uniform(&r) < 0.5 ? -1.f : 1.f;
        float s2 = aes_rng_uniform(&r) < 0.5 ? -1.f : 1.f;
        sc->hue_ground = h0 + s1 * unif(&r, 20.f, 40.f) * PI_F / 180.f;
        sc->hue_subj = h0 + s2 * unif(&r, 25.f, 50.f) * PI_F / 180.f;
    } else {
        float s2 = aes_rng_uniform(&r) < 0.5 ? -1.f : 1.f;
        sc->hue_ground = h0 + PI_F + unif(&r, -20.f, 20.f) * PI_F / 180.f;
        sc->hue_subj = h0 + s2 * unif(&r, 75.f, 105.f) * PI_F / 180.f;
    }
    sc->m_sky = unif(&r, 0.75f, 1.f);
    sc->m_ground = unif(&r, 0.8f, 1.f);

    /* subject placement */
    sc->rs = unif(&r, 0.13f, 0.18f);
    sc->rot = unif(&r, -0.12f, 0.12f);
    sc->side = sc->qx = sc->qy = 0;
    if (m->placement == 0) {
        sc->sx = 0.5f + 0.006f * aes_rng_normal(&r);
        sc->sy = 0.5f + 0.006f * aes_rng_normal(&r);
    } else if (m->placement == 1) {
        sc->qx = below(&r, 2);
        sc->qy = below(&r, 2);
        sc->sx = (sc->qx ? 2.f : 1.f) / 3.f + 0.008f * aes_rng_normal(&r);
        sc->sy = (sc->qy ? 2.f : 1.f) / 3.f + 0.008f * aes_rng_normal(&r);
    } else {
        sc->side = below(&r, 4);
        float along = unif(&r, 0.3f, 0.7f);
        float in = sc->rs * unif(&r, -0.15f, 0.3f); /* centre this far inside: about 30-60% cut off */
        switch (sc->side) {
        case 0: sc->sx = in, sc->sy = along; break;
        case 1: sc->sx = 1.f - in, sc->sy = along; break;
        case 2: sc->sx = along, sc->sy = in; break;
        default: sc->sx = along, sc->sy = 1.f - in; break;
        }
    }
    /* subject luma: well away from what is behind it */
    float bl = bg_luma_at(sc, sc->sx, sc->sy);
    float dl = unif(&r, 0.3f, 0.42f);
    int up_ok = bl + dl <= 0.95f, down_ok = bl - dl >= 0.06f;
    int up = up_ok && (!down_ok || aes_rng_uniform(&r) < 0.5);
    sc->ys = up ? bl + dl : (down_ok ? bl - dl : clampf(bl - dl, 0.04f, 0.95f));

    /* clutter: small shapes that keep clear of the subject */
    int want = m->clutter == 0 ? 0 : (m->clutter == 1 ? 2 + below(&r, 2) : 6 + below(&r, 5));
    sc->nclut = 0;
    for (int i = 0; i < want; i++) {
        float cr = unif(&r, 0.025f, 0.05f), x = 0, y = 0;
        int ok = 0;
        for (int t = 0; t < 20 && !ok; t++) {
            x = unif(&r, 0.05f, 0.95f);
            y = unif(&r, 0.05f, 0.95f);
            float dx = x - sc->sx, dy = y - sc->sy;
            ok = sqrtf(dx * dx + dy * dy) > sc->rs * 1.15f + cr;
        }
        float rot = unif(&r, 0.f, PI_F), lum = unif(&r, 0.1f, 0.95f), hue = unif(&r, 0.f, 2.f * PI_F);
        float mm = unif(&r, 0.6f, 1.f);
        int kind = below(&r, 3);
        if (!ok) continue;
        sc->clut[sc->nclut].x = x;
        sc->clut[sc->nclut].y = y;
        sc->clut[sc->nclut].r = cr;
        sc->clut[sc->nclut].rot = rot;
        sc->clut[sc->nclut].lum = lum;
        sc->clut[sc->nclut].hue = hue;
        sc->clut[sc->nclut].m = mm;
        sc->clut[sc->nclut].kind = kind;
        sc->nclut++;
    }

    sc->blur = unif(&r, 0.028f, 0.04f);

    static const float mean_lo[3] = {0.16f, 0.44f, 0.76f}, mean_hi[3] = {0.24f, 0.54f, 0.84f};
    static const float std_lo[3] = {0.035f, 0.12f, 0.26f}, std_hi[3] = {0.055f, 0.16f, 0.32f};
    static const float sat[3] = {0.05f, 0.17f, 0.40f};
    sc->mean_t = unif(&r, mean_lo[m->exposure], mean_hi[m->exposure]);
    sc->std_t = unif(&r, std_lo[m->contrast], std_hi[m->contrast]);
    sc->csat = sat[m->saturation] * unif(&r, 0.9f, 1.1f);
}

/* ---- shapes ------------------------------------------------------------- */

/* Signed distance (pixels) from a point to a polygon: negative inside. */
static float sd_poly(const part *p, float px, float py)
{
    float dx0 = px - p->vx[0], dy0 = py - p->vy[0];
    float d = dx0 * dx0 + dy0 * dy0, s = 1.f;
    for (int i = 0, j = p->n - 1; i < p->n; j = i, i++) {
        float ex = p->vx[j] - p->vx[i], ey = p->vy[j] - p->vy[i];
        float wx = px - p->vx[i], wy = py - p->vy[i];
        float h = clampf((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.f, 1.f);
        float bx = wx - ex * h, by = wy - ey * h;
        float dd = bx * bx + by * by;
        if (dd < d) d = dd;
        int c1 = py >= p->vy[i], c2 = py < p->vy[j], c3 = ex * wy > ey * wx;
        if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) s = -s;
    }
    return s * sqrtf(d);
}

static float sd_part(const part *p, float px, float py)
{
    float dx = px - p->cx, dy = py - p->cy;
    switch (p->kind) {
    case 0: return sqrtf(dx * dx + dy * dy) - p->r;
    case 1: return fabsf(sqrtf(dx * dx + dy * dy) - 0.5f * (p->r + p->r_in)) - 0.5f * (p->r - p->r_in);
    default: return sd_poly(p, px, py);
    }
}

/* Polygon from vertices given relative to (cx, cy) in units of rad,
 * rotated by rot. */
static void set_poly(part *p, float cx, float cy, float rad, float rot, const float *ux,
                     const float *uy, int n)
{
    float c = cosf(rot), s = sinf(rot);
    p->kind = 2;
    p->cx = cx, p->cy = cy, p->r = rad * 1.5f;
    p->n = n;
    for (int i = 0; i < n; i++) {
        p->vx[i] = cx + rad * (c * ux[i] - s * uy[i]);
        p->vy[i] = cy + rad * (s * ux[i] + c * uy[i]);
    }
}

static void set_colour(part *p, float lum, float hue, float m, float shade)
{
    p->lum = lum;
    p->cb = m * cosf(hue);
    p->cr = m * sinf(hue);
    p->shade = shade;
}

static int subject_parts(const scene *sc, int content, int S, part *P)
{
    float cx = sc->sx * S, cy = sc->sy * S, R = sc->rs * S;
    float lum2 = sc->ys > 0.5f ? sc->ys - 0.25f : sc->ys + 0.25f;
    int n = 0;
    switch (content) {
    case CLS_BALL:
        P[n].kind = 0, P[n].cx = cx, P[n].cy = cy, P[n].r = R;
        set_colour(&P[n++], sc->ys, sc->hue_subj, 1.f, 0.12f);
        break;
    case CLS_BOX: {
        static const float ux[4] = {-0.8f, 0.8f, 0.8f, -0.8f}, uy[4] = {-0.8f, -0.8f, 0.8f, 0.8f};
        set_poly(&P[n], cx, cy, R, sc->rot, ux, uy, 4);
        set_colour(&P[n++], sc->ys, sc->hue_subj, 1.f, 0.06f);
        break;
    }
    case CLS_TREE: {
        static const float tx[4] = {-0.16f, 0.16f, 0.16f, -0.16f}, ty[4] = {0.4f, 0.4f, 1.f, 1.f};
        static const float ux[3] = {0.f, 0.78f, -0.78f}, uy[3] = {-1.f, 0.5f, 0.5f};
        set_poly(&P[n], cx, cy, R, 0.f, tx, ty, 4);
        set_colour(&P[n++], lum2, sc->hue_subj + 0.5f, 0.6f, 0.f);
        set_poly(&P[n], cx, cy, R, 0.f, ux, uy, 3);
        set_colour(&P[n++], sc->ys, sc->hue_subj, 1.f, 0.08f);
        break;
    }
    case CLS_FLOWER:
        for (int k = 0; k < 5; k++) {
            float a = sc->rot + k * 2.f * PI_F / 5.f - PI_F / 2.f;
            P[n].kind = 0, P[n].cx = cx + 0.58f * R * cosf(a), P[n].cy = cy + 0.58f * R * sinf(a);
            P[n].r = 0.4f * R;
            set_colour(&P[n++], sc->ys, sc->hue_subj, 1.f, 0.05f);
        }
        P[n].kind = 0, P[n].cx = cx, P[n].cy = cy, P[n].r = 0.3f * R;
        set_colour(&P[n++], lum2, sc->hue_subj + 0.6f, 0.8f, 0.f);
        break;
    case CLS_RING:
        P[n].kind = 1, P[n].cx = cx, P[n].cy = cy, P[n].r = R, P[n].r_in = 0.58f * R;
        set_colour(&P[n++], sc->ys, sc->hue_subj, 1.f, 0.1f);
        break;
    default: { /* star */
        float ux[10], uy[10];
        for (int k = 0; k < 10; k++) {
            float a = k * PI_F / 5.f - PI_F / 2.f, rr = (k & 1) ? 0.45f : 1.05f;
            ux[k] = rr * cosf(a);
            uy[k] = rr * sinf(a);
        }
        set_poly(&P[n], cx, cy, R, sc->rot, ux, uy, 10);
        set_colour(&P[n++], sc->ys, sc->hue_subj, 1.f, 0.06f);
        break;
    }
    }
    return n;
}

static void clutter_part(const scene *sc, int i, int S, part *p)
{
    float cx = sc->clut[i].x * S, cy = sc->clut[i].y * S, R = sc->clut[i].r * S;
    if (sc->clut[i].kind == 0) {
        p->kind = 0, p->cx = cx, p->cy = cy, p->r = R;
    } else if (sc->clut[i].kind == 1) {
        static const float ux[4] = {-0.8f, 0.8f, 0.8f, -0.8f}, uy[4] = {-0.8f, -0.8f, 0.8f, 0.8f};
        set_poly(p, cx, cy, R, sc->clut[i].rot, ux, uy, 4);
    } else {
        static const float ux[4] = {-1.4f, 1.4f, 1.4f, -1.4f}, uy[4] = {-0.3f, -0.3f, 0.3f, 0.3f};
        set_poly(p, cx, cy, R, sc->clut[i].rot, ux, uy, 4);
    }
    set_colour(p, sc->clut[i].lum, sc->clut[i].hue, sc->clut[i].m, 0.f);
}

/* Composite a part over the planes with a one-pixel antialiased edge. */
static void draw_part(const part *p, int S, float *Y, float *CB, float *CR)
{
    float ext = p->r + 1.5f;
    if (p->kind == 2) { /* bounding box of the vertices */
        float x0 = p->vx[0], x1 = p->vx[0], y0 = p->vy[0], y1 = p->vy[0];
        for (int i = 1; i < p->n; i++) {
            x0 = fminf(x0, p->vx[i]), x1 = fmaxf(x1, p->vx[i]);
            y0 = fminf(y0, p->vy[i]), y1 = fmaxf(y1, p->vy[i]);
        }
        ext = 0.f;
        ext = fmaxf(ext, fmaxf(fabsf(x0 - p->cx), fabsf(x1 - p->cx)));
        ext = fmaxf(ext, fmaxf(fabsf(y0 - p->cy), fabsf(y1 - p->cy)));
        ext += 1.5f;
    }
    int xa = (int)floorf(p->cx - ext), xb = (int)ceilf(p->cx + ext);
    int ya = (int)floorf(p->cy - ext), yb = (int)ceilf(p->cy + ext);
    if (xa < 0) xa = 0;
    if (ya < 0) ya = 0;
    if (xb > S - 1) xb = S - 1;
    if (yb > S - 1) yb = S - 1;
    float inv = 1.f / (p->r > 1e-3f ? p->r : 1e-3f);
    for (int y = ya; y <= yb; y++) {
        float py = y + 0.5f;
        for (int x = xa; x <= xb; x++) {
            float px = x + 0.5f;
            float cov = clampf(0.5f - sd_part(p, px, py), 0.f, 1.f);
            if (cov <= 0.f) continue;
            /* light from the upper left */
            float lum = p->lum - p->shade * ((px - p->cx) + (py - p->cy)) * inv * 0.7f;
            size_t k = (size_t)y * S + x;
            Y[k] += cov * (lum - Y[k]);
            float room = chroma_room(lum);
            CB[k] += cov * (room * p->cb - CB[k]);
            CR[k] += cov * (room * p->cr - CR[k]);
        }
    }
}

/* ---- background ----------------------------------------------------------- */

static void draw_background(const scene *sc, int S, float *Y, float *CB, float *CR)
{
    float ca = cosf(sc->ang), sa = sinf(sc->ang), invS = 1.f / S;
    float sb = sc->m_sky * cosf(sc->hue_sky), sr = sc->m_sky * sinf(sc->hue_sky);
    float gb = sc->m_ground * cosf(sc->hue_ground), gr = sc->m_ground * sinf(sc->hue_ground);
    float two_pi_f = 2.f * PI_F * sc->stripe_freq;
    /* texture edges about two pixels wide at any S: "sharp" means sharp at
     * the rendered resolution */
    float edge_k = fmaxf(6.f, 0.2f * S);
    for (int y = 0; y < S; y++) {
        float dv = (y + 0.5f) * invS - sc->hy;
        for (int x = 0; x < S; x++) {
            float du = (x + 0.5f) * invS - 0.5f;
            float d = dv * ca - du * sa; /* distance below the horizon */
            float t = du * ca + dv * sa; /* position along it */
            size_t k = (size_t)y * S + x;
            float wg = clampf(0.5f + d * S, 0.f, 1.f); /* ground coverage */
            float ly = 0.f, lb = 0.f, lr = 0.f;
            if (wg < 1.f) { /* sky: gradient and cloud banks */
                float g = clampf(-d / 0.6f, 0.f, 1.f);
                float n = 0.65f * vnoise(sc->lat, t * 5.f + sc->off[0], d * 11.f + sc->off[1]) +
                          0.35f * vnoise(sc->lat, t * 12.f + sc->off[2], d * 24.f + sc->off[3]);
                float cl = sc->cloud_amt * smooth01(clampf((n - 0.05f) * edge_k, 0.f, 1.f));
                float haze = 0.75f + 0.25f * g;
                float l = sc->sky_hor + (sc->sky_top - sc->sky_hor) * g + 0.2f * cl;
                float mm = haze * (1.f - 0.75f * cl) * chroma_room(l);
                ly = (1.f - wg) * l, lb = (1.f - wg) * mm * sb, lr = (1.f - wg) * mm * sr;
            }
            if (wg > 0.f) { /* ground: furrows parallel to the horizon and grain */
                float n = vnoise(sc->lat, t * 16.f + sc->off[4], d * 16.f + sc->off[5]);
                float w = vnoise(sc->lat, t * 4.f + sc->off[1], d * 4.f + sc->off[4]);
                float st = clampf(2.5f * sinf(two_pi_f * d + 3.f * w), -1.f, 1.f);
                float n2 = vnoise(sc->lat, t * 36.f + sc->off[3], d * 36.f + sc->off[2]);
                float sp = clampf((n2 - 0.22f) * edge_k, 0.f, 1.f); /* pebbles */
                float l = sc->ground + 0.06f * d + sc->stripe_amt * st + sc->grain_amt * n + 0.12f * sp;
                float mm = (1.f + 0.15f * st) * chroma_room(l);
                ly += wg * l, lb += wg * mm * gb, lr += wg * mm * gr;
            }
            Y[k] = ly, CB[k] = lb, CR[k] = lr;
        }
    }
}

/* ---- blur ------------------------------------------------------------------- */

/* Box blur of radius r along rows, edges clamped. */
static void box_rows(float *dst, const float *src, int S, int r)
{
    float norm = 1.f / (2 * r + 1);
    for (int y = 0; y < S; y++) {
        const float *s = src + (size_t)y * S;
        float *d = dst + (size_t)y * S;
        float acc = 0.f;
        for (int i = -r; i <= r; i++) acc += s[i < 0 ? 0 : (i >= S ? S - 1 : i)];
        /* clamped indices only near the ends */
        int x = 0, lo = r < S ? r : S, hi = S - r - 1;
        for (; x < lo; x++) {
            d[x] = acc * norm;
            int add = x + r + 1;
            acc += s[add >= S ? S - 1 : add] - s[0];
        }
        for (; x < hi; x++) {
            d[x] = acc * norm;
            acc += s[x + r + 1] - s[x - r];
        }
        for (; x < S; x++) {
            d[x] = acc * norm;
            int add = x + r + 1, sub = x - r;
            acc += s[add >= S ? S - 1 : add] - s[sub < 0 ? 0 : sub];
        }
    }
}

/* Box blur of radius r along columns, streaming rows through an accumulator. */
static void box_cols(float *dst, const float *src, int S, int r, float *acc)
{
    float norm = 1.f / (2 * r + 1);
    for (int x = 0; x < S; x++) acc[x] = 0.f;
    for (int i = -r; i <= r; i++) {
        const float *s = src + (size_t)(i < 0 ? 0 : (i >= S ? S - 1 : i)) * S;
        for (int x = 0; x < S; x++) acc[x] += s[x];
    }
    for (int y = 0; y < S; y++) {
        float *d = dst + (size_t)y * S;
        int add = y + r + 1, sub = y - r;
        const float *sa = src + (size_t)(add >= S ? S - 1 : add) * S;
        const float *ss = src + (size_t)(sub < 0 ? 0 : sub) * S;
        for (int x = 0; x < S; x++) {
            d[x] = acc[x] * norm;
            acc[x] += sa[x] - ss[x];
        }
    }
}

/* Three box passes per axis: close to a Gaussian of sd ~ r. */
static void blur_plane(float *p, float *tmp, float *acc, int S, int r)
{
    box_rows(tmp, p, S, r);
    box_rows(p, tmp, S, r);
    box_rows(tmp, p, S, r);
    box_cols(p, tmp, S, r, acc);
    box_cols(tmp, p, S, r, acc);
    box_cols(p, tmp, S, r, acc);
}

/* ---- quality, score ---------------------------------------------------------- */

static void qualities(aes_synth_sample *m)
{
    static const float q_harm[2] = {0.2f, 1.f}, q_sat[3] = {0.45f, 1.f, 0.3f};
    static const float q_exp[3] = {0.25f, 1.f, 0.2f}, q_con[3] = {0.45f, 1.f, 0.35f};
    static const float q_place[3] = {0.55f, 1.f, 0.1f}, q_tilt[2] = {1.f, 0.3f};
    static const float q_focus[3] = {1.f, 0.6f, 0.05f}, q_clut[3] = {1.f, 0.6f, 0.15f};
    m->quality[0] = 0.5f * q_harm[m->harmony] + 0.5f * q_sat[m->saturation];
    m->quality[1] = 0.6f * q_exp[m->exposure] + 0.4f * q_con[m->contrast];
    m->quality[2] = 0.65f * q_place[m->placement] + 0.35f * q_tilt[m->tilt];
    m->quality[3] = q_focus[m->focus];
    m->quality[4] = q_clut[m->clutter];
}

static float score_of(uint64_t seed, int64_t index, const aes_synth_sample *m)
{
    static const float w[AES_SYNTH_NATTR] = {1.f, 1.2f, 1.f, 1.f, 0.8f};
    float sw = 0.f, sq = 0.f;
    for (int a = 0; a < AES_SYNTH_NATTR; a++) sw += w[a], sq += w[a] * m->quality[a];
    aes_rng r;
    sub_rng(&r, seed, (uint64_t)index, SUB_SCORE);
    return clampf(1.f + 9.f * sq / sw + 0.5f * aes_rng_normal(&r), 1.f, 10.f);
}

/* Mean over bins 1..10 of a Gaussian of centre mu and spread sigma,
 * discretised to the bins; p [10] gets the normalised weights. */
static double binned_mean(double mu, double sigma, double *p)
{
    double sum = 0, mean = 0;
    for (int k = 0; k < 10; k++) {
        double z = (k + 1 - mu) / sigma;
        p[k] = exp(-0.5 * z * z);
        sum += p[k];
    }
    for (int k = 0; k < 10; k++) p[k] /= sum, mean += (k + 1) * p[k];
    return mean;
}

/* The votes of sample m: a discretised Gaussian whose mean is the score
 * (its centre found by bisection: the mean rises with the centre), spread
 * by how controversial the image is, times the number of voters, rounded
 * to whole votes by largest remainder. The score then becomes the mean of
 * those votes, as AVA's is, which moves it by at most about 0.02. */
static void votes_of(uint64_t seed, int64_t index, aes_synth_sample *m)
{
    aes_rng r;
    sub_rng(&r, seed, (uint64_t)index, SUB_VOTES);
    const double sigma = 0.9 + 0.6 * m->tilt + 0.5 * (m->harmony == 0) + 0.4 * (m->clutter == 2) +
                         0.15 * fabs(aes_rng_normal(&r));
    const int V = 120 + (int)aes_rng_below(&r, 160);
    double p[10], lo = -10, hi = 21;
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi);
        if (binned_mean(mid, sigma, p) < m->score) lo = mid;
        else hi = mid;
    }
    binned_mean(0.5 * (lo + hi), sigma, p);
    int n[10], left = V;
    double frac[10];
    for (int k = 0; k < 10; k++) {
        n[k] = (int)floor(V * p[k]);
        frac[k] = V * p[k] - n[k];
        left -= n[k];
    }
    for (; left > 0; left--) { /* largest remainder; the lower bin on a tie */
        int best = 0;
        for (int k = 1; k < 10; k++)
            if (frac[k] > frac[best]) best = k;
        n[best]++;
        frac[best] = -1;
    }
    double mean = 0;
    for (int k = 0; k < 10; k++) m->votes[k] = (float)n[k], mean += (k + 1) * (double)n[k];
    m->score = (float)(mean / V);
}

/* ---- descriptions ------------------------------------------------------------- */

#define PICK(r, arr) ((arr)[aes_rng_below((r), sizeof(arr) / sizeof((arr)[0]))])

/* Name of the hue a Cb-Cr direction shows as (HSV hue of a mid-grey plus
 * that chroma). */
static const char *hue_name(float angle)
{
    float cb = 0.2f * cosf(angle), cr = 0.2f * sinf(angle);
    float R = 0.5f + 1.402f * cr, G = 0.5f - 0.344136f * cb - 0.714136f * cr, B = 0.5f + 1.772f * cb;
    float mx = fmaxf(R, fmaxf(G, B)), mn = fminf(R, fminf(G, B)), c = mx - mn, h;
    if (c <= 0.f) return "grey";
    if (mx == R) h = fmodf((G - B) / c + 6.f, 6.f);
    else if (mx == G) h = (B - R) / c + 2.f;
    else h = (R - G) / c + 4.f;
    h *= 60.f;
    if (h < 15.f || h >= 340.f) return "red";
    if (h < 40.f) return "orange";
    if (h < 70.f) return "yellow";
    if (h < 160.f) return "green";
    if (h < 195.f) return "teal";
    if (h < 255.f) return "blue";
    if (h < 290.f) return "purple";
    return "pink";
}

/* Expand a template: %X is replaced by vals[X] for a letter X. */
static void expand(char *out, size_t cap, const char *tmpl, const char *const vals[128])
{
    size_t n = 0;
    for (const char *p = tmpl; *p && n + 1 < cap; p++) {
        if (*p == '%' && p[1] && vals[(unsigned char)p[1] & 127]) {
            const char *v = vals[(unsigned char)p[1] & 127];
            while (*v && n + 1 < cap) out[n++] = *v++;
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = 0;
}

static void describe(uint64_t seed, int64_t index, const scene *sc, aes_synth_sample *m)
{
    aes_rng r;
    sub_rng(&r, seed, (uint64_t)index, SUB_TEXT);
    const char *vals[128] = {0};
    const char *name = aes_synth_class_names[m->content];
    const char *c_sky = hue_name(sc->hue_sky), *c_gnd = hue_name(sc->hue_ground);
    const char *c_hue = hue_name(sc->hue_subj);
    const char *c_sub = m->saturation == 0 ? "greyish" : c_hue;
    char anoun[64];
    snprintf(anoun, sizeof anoun, "%s %s %s",
             (c_sub[0] == 'o' || c_sub[0] == 'a' || c_sub[0] == 'e') ? "an" : "a", c_sub, name);
    vals['n'] = name;
    vals['A'] = anoun;

    /* colour */
    static const char *const harm_named[] = {"harmonious %1 and %2 tones",
                                             "an analogous palette of %1 and %2",
                                             "%1 and %2 hues that blend pleasantly"};
    static const char *const harm_same[] = {"harmonious shades of %1", "a unified palette of %1 tones",
                                            "neighbouring hues around %1"};
    static const char *const harm[] = {"a harmonious palette", "analogous colours that sit well together",
                                       "a calm, coherent colour scheme", "colours that blend pleasantly",
                                       "a unified palette of neighbouring hues", "well-matched, harmonious tones"};
    static const char *const clash_named[] = {"%1 and %2 that clash loudly",
                                              "a jarring mix of %1 and %2",
                                              "discordant %1 and %2 hues"};
    static const char *const clash[] = {"clashing colours", "complementary hues that fight each other",
                                        "a jarring colour combination", "discordant hues",
                                        "colours that clash badly", "competing, clashing hues"};
    static const char *const sat0[] = {"muted colour", "dull, desaturated tones", "faded, greyish colour",
                                       "washed-out, muted hues", "very little saturation",
                                       "desaturated, drab colour"};
    static const char *const sat1[] = {"natural saturation", "pleasant, moderate saturation",
                                       "balanced saturation", "rich but natural colour",
                                       "moderately saturated tones", "just the right amount of saturation"};
    static const char *const sat2[] = {"oversaturated colour", "neon, oversaturated hues",
                                       "saturation pushed far too high", "garish, oversaturated tones",
                                       "overcooked saturation", "lurid, oversaturated colour"};
    static const char *const col_t[] = {"%H with %S", "%S and %H", "the image shows %H and %S",
                                        "%H, rendered with %S", "colour: %H; %S", "%S in %H"};
    {
        char h[96];
        const char *vv[128] = {0};
        vv['1'] = c_sky;
        vv['2'] = m->harmony ? c_hue : c_gnd;
        int named = aes_rng_uniform(&r) < 0.4;
        if (m->harmony) {
            if (named && strcmp(c_sky, c_hue) == 0) expand(h, sizeof h, PICK(&r, harm_same), vv);
            else if (named) expand(h, sizeof h, PICK(&r, harm_named), vv);
            else expand(h, sizeof h, PICK(&r, harm), vv);
        } else {
            if (named && strcmp(c_sky, c_gnd) != 0) expand(h, sizeof h, PICK(&r, clash_named), vv);
            else expand(h, sizeof h, PICK(&r, clash), vv);
        }
        const char *s = m->saturation == 0 ? PICK(&r, sat0) : (m->saturation == 1 ? PICK(&r, sat1) : PICK(&r, sat2));
        vals['H'] = h;
        vals['S'] = s;
        expand(m->desc[0], AES_SYNTH_DESC_CAP, PICK(&r, col_t), vals);
        vals['H'] = vals['S'] = NULL;
    }

    /* light */
    static const char *const exp0[] = {"underexposed", "far too dark", "murky and underexposed",
                                       "dim and gloomy", "dark and underexposed", "starved of light"};
    static const char *const exp1[] = {"well exposed", "correctly exposed", "properly exposed",
                                       "nicely exposed", "evenly lit", "well lit"};
    static const char *const exp2[] = {"overexposed and washed out", "far too bright", "overexposed",
                                       "blown out and too bright", "glaring and overexposed",
                                       "overexposed with blown highlights"};
    static const char *const con0[] = {"flat contrast", "low contrast", "flat, lifeless tones",
                                       "a hazy, low-contrast look", "weak, flat contrast"};
    static const char *const con1[] = {"good contrast", "pleasing contrast", "a balanced tonal range",
                                       "nice contrast", "healthy contrast"};
    static const char *const con2[] = {"harsh contrast", "harsh, extreme contrast", "hard, contrasty light",
                                       "stark contrast", "far too much contrast"};
    static const char *const light_t[] = {"the image is %E with %C", "%E, with %C", "%C; the scene is %E",
                                          "lighting: %E, %C", "the photo looks %E and has %C"};
    vals['E'] = m->exposure == 0 ? PICK(&r, exp0) : (m->exposure == 1 ? PICK(&r, exp1) : PICK(&r, exp2));
    vals['C'] = m->contrast == 0 ? PICK(&r, con0) : (m->contrast == 1 ? PICK(&r, con1) : PICK(&r, con2));
    expand(m->desc[1], AES_SYNTH_DESC_CAP, PICK(&r, light_t), vals);

    /* composition */
    static const char *const sides[4] = {"left", "right", "top", "bottom"};
    static const char *const pl0[] = {"the %n sits dead centre", "the %n is placed right in the middle",
                                      "the %n is centred in the frame", "the %n sits in the exact centre",
                                      "a static, central placement puts the %n in the middle"};
    static const char *const pl1[] = {"the %n sits on a rule-of-thirds point",
                                      "the %n is placed on the %v %h third",
                                      "the %n follows the rule of thirds",
                                      "the %n sits off-centre on a thirds intersection",
                                      "the %n is nicely positioned at the %h third"};
    static const char *const pl2[] = {"the %n is cut off at the %s edge",
                                      "the %n is cropped awkwardly by the %s border",
                                      "the %n is half cut out of the frame",
                                      "the %n is chopped off at the %s of the frame",
                                      "the %n is jammed against the %s edge and cut off"};
    static const char *const tl0[] = {"the horizon is level", "the horizon is straight",
                                      "the horizon line is perfectly level", "the horizon runs level",
                                      "a straight, level horizon"};
    static const char *const tl1[] = {"the horizon is tilted", "the horizon is crooked",
                                      "the horizon slopes down to the %d",
                                      "the horizon line is noticeably slanted",
                                      "a tilted horizon leaning to the %d"};
    static const char *const comp_t[] = {"%P, and %T", "%P; %T", "%P while %T", "%T, and %P"};
    {
        char P[128], T[96];
        vals['v'] = sc->qy ? "lower" : "upper";
        vals['h'] = sc->qx ? "right" : "left";
        vals['s'] = sides[sc->side];
        vals['d'] = sc->ang > 0 ? "right" : "left";
        expand(P, sizeof P, m->placement == 0 ? PICK(&r, pl0) : (m->placement == 1 ? PICK(&r, pl1) : PICK(&r, pl2)), vals);
        expand(T, sizeof T, m->tilt ? PICK(&r, tl1) : PICK(&r, tl0), vals);
        const char *t = PICK(&r, comp_t);
        if (strncmp(T, "a ", 2) == 0) t = "%P, with %T"; /* noun phrase, not a clause */
        vals['P'] = P;
        vals['T'] = T;
        expand(m->desc[2], AES_SYNTH_DESC_CAP, t, vals);
        vals['P'] = vals['T'] = NULL;
    }

    /* focus */
    static const char *const f0[] = {"the %n is sharp against a softly blurred background",
                                     "a crisp %n over a creamy, out-of-focus background",
                                     "shallow depth of field: the %n is in focus and the background is blurred",
                                     "the %n stands out in sharp focus from a blurred backdrop",
                                     "sharp subject, pleasantly blurred background",
                                     "the background melts into blur while the %n stays crisp",
                                     "the %n is tack sharp and the background is nicely soft"};
    static const char *const f1[] = {"everything is sharp, background included",
                                     "deep focus: the %n and the background are equally sharp",
                                     "the whole frame is in focus",
                                     "sharp from front to back, the background competes with the %n",
                                     "no background blur; everything is crisp",
                                     "the %n and the background behind it are both crisp",
                                     "all in focus, nothing separates the %n from the background"};
    static const char *const f2[] = {"the whole image is blurry",
                                     "everything is out of focus, the %n included",
                                     "the %n is soft and blurred, nothing is sharp",
                                     "missed focus: the entire frame is blurred",
                                     "a blurry, out-of-focus shot of a %n",
                                     "the %n is smeared by blur, as is everything else",
                                     "the entire picture is soft and out of focus"};
    expand(m->desc[3], AES_SYNTH_DESC_CAP, m->focus == 0 ? PICK(&r, f0) : (m->focus == 1 ? PICK(&r, f1) : PICK(&r, f2)), vals);

    /* subject */
    static const char *const s0[] = {"%A alone on a clean background", "a single %n, nothing else in the frame",
                                     "a simple, uncluttered scene with one %n", "just %A and empty space",
                                     "a clean composition: one %n, no distractions", "a lone %n against a clean backdrop",
                                     "%A, isolated and uncluttered"};
    static const char *const s1[] = {"%A with a few small distractions around it",
                                     "a %n and some stray objects",
                                     "%A with a couple of distracting shapes nearby",
                                     "a %n sharing the frame with a few small objects",
                                     "%A, slightly distracted by a few stray shapes"};
    static const char *const s2[] = {"a %n surrounded by clutter", "%A lost among many distracting objects",
                                     "a busy, cluttered scene around a %n", "a %n buried in messy clutter",
                                     "%A competing with lots of clutter", "a cluttered frame where the %n gets lost"};
    expand(m->desc[4], AES_SYNTH_DESC_CAP, m->clutter == 0 ? PICK(&r, s0) : (m->clutter == 1 ? PICK(&r, s1) : PICK(&r, s2)), vals);
}

/* ---- the sample ---------------------------------------------------------------- */

void aes_synth_generate(uint64_t seed, int64_t index, int S, uint8_t *rgb, aes_synth_sample *meta)
{
    AES_CHECK(S >= 16 && rgb && meta);
    aes_synth_sample m;
    memset(&m, 0, sizeof m);
    draw_values(seed, index, &m);
    scene sc;
    draw_scene(seed, index, &m, &sc);

    size_t N = (size_t)S * S;
    float *buf = aes_malloc((4 * N + (size_t)S) * sizeof(float), "synth planes");
    float *Y = buf, *CB = buf + N, *CR = buf + 2 * N, *tmp = buf + 3 * N, *acc = buf + 4 * N;

    draw_background(&sc, S, Y, CB, CR);
    part P[MAX_PARTS];
    for (int i = 0; i < sc.nclut; i++) {
        clutter_part(&sc, i, S, &P[0]);
        draw_part(&P[0], S, Y, CB, CR);
    }
    int br = (int)lrintf(sc.blur * S);
    if (br < 1) br = 1;
    if (m.focus == 0) {
        blur_plane(Y, tmp, acc, S, br);
        blur_plane(CB, tmp, acc, S, br);
        blur_plane(CR, tmp, acc, S, br);
    }
    int np = subject_parts(&sc, m.content, S, P);
    for (int i = 0; i < np; i++) draw_part(&P[i], S, Y, CB, CR);
    if (m.focus == 2) {
        blur_plane(Y, tmp, acc, S, br);
        blur_plane(CB, tmp, acc, S, br);
        blur_plane(CR, tmp, acc, S, br);
    }

    /* light: set the luma mean and spread exactly; colour: scale chroma,
     * narrowing it near black and white where the gamut closes */
    double s1 = 0, s2 = 0;
    for (size_t k = 0; k < N; k++) s1 += Y[k], s2 += (double)Y[k] * Y[k];
    double mean = s1 / N, var = s2 / N - mean * mean;
    float sd = (float)sqrt(var > 0 ? var : 0);
    float gain = sc.std_t / (sd > 0.03f ? sd : 0.03f), mu = (float)mean;
    for (size_t k = 0; k < N; k++) {
        float y = sc.mean_t + gain * (Y[k] - mu);
        /* carry the chroma from the room it had at the drawn luma to the room
         * at the shown one; highlights wash out, but shadows keep their
         * colour and clip per channel as a camera's would, so that a crushed
         * red ball stays dark red instead of turning black inside a red rim */
        float room = y < 0.5f ? 1.f : chroma_room(y);
        float g = sc.csat * room / fmaxf(chroma_room(Y[k]), 0.2f);
        float cb = g * CB[k], cr = g * CR[k];
        float R = y + 1.402f * cr, G = y - 0.344136f * cb - 0.714136f * cr, B = y + 1.772f * cb;
        rgb[3 * k + 0] = (uint8_t)(clampf(R, 0.f, 1.f) * 255.f + 0.5f);
        rgb[3 * k + 1] = (uint8_t)(clampf(G, 0.f, 1.f) * 255.f + 0.5f);
        rgb[3 * k + 2] = (uint8_t)(clampf(B, 0.f, 1.f) * 255.f + 0.5f);
    }
    free(buf);

    qualities(&m);
    m.score = score_of(seed, index, &m);
    votes_of(seed, index, &m);
    describe(seed, index, &sc, &m);
    *meta = m;
}

/* ---- content features -------------------------------------------------------------- */

/* Prototype of class c: Gaussian draws keyed by (seed, class), made
 * orthogonal to the prototypes of the classes before it (Gram-Schmidt) where
 * F allows, so classes are exactly orthogonal for F >= AES_SYNTH_NCLASS. */
static void prototype(uint64_t seed, int c, float *out, float *prev, int F)
{
    for (int j = 0; j <= c; j++) {
        float *v = j == c ? out : prev + (size_t)j * F;
        aes_rng r;
        sub_rng(&r, seed, (uint64_t)j, SUB_PROTO);
        for (int i = 0; i < F; i++) v[i] = aes_rng_normal(&r);
        double nn = 0;
        for (int i = 0; i < F; i++) nn += (double)v[i] * v[i];
        double raw = sqrt(nn);
        for (int q = 0; q < j && j < F; q++) {
            const float *u = prev + (size_t)q * F;
            double dot = 0;
            for (int i = 0; i < F; i++) dot += (double)u[i] * v[i];
            for (int i = 0; i < F; i++) v[i] -= (float)dot * u[i];
        }
        nn = 0;
        for (int i = 0; i < F; i++) nn += (double)v[i] * v[i];
        if (sqrt(nn) < 1e-3 * raw) { /* F too small to stay orthogonal: start afresh */
            sub_rng(&r, seed, (uint64_t)j, SUB_PROTO);
            nn = 0;
            for (int i = 0; i < F; i++) v[i] = aes_rng_normal(&r), nn += (double)v[i] * v[i];
        }
        float inv = (float)(1.0 / sqrt(nn > 0 ? nn : 1));
        for (int i = 0; i < F; i++) v[i] *= inv;
    }
}

void aes_synth_content_feature(uint64_t seed, int content, int64_t index, float *feat, int F)
{
    AES_CHECK(content >= 0 && content < AES_SYNTH_NCLASS && F > 0 && feat);
    float *prev = content > 0 ? aes_malloc((size_t)content * F * sizeof(float), "synth prototypes") : NULL;
    prototype(seed, content, feat, prev, F);
    free(prev);
    aes_rng r;
    sub_rng(&r, seed, (uint64_t)index, SUB_FEATNOISE);
    float sd = 0.1f / sqrtf((float)F);
    double nn = 0;
    for (int i = 0; i < F; i++) {
        feat[i] += sd * aes_rng_normal(&r);
        nn += (double)feat[i] * feat[i];
    }
    float inv = (float)(1.0 / sqrt(nn > 0 ? nn : 1));
    for (int i = 0; i < F; i++) feat[i] *= inv;
}
