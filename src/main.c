/* Command line (DESIGN.md §2):
 *   bulwark run   -c FILE    serve
 *   bulwark check -c FILE    validate; exit 0, or 1 with file:line:col errors
 *   bulwark version */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "config/config.h"
#include "proxy/server.h"

#ifndef BW_VERSION
#define BW_VERSION "0.1.0-dev"
#endif

static int usage(FILE *out)
{
    fprintf(out, "usage: bulwark run -c FILE [--log-level error|warn|info|debug]\n"
                 "       bulwark check -c FILE\n"
                 "       bulwark version\n");
    return 2;
}

static int load(const char *path, struct bw_config **ret)
{
    static struct bw_config_diags diags;
    if (bw_config_load_file(path, ret, &diags) != BW_OK) {
        bw_config_diags_print(&diags, stderr);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("bulwark %s\n", BW_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    const char *path = NULL;
    for (int i = 2; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            const char *l = argv[++i];
            if (strcmp(l, "error") == 0)
                bw_log_set_level(BW_LOG_ERROR);
            else if (strcmp(l, "warn") == 0)
                bw_log_set_level(BW_LOG_WARN);
            else if (strcmp(l, "info") == 0)
                bw_log_set_level(BW_LOG_INFO);
            else if (strcmp(l, "debug") == 0)
                bw_log_set_level(BW_LOG_DEBUG);
            else
                return usage(stderr);
        } else {
            fprintf(stderr, "bulwark: unexpected argument \"%s\"\n", argv[i]);
            return usage(stderr);
        }
    }
    if (!path) {
        fprintf(stderr, "bulwark: %s needs -c FILE\n", cmd);
        return usage(stderr);
    }
    struct bw_config *cfg = NULL;
    if (strcmp(cmd, "check") == 0) {
        if (load(path, &cfg) != 0)
            return 1;
        printf("%s: ok\n", path);
        bw_config_free(cfg);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) {
        if (load(path, &cfg) != 0)
            return 1;
        int rc = bw_server_run(cfg);
        bw_config_free(cfg);
        return rc;
    }
    fprintf(stderr, "bulwark: unknown command \"%s\"\n", cmd);
    return usage(stderr);
}
