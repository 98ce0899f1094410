/* Fuzz target for the main-config loader: any bytes into bw_config_parse,
 * the result (config or diagnostics) freed or printed to nowhere. Exercises
 * libyaml's event stream, the tree builder's limits, the schema walk, the
 * value parsers and the route-match subset. */
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags diags;
    if (bw_config_parse("fuzz.yaml", (const char *)data, size, &cfg, &diags) == BW_OK) {
        /* Touch what the proxy reads, so a dangling slice would show. */
        size_t sum = cfg->path.len + cfg->log.access_path.len;
        for (size_t i = 0; i < cfg->nupstreams; i++)
            sum += cfg->upstreams[i].name.len + cfg->upstreams[i].hash_header.len +
                   cfg->upstreams[i].health.path.len + cfg->upstreams[i].nservers;
        for (size_t i = 0; i < cfg->nroutes; i++) {
            sum += cfg->routes[i].match_text.len + cfg->routes[i].upstream;
            if (cfg->routes[i].has_match) {
                char buf[256];
                sum += bw_rules_format(cfg->routes[i].match->root, buf, sizeof buf);
            }
        }
        for (size_t i = 0; i < cfg->modules.rules.nrulesets; i++)
            sum += cfg->modules.rules.rulesets[i].len;
        if (sum == (size_t)-1)
            fputc(0, stderr);
        cfg = bw_config_free(cfg);
    } else {
        static FILE *devnull;
        if (!devnull)
            devnull = fopen("/dev/null", "w");
        if (devnull)
            bw_config_diags_print(&diags, devnull);
    }
    return 0;
}
