/*
 * crc32c.c -- CRC-32C (polynomial 0x82F63B78, reflected), as used by iSCSI,
 * ext4 and LevelDB. On x86-64 with SSE4.2 (checked at run time, so Debug
 * builds without -march get it too) the crc32 instruction is about 20x faster
 * than the table, which matters when a snapshot checksums gigabytes.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static int crc32c_have_hw;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc32c_have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
    while (len--)
        crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t word;
        memcpy(&word, p, 8); /* unaligned-safe load */
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t npvdb_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc32c_once, crc32c_init);
    const unsigned char *p = buf;
    /* Pre- and post-inversion make the CRC sensitive to leading zeros. */
#if defined(__x86_64__)
    if (crc32c_have_hw) return ~crc32c_hw(~crc, p, len);
#endif
    return ~crc32c_sw(~crc, p, len);
}
