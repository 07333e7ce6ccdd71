/* Fuzzes codec_decode_init (InitRequest). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    codec_init r;
    npvdb_error err = {0};
    npvdb_code rc = codec_decode_init(data, size, &r, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK) {
        if (r.cfg.dim == 0 || r.cfg.dim > NPVDB_MAX_DIM) abort();
        fuzz_check_rows(r.train, r.n_train * r.cfg.dim);
    } else if (r.train) {
        abort(); /* a failed decode leaves nothing allocated */
    }
    codec_init_free(&r);
    return 0;
}
