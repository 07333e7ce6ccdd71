/*
 * kernels.c -- distance work in BLAS. Distances are never computed one pair
 * at a time: a block of rows against a block of centroids (or a shard) is
 * one sgemm, and the metric is applied with precomputed squared norms:
 * |x - c|^2 = |x|^2 - 2 x.c + |c|^2, where |x|^2 does not change the argmin.
 */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void rows_sqnorms(const float *x, size_t n, uint32_t dim, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const float *r = x + i * dim;
        out[i] = cblas_sdot((int)dim, r, 1, r, 1);
    }
}

/* Bit test instead of isfinite() so the loop vectorises. */
int rows_finite(const float *x, size_t n)
{
    const unsigned char *p = (const unsigned char *)x;
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, p + 4 * i, 4);
        bad |= (b & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

long rows_normalise(float *x, size_t n, uint32_t dim)
{
    for (size_t i = 0; i < n; i++) {
        float *r = x + i * dim;
        float nrm = cblas_snrm2((int)dim, r, 1);
        if (!(nrm > 0.0f) || !isfinite(1.0f / nrm)) return (long)i;
        cblas_sscal((int)dim, 1.0f / nrm, r, 1);
    }
    return -1;
}

static uint32_t argmin_row(const float *dots, const float *cnorms, uint32_t nc)
{
    uint32_t best = 0;
    float bd = cnorms ? cnorms[0] - 2.0f * dots[0] : -dots[0];
    for (uint32_t j = 1; j < nc; j++) {
        float d = cnorms ? cnorms[j] - 2.0f * dots[j] : -dots[j];
        if (d < bd) {
            bd = d;
            best = j;
        }
    }
    return best;
}

void assign_nearest(const float *x, size_t n, const float *cent,
                    const float *cnorms, uint32_t nc, uint32_t dim, int use_l2,
                    uint32_t *out, float *tmp)
{
    for (size_t b = 0; b < n; b += ASSIGN_BLOCK) {
        size_t m = n - b < ASSIGN_BLOCK ? n - b : ASSIGN_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nc,
                    (int)dim, 1.0f, x + b * dim, (int)dim, cent, (int)dim, 0.0f,
                    tmp, (int)nc);
        for (size_t i = 0; i < m; i++)
            out[b + i] = argmin_row(tmp + i * nc, use_l2 ? cnorms : NULL, nc);
    }
}
