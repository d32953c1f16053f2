/*
 * The embedded demo data set: procedurally rendered scenes whose aesthetic
 * attributes are known and visible in the pixels, with one description per
 * attribute generated from the attribute values in varied wording, a score
 * that is a noisy function of the attribute qualities (the mean of a 10-bin
 * vote distribution), and a content class.
 * Everything is a pure function of (seed, index): deterministic.
 */
#ifndef AESNET_SYNTH_H
#define AESNET_SYNTH_H

#include <stdint.h>

#define AES_SYNTH_NATTR 5 /* color, light, composition, focus, subject */
#define AES_SYNTH_NCLASS 6
#define AES_SYNTH_DESC_CAP 256

extern const char *const aes_synth_attr_names[AES_SYNTH_NATTR];
extern const char *const aes_synth_class_names[AES_SYNTH_NCLASS];

typedef struct aes_synth_sample {
    int content;    /* class in [0, AES_SYNTH_NCLASS) */
    /* discrete attribute values, each visible in the pixels */
    int harmony;    /* color: 0 clashing hues, 1 harmonious (analogous) */
    int saturation; /* color: 0 muted, 1 moderate, 2 oversaturated */
    int exposure;   /* light: 0 under, 1 well exposed, 2 over */
    int contrast;   /* light: 0 flat, 1 good, 2 harsh */
    int placement;  /* composition: 0 dead centre, 1 on a thirds point, 2 cut at the edge */
    int tilt;       /* composition: 0 level horizon, 1 tilted */
    int focus;      /* focus: 0 sharp subject on blurred background, 1 all sharp, 2 all blurred */
    int clutter;    /* subject: 0 clean, 1 some, 2 cluttered */
    float quality[AES_SYNTH_NATTR]; /* per attribute in [0, 1], from the values above */
    float score;    /* in [1, 10]: noisy function of the qualities; the mean of votes */
    float votes[10]; /* AVA-style counts of scores 1..10: 120 to 279 voters, spread wider
                      * for clashing colours, tilted horizons and clutter */
    char desc[AES_SYNTH_NATTR][AES_SYNTH_DESC_CAP]; /* one description per attribute */
} aes_synth_sample;

/* Render sample `index` of the set with `seed` into rgb [S, S, 3] and fill
 * meta. S >= 16. */
void aes_synth_generate(uint64_t seed, int64_t index, int S, uint8_t *rgb,
                        aes_synth_sample *meta);

/* Content feature of a sample: a fixed unit-norm class prototype (from the
 * seed) plus small per-sample noise, renormalised. feat has F floats. */
void aes_synth_content_feature(uint64_t seed, int content, int64_t index, float *feat, int F);

#endif
