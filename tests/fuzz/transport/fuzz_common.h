/*
 * fuzz_common.h -- shared by the transport's fuzz targets: the first input
 * byte picks the collection dimension the decoder is told about, the rest is
 * the message. A decode must either succeed with consistent output or fail
 * with a message; never crash, leak or read out of bounds.
 */
#ifndef NPVDB_FUZZ_COMMON_H
#define NPVDB_FUZZ_COMMON_H

#include "codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Dimensions 1..16 (small, so random inputs can match row sizes). */
static inline uint32_t fuzz_dim(const uint8_t **data, size_t *size)
{
    if (*size == 0) return 1;
    uint32_t dim = (uint32_t)((*data)[0] % 16) + 1;
    (*data)++;
    (*size)--;
    return dim;
}

/* On failure the error must carry a message; on success with rows, every
 * decoded float must be finite (NaN/Inf are refused). */
static inline void fuzz_check_rows(const float *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(rows[i] - rows[i] == 0.0f)) abort();
}

/* Reads every decoded float (ASan checks they are all there). Insert and
 * query values are the engine's to check (NaN, Inf), not the codec's. */
static inline void fuzz_touch_rows(const float *rows, size_t n)
{
    volatile uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &rows[i], sizeof u);
        acc ^= u;
    }
    (void)acc;
}

static inline void fuzz_check_err(npvdb_code rc, const npvdb_error *err)
{
    if (rc != NPVDB_OK && (err->code != rc || err->msg[0] == 0)) abort();
}

#endif
