/*
 * fuzz_conf: libFuzzer target for proxy/config.c, the conf file reader.
 *
 * The input is a conf file's text (cut at its first NUL byte: config_load
 * refuses a file holding one before it parses anything). It is read with
 * config_load_string, as the master reads a file, into a fresh config.
 *
 * A finding is a crash, a sanitizer report, a leak, or a broken promise of
 * config.h:
 *   - a refusal's message is "fuzz.conf:LINE: message" with LINE a line of
 *     the input, or "fuzz.conf: message" when no line applies, and holds
 *     no control character (it is printed to a terminal or a log as is);
 *   - a conf that loads has what the workers rely on without checking
 *     again: at least one listen address, every route's upstream resolved
 *     to a pool with at least one server, a [route /] when there is one
 *     pool, and config_route_match answering in range.
 *
 * Owns nothing past one call but the config it reads into, kept from one
 * call to the next.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

static void conf_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz: %s\n", what);
    if (detail != NULL) {
        fprintf(stderr, "---\n%s\n---\n", detail);
    }
    abort();
}

/* The refusal's "fuzz.conf:LINE: " or "fuzz.conf: " prefix, and the rest. */
static void check_refusal(const char *err, size_t lines)
{
    static const char name[] = "fuzz.conf:";
    if (strncmp(err, name, sizeof(name) - 1) != 0) {
        conf_fail("a refusal that does not start with the file's name", err);
    }
    const char *s = err + sizeof(name) - 1;
    if (*s >= '0' && *s <= '9') {
        char *end;
        unsigned long line = strtoul(s, &end, 10);
        if (line == 0 || line > lines || *end != ':') {
            conf_fail("a refusal naming a line the file does not have", err);
        }
        s = end + 1;
    }
    if (s[0] != ' ' || s[1] == '\0' || s[1] == ' ') {
        conf_fail("a refusal without a message", err);
    }
    for (const char *c = err; *c != '\0'; c++) {
        unsigned char u = (unsigned char)*c;
        if (u < 0x20 || u == 0x7f) {
            conf_fail("a control character in a refusal", err);
        }
    }
}

static void check_loaded(const struct config *cfg)
{
    if (cfg->n_listen < 1 || cfg->n_listen > CONFIG_MAX_LISTEN) {
        conf_fail("a conf that loads without a listen address", NULL);
    }
    if (cfg->n_upstreams < 1) {
        conf_fail("a conf that loads without an upstream", NULL);
    }
    for (int u = 0; u < cfg->n_upstreams; u++) {
        if (cfg->upstreams[u].n_servers < 1) {
            conf_fail("a pool without a server loaded", cfg->upstreams[u].name);
        }
    }
    for (int r = 0; r < cfg->n_routes; r++) {
        int u = cfg->routes[r].upstream;
        if (u < 0 || u >= cfg->n_upstreams) {
            conf_fail("a route whose upstream is not resolved",
                      cfg->routes[r].prefix);
        }
    }
    int have_root = 0;
    for (int r = 0; r < cfg->n_routes; r++) {
        have_root |= strcmp(cfg->routes[r].prefix, "/") == 0;
    }
    if (cfg->n_upstreams == 1 && !have_root) {
        conf_fail("one pool, and no route for every path", NULL);
    }
    static const char *const hosts[] = {NULL, "a.example", "A.Example:8080",
                                        "x.a.example", "[::1]:80", ""};
    static const char *const paths[] = {"/", "/api/v1/x", "/a", "*", ""};
    for (size_t h = 0; h < sizeof(hosts) / sizeof(hosts[0]); h++) {
        for (size_t q = 0; q < sizeof(paths) / sizeof(paths[0]); q++) {
            const char *host = hosts[h];
            int r = config_route_match(cfg, host, host ? strlen(host) : 0,
                                       paths[q], strlen(paths[q]));
            if (r < -1 || r >= cfg->n_routes) {
                conf_fail("config_route_match out of range", paths[q]);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t len = nul != NULL ? (size_t)(nul - data) : size;
    /* One config for every run: config_load_string resets it first, and
     * a fresh megabyte-and-a-half each time would be most of the work. */
    static struct config *cfg;
    if (cfg == NULL && (cfg = config_new()) == NULL) {
        return 0;
    }
    char *text = malloc(len + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, len);
    text[len] = '\0';
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
    }

    char err[512];
    memset(err, 'x', sizeof(err));
    if (config_load_string(cfg, text, "fuzz.conf", err, sizeof(err)) != 0) {
        if (memchr(err, '\0', sizeof(err)) == NULL) {
            conf_fail("a refusal that is not a string", NULL);
        }
        check_refusal(err, lines);
    } else {
        check_loaded(cfg);
    }
    free(text);
    return 0;
}
