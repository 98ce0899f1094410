/* Who the client is. With `client_ip` configured, only peers inside the
 * trusted CIDRs may name the client, through X-Forwarded-For (the right-most
 * address that is not itself trusted), X-Real-IP or the PROXY protocol; for
 * anybody else the client is the TCP peer, whatever headers they send.
 * Pure functions: no I/O. */
#ifndef BW_PROXY_CLIENT_IP_H
#define BW_PROXY_CLIENT_IP_H

#include <stdbool.h>
#include <sys/socket.h>

#include "config/config.h"
#include "http/http1.h"

/* Text of an address without port: "203.0.113.7", "2001:db8::1". */
enum { BW_IP_TEXT_MAX = 48 };

struct bw_client_addr {
    struct sockaddr_storage ss;
    char text[BW_IP_TEXT_MAX];
};

bool bw_client_ip_is_trusted(const struct bw_config_client_ip *cfg, const struct sockaddr *sa);

/* Fills out->text from out->ss. IPv4-mapped IPv6 addresses print as IPv4. */
void bw_client_addr_format(struct bw_client_addr *out);

/* Parses one textual address ("1.2.3.4", "2001:db8::1", "[2001:db8::1]",
 * also with ":port" after IPv4 or brackets). */
bool bw_client_addr_parse(bw_slice text, struct bw_client_addr *out);

/* Applies X-Forwarded-For or X-Real-IP from a trusted peer: *client starts as
 * the peer and is replaced only by what the configured header proves. */
void bw_client_ip_from_headers(const struct bw_config_client_ip *cfg, bool peer_trusted,
                               const struct bw_http_header *headers, size_t nheaders,
                               struct bw_client_addr *client);

#endif
