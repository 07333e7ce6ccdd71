/*
 * log.c -- one line per notable event, to stderr, with a UTC timestamp.
 */
#include "transport.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

static atomic_int json;

void npvdb_log_set_json(int on)
{
    atomic_store(&json, on);
}

/* `s` as the inside of a JSON string (quotes, backslashes and control
 * characters escaped; a cut multi-byte character is left to the reader). */
static void json_escape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
}

/* The level of a line, from its words: the log has few enough call sites
 * that a level per call would be noise. */
static const char *level_of(const char *line)
{
    if (strstr(line, "failed") || strstr(line, "cannot") ||
        strstr(line, "out of memory"))
        return "error";
    if (strstr(line, "refused") || strstr(line, "cancelling")) return "warn";
    return "info";
}

void npvdb_log(const char *fmt, ...)
{
    char line[1024], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line: stdio locks the stream, so lines never mix. */
    if (atomic_load(&json)) {
        char esc[sizeof line * 6 + 8];
        json_escape(line, esc, sizeof esc);
        fprintf(stderr,
                "{\"ts\":\"%s\",\"level\":\"%s\",\"logger\":\"npvdb\","
                "\"msg\":\"%s\"}\n",
                stamp, level_of(line), esc);
        return;
    }
    fprintf(stderr, "%s npvdb: %s\n", stamp, line);
}
