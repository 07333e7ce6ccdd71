/* Fuzzes codec_decode_payloads (InsertRequest.payloads): the first byte
 * gives the key count. Every blob decoded must be canonical, and encoding
 * it back to the wire and decoding again must give the same bytes. */
#include "fuzz_common.h"

static void round_trip(const npvdb_payload *p)
{
    size_t n = codec_payload_size(p);
    /* InsertRequest{payloads: [p]}: tag 0x22, length, body. */
    uint8_t *buf = malloc(n + 16);
    if (!buf) return;
    buf[0] = 0x22;
    size_t at = 1, v = n;
    while (v >= 0x80) {
        buf[at++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    buf[at++] = (uint8_t)v;
    if (codec_payload_put(p, buf + at) != buf + at + n) abort();
    npvdb_payload *again = NULL;
    npvdb_error err = {0};
    if (codec_decode_payloads(buf, at + n, 1, &again, &err) != NPVDB_OK)
        abort();
    if (again[0].len != p->len ||
        (p->len && memcmp(again[0].data, p->data, p->len)))
        abort();
    codec_payloads_free(again, 1);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n_keys = size ? data[0] % 8 : 0;
    if (size) {
        data++;
        size--;
    }
    npvdb_payload *p = NULL;
    npvdb_error err = {0};
    npvdb_code rc = codec_decode_payloads(data, size, n_keys, &p, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK && p)
        for (size_t i = 0; i < n_keys; i++) {
            if (npvdb_payload_check(p[i].data, p[i].len, &err) != NPVDB_OK)
                abort();
            round_trip(&p[i]);
        }
    codec_payloads_free(p, p ? n_keys : 0);
    return 0;
}
