/* A downstream session: one client connection, the requests on it, in order,
 * and the upstream connection serving the current one. Runs on one worker.
 *
 * Request flow (DESIGN.md §3): read and parse the head -> client address ->
 * route -> pick a server -> pooled or new upstream connection -> request head
 * and body streamed up -> response head -> response body streamed down ->
 * access log -> next request (keepalive, pipelining) or close.
 *
 * Bodies are never buffered whole: each direction forwards what one buffer
 * holds and reads more only once that is written (backpressure). Framing is
 * validated on the way through; chunked bodies go on in chunks of our own,
 * one per buffer of data the decoder accepted, never in the client's or the
 * upstream's framing. */
#ifndef BW_PROXY_SESSION_H
#define BW_PROXY_SESSION_H

#include <sys/socket.h>

#include "proxy/proxy.h"

struct bw_session;
struct bw_upconn;

void bw_session_accept(struct bw_proxy_worker *pw, size_t listener, int fd,
                       const struct sockaddr_storage *peer, socklen_t peer_len);
/* Drain: idle sessions close now, busy ones after their current response. */
void bw_session_drain_all(struct bw_proxy_worker *pw);
/* Closes the session that has held no request the longest (waiting for its
 * first or next request, or lingering after its last response), to make
 * room at limits.max_connections. false: none could be closed. */
bool bw_session_reclaim_idle(struct bw_proxy_worker *pw);
void bw_session_close_all(struct bw_proxy_worker *pw);
/* Closes a pooled upstream connection (worker shutdown). */
void bw_upconn_close_idle_all(struct bw_proxy_worker *pw);
/* Closes the idle pooled connections of one view. */
void bw_upconn_close_idle(struct bw_wsnap *ws);

#endif
