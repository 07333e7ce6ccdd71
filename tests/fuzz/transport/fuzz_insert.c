/* Fuzzes codec_decode_insert (one InsertRequest stream message). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t dim = fuzz_dim(&data, &size);
    codec_insert r;
    npvdb_error err = {0};
    npvdb_code rc = codec_decode_insert(data, size, dim, &r, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK) {
        fuzz_touch_rows(r.rows, r.n * dim);
        for (size_t i = 0; i < r.n; i++) {
            size_t len = strlen(r.keys[i]);
            if (len == 0 || len > NPVDB_MAX_KEY_LEN) abort();
        }
    }
    codec_insert_free(&r);
    return 0;
}
