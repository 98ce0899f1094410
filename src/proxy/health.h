/* Active health checks: for every upstream with `health_check`, each server
 * is probed with `GET <path>` every interval on the control thread's loop.
 * A 2xx or 3xx status within the timeout passes. After `fall` consecutive
 * failures the server is marked down for every worker (an atomic flag the
 * balancers read); after `rise` consecutive passes it is up again. Each
 * change is logged with the reason. */
#ifndef BW_PROXY_HEALTH_H
#define BW_PROXY_HEALTH_H

#include "net/loop.h"
#include "proxy/proxy.h"

struct bw_health;

/* Starts probes on loop for every upstream that has a health_check. */
/* Active checks of snap's upstreams on the control loop. The caller keeps a
 * reference to snap until bw_health_stop. */
bw_status bw_health_start(struct bw_health **ret, struct bw_loop *loop, struct bw_snapshot *snap,
                          bw_error *err) BW_MUST_CHECK;
void bw_health_stop(struct bw_health *h);

#endif
