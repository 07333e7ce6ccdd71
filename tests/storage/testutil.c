/* testutil.c -- see testutil.h. */
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

char *tu_tempdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/npvdb-storage-XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) return NULL;
    return strdup(tmpl);
}

void tu_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = tu_join(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            tu_rmtree(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

char *tu_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int tu_copy(const char *src, const char *dst)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    int rc = (a && b) ? 0 : -1;
    char buf[65536];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = -1;
    if (a) fclose(a);
    if (b && fclose(b) != 0) rc = -1;
    return rc;
}

long long tu_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int tu_truncate(const char *path, long long size)
{
    return truncate(path, (off_t)size);
}

int tu_flip(const char *path, long long off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    if (fd < 0) return -1;
    uint8_t b;
    int rc = -1;
    if (pread(fd, &b, 1, off) == 1) {
        b ^= mask;
        rc = pwrite(fd, &b, 1, off) == 1 ? 0 : -1;
    }
    close(fd);
    return rc;
}

int tu_count(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

char *tu_find(const char *dir, const char *prefix, const char *suffix,
              int newest)
{
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char best[512] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || l < sl ||
            strcmp(e->d_name + l - sl, suffix) != 0 || l >= sizeof best)
            continue;
        int c = best[0] ? strcmp(e->d_name, best) : 0;
        if (!best[0] || (newest ? c > 0 : c < 0)) strcpy(best, e->d_name);
    }
    closedir(d);
    return best[0] ? tu_join(dir, best) : NULL;
}

/* Gunzips src into dst. */
static int gunzip_to(const char *src, const char *dst)
{
    gzFile in = gzopen(src, "rb");
    FILE *out = fopen(dst, "wb");
    int rc = in && out ? 0 : -1;
    char buf[65536];
    int n;
    while (rc == 0 && (n = gzread(in, buf, sizeof buf)) > 0)
        if (fwrite(buf, 1, (size_t)n, out) != (size_t)n) rc = -1;
    if (rc == 0 && n < 0) rc = -1;
    if (in) gzclose(in);
    if (out && fclose(out) != 0) rc = -1;
    return rc;
}

int tu_copy_fixture(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    if (!d) return -1;
    mkdir(dst, 0755);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(e->d_name);
        char *from = tu_join(src, e->d_name);
        char *to = tu_join(dst, e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".gz") == 0) {
            to[strlen(to) - 3] = '\0';
            rc = gunzip_to(from, to);
        } else {
            rc = tu_copy(from, to);
        }
        free(from);
        free(to);
    }
    closedir(d);
    return rc;
}
