/*
 * mixture.h -- the benchmarks' generated data: a seeded mixture of low-rank
 * Gaussians, the same shape as bench/gen_dataset.py. Each cluster stretches
 * along its own random rank-8 subspace plus a little isotropic noise, with
 * unequal sizes and spreads, so IVF cells cut clusters as on real data.
 * Shared by npvdb-engine-bench and npvdb-filter-bench.
 */
#ifndef NPVDB_BENCH_MIXTURE_H
#define NPVDB_BENCH_MIXTURE_H

#include <stdint.h>

uint64_t rng_next(uint64_t *s);  /* splitmix64 */
double rng_uniform(uint64_t *s); /* in (0, 1) */
float rng_normal(uint64_t *s);   /* Box-Muller, one of the pair */

typedef struct mixture {
    uint32_t centres, dim, rank;
    float *centre; /* centres * dim */
    float *basis;  /* centres * rank * dim */
    float *sigma;  /* centres */
    double *cum;   /* cumulative weights, the last 1 */
} mixture;

/* Draws the clusters from *rng; -1 (nothing allocated) when out of memory.
 * Free with mixture_free. */
int mixture_init(mixture *m, uint32_t centres, uint32_t dim, uint64_t *rng);
void mixture_free(mixture *m);
/* One row of m->dim floats into out. */
void mixture_sample(const mixture *m, uint64_t *rng, float *out);

#endif /* NPVDB_BENCH_MIXTURE_H */
