/*
 * peers.c -- counted calls per connection (--max-calls-per-connection).
 *
 * gRPC enforces HTTP/2 MAX_CONCURRENT_STREAMS only once the client has
 * acknowledged our SETTINGS (chttp2 compares the stream count with the
 * *acked* settings, whose value is unlimited until the ACK). A client that
 * never reads never ACKs, so it can open any number of streams; without
 * this bound its calls could take every one of max_concurrent_calls.
 *
 * A connection is known by grpc_call_get_peer ("ipv4:127.0.0.1:54321"),
 * one name per TCP connection. Unix-socket peers all share one name
 * ("unix:..."), so they are not bounded here (only by the server-wide
 * limit). The table holds one entry per connection with counted calls
 * alive: at most max_concurrent_calls entries, chained in a fixed array
 * of buckets, under one mutex taken twice per counted call.
 */
#include "internal.h"

#include <grpc/support/alloc.h>
#include <stdlib.h>
#include <string.h>

struct nt_peer {
    nt_lane lane; /* its calls' queued jobs (exec.c) */
    struct nt_peer *next;
    char *name; /* from grpc_call_get_peer: gpr_free'd */
    uint64_t hash;
    long calls; /* counted calls of this connection alive */
};

void nt_peers_init(npvdb_server *s)
{
    pthread_mutex_init(&s->peers_mu, NULL);
    memset(s->peers, 0, sizeof s->peers);
}

void nt_peers_destroy(npvdb_server *s)
{
    for (size_t i = 0; i < NT_PEER_BUCKETS; i++) {
        nt_peer *p = s->peers[i];
        while (p) {
            nt_peer *next = p->next;
            gpr_free(p->name);
            free(p);
            p = next;
        }
        s->peers[i] = NULL;
    }
    pthread_mutex_destroy(&s->peers_mu);
}

static uint64_t fnv1a(const char *str)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

int nt_peer_admit(nt_call *c, long *held)
{
    npvdb_server *s = c->srv;
    *held = 0;
    if (s->max_calls_per_peer <= 0) return 1;
    char *name = grpc_call_get_peer(c->call); /* ours: gpr_free */
    if (!name) return 1;
    if (strncmp(name, "unix:", 5) == 0) { /* one name for every connection */
        gpr_free(name);
        return 1;
    }
    uint64_t h = fnv1a(name);
    nt_peer **head = &s->peers[h % NT_PEER_BUCKETS];
    int ok = 1;
    pthread_mutex_lock(&s->peers_mu);
    nt_peer *p = *head;
    while (p && !(p->hash == h && strcmp(p->name, name) == 0))
        p = p->next;
    if (p) {
        gpr_free(name);
        if (p->calls >= s->max_calls_per_peer) {
            *held = p->calls;
            ok = 0;
        } else {
            p->calls++;
            c->peer = p;
        }
    } else {
        p = malloc(sizeof *p);
        if (!p) {
            /* Out of memory: not tracked, the server-wide limit holds. */
            gpr_free(name);
        } else {
            memset(&p->lane, 0, sizeof p->lane);
            p->name = name;
            p->hash = h;
            p->calls = 1;
            p->next = *head;
            *head = p;
            c->peer = p;
        }
    }
    pthread_mutex_unlock(&s->peers_mu);
    return ok;
}

nt_lane *nt_peer_lane(nt_call *c)
{
    return c->peer ? &c->peer->lane : NULL;
}

void nt_peer_release(nt_call *c)
{
    nt_peer *p = c->peer;
    if (!p) return;
    npvdb_server *s = c->srv;
    c->peer = NULL;
    pthread_mutex_lock(&s->peers_mu);
    if (--p->calls == 0) {
        nt_peer **pp = &s->peers[p->hash % NT_PEER_BUCKETS];
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
        gpr_free(p->name);
        free(p);
    }
    pthread_mutex_unlock(&s->peers_mu);
}
