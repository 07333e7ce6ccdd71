/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of every log record and of
 * every snapshot dataset. Uses the SSE4.2 crc32 instruction when the build
 * targets it (x86-64-v2 and later), a table otherwise: same answers.
 */
#ifndef NPVDB_CRC32C_H
#define NPVDB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a running CRC: start with crc = 0, feed the pieces in order. */
uint32_t npvdb_crc32c(uint32_t crc, const void *buf, size_t len);

#endif /* NPVDB_CRC32C_H */
