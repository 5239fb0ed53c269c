/*
 * config: the conf file, read through one table of directives.
 *
 * Owns parsing (inih), validation and the in-memory struct config. It never
 * touches sockets or the event loop: the master reads a conf, the workers get
 * a copy by fork. Errors come back as "FILE:LINE: message" in a caller's
 * buffer; this module never logs.
 */
#ifndef SWITCHBOARD_CONFIG_H
#define SWITCHBOARD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_SERVERS 64
#define CONFIG_MAX_UPSTREAMS 64
#define CONFIG_MAX_ROUTES 256
#define CONFIG_NAME_MAX 64
#define CONFIG_HOST_MAX 256
#define CONFIG_PATH_MAX 1024

/* A host:port pair as written in the conf (host is a literal or a name). */
struct config_addr {
    char host[CONFIG_HOST_MAX];
    uint16_t port;
    int line; /* where it was declared, for later errors */
};

/* One `server = host:port [weight=N]` line of an upstream. */
struct config_server {
    struct config_addr addr;
    int weight; /* 1..1000, default 1 */
};

/* One [upstream NAME] section: a pool. Durations are in milliseconds. */
struct config_upstream {
    char name[CONFIG_NAME_MAX];
    int line;
    struct config_server servers[CONFIG_MAX_SERVERS];
    int n_servers;
    int keepalive;            /* idle connections kept per worker; default 32 */
    int keepalive_timeout_ms; /* idle pooled connection lifetime; 60s */
    int connect_timeout_ms;   /* 5s */
    int read_timeout_ms;      /* idle time between reads from upstream; 60s */
    int send_timeout_ms;      /* idle time between writes to upstream; 60s */
    int latency_ms;           /* injected before forwarding; 0 */
    int latency_jitter_ms;    /* +/- uniform around latency; 0 */
    int balance;              /* enum config_balance; round_robin */
    char hash_key[CONFIG_NAME_MAX + 8]; /* "client_address" or "header N" */
    char hash_header[CONFIG_NAME_MAX];  /* from hash_key; "" = address */
    int max_fails;            /* passive health: failures...; 1 (0 = off) */
    int fail_timeout_ms;      /* ...within this take a server out for it */
    char health_check[CONFIG_PATH_MAX]; /* GET path, or "off" */
    int health_interval_ms;   /* 5s */
    int health_timeout_ms;    /* 2s */
    int health_rise;          /* passes that bring a server back; 2 */
    int health_fall;          /* failures that take it out; 3 */
    int retries;              /* other servers tried after a failure; 1 */
    int resolve_interval_ms;  /* re-resolve host names; 30s (0 = never) */
};

/* How a pool chooses a server (balance). */
enum config_balance {
    BALANCE_ROUND_ROBIN, /* smooth weighted round-robin */
    BALANCE_LEAST_CONN,  /* fewest active exchanges per weight */
    BALANCE_HASH,        /* client address or a header, weighted */
};

/* One [route PREFIX] section. */
/* How an injected fault delay is drawn (fault_delay_distribution). */
enum config_fault_dist {
    FAULT_FIXED,       /* exactly fault_delay */
    FAULT_UNIFORM,     /* uniform in [0, 2 x fault_delay] */
    FAULT_EXPONENTIAL, /* exponential with mean fault_delay */
};

struct config_route {
    char prefix[CONFIG_PATH_MAX];
    char host[CONFIG_HOST_MAX]; /* "" any, "a.example", "*.example" */
    char upstream_name[CONFIG_NAME_MAX];
    int upstream; /* index into config.upstreams, set by validation */
    int line;
    int read_timeout_ms;     /* overrides the upstream's; 0 = inherit */
    int fault_delay_ms;      /* injected delay (Envoy's fault filter); 0 */
    int fault_delay_percent; /* of requests delayed; 100 */
    int fault_delay_dist;    /* enum config_fault_dist; fixed */
    int fault_abort;         /* status answered instead; 0 = off */
    int fault_abort_percent; /* of requests aborted; 100 */
    int fault_headers;       /* X-Switchboard-Delay/-Abort honoured; off */
};

enum config_log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

/* The kernel interface libevent waits with (event_backend). */
enum config_backend {
    BACKEND_AUTO,   /* libevent's choice: epoll on Linux */
    BACKEND_EPOLL,
    BACKEND_POLL,
    BACKEND_SELECT,
};

/* The whole conf. Plain data: copy it with memcpy, free nothing. */
#define CONFIG_MAX_WARNINGS 32

struct config {
    char path[CONFIG_PATH_MAX]; /* the file it came from */

    /* [server] */
    struct config_addr listen[CONFIG_MAX_LISTEN];
    int n_listen;               /* default: one, 127.0.0.1:8080 */
    int workers;                /* 0 means auto: one per core */
    int max_connections;        /* client sessions per worker; 8192 */
    int max_connections_line;   /* where it was set, or 0 */
    int backlog;                /* listen(2) backlog; 4096 */
    int client_header_timeout_ms; /* deadline for a whole request head; 10s */
    int client_body_timeout_ms;   /* idle time between body reads; 60s */
    int keepalive_timeout_ms;     /* idle client between requests; 75s */
    int tunnel_timeout_ms;        /* idle WebSocket tunnel; 1h */
    int send_timeout_ms;          /* idle time between writes to client; 60s */
    int lingering_timeout_ms;     /* lingering close: idle client; 0 = off; 5s */
    int lingering_time_ms;        /* lingering close: at most; 30s */
    int ignore_client_abort;      /* a client's EOF before the answer: go on */
    int underscores_in_headers;   /* forward request fields named with '_' */
    size_t buffer_size;           /* high watermark per direction; 64k */
    size_t max_header_size;       /* request head limit; 16k */
    size_t sndbuf, rcvbuf;        /* client sockets' buffers; 0 = kernel's */
    uint64_t max_body_size;       /* request body limit; 0 = unlimited; 0 */
    char access_log[CONFIG_PATH_MAX]; /* "stderr", "off" or a path */
    int access_log_line;              /* where it was set; 0: default */
    enum config_log_level log_level;  /* info */
    int event_backend;          /* enum config_backend; auto */
    int shutdown_timeout_ms;    /* drain: in-flight exchanges may finish */
    char resolver[CONFIG_HOST_MAX]; /* "system", or a name server ip[:port] */

    /* [admin] */
    struct config_addr admin_listen[1];
    int n_admin_listen;         /* 0: no admin listener */

    struct config_upstream upstreams[CONFIG_MAX_UPSTREAMS];
    int n_upstreams;
    struct config_route routes[CONFIG_MAX_ROUTES];
    int n_routes;

    /* Settings the file makes that have no effect (hash_key without
     * balance = hash, say), in line order: "-t" prints them, and the
     * master logs them at start and at a reload. */
    struct config_warning {
        int line;
        char msg[160];
    } warnings[CONFIG_MAX_WARNINGS];
    int n_warnings;
};

/* Fill cfg with every default (no listen, no upstream, no route yet). */
void config_defaults(struct config *cfg);

/*
 * Read and validate the file at path into cfg. Returns 0 on success; on the
 * first error returns -1 and writes "FILE:LINE: message" (or "FILE: message"
 * when no line applies) into err. cfg is heap-free; it may be large, so
 * callers allocate it (config_new) rather than keep it on the stack.
 */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* The same from a string; name stands for the file in messages. */
int config_load_string(struct config *cfg, const char *text, const char *name,
                       char *err, size_t errlen);

/* Allocate a struct config with defaults; free with config_free. */
struct config *config_new(void);
/* Free cfg (it holds no pointers); NULL is a no-op. */
void config_free(struct config *cfg);

/*
 * The route for a request: among the routes whose host matches (no host
 * matches any), the longest prefix of path; on a tie an exact host beats a
 * wildcard, which beats none. host may be NULL (no Host); its port, if
 * any, is ignored. Returns the route's index, or -1.
 */
int config_route_match(const struct config *cfg, const char *host,
                       size_t host_len, const char *path, size_t len);

/* Does a Host value (port ignored, any case) match a route's host? */
int config_host_matches(const char *pattern, const char *host, size_t len);

/* A server's name as logs and /metrics show it: "host:port", or
 * "[v6]:port". */
void config_server_name(const struct config_server *cs, char *buf,
                        size_t len);

/* The names of enum config_balance values, for status pages. */
extern const char *const config_balance_names[];

#endif
