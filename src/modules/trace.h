/* `bulwark eval`: one request traced through every phase (DESIGN.md §2):
 * each rule's expression value (true / false / unknown) and outcome, or
 * why it was not evaluated, the verdict, the route, and with a response
 * given, the response phase. The request goes through the same HTTP parser,
 * the same rulebook and the killswitches persisted in state_dir (read, never
 * written) as in `bulwark run`, so what it prints is what the proxy would
 * do. */
#ifndef BW_MODULES_TRACE_H
#define BW_MODULES_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

#define BW_EVAL_MAX_HEADERS 100

struct bw_eval_args {
    const char *request_line;                 /* "GET /admin HTTP/1.1" */
    const char *headers[BW_EVAL_MAX_HEADERS]; /* "Host: a.example" */
    size_t nheaders;
    bool has_raw_file; /* --raw FILE: a whole request head instead */
    const char *raw_file;
    const char *ip; /* client address; default 192.0.2.1 */
    bool ssl;
    bool has_bot_score;
    int64_t bot_score;
    bool has_response; /* --response-status N */
    uint16_t response_status;
    const char *response_headers[BW_EVAL_MAX_HEADERS];
    size_t nresponse_headers;
};

/* Prints the trace to out and problems to err. Returns the process exit
 * status: 0 traced, 1 the config's rulesets did not load or the request is
 * not valid HTTP (with the parser's status and reason), 2 bad arguments. */
int bw_eval_command(const struct bw_config *cfg, const struct bw_eval_args *a, FILE *out,
                    FILE *err);

#endif
