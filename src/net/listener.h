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

/* Whether some other socket already listens on addr. SO_REUSEPORT lets a
 * second process with the same user join a port silently, each then taking
 * a share of the connections: a second bulwark started by mistake (or an
 * old one never stopped) would serve part of the traffic with another
 * configuration. A bind without SO_REUSEPORT fails on a port that has
 * listeners and succeeds otherwise (SO_REUSEADDR: TIME_WAIT does not
 * count). BW_ERR with the reason when the port is taken or cannot be
 * probed; port 0 always passes. */
bw_status bw_listener_probe(const struct bw_sockaddr *addr, bw_error *err) BW_MUST_CHECK;

/* "127.0.0.1:8080" / "[::1]:8080" for a socket address. */
void bw_sockaddr_format(struct bw_sockaddr *a);

#endif
