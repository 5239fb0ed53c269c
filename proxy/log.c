/*
 * log: formats one line per call and writes it to stderr in a single write(2)
 * so lines from the master and the workers never interleave mid-line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static enum config_log_level log_threshold = LOG_LEVEL_INFO;
static char log_role[32] = "switchboard";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(enum config_log_level level, const char *role)
{
    log_threshold = level;
    util_strlcpy(log_role, role, sizeof(log_role));
}

void log_msg(enum config_log_level level, const char *fmt, ...)
{
    if (level > log_threshold) {
        return;
    }
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03dZ [%s] %s[%d]: ",
                  (int)(tv.tv_usec / 1000), level_names[level], log_role,
                  (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        m = 0;
    }
    n += m;
    if (n > (int)sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
