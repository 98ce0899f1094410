/* PROXY protocol v1 (text) and v2 (binary) header parser, as HAProxy's
 * specification (doc/proxy-protocol.txt) defines it. Pure: no I/O. Used only
 * for connections from trusted peers when `client_ip.from: proxy_protocol`. */
#ifndef BW_NET_PROXY_PROTOCOL_H
#define BW_NET_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* v1 is at most 107 bytes; v2 headers with TLVs beyond this are refused. */
#define BW_PROXY_PROTOCOL_MAX_BYTES ((size_t)536)

enum bw_pp_result {
    BW_PP_PARTIAL,
    BW_PP_DONE,
    BW_PP_ERROR,
};

struct bw_pp_header {
    bool has_source; /* false for LOCAL / UNKNOWN: keep the peer */
    struct sockaddr_storage source;
    size_t len; /* bytes the header occupied */
};

enum bw_pp_result bw_proxy_protocol_parse(const char *buf, size_t len, struct bw_pp_header *out,
                                          const char **ret_reason);

#endif
