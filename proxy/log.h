/*
 * log: the error log on stderr, one line per event, tagged with the process
 * role and pid. Only callers that decide policy log; helpers return errors.
 */
#ifndef SWITCHBOARD_LOG_H
#define SWITCHBOARD_LOG_H

#include "config.h"

/* Set the threshold and the role shown in each line ("master", "worker 0"). */
void log_init(enum config_log_level level, const char *role);

/* printf-style; dropped when level is above the threshold. */
void log_msg(enum config_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
