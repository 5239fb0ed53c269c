/*
 * dashboard: the admin listener's live page (proxy/dashboard.html), compiled
 * into the binary so the proxy serves it with no file to install. The
 * definitions live in dashboard.c, generated at build time by
 * scripts/embed.sh; this module has no code and must not grow any.
 */
#ifndef SWITCHBOARD_DASHBOARD_H
#define SWITCHBOARD_DASHBOARD_H

#include <stddef.h>

/* The page's bytes, NUL-terminated (the NUL is not counted in the length);
 * static, read-only, owned by nobody. Serve as text/html; charset=utf-8. */
extern const char dashboard_html[];
extern const size_t dashboard_html_len;

#endif
