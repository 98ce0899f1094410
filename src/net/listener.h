/* Listening sockets. Each worker opens its own socket on the same address
 * with SO_REUSEPORT, so the kernel spreads new connections across workers and
 * no accept lock or shared queue exists. All sockets are opened before any
 * worker starts, so an address in use is reported at startup. */
#ifndef BW_NET_LISTENER_H
#define BW_NET_LISTENER_H

#include "base/error.h"
#include "config/config.h"

enum { BW_LISTEN_BACKLOG = 4096 };

/* Opens a non-blocking listening socket on addr (SO_REUSEADDR, SO_REUSEPORT).
 * When addr's port is 0 the kernel picks one; *ret_bound receives the real
 * address so the sockets of other workers can join the same port. */
bw_status bw_listener_open(const struct bw_sockaddr *addr, int *ret_fd,
                           struct bw_sockaddr *ret_bound, bw_error *err) BW_MUST_CHECK;

/* "127.0.0.1:8080" / "[::1]:8080" for a socket address. */
void bw_sockaddr_format(struct bw_sockaddr *a);

#endif
