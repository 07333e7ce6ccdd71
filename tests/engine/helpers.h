/* helpers.h -- data generators and a brute-force reference for engine tests. */
#ifndef NPVDB_TEST_HELPERS_H
#define NPVDB_TEST_HELPERS_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>

/* Deterministic uniform floats in [-1, 1). */
float *random_rows(size_t n, uint32_t dim, uint64_t seed);
/* n rows around `centres` Gaussian-ish centres (spread `sigma`). */
float *clustered_rows(size_t n, uint32_t dim, uint32_t centres, float sigma,
                      uint64_t seed);
/* Keys "k<i>"; free with free_keys. */
char **make_keys(size_t n, const char *prefix);
void free_keys(char **keys, size_t n);
/* Exact distance under the metric, in double. */
double ref_distance(npvdb_metric m, const float *q, const float *x,
                    uint32_t dim);
/* Indices of the k nearest rows of q among x (n rows), ascending. */
void ref_knn(npvdb_metric m, const float *q, const float *x, size_t n,
             uint32_t dim, uint32_t k, size_t *idx, double *dist);
/* Row index of key "k<i>" (the prefix is one char). */
size_t key_index(const char *key);

#endif
