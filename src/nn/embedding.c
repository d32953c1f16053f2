/*
 * Token + position embedding: out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :].
 * wpe (and dwpe) may be NULL: token embedding only.
 */
#include "aesnet/core.h"
#include "aesnet/nn.h"

/* Channel block: the unit of work of the backward pass (see there). */
#define COL_BLOCK 64

static void check_tokens(const int32_t *tokens, int B, int T, int V)
{
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            aes_internal_error("token %d at position %zu outside the vocabulary [0, %d)",
                               (int)tokens[i], i, V);
}

void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                       int B, int T, int C, int V)
{
    check_tokens(tokens, B, T, V);
    const int BT = B * T;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < BT; i++) {
        const float *e = wte + (size_t)tokens[i] * C;
        const float *p = wpe ? wpe + (size_t)(i % T) * C : NULL;
        float *y = out + (size_t)i * C;
        if (p)
            for (int c = 0; c < C; c++) y[c] = e[c] + p[c];
        else
            for (int c = 0; c < C; c++) y[c] = e[c];
    }
}

/* A token may appear many times in the batch, so splitting the work over
 * tokens would race on its row of dwte. Instead each task owns a block of
 * channels of every row of dwte and dwpe and walks all (b, t) in order: no
 * two threads touch the same element, and every sum is taken in (b, t)
 * order whatever the thread count, so the result repeats bit for bit. */
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B,
                        int T, int C, int V)
{
    check_tokens(tokens, B, T, V);
    const int BT = B * T;
    const int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nblk; k++) {
        const int c0 = k * COL_BLOCK;
        const int wd = C - c0 < COL_BLOCK ? C - c0 : COL_BLOCK;
        for (int i = 0; i < BT; i++) {
            const float *d = dout + (size_t)i * C + c0;
            float *ge = dwte + (size_t)tokens[i] * C + c0;
            for (int j = 0; j < wd; j++) ge[j] += d[j];
            if (dwpe) {
                float *gp = dwpe + (size_t)(i % T) * C + c0;
                for (int j = 0; j < wd; j++) gp[j] += d[j];
            }
        }
    }
}
