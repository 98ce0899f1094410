/* The admin API's listener and connections, on an event loop the caller
 * owns (the proxy's control loop). Non-blocking and edge-triggered like the
 * workers; nothing here blocks the loop, and a slow, silent or hostile
 * client holds at most one bounded connection slot until its deadline.
 *
 * A connection carries one request: read (bounded by the head and body
 * limits of admin.h, within read_timeout_ms of the accept), answer (within
 * write_timeout_ms), then a lingering close: our side is shut down and
 * whatever the client still sends is read and dropped for up to linger_ms,
 * so a reply sent before the whole request was read (413, 401) is not lost
 * to a TCP reset. */
#ifndef BW_ADMIN_SERVER_H
#define BW_ADMIN_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "admin/admin.h"
#include "base/error.h"
#include "config/config.h"
#include "net/loop.h"

/* From accept to the whole request read: a total, not per read, so a
 * client trickling a byte at a time cannot keep a slot. */
#define BW_ADMIN_READ_TIMEOUT_MS 5000
/* From the reply being ready to its last byte sent. */
#define BW_ADMIN_WRITE_TIMEOUT_MS 5000
/* Lingering close: how long, and how many bytes, we keep reading after the
 * reply before closing. */
#define BW_ADMIN_LINGER_MS 2000
#define BW_ADMIN_LINGER_BYTES ((size_t)256 * 1024)
/* Open admin connections at most; a connection past it is accepted and
 * closed at once (no reply: that would cost the slot it does not have). */
#define BW_ADMIN_MAX_CONNS 64
#define BW_ADMIN_BACKLOG 128

struct bw_admin_server_limits {
    uint64_t read_timeout_ms;
    uint64_t write_timeout_ms;
    uint64_t linger_ms;
    size_t linger_bytes;
    size_t max_conns;
};

/* The BW_ADMIN_* defaults above. */
struct bw_admin_server_limits bw_admin_server_default_limits(void);

struct bw_admin_server;

/* Listens on addr (port 0: the kernel picks one; see
 * bw_admin_server_address) and serves a on loop. a must outlive the
 * server. Logs "admin listening on <addr>" at INFO. Call on the loop's
 * thread, before bw_loop_run or from one of its callbacks. */
bw_status bw_admin_server_start(struct bw_loop *loop, const struct bw_sockaddr *addr,
                                const struct bw_admin *a, struct bw_admin_server **ret,
                                bw_error *err) BW_MUST_CHECK;
bw_status bw_admin_server_start_with(struct bw_loop *loop, const struct bw_sockaddr *addr,
                                     const struct bw_admin *a,
                                     const struct bw_admin_server_limits *limits,
                                     struct bw_admin_server **ret, bw_error *err) BW_MUST_CHECK;

/* The bound address (the real port when 0 was asked for). */
const struct bw_sockaddr *bw_admin_server_address(const struct bw_admin_server *s);
/* Connections open now (for tests and metrics). */
size_t bw_admin_server_connections(const struct bw_admin_server *s);

/* Closes the listener and every connection at once. Memory is released
 * with the loop's deferred work: after the current event batch, or by
 * bw_loop_run_deferred() when the loop no longer runs. NULL is fine. Call
 * on the loop's thread. */
void bw_admin_server_stop(struct bw_admin_server *s);

#endif
