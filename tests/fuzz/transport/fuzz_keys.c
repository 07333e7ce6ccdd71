/* Fuzzes the key-list decoders (DeleteRequest, GetRequest), the empty
 * requests (Snapshot, Info) and the health check: the first byte picks one. */
#include "fuzz_common.h"

static void keys(int get, const uint8_t *data, size_t size)
{
    codec_keys r;
    npvdb_error err = {0};
    npvdb_code rc = get ? codec_decode_get(data, size, &r, &err)
                        : codec_decode_delete(data, size, &r, &err);
    fuzz_check_err(rc, &err);
    for (size_t i = 0; rc == NPVDB_OK && i < r.n; i++) {
        size_t len = strlen(r.keys[i]);
        if (len == 0 || len > NPVDB_MAX_KEY_LEN) abort();
    }
    codec_keys_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    uint8_t which = data[0] % 4;
    data++;
    size--;
    npvdb_error err = {0};
    char svc[64];
    switch (which) {
    case 0:
    case 1:
        keys(which, data, size);
        break;
    case 2:
        fuzz_check_err(codec_decode_empty(data, size, &err), &err);
        break;
    default: {
        npvdb_code rc = codec_decode_health(data, size, svc, sizeof svc, &err);
        fuzz_check_err(rc, &err);
        if (rc == NPVDB_OK && strlen(svc) >= sizeof svc) abort();
    }
    }
    return 0;
}
