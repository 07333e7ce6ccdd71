/*
 * db.c -- access to the server's one collection, and waiting for the log.
 */
#include "internal.h"

#include "npvdb/v1/npvdb.pb-c.h"

npvdb_collection *nt_db_acquire(npvdb_server *s, uint64_t *gen, nt_result *res)
{
    pthread_rwlock_rdlock(&s->coll_lock);
    if (!s->coll) {
        pthread_rwlock_unlock(&s->coll_lock);
        nt_result_fail(res, GRPC_STATUS_FAILED_PRECONDITION,
                       "no collection: call Init first");
        return NULL;
    }
    if (gen) *gen = s->gen;
    return s->coll;
}

void nt_db_release(npvdb_server *s)
{
    pthread_rwlock_unlock(&s->coll_lock);
}

void nt_db_wait_durable(npvdb_server *s, uint64_t seq, nt_result *res)
{
    if (!s->store || seq == 0) return;
    npvdb_error err = {0};
    if (npvdb_store_wait_durable(s->store, seq, &err) != NPVDB_OK)
        nt_result_fail(res, GRPC_STATUS_INTERNAL, "write-ahead log: %s",
                       err.msg);
}

int nt_metric_to_proto(npvdb_metric m)
{
    switch (m) {
    case NPVDB_METRIC_L2:
        return NPVDB__V1__METRIC__L2;
    case NPVDB_METRIC_IP:
        return NPVDB__V1__METRIC__INNER_PRODUCT;
    case NPVDB_METRIC_COSINE:
    default:
        return NPVDB__V1__METRIC__COSINE;
    }
}
