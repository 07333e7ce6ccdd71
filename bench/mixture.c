/* mixture.c -- generated benchmark data (mixture.h). */
#include "mixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double rng_uniform(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

float rng_normal(uint64_t *s)
{
    double u = rng_uniform(s), v = rng_uniform(s);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

void mixture_free(mixture *m)
{
    free(m->centre);
    free(m->basis);
    free(m->sigma);
    free(m->cum);
    memset(m, 0, sizeof *m);
}

int mixture_init(mixture *m, uint32_t centres, uint32_t dim, uint64_t *rng)
{
    memset(m, 0, sizeof *m);
    m->centres = centres;
    m->dim = dim;
    m->rank = dim < 8 ? dim : 8;
    m->centre = calloc((size_t)centres * dim, sizeof(float));
    m->basis = calloc((size_t)centres * m->rank * dim, sizeof(float));
    m->sigma = calloc(centres ? centres : 1, sizeof(float));
    m->cum = calloc(centres ? centres : 1, sizeof(double));
    if (!m->centre || !m->basis || !m->sigma || !m->cum) {
        mixture_free(m);
        return -1;
    }
    float scale = 1.0f / sqrtf((float)m->rank);
    double total = 0;
    for (size_t i = 0; i < (size_t)centres * dim; i++)
        m->centre[i] = rng_normal(rng);
    for (size_t i = 0; i < (size_t)centres * m->rank * dim; i++)
        m->basis[i] = rng_normal(rng) * scale;
    for (uint32_t c = 0; c < centres; c++) {
        m->sigma[c] = (float)(0.5 + rng_uniform(rng));
        total += 0.5 + rng_uniform(rng);
        m->cum[c] = total;
    }
    for (uint32_t c = 0; c < centres; c++)
        m->cum[c] /= total;
    return 0;
}

void mixture_sample(const mixture *m, uint64_t *rng, float *out)
{
    double u = rng_uniform(rng);
    uint32_t c = 0;
    while (c + 1 < m->centres && m->cum[c] < u)
        c++;
    float z[8];
    for (uint32_t r = 0; r < m->rank; r++)
        z[r] = rng_normal(rng);
    for (uint32_t j = 0; j < m->dim; j++) {
        float v = 0.1f * rng_normal(rng);
        for (uint32_t r = 0; r < m->rank; r++)
            v += z[r] * m->basis[((size_t)c * m->rank + r) * m->dim + j];
        out[j] = m->centre[(size_t)c * m->dim + j] + m->sigma[c] * v;
    }
}
