/* testutil.h -- temporary directories and file surgery for storage tests. */
#ifndef NPVDB_STORAGE_TESTUTIL_H
#define NPVDB_STORAGE_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh empty directory under $TMPDIR (or /tmp); caller frees the string
 * and removes the tree with tu_rmtree. */
char *tu_tempdir(void);
void tu_rmtree(const char *dir);
/* dir/name joined; static buffer per call site is not thread safe: caller
 * frees. */
char *tu_join(const char *dir, const char *name);
/* Copies file src to dst (overwriting). Returns 0 on success. */
int tu_copy(const char *src, const char *dst);
long long tu_size(const char *path);
int tu_truncate(const char *path, long long size);
/* XORs byte `off` of the file with mask. */
int tu_flip(const char *path, long long off, uint8_t mask);
/* Names in dir starting with prefix, counted. */
int tu_count(const char *dir, const char *prefix);
/* First name in dir (sorted) starting with prefix and ending with suffix;
 * caller frees; NULL if none. */
char *tu_find(const char *dir, const char *prefix, const char *suffix,
              int newest);

/* Copies the fixture directory src into dst (created), gunzipping *.gz
 * files (the name loses .gz). Returns 0 on success. */
int tu_copy_fixture(const char *src, const char *dst);

#endif
