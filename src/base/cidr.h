/* An IP network, shared by the config (client_ip.trusted) and the rules
 * engine (IP sets). Types only: parsing lives in config/values.c for now. */
#ifndef BW_BASE_CIDR_H
#define BW_BASE_CIDR_H

#include <stdint.h>
#include <sys/socket.h>

struct bw_cidr {
    sa_family_t family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];   /* network byte order; first 4 bytes for IPv4 */
    uint8_t prefix;     /* 0..32 or 0..128 */
};

#endif
