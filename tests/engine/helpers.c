#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s)
{
    return (float)((next(s) >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

float *random_rows(size_t n, uint32_t dim, uint64_t seed)
{
    float *x = malloc(n * dim * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n * dim; i++)
        x[i] = uniform(&seed);
    return x;
}

float *clustered_rows(size_t n, uint32_t dim, uint32_t centres, float sigma,
                      uint64_t seed)
{
    float *c = random_rows(centres, dim, seed ^ 0xabcdef);
    float *x = malloc(n * dim * sizeof *x);
    if (!c || !x) {
        free(c);
        free(x);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const float *ci = c + (next(&seed) % centres) * dim;
        for (uint32_t d = 0; d < dim; d++)
            x[i * dim + d] = ci[d] + sigma * (uniform(&seed) + uniform(&seed) +
                                              uniform(&seed));
    }
    free(c);
    return x;
}

char **make_keys(size_t n, const char *prefix)
{
    char **k = malloc(n * sizeof *k);
    if (!k) return NULL;
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s%zu", prefix, i);
        k[i] = strdup(buf);
    }
    return k;
}

void free_keys(char **keys, size_t n)
{
    if (!keys) return;
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

double ref_distance(npvdb_metric m, const float *q, const float *x,
                    uint32_t dim)
{
    double dot = 0, qq = 0, xx = 0;
    for (uint32_t d = 0; d < dim; d++) {
        dot += (double)q[d] * x[d];
        qq += (double)q[d] * q[d];
        xx += (double)x[d] * x[d];
    }
    switch (m) {
    case NPVDB_METRIC_COSINE:
        return 1.0 - dot / sqrt(qq * xx);
    case NPVDB_METRIC_L2:
        return sqrt(fmax(0, qq + xx - 2 * dot));
    case NPVDB_METRIC_IP:
        return -dot;
    }
    return 0;
}

void ref_knn(npvdb_metric m, const float *q, const float *x, size_t n,
             uint32_t dim, uint32_t k, size_t *idx, double *dist)
{
    /* Insertion into a sorted array of k: fine for test sizes. */
    uint32_t have = 0;
    for (size_t i = 0; i < n; i++) {
        double d = ref_distance(m, q, x + i * dim, dim);
        if (have == k && d >= dist[k - 1]) continue;
        uint32_t j = have < k ? have++ : k - 1;
        while (j > 0 && dist[j - 1] > d) {
            dist[j] = dist[j - 1];
            idx[j] = idx[j - 1];
            j--;
        }
        dist[j] = d;
        idx[j] = i;
    }
}

size_t key_index(const char *key)
{
    return (size_t)strtoull(key + 1, NULL, 10);
}
