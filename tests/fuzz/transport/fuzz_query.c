/* Fuzzes the shared GetClosestRequest / SearchRequest decoder. The first byte
 * picks the dimension (low 4 bits, see fuzz_common.h) and the decoder (bit
 * 4: 0 codec_decode_query, 1 codec_decode_search). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int search = size > 0 && (data[0] & 0x10);
    uint32_t dim = fuzz_dim(&data, &size);
    codec_query r;
    npvdb_error err = {0};
    npvdb_code rc = search ? codec_decode_search(data, size, dim, &r, &err)
                           : codec_decode_query(data, size, dim, &r, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK) {
        if (r.nq == 0 || r.k == 0 || r.k > NPVDB_MAX_K) abort();
        fuzz_check_rows(r.queries, r.nq * dim);
    } else if (r.queries || r.nq) {
        abort(); /* a failed decode leaves *out empty */
    }
    codec_query_free(&r);
    return 0;
}
