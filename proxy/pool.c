/*
 * pool: servers, balancer and idle keep-alive connections of one upstream.
 */
#include "pool.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

struct pool *pool_new(struct event_base *base,
                      const struct config_upstream *cfg,
                      const struct timeval *keepalive_tv,
                      const struct timeval *connect_tv, char *err,
                      size_t errlen)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->base = base;
    p->keepalive_tv = keepalive_tv;
    p->connect_tv = connect_tv;
    TAILQ_INIT(&p->idle);
    p->servers = calloc((size_t)cfg->n_servers, sizeof(*p->servers));
    if (p->servers == NULL) {
        snprintf(err, errlen, "out of memory");
        free(p);
        return NULL;
    }
    int weights[BALANCER_MAX];
    for (int i = 0; i < cfg->n_servers && i < BALANCER_MAX; i++) {
        const struct config_server *cs = &cfg->servers[i];
        struct pool_server *s = &p->servers[i];
        char port[8];
        snprintf(port, sizeof(port), "%u", cs->addr.port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(cs->addr.host, port, &hints, &res);
        if (rc != 0) {
            snprintf(err, errlen, "upstream %s: cannot resolve %s: %s",
                     cfg->name, cs->addr.host, gai_strerror(rc));
            pool_free(p);
            return NULL;
        }
        memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
        s->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
        int v6 = strchr(cs->addr.host, ':') != NULL;
        snprintf(s->name, sizeof(s->name), v6 ? "[%s]:%u" : "%s:%u",
                 cs->addr.host, cs->addr.port);
        snprintf(s->host_header, sizeof(s->host_header), "%s", s->name);
        weights[i] = cs->weight;
        p->n_servers++;
    }
    balancer_init(&p->balancer, weights, p->n_servers);
    return p;
}

void pool_free(struct pool *p)
{
    if (p == NULL) {
        return;
    }
    struct upconn *c;
    while ((c = TAILQ_FIRST(&p->idle)) != NULL) {
        TAILQ_REMOVE(&p->idle, c, idle_link);
        upconn_free(c);
    }
    free(p->servers);
    free(p);
}

struct pool_server *pool_pick(struct pool *p)
{
    return &p->servers[balancer_next(&p->balancer)];
}

/* Take c out of the idle list. */
static void idle_remove(struct upconn *c)
{
    TAILQ_REMOVE(&c->pool->idle, c, idle_link);
    c->pool->n_idle--;
}

/* An idle connection spoke or closed: it cannot be reused. */
static void on_idle_read(struct bufferevent *bev, void *arg)
{
    struct upconn *c = arg;
    idle_remove(c);
    upconn_free(c);
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    struct upconn *c = arg;
    idle_remove(c);
    upconn_free(c);
}

struct upconn *pool_acquire(struct pool *p, struct pool_server *server)
{
    struct upconn *c;
    TAILQ_FOREACH(c, &p->idle, idle_link)
    {
        if (c->server == server) {
            idle_remove(c);
            return c;
        }
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->pool = p;
    c->server = server;
    c->bev = bufferevent_socket_new(p->base, -1,
                                    BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    return c;
}

void pool_release(struct upconn *c)
{
    struct pool *p = c->pool;
    c->exchanges++;
    if (p->cfg->keepalive == 0) {
        upconn_free(c);
        return;
    }
    if (p->n_idle >= p->cfg->keepalive) {
        struct upconn *oldest = TAILQ_LAST(&p->idle, upconn_list);
        idle_remove(oldest);
        upconn_free(oldest);
    }
    bufferevent_setcb(c->bev, on_idle_read, NULL, on_idle_event, c);
    bufferevent_set_timeouts(c->bev, p->keepalive_tv, NULL);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    bufferevent_disable(c->bev, EV_WRITE);
    TAILQ_INSERT_HEAD(&p->idle, c, idle_link);
    p->n_idle++;
}

void upconn_free(struct upconn *c)
{
    if (c == NULL) {
        return;
    }
    bufferevent_free(c->bev);
    free(c);
}
