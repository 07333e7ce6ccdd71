/* Fuzzes codec_decode_filter (the Filter of Search, GetClosest, Count and
 * Scroll) and the Count and Scroll decoders around it. A decoded tree must
 * respect the bounds the prescan enforces. */
#include "fuzz_common.h"

static size_t walk(const npvdb_filter *f, unsigned depth)
{
    if (depth > NPVDB_MAX_FILTER_DEPTH) abort();
    const npvdb_cond *lists[3] = {f->must, f->should, f->must_not};
    const uint32_t ns[3] = {f->n_must, f->n_should, f->n_must_not};
    size_t n = 0;
    for (int l = 0; l < 3; l++)
        for (uint32_t i = 0; i < ns[l]; i++) {
            const npvdb_cond *c = &lists[l][i];
            n++;
            if (c->kind == NPVDB_COND_FILTER)
                n += walk(c->sub, depth + 1);
            else if (c->kind == NPVDB_COND_MATCH &&
                     (c->n_values == 0 || c->n_values > NPVDB_MAX_LIST))
                abort();
            else if (c->kind == NPVDB_COND_RANGE && !c->has_lower &&
                     !c->has_upper)
                abort();
        }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    npvdb_error err = {0};
    codec_filter f;
    npvdb_code rc = codec_decode_filter(data, size, &f, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK && walk(f.root, 1) > NPVDB_MAX_FILTER_CONDS) abort();
    codec_filter_free(&f);
    codec_count c;
    rc = codec_decode_count(data, size, &c, &err);
    fuzz_check_err(rc, &err);
    codec_count_free(&c);
    codec_scroll s;
    rc = codec_decode_scroll(data, size, &s, &err);
    fuzz_check_err(rc, &err);
    if (rc == NPVDB_OK && (s.limit == 0 || s.limit > NPVDB_MAX_K)) abort();
    codec_scroll_free(&s);
    return 0;
}
