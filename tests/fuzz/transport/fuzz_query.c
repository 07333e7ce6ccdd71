/* Fuzzes codec_decode_query (GetClosestRequest). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint32_t dim = fuzz_dim(&data, &size);
    codec_query r;
    npvdb_error err = {0};
    npvdb_code rc = codec_decode_query(data, size, dim, &r, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK) {
        if (r.nq == 0 || r.k == 0 || r.k > NPVDB_MAX_K) abort();
        fuzz_check_rows(r.queries, r.nq * dim);
    }
    codec_query_free(&r);
    return 0;
}
