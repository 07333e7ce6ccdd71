/*
 * util.h -- small helpers shared by the storage files: error values, log
 * lines, little-endian codecs and whole-buffer I/O that survives short writes
 * and EINTR. Internal to server/storage.
 */
#ifndef NPVDB_STORAGE_UTIL_H
#define NPVDB_STORAGE_UTIL_H

#include "npvdb.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "storage writes float32 rows as they are in memory: little-endian only"
#endif

/* The code for a failed write: ELIMIT for a full disk or file size limit,
 * EINTERNAL otherwise. */
npvdb_code st_errno_code(int errnum);

/* One line to stderr, prefixed with "npvdb storage: ". */
void st_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes all len bytes at offset; returns 0 or -1 with errno set. */
int st_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* fsync of a directory, so a create, rename or unlink in it is durable. */
int st_fsync_dir(const char *dir);

/* Joins dir and name into a malloc'ed path (caller frees); NULL on ENOMEM. */
char *st_path(const char *dir, const char *name);

static inline void st_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void st_put_u64(uint8_t *p, uint64_t v)
{
    st_put_u32(p, (uint32_t)v);
    st_put_u32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t st_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline uint64_t st_get_u64(const uint8_t *p)
{
    return (uint64_t)st_get_u32(p) | (uint64_t)st_get_u32(p + 4) << 32;
}

#endif /* NPVDB_STORAGE_UTIL_H */
