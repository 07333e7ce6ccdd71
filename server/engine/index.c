/*
 * index.c -- npvdb_index, a trained index as plain data. Its free is in the
 * base library (no BLAS) so that the log's decoders, which build one from
 * a record, link without the engine (the fuzz targets).
 */
#include "npvdb.h"

#include <stdlib.h>
#include <string.h>

void npvdb_index_free(npvdb_index *ix)
{
    if (!ix) return;
    free(ix->centroids);
    free(ix->group_centres);
    free(ix->group_of);
    memset(ix, 0, sizeof *ix);
}
