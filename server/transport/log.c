/*
 * log.c -- one line per notable event, to stderr, with a UTC timestamp.
 */
#include "transport.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

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
    fprintf(stderr, "%s npvdb: %s\n", stamp, line);
}
