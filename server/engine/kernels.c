/*
 * kernels.c -- distance work in BLAS. Distances are never computed one pair
 * at a time: a block of rows against a block of centroids (or a shard) is
 * one sgemm, and the metric is applied with precomputed squared norms:
 * |x - c|^2 = |x|^2 - 2 x.c + |c|^2, where |x|^2 does not change the argmin.
 */
#include "internal.h"

#include <cblas.h>
#include <emmintrin.h>
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

/* |x| in double: the squares of any finite floats (up to 2^256 each) and
 * their sum over NPVDB_MAX_DIM terms neither overflow nor, for subnormal
 * inputs (down to 2^-298 squared), underflow to zero. Four sums so the
 * loop is not one long chain of dependent adds. */
double row_norm_exact(const float *r, uint32_t dim)
{
    double s[4] = {0, 0, 0, 0};
    uint32_t t = 0;
    for (; t + 4 <= dim; t += 4)
        for (int l = 0; l < 4; l++)
            s[l] += (double)r[t + l] * r[t + l];
    for (; t < dim; t++)
        s[0] += (double)r[t] * r[t];
    return sqrt((s[0] + s[1]) + (s[2] + s[3]));
}

/* Where the float norm and its reciprocal are exact enough to use as they
 * are; outside it (or when snrm2 overflowed or underflowed) the row is
 * scaled in double. */
#define NORM_FAST_LO 0x1p-60f
#define NORM_FAST_HI 0x1p60f

/* Scales row r to unit length in double; 0, or -1 for a zero row. */
static int normalise_exact(float *r, uint32_t dim)
{
    double nrm = row_norm_exact(r, dim);
    if (!(nrm > 0)) return -1;
    for (uint32_t t = 0; t < dim; t++)
        r[t] = (float)(r[t] / nrm);
    return 0;
}

long rows_normalise(float *x, size_t n, uint32_t dim)
{
    long zero = -1;
    for (size_t i = 0; i < n; i++) {
        float *r = x + i * dim;
        float nrm = cblas_snrm2((int)dim, r, 1);
        if (nrm >= NORM_FAST_LO && nrm <= NORM_FAST_HI)
            cblas_sscal((int)dim, 1.0f / nrm, r, 1);
        else if (normalise_exact(r, dim) && zero < 0)
            zero = (long)i;
    }
    return zero;
}

void dots_block(const float *x, size_t m, const float *y, size_t n,
                uint32_t dim, float alpha, float *out)
{
    /* One row: sgemm would pack all of y first (most of its time for a
     * single query); sgemv streams it once. */
    if (m == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)dim, alpha, y,
                    (int)dim, x, 1, 0.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n,
                    (int)dim, alpha, x, (int)dim, y, (int)dim, 0.0f, out,
                    (int)n);
}

/* argmin over v[j] + add[j] (add may be NULL), four lanes at a time with
 * SSE2 (baseline x86-64): this loop runs once per row over every centroid
 * and a scalar branchy version cost a quarter of training time. */
uint32_t argmin_row(const float *v, const float *add, uint32_t n)
{
    uint32_t j = 0;
    float best = INFINITY;
    uint32_t bi = 0;
    if (n >= 4) {
        __m128 vmin = _mm_set1_ps(INFINITY);
        __m128i vidx = _mm_setzero_si128(), cur = _mm_setr_epi32(0, 1, 2, 3);
        const __m128i four = _mm_set1_epi32(4);
        for (; j + 4 <= n; j += 4) {
            __m128 d = _mm_loadu_ps(v + j);
            if (add) d = _mm_add_ps(d, _mm_loadu_ps(add + j));
            __m128i lt = _mm_castps_si128(_mm_cmplt_ps(d, vmin));
            vmin = _mm_min_ps(d, vmin);
            vidx = _mm_or_si128(_mm_and_si128(lt, cur),
                                _mm_andnot_si128(lt, vidx));
            cur = _mm_add_epi32(cur, four);
        }
        float lm[4];
        uint32_t li[4];
        _mm_storeu_ps(lm, vmin);
        _mm_storeu_si128((__m128i *)li, vidx);
        for (int l = 0; l < 4; l++)
            if (lm[l] < best || (lm[l] == best && li[l] < bi)) {
                best = lm[l];
                bi = li[l];
            }
    }
    for (; j < n; j++) {
        float d = add ? v[j] + add[j] : v[j];
        if (d < best) {
            best = d;
            bi = j;
        }
    }
    return bi;
}

void assign_nearest(const float *x, size_t n, const float *cent,
                    const float *cnorms, uint32_t nc, uint32_t dim, int use_l2,
                    uint32_t *out, float *tmp)
{
    /* score = |c|^2 - 2 x.c (L2) or -x.c: alpha folds the factor in. */
    for (size_t b = 0; b < n; b += ASSIGN_BLOCK) {
        size_t m = n - b < ASSIGN_BLOCK ? n - b : ASSIGN_BLOCK;
        dots_block(x + b * dim, m, cent, nc, dim, use_l2 ? -2.0f : -1.0f, tmp);
        for (size_t i = 0; i < m; i++)
            out[b + i] = argmin_row(tmp + i * nc, use_l2 ? cnorms : NULL, nc);
    }
}
