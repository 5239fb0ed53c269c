/*
 * main: the command line. Reads the conf, then either checks it (-t) or
 * hands it to the master. Nothing else lives here.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <http_parser.h>

#include "config.h"
#include "log.h"
#include "master.h"

#ifndef SWITCHBOARD_CONF
#define SWITCHBOARD_CONF "/usr/local/etc/switchboard.conf"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: switchboard [-c FILE] [-t] [-v | --version] [-h | --help]\n"
            "  -c FILE        configuration file (default %s)\n"
            "  -t             check the configuration and exit: prints \"ok\",\n"
            "                 or FILE:LINE: message for the first error (exit 1)\n"
            "  -v, --version  print the version and exit\n"
            "  -h, --help     print this help and exit\n",
            SWITCHBOARD_CONF);
}

/* -t: a warning of the conf's, on stderr beside the "ok". */
static void print_warning(const char *msg)
{
    fprintf(stderr, "warning: %s\n", msg);
}

int main(int argc, char **argv)
{
    const char *path = SWITCHBOARD_CONF;
    int test_only = 0;
    /* The long forms people type first; nginx's one-letter ones too. */
    static const struct option longs[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    int version = 0;
    int help = 0;
    /* The whole command line is checked before -v or -h is acted on: a
     * mistake anywhere in it is a usage error. */
    while ((opt = getopt_long(argc, argv, "c:tvh", longs, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            version = 1;
            break;
        case 'h':
            help = 1;
            break;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "switchboard: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }
    if (help) {
        usage(stdout);
        return 0;
    }
    if (version) {
        printf("switchboard %s (libevent %s, http-parser %d.%d.%d)\n",
               PACKAGE_VERSION, event_get_version(), HTTP_PARSER_VERSION_MAJOR,
               HTTP_PARSER_VERSION_MINOR, HTTP_PARSER_VERSION_PATCH);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!test_only) {
        /* A reload or a log reopen asked for while the conf is read, names
         * resolved and sockets bound (a service manager's reload right
         * after its start) would otherwise end the process, by those
         * signals' default action: held until the master waits for them
         * (master_run), which then acts on it. */
        sigset_t early;
        sigemptyset(&early);
        sigaddset(&early, SIGHUP);
        sigaddset(&early, SIGUSR1);
        sigprocmask(SIG_BLOCK, &early, NULL);
    }

    struct config *cfg = config_new();
    if (cfg == NULL) {
        fprintf(stderr, "switchboard: out of memory\n");
        return 1;
    }
    char err[512];
    if (config_load(cfg, path, err, sizeof(err)) < 0 ||
        master_check_outside(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        return 1;
    }
    if (test_only) {
        master_warnings(cfg, print_warning);
        printf("ok\n");
        config_free(cfg);
        return 0;
    }
    int rc = master_run(cfg);
    config_free(cfg);
    return rc;
}
