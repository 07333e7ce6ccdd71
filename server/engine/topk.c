/*
 * topk.c -- bounded max-heaps keeping the k nearest candidates per query.
 * A candidate costs one compare against the heap's worst when it is not
 * among the best k (the common case), O(log k) when it is: partial selection,
 * never a sort of all distances.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int topk_init(npvdb_topk *t, size_t n, uint32_t k)
{
    t->dist = malloc(n * k * sizeof *t->dist);
    t->ent = malloc(n * k * sizeof *t->ent);
    t->size = calloc(n ? n : 1, sizeof *t->size);
    t->k = k;
    t->n = n;
    if (!t->dist || !t->ent || !t->size) {
        topk_free(t);
        return -1;
    }
    return 0;
}

void topk_free(npvdb_topk *t)
{
    free(t->dist);
    free(t->ent);
    free(t->size);
    t->dist = NULL;
    t->ent = NULL;
    t->size = NULL;
}

void topk_reset(npvdb_topk *t)
{
    memset(t->size, 0, t->n * sizeof *t->size);
}

static void sift_down(float *d, npvdb_entry **e, uint32_t n, uint32_t i)
{
    float dv = d[i];
    npvdb_entry *ev = e[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && d[c + 1] > d[c]) c++;
        if (d[c] <= dv) break;
        d[i] = d[c];
        e[i] = e[c];
        i = c;
    }
    d[i] = dv;
    e[i] = ev;
}

static void sift_up(float *d, npvdb_entry **e, uint32_t i)
{
    float dv = d[i];
    npvdb_entry *ev = e[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (d[p] >= dv) break;
        d[i] = d[p];
        e[i] = e[p];
        i = p;
    }
    d[i] = dv;
    e[i] = ev;
}

void topk_push(npvdb_topk *t, size_t h, float dist, npvdb_entry *ent)
{
    float *d = t->dist + h * t->k;
    npvdb_entry **e = t->ent + h * t->k;
    uint32_t n = t->size[h];
    if (n < t->k) {
        d[n] = dist;
        e[n] = ent;
        sift_up(d, e, n);
        t->size[h] = n + 1;
    } else if (dist < d[0]) {
        d[0] = dist;
        e[0] = ent;
        sift_down(d, e, n, 0);
    }
}

uint32_t topk_sort(npvdb_topk *t, size_t h)
{
    float *d = t->dist + h * t->k;
    npvdb_entry **e = t->ent + h * t->k;
    uint32_t n = t->size[h];
    /* Heap sort in place: repeatedly move the worst to the end. */
    for (uint32_t end = n; end > 1; end--) {
        float td = d[0];
        npvdb_entry *te = e[0];
        d[0] = d[end - 1];
        e[0] = e[end - 1];
        d[end - 1] = td;
        e[end - 1] = te;
        sift_down(d, e, end - 1, 0);
    }
    return n;
}
