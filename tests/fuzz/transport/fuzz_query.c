/* Fuzzes the shared GetClosestRequest / SearchRequest decoder. The first byte
 * picks the dimension (low 4 bits, see fuzz_common.h) and the decoder (bit
 * 4: 0 codec_decode_query, 1 codec_decode_search). The same message is also
 * decoded from three pieces (cut at a third and two thirds, the way gRPC
 * hands over a message in slices, a filter straddling them): the outcome
 * must be the same. */
#include "fuzz_common.h"

static void check_same_in_pieces(const uint8_t *data, size_t size, uint32_t dim,
                                 int search, npvdb_code rc,
                                 const codec_query *whole)
{
    size_t a = size / 3, b = 2 * size / 3;
    codec_span spans[3] = {{data, a}, {data + a, b - a}, {data + b, size - b}};
    codec_query r;
    npvdb_error err = {0};
    npvdb_code rc2 = search ? codec_decode_search_spans(spans, 3, dim, &r, &err)
                            : codec_decode_query_spans(spans, 3, dim, &r, &err);
    if (rc2 != rc) abort();
    if (rc == NPVDB_OK &&
        (r.nq != whole->nq || r.k != whole->k || r.nprobe != whole->nprobe ||
         memcmp(r.queries, whole->queries, r.nq * dim * sizeof(float)) ||
         r.with_payload != whole->with_payload ||
         r.collection.len != whole->collection.len ||
         memcmp(r.collection.s, whole->collection.s, r.collection.len) ||
         !r.filter.root != !whole->filter.root))
        abort();
    codec_query_free(&r);
}

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
        fuzz_touch_rows(r.queries, r.nq * dim);
    } else if (r.queries || r.nq) {
        abort(); /* a failed decode leaves *out empty */
    }
    check_same_in_pieces(data, size, dim, search, rc, &r);
    codec_query_free(&r);
    return 0;
}
