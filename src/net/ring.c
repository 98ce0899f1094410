/* Connected sockets through io_uring, behind the same edge-style interface
 * the epoll loop gives (loop.h, bw_loop_attach).
 *
 * Why: on the virtual machines bulwark is measured on, entering the kernel
 * costs over a microsecond, and a proxied request made six entries (two
 * recv, two sendmsg, two epoll_wait). Here a loop iteration makes one
 * io_uring_enter for everything it queued and everything that completed.
 *
 * How, per socket (a slot):
 * - A receive is always posted, into a buffer the kernel picks from a ring
 *   of BUF_COUNT shared buffers only when data arrives (so an idle
 *   connection holds no buffer). Its bytes are the slot's stash, which
 *   bw_io_recv copies out; a stash the owner did not take during its event
 *   is copied to a private allocation so shared buffers never stay held (no
 *   connection can starve the others), and no more is received until the
 *   owner has read it all: TCP then pushes back on the sender.
 * - On a client connection the receive is multishot: it stays armed from
 *   one request to the next instead of being posted again for each (about
 *   3-5 % of the CPU per proxied request), and is cancelled while a stash
 *   waits. What the kernel received before the cancel took effect (one
 *   round, at most the socket's receive queue) is kept after the stash.
 *   Those rounds are memory the kernel's TCP limits no longer see (a client
 *   pipelining behind a slow request leaves up to 32 buffers a round), so
 *   a worker counts what it holds: past the loop's read_ahead_max it
 *   cancels every armed multishot and receives one buffer at a time, as
 *   for uploads, until its holdings fall to half.
 *   On upstream connections (responses, often large bodies), and on a
 *   client connection once a receive filled a whole buffer (an upload),
 *   it is one buffer at a time, each posted when the last was read, so a
 *   body is never read in faster than it is passed on: with multishot
 *   receives there, 1 MiB responses cost 3x the CPU and 3x the memory.
 * - A write of up to BW_RING_COPY_MAX bytes is copied into a send buffer
 *   and queued; the socket then reports "would block" until it completed
 *   (EPOLLOUT), the same back-pressure a full socket buffer gives. Larger
 *   writes go straight to sendmsg (fewer copies for big bodies), with a
 *   poll for writability when the socket is full.
 * - Completions carry (operation, slot, generation) in user_data. A closed
 *   slot lives on until its last operation completed (receives are
 *   cancelled; a send still in flight gets CLOSE_GRACE_S to finish, as
 *   data left in a closed socket's buffer would), so the kernel never
 *   writes into or reads from memory that was reused. Its fd is closed only
 *   after the SQEs that name it were submitted, so a new socket reusing the
 *   number can never receive them.
 * Listeners, the wake eventfd and TLS connections stay on epoll; the ring
 * polls the epoll fd and the loop drains it when that fires. */
#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/loop_internal.h"

enum {
    RING_ENTRIES = 1024,
    BUF_COUNT = 128, /* power of two */
    BUF_SIZE = 16384,
    BUF_GROUP = 0,
    CLOSE_GRACE_S = 30,
    TX_POOL_MAX = 64,  /* send buffers of each size kept for reuse */
    TX_SMALL = 2048,   /* most writes (a request head, a small response) fit */
    BATCH_EVENTS = 64, /* completions one batched wait waits for at most */
    BATCH_BUSY = 4,    /* completions per iteration from which waits batch */
    SLOT_CHUNK = 256,
    /* Slots whose socket is in the ring's file table (8 B each in the kernel). */
    FIXED_MAX = 1 << 14,
};

#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15) /* Linux 6.12; newer than liburing 2.3 */
#endif

enum op {
    OP_EPOLL = 1,
    OP_RECV,
    OP_SEND,
    OP_POLL,
    OP_CANCEL,
    OP_GRACE,
    OP_FILES,
};

/* 48 bytes: one per connection, idle ones included. */
struct slot {
    struct bw_io *io; /* the owner while open */
    union {
        char *rx_spill;     /* the stash, when copied out of the shared buffer */
        uint32_t next_free; /* while free */
    };
    char *tx_buf;
    int fd;
    uint32_t gen;
    /* The stash, bytes received and not yet read, is [rx_off, rx_len) of
     * buffer rx_bid or of rx_spill; rx_len is 0 when there is none. A send
     * is in flight while tx_buf is set. */
    uint32_t rx_off, rx_len;
    uint16_t tx_off, tx_len;
    uint8_t rx_bid;
    uint8_t err;          /* sticky errno of a failed operation */
    unsigned pending : 3; /* operations in the kernel: receive, send, poll */
    bool open : 1;
    bool rx_posted : 1;     /* a receive is in the kernel */
    bool rx_cancelling : 1; /* its multishot asked to stop: the owner is not reading */
    bool rx_spilled : 1;
    bool rx_eof : 1;
    bool rx_starved : 1; /* the shared buffers ran out: posted again later */
    bool poll_posted : 1;
    bool connecting : 1;
    bool shut_wr : 1;    /* shutdown(SHUT_WR) once the send completed */
    bool rx_drained : 1; /* the last receive left the socket empty */
    bool fixed : 1;      /* in the ring's file table, at the slot's id */
    bool rx_bulk : 1;    /* the last receive filled a whole buffer */
    bool outbound : 1;   /* a connection bulwark opened (to an upstream) */
};

_Static_assert(sizeof(struct slot) <= 48, "one per connection: keep it small");
_Static_assert(BUF_COUNT <= UINT8_MAX + 1, "buffer ids are 8-bit");
_Static_assert(BW_RING_COPY_MAX <= UINT16_MAX, "send offsets are 16-bit");

struct bw_ring {
    struct io_uring ring;
    struct bw_loop *loop;
    struct io_uring_buf_ring *br;
    char *bufs;
    /* In chunks of SLOT_CHUNK, so that a slot never moves (callbacks may
     * open connections while a slot is in use) and memory grows with the
     * number of connections, not by doubling. */
    struct slot **chunks;
    uint32_t nslots, nchunks, free_head; /* free list through next_free; UINT32_MAX ends it */
    uint32_t bufs_out;                   /* receive buffers completions gave us, not yet recycled */
    /* Receives waiting for a buffer, first come first served: with more
     * connections than buffers, none may wait behind later ones. */
    uint32_t *starved;
    uint32_t starved_head, nstarved, starved_cap; /* queue is [head, n) */
    int *close_fds;                               /* closed after the next submit */
    size_t nclose, close_cap;
    /* Send buffers by size: [0] TX_SMALL, [1] BW_RING_COPY_MAX bytes. */
    char *tx_pool[2][TX_POOL_MAX];
    size_t ntx_pool[2];
    uint32_t nfixed;      /* size of the file table: slots below it use it */
    bool min_wait;        /* the kernel takes min_wait_usec */
    uint32_t last_events; /* completions the last iteration handled */
    bool streaming;       /* the last iteration filled a whole receive buffer */
    bool tight;           /* held past read_ahead_max: no multishot receives */
    size_t held;          /* bytes of every spilled stash (read_ahead_held) */
    bool epoll_armed;
    bool epoll_ready; /* the epoll fd fired, or its last drain was full */
    struct __kernel_timespec grace;
};

static struct slot *slot_of(struct bw_ring *r, uint32_t id)
{
    return &r->chunks[id / SLOT_CHUNK][id % SLOT_CHUNK];
}

static uint64_t ud(enum op op, uint32_t id, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & 0xffffffu) << 32) | id;
}

/* An SQE, submitting what is queued when the queue is full. NULL when the
 * kernel takes no more for now (its completion queue overflows until this
 * iteration's completions are reaped): the caller fails that one operation
 * (the connection gets an error) instead of the process stopping. */
static struct io_uring_sqe *get_sqe(struct bw_ring *r)
{
    for (int tries = 0; tries < 4; tries++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
        if (sqe)
            return sqe;
        int rc = io_uring_submit(&r->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
            BW_ERRORF("io_uring_submit: %s; failing an operation", strerror(-rc));
            return NULL;
        }
    }
    BW_ERRORF("io_uring: submission queue stays full; failing an operation");
    return NULL;
}

/* get_sqe for an operation of slot s; without one the slot has failed
 * (EBUSY, returned by its next read or write). */
static struct io_uring_sqe *slot_sqe(struct bw_ring *r, struct slot *s)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        s->err = EBUSY;
    return sqe;
}

/* The socket of an operation: through the ring's file table when the slot
 * is in it, which spares the kernel a file lookup and reference per
 * operation. */
static void sqe_file(struct io_uring_sqe *sqe, const struct slot *s, uint32_t id)
{
    if (s->fixed) {
        sqe->fd = (int)id;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

/* Puts slot id's socket in the file table, or takes it out (fd -1): queued
 * ahead of the slot's operations, and done when submitted, before them. */
static bool post_files_update(struct bw_ring *r, uint32_t id, int *fd)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe)
        return false;
    io_uring_prep_files_update(sqe, fd, 1, (int)id);
    io_uring_sqe_set_data64(sqe, ud(OP_FILES, id, 0));
    return true;
}

static void recycle_buf(struct bw_ring *r, uint16_t bid);

static void post_recv(struct bw_ring *r, uint32_t id)
{
    struct slot *s = slot_of(r, id);
    struct io_uring_sqe *sqe = slot_sqe(r, s);
    if (!sqe)
        return;
    /* Bulk data (a large body) is received one buffer at a time, as the
     * owner asks for it: a multishot receive would take in all the socket
     * holds at once, into memory, before the owner could push back. */
    if (!s->rx_bulk && !s->outbound && !r->tight)
        io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
    else
        io_uring_prep_recv(sqe, s->fd, NULL, BUF_SIZE, 0);
    sqe_file(sqe, s, id);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    /* A socket the last receive emptied has nothing yet, in a request and
     * response exchange: wait for data first instead of a receive that
     * would only find the socket empty (a socket lock and release each). */
    if (s->rx_drained)
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, ud(OP_RECV, id, s->gen));
    s->rx_posted = true;
    s->pending++;
}

static void post_send(struct bw_ring *r, uint32_t id)
{
    struct slot *s = slot_of(r, id);
    struct io_uring_sqe *sqe = slot_sqe(r, s);
    if (!sqe)
        return;
    io_uring_prep_send(sqe, s->fd, s->tx_buf + s->tx_off, s->tx_len - s->tx_off, MSG_NOSIGNAL);
    sqe_file(sqe, s, id);
    io_uring_sqe_set_data64(sqe, ud(OP_SEND, id, s->gen));
    s->pending++;
}

static void post_poll_out(struct bw_ring *r, uint32_t id)
{
    struct slot *s = slot_of(r, id);
    struct io_uring_sqe *sqe = slot_sqe(r, s);
    if (!sqe)
        return;
    io_uring_prep_poll_add(sqe, s->fd, POLLOUT);
    sqe_file(sqe, s, id);
    io_uring_sqe_set_data64(sqe, ud(OP_POLL, id, s->gen));
    s->poll_posted = true;
    s->pending++;
}

/* Without an SQE, shutting the socket down ends its pending operations
 * too (fd is still open here: closing waits for the next submit). */
static void post_cancel(struct bw_ring *r, uint64_t target, int fd)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) {
        (void)shutdown(fd, SHUT_RDWR);
        return;
    }
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, ud(OP_CANCEL, 0, 0));
}

static void arm_epoll(struct bw_loop *loop, struct bw_ring *r)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    if (!sqe) {
        /* Poll epoll directly each iteration until it can be armed. */
        r->epoll_ready = true;
        return;
    }
    io_uring_prep_poll_multishot(sqe, loop->epfd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud(OP_EPOLL, 0, 0));
    r->epoll_armed = true;
}

static void recycle_buf(struct bw_ring *r, uint16_t bid)
{
    r->bufs_out--;
    io_uring_buf_ring_add(r->br, r->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(r->br, 1);
    /* A receive that found no buffer is posted again now that one is back. */
    while (r->starved_head < r->nstarved) {
        uint32_t id = r->starved[r->starved_head++];
        if (r->starved_head == r->nstarved)
            r->starved_head = r->nstarved = 0;
        struct slot *s = slot_of(r, id);
        if (!s->rx_starved)
            continue;
        s->rx_starved = false;
        if (s->open && !s->rx_posted && !s->rx_len && !s->rx_eof && !s->err) {
            post_recv(r, id);
            break;
        }
    }
}

static void pause_recv(struct bw_ring *r, uint32_t id);

/* Spilled stashes grew by plus and shrank by minus bytes. Past the limit,
 * every armed multishot is cancelled (each is posted again one-shot), so
 * no idle connection can add a whole round; below half, multishot is back
 * for receives posted from then on. */
static void held_change(struct bw_ring *r, size_t plus, size_t minus)
{
    r->held = r->held + plus - minus;
    atomic_store_explicit(&r->loop->read_ahead_held, r->held, memory_order_relaxed);
    if (!r->tight && r->held > r->loop->read_ahead_max) {
        r->tight = true;
        BW_WARNF("a worker holds %zu bytes received from clients and not yet read "
                 "(limits.read_ahead_bytes is %zu): receiving one buffer at a time",
                 r->held, r->loop->read_ahead_max);
        for (uint32_t id = 0; id < r->nslots; id++) {
            struct slot *s = slot_of(r, id);
            /* The multishot ones (no room in a slot to mark them: a
             * one-shot cancelled too is only posted again). */
            if (s->open && s->rx_posted && !s->rx_bulk && !s->outbound)
                pause_recv(r, id);
        }
    } else if (r->tight && r->held <= r->loop->read_ahead_max / 2) {
        r->tight = false;
    }
}

static void drop_stash(struct bw_ring *r, struct slot *s)
{
    if (!s->rx_len)
        return;
    if (s->rx_spilled) {
        free(s->rx_spill);
        held_change(r, 0, s->rx_len); /* a spill's allocation is rx_len bytes */
    } else {
        recycle_buf(r, s->rx_bid);
    }
    s->rx_spill = NULL;
    s->rx_spilled = false;
    s->rx_off = s->rx_len = 0;
}

static int tx_class(size_t len)
{
    return len <= TX_SMALL ? 0 : 1;
}

static char *tx_get(struct bw_ring *r, size_t len)
{
    int c = tx_class(len);
    if (r->ntx_pool[c])
        return r->tx_pool[c][--r->ntx_pool[c]];
    return malloc(c == 0 ? TX_SMALL : BW_RING_COPY_MAX);
}

static void tx_put(struct bw_ring *r, struct slot *s)
{
    if (!s->tx_buf)
        return;
    int c = tx_class(s->tx_len);
    if (r->ntx_pool[c] < TX_POOL_MAX)
        r->tx_pool[c][r->ntx_pool[c]++] = s->tx_buf;
    else
        free(s->tx_buf);
    s->tx_buf = NULL;
    s->tx_off = s->tx_len = 0;
}

static void free_slot(struct bw_ring *r, uint32_t id)
{
    struct slot *s = slot_of(r, id);
    drop_stash(r, s);
    tx_put(r, s);
    uint32_t gen = s->gen + 1;
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->gen = gen;
    s->next_free = r->free_head;
    r->free_head = id;
}

static void maybe_free(struct bw_ring *r, uint32_t id)
{
    struct slot *s = slot_of(r, id);
    if (!s->open && s->pending == 0)
        free_slot(r, id);
}

static bool alloc_slot(struct bw_ring *r, uint32_t *out)
{
    if (r->free_head == UINT32_MAX) {
        if (r->nslots == r->nchunks * SLOT_CHUNK) {
            struct slot **nc = realloc(r->chunks, (r->nchunks + 1) * sizeof *nc);
            if (!nc)
                return false;
            r->chunks = nc;
            nc[r->nchunks] = calloc(SLOT_CHUNK, sizeof **nc);
            if (!nc[r->nchunks])
                return false;
            r->nchunks++;
        }
        uint32_t id = r->nslots++;
        struct slot *s = slot_of(r, id);
        memset(s, 0, sizeof *s);
        s->fd = -1;
        *out = id;
        return true;
    }
    uint32_t id = r->free_head;
    r->free_head = slot_of(r, id)->next_free;
    struct slot *s = slot_of(r, id);
    uint32_t gen = s->gen;
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->gen = gen;
    *out = id;
    return true;
}

/* ---- setup ---------------------------------------------------------------- */

static int ring_setup(struct io_uring *ring, uint32_t *features)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* Completions run only when this thread asks for them (no interrupting
     * task work), and nothing else ever submits to this ring. */
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 8;
    int rc = io_uring_queue_init_params(RING_ENTRIES, ring, &p);
    *features = p.features;
    return rc;
}

bool bw_ring_supported(bw_error *err)
{
    struct io_uring ring;
    uint32_t features;
    int rc = ring_setup(&ring, &features);
    if (rc < 0) {
        bw_error_set(err, "io_uring is not available: %s", strerror(-rc));
        return false;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    bool ok = probe && io_uring_opcode_supported(probe, IORING_OP_RECV) &&
              io_uring_opcode_supported(probe, IORING_OP_SEND) &&
              io_uring_opcode_supported(probe, IORING_OP_POLL_ADD) &&
              io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL) &&
              io_uring_opcode_supported(probe, IORING_OP_TIMEOUT);
    if (probe)
        io_uring_free_probe(probe);
    io_uring_queue_exit(&ring);
    if (!ok)
        bw_error_set(err, "io_uring lacks an operation bulwark needs (kernel too old)");
    return ok;
}

bw_status bw_loop_ring_init(struct bw_loop *loop, bw_error *err)
{
    struct bw_ring *r = calloc(1, sizeof *r);
    if (!r)
        return bw_error_set(err, "io_uring: out of memory");
    uint32_t features = 0;
    int rc = ring_setup(&r->ring, &features);
    if (rc < 0) {
        free(r);
        return bw_error_set(err, "io_uring_queue_init: %s", strerror(-rc));
    }
    r->min_wait = (features & IORING_FEAT_MIN_TIMEOUT) != 0;
    size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
    void *brmem = NULL;
    if (posix_memalign(&brmem, 4096, ring_bytes) != 0 ||
        !(r->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE))) {
        free(brmem);
        io_uring_queue_exit(&r->ring);
        free(r);
        return bw_error_set(err, "io_uring: out of memory for receive buffers");
    }
    memset(brmem, 0, ring_bytes);
    r->br = brmem;
    io_uring_buf_ring_init(r->br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)r->br, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (rc < 0) {
        free(r->bufs);
        free(brmem);
        io_uring_queue_exit(&r->ring);
        free(r);
        return bw_error_set(err, "io_uring: registering receive buffers: %s", strerror(-rc));
    }
    for (uint16_t i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * BUF_SIZE, BUF_SIZE, i,
                              io_uring_buf_ring_mask(BUF_COUNT), i);
    io_uring_buf_ring_advance(r->br, BUF_COUNT);
    /* A file table as large as the descriptors this process may open (the
     * kernel's own limit for it); without one, sockets go by descriptor. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        unsigned n = rl.rlim_cur < FIXED_MAX ? (unsigned)rl.rlim_cur : FIXED_MAX;
        if (n && io_uring_register_files_sparse(&r->ring, n) == 0)
            r->nfixed = n;
    }
    r->free_head = UINT32_MAX;
    r->grace.tv_sec = CLOSE_GRACE_S;
    r->loop = loop;
    loop->ring = r;
    loop->has_ring = true;
    return BW_OK;
}

void bw__ring_free(struct bw_loop *loop)
{
    struct bw_ring *r = loop->ring;
    for (size_t i = 0; i < r->nclose; i++)
        close(r->close_fds[i]);
    for (uint32_t i = 0; i < r->nslots; i++) {
        struct slot *s = slot_of(r, i);
        if (s->rx_spilled)
            free(s->rx_spill);
        free(s->tx_buf);
        if (s->open && s->fd >= 0)
            close(s->fd);
    }
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < r->ntx_pool[c]; i++)
            free(r->tx_pool[c][i]);
    /* Exiting the ring ends every operation still in the kernel before the
     * buffers they might use are freed. */
    io_uring_queue_exit(&r->ring);
    free(r->bufs);
    free(r->br);
    for (uint32_t i = 0; i < r->nchunks; i++)
        free(r->chunks[i]);
    free(r->chunks);
    free(r->starved);
    free(r->close_fds);
    free(r);
    loop->ring = NULL;
    loop->has_ring = false;
}

/* ---- the interface of loop.h --------------------------------------------- */

bw_status bw_loop_attach(struct bw_loop *loop, struct bw_io *io, bool connecting, bw_error *err)
{
    if (!loop->has_ring) {
        io->ring = false;
        return bw_loop_add(loop, io, err);
    }
    struct bw_ring *r = loop->ring;
    uint32_t id;
    if (!alloc_slot(r, &id))
        return bw_error_set(err, "io_uring: out of memory for a connection");
    struct slot *s = slot_of(r, id);
    s->io = io;
    s->fd = io->fd;
    /* Room for the table update and the first operation, so that neither
     * is queued without the other. */
    if (io_uring_sq_space_left(&r->ring) < 2)
        (void)io_uring_submit(&r->ring);
    if (io_uring_sq_space_left(&r->ring) < 2) {
        free_slot(r, id);
        return bw_error_set(err, "io_uring: no room to queue a read for a connection");
    }
    s->open = true;
    /* s->fd is read when the update is submitted: the slot never moves. */
    s->fixed = id < r->nfixed && post_files_update(r, id, &s->fd);
    io->ring = true;
    io->slot = id;
    if (connecting) {
        s->connecting = true;
        s->outbound = true;
        post_poll_out(r, id);
    } else {
        post_recv(r, id);
    }
    assert(!s->err); /* there was room for both */
    return BW_OK;
}

ssize_t bw_io_recv(struct bw_loop *loop, struct bw_io *io, void *dst, size_t len)
{
    if (!io->ring)
        return recv(io->fd, dst, len, 0);
    struct bw_ring *r = loop->ring;
    struct slot *s = slot_of(r, io->slot);
    if (s->rx_len) {
        size_t avail = s->rx_len - s->rx_off;
        size_t n = len < avail ? len : avail;
        const char *src = s->rx_spilled ? s->rx_spill : r->bufs + (size_t)s->rx_bid * BUF_SIZE;
        memcpy(dst, src + s->rx_off, n);
        s->rx_off += (uint32_t)n;
        if (s->rx_off == s->rx_len) {
            drop_stash(r, s);
            if (!s->rx_posted && !s->rx_eof && !s->err && !s->rx_starved)
                post_recv(r, io->slot);
        }
        return (ssize_t)n;
    }
    if (s->rx_eof)
        return 0;
    if (s->err) {
        errno = s->err;
        return -1;
    }
    if (!s->rx_posted && !s->rx_starved && !s->connecting)
        post_recv(r, io->slot);
    errno = s->err ? s->err : EAGAIN;
    return -1;
}

ssize_t bw_io_sendv(struct bw_loop *loop, struct bw_io *io, const struct iovec *iov, int n)
{
    if (!io->ring) {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        return sendmsg(io->fd, &mh, MSG_NOSIGNAL);
    }
    struct bw_ring *r = loop->ring;
    uint32_t id = io->slot;
    struct slot *s = slot_of(r, id);
    if (s->err) {
        errno = s->err;
        return -1;
    }
    if (s->tx_buf || s->poll_posted || s->connecting) {
        errno = EAGAIN;
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    if (total > BW_RING_COPY_MAX) {
        struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if ((w < 0 && errno == EAGAIN) || (w >= 0 && (size_t)w < total)) {
            int e = errno;
            post_poll_out(r, id);
            if (s->err) {
                errno = s->err; /* nothing would say when to go on */
                return -1;
            }
            errno = e;
        }
        return w;
    }
    char *buf = tx_get(r, total);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    s->tx_buf = buf;
    s->tx_off = 0;
    s->tx_len = (uint16_t)total;
    post_send(r, id);
    if (s->err) {
        tx_put(r, s);
        errno = s->err;
        return -1;
    }
    return (ssize_t)total;
}

int bw_io_shutdown_wr(struct bw_loop *loop, struct bw_io *io)
{
    if (io->ring) {
        struct slot *s = slot_of(loop->ring, io->slot);
        if (s->tx_buf) {
            s->shut_wr = true;
            return 0;
        }
    }
    return shutdown(io->fd, SHUT_WR);
}

bool bw_io_buffered(struct bw_loop *loop, const struct bw_io *io)
{
    if (!io->ring)
        return false;
    const struct slot *s = slot_of(loop->ring, io->slot);
    return s->rx_len || s->rx_eof || s->err;
}

void bw_io_close(struct bw_loop *loop, struct bw_io *io)
{
    if (io->fd < 0)
        return;
    if (!io->ring) {
        close(io->fd);
        io->fd = -1;
        return;
    }
    struct bw_ring *r = loop->ring;
    uint32_t id = io->slot;
    struct slot *s = slot_of(r, id);
    s->open = false;
    s->io = NULL;
    drop_stash(r, s);
    if (s->rx_posted && !s->rx_cancelling)
        post_cancel(r, ud(OP_RECV, id, s->gen), s->fd);
    if (s->poll_posted)
        post_cancel(r, ud(OP_POLL, id, s->gen), s->fd);
    if (s->fixed) {
        /* The table holds the socket open: out of it, closing the fd ends
         * it (once operations still in flight are done with it). */
        static int no_file = -1;
        if (!post_files_update(r, id, &no_file)) {
            (void)io_uring_submit(&r->ring); /* an add still queued goes first */
            (void)io_uring_register_files_update(&r->ring, id, &no_file, 1);
        }
        s->fixed = false;
    }
    if (s->tx_buf) {
        /* Left to finish, like bytes in a closed socket's buffer, but not
         * forever: a peer that never reads must not pin it. */
        struct io_uring_sqe *sqe = get_sqe(r);
        if (sqe) {
            io_uring_prep_timeout(sqe, &r->grace, 0, 0);
            io_uring_sqe_set_data64(sqe, ud(OP_GRACE, id, s->gen));
        } else {
            (void)shutdown(s->fd, SHUT_RDWR); /* no grace to give: end it */
        }
    }
    if (r->nclose == r->close_cap) {
        size_t cap = r->close_cap ? r->close_cap * 2 : 64;
        int *nc = realloc(r->close_fds, cap * sizeof *nc);
        if (!nc) {
            /* Submit what names the fd, then it can go at once. */
            (void)io_uring_submit(&r->ring);
            close(io->fd);
            goto done;
        }
        r->close_fds = nc;
        r->close_cap = cap;
    }
    r->close_fds[r->nclose++] = io->fd;
done:
    io->fd = -1;
    io->ring = false;
    maybe_free(r, id);
}

/* ---- completions ------------------------------------------------------------ */

/* Calls the owner's callback; the slot may be closed (even reused) by it. */
static void deliver(struct bw_loop *loop, uint32_t id, uint32_t events)
{
    struct slot *s = slot_of(loop->ring, id);
    if (s->open && s->io)
        s->io->cb(loop, s->io, events);
}

/* The stash into a private allocation, with n more bytes of buffer bid
 * after it when n > 0, so no shared buffer stays held. False when memory ran
 * out (the stash is then as it was and bid not yet given back). */
static bool spill_stash(struct bw_ring *r, struct slot *s, uint16_t bid, uint32_t n)
{
    uint32_t left = s->rx_len - s->rx_off;
    if (s->rx_spilled && n) {
        uint32_t had = s->rx_len; /* held counts rx_len of each spill */
        /* Grown in place where the allocator can: no copy of all held so
         * far for each buffer added. */
        if (s->rx_off) {
            memmove(s->rx_spill, s->rx_spill + s->rx_off, left);
            s->rx_off = 0;
            s->rx_len = left;
            held_change(r, left, had);
        }
        char *grown = realloc(s->rx_spill, (size_t)left + n);
        if (!grown)
            return false;
        memcpy(grown + left, r->bufs + (size_t)bid * BUF_SIZE, n);
        recycle_buf(r, bid);
        s->rx_spill = grown;
        s->rx_len = left + n;
        held_change(r, n, 0);
        return true;
    }
    char *copy = malloc((size_t)left + n);
    if (!copy)
        return false;
    const char *src = s->rx_spilled ? s->rx_spill : r->bufs + (size_t)s->rx_bid * BUF_SIZE;
    memcpy(copy, src + s->rx_off, left);
    if (n)
        memcpy(copy + left, r->bufs + (size_t)bid * BUF_SIZE, n);
    drop_stash(r, s);
    if (n)
        recycle_buf(r, bid);
    s->rx_spill = copy;
    s->rx_spilled = true;
    s->rx_off = 0;
    s->rx_len = left + n;
    held_change(r, left + n, 0);
    return true;
}

/* Stops the armed receive: its owner left bytes unread, and reading on
 * would buffer without bound instead of letting TCP push back. */
static void pause_recv(struct bw_ring *r, uint32_t id)
{
    struct slot *s = slot_of(r, id);
    if (!s->rx_posted || s->rx_cancelling)
        return;
    s->rx_cancelling = true;
    post_cancel(r, ud(OP_RECV, id, s->gen), s->fd);
}

static void on_recv(struct bw_loop *loop, uint32_t id, int res, uint32_t flags)
{
    struct bw_ring *r = loop->ring;
    struct slot *s = slot_of(r, id);
    uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
    if (!(flags & IORING_CQE_F_MORE)) {
        /* The receive ended (error, end of stream, cancelled, no buffer). */
        s->pending--;
        s->rx_posted = false;
        s->rx_cancelling = false;
    }
    if (!s->open) {
        if (flags & IORING_CQE_F_BUFFER)
            recycle_buf(r, bid);
        maybe_free(r, id);
        return;
    }
    uint32_t gen = s->gen;
    if (res > 0) {
        if (res == BUF_SIZE)
            r->streaming = true;
        s->rx_drained = !(flags & IORING_CQE_F_SOCK_NONEMPTY);
        s->rx_bulk = res == BUF_SIZE;
        if (s->rx_len) {
            /* Arrived before the cancel of a paused receive took effect:
             * kept after the bytes the owner has not read yet. */
            if (!spill_stash(r, s, bid, (uint32_t)res)) {
                recycle_buf(r, bid);
                s->err = ENOMEM; /* bytes were lost: the stream is broken */
                pause_recv(r, id);
                deliver(loop, id, EPOLLIN | EPOLLERR | EPOLLHUP);
                return;
            }
        } else {
            s->rx_spilled = false;
            s->rx_bid = (uint8_t)bid;
            s->rx_off = 0;
            s->rx_len = (uint32_t)res;
        }
        deliver(loop, id, EPOLLIN);
        /* The callback may have closed it, or closed it and reused it. */
        if (s->gen != gen || !s->open)
            return;
        if (s->rx_len) {
            /* Not taken now: keep a private copy, give the buffer back,
             * and receive no more until the owner has read it. */
            if (!s->rx_spilled)
                (void)spill_stash(r, s, 0, 0); /* else it keeps the buffer */
            pause_recv(r, id);
        } else if (s->rx_bulk && (flags & IORING_CQE_F_MORE)) {
            /* Bulk data: the multishot stops, one buffer at a time from now.
             * (A one-shot receive the owner just posted again is kept.) */
            pause_recv(r, id);
        }
        return;
    }
    if (flags & IORING_CQE_F_BUFFER)
        recycle_buf(r, (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT));
    s = slot_of(r, id);
    if (res == 0) {
        s->rx_eof = true;
        deliver(loop, id, EPOLLIN | EPOLLRDHUP);
        return;
    }
    switch (-res) {
    case ENOBUFS:
        if (s->rx_len)
            return; /* posted again once the owner has read the stash */
        if (r->bufs_out < BUF_COUNT) {
            /* Buffers came back since the kernel looked: try again. */
            post_recv(r, id);
            return;
        }
        if (r->nstarved == r->starved_cap && r->starved_head > 0) {
            memmove(r->starved, r->starved + r->starved_head,
                    (r->nstarved - r->starved_head) * sizeof *r->starved);
            r->nstarved -= r->starved_head;
            r->starved_head = 0;
        }
        if (r->nstarved == r->starved_cap) {
            uint32_t cap = r->starved_cap ? r->starved_cap * 2 : 64;
            uint32_t *ns = realloc(r->starved, cap * sizeof *ns);
            if (!ns) {
                post_recv(r, id); /* try again next iteration instead */
                return;
            }
            r->starved = ns;
            r->starved_cap = cap;
        }
        s->rx_starved = true;
        r->starved[r->nstarved++] = id;
        return;
    case EINTR:
    case EAGAIN:
        if (!s->rx_len)
            post_recv(r, id);
        return;
    case ECANCELED:
        /* Paused (the owner may have read everything since) or closed. */
        if (!s->rx_len && !s->rx_eof && !s->err && !s->rx_starved)
            post_recv(r, id);
        return;
    default:
        s->err = (uint8_t)(-res < 255 ? -res : EIO);
        deliver(loop, id, EPOLLIN | EPOLLERR | EPOLLHUP);
        return;
    }
}

static void on_send(struct bw_loop *loop, uint32_t id, int res)
{
    struct bw_ring *r = loop->ring;
    struct slot *s = slot_of(r, id);
    s->pending--;
    if (res >= 0 && s->tx_off + (uint32_t)res < s->tx_len) {
        s->tx_off = (uint16_t)(s->tx_off + res);
        post_send(r, id);
        if (!s->err)
            return;
        res = -s->err; /* could not queue the rest: fail as a send */
    }
    tx_put(r, s);
    if (res < 0 && res != -ECANCELED && s->open)
        s->err = (uint8_t)(-res < 255 ? -res : EIO);
    if (s->shut_wr) {
        s->shut_wr = false;
        /* Not once closed: the fd number may belong to another socket. */
        if (res >= 0 && s->open)
            (void)shutdown(s->fd, SHUT_WR);
    }
    if (!s->open) {
        maybe_free(r, id);
        return;
    }
    deliver(loop, id, res < 0 ? (EPOLLOUT | EPOLLIN | EPOLLERR | EPOLLHUP) : EPOLLOUT);
}

static void on_poll(struct bw_loop *loop, uint32_t id, int res)
{
    struct bw_ring *r = loop->ring;
    struct slot *s = slot_of(r, id);
    s->pending--;
    s->poll_posted = false;
    if (!s->open) {
        maybe_free(r, id);
        return;
    }
    if (res == -ECANCELED)
        return;
    bool failed = res < 0 || (res & (POLLERR | POLLHUP));
    if (s->connecting) {
        s->connecting = false;
        if (failed) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr == 0)
                soerr = res < 0 ? -res : ECONNREFUSED;
            s->err = (uint8_t)(soerr < 255 ? soerr : EIO);
            deliver(loop, id, EPOLLOUT | EPOLLIN | EPOLLERR | EPOLLHUP);
            return;
        }
        post_recv(r, id);
        deliver(loop, id, s->err ? (EPOLLOUT | EPOLLERR | EPOLLHUP) : EPOLLOUT);
        return;
    }
    deliver(loop, id, failed ? (EPOLLOUT | EPOLLERR | EPOLLHUP) : EPOLLOUT);
}

static void on_grace(struct bw_loop *loop, uint32_t id, uint32_t gen)
{
    struct bw_ring *r = loop->ring;
    if (id >= r->nslots)
        return;
    struct slot *s = slot_of(r, id);
    if ((s->gen & 0xffffffu) != gen || s->open || !s->tx_buf)
        return;
    post_cancel(r, ud(OP_SEND, id, s->gen), s->fd);
}

static void on_cqe(struct bw_loop *loop, uint64_t data, int res, uint32_t flags)
{
    struct bw_ring *r = loop->ring;
    enum op op = (enum op)(data >> 56);
    uint32_t id = (uint32_t)data;
    uint32_t gen = (uint32_t)(data >> 32) & 0xffffffu;
    switch (op) {
    case OP_EPOLL:
        r->epoll_ready = true;
        if (!(flags & IORING_CQE_F_MORE))
            r->epoll_armed = false;
        return;
    case OP_CANCEL:
        return;
    case OP_FILES:
        /* A slot left out of the table fails its first operation (EBADF). */
        if (res < 0)
            BW_ERRORF("io_uring: file table update for slot %u: %s", id, strerror(-res));
        return;
    case OP_GRACE:
        on_grace(loop, id, gen);
        return;
    case OP_RECV:
    case OP_SEND:
    case OP_POLL:
        break;
    }
    if (flags & IORING_CQE_F_BUFFER)
        r->bufs_out++;
    if (id >= r->nslots || (slot_of(r, id)->gen & 0xffffffu) != gen) {
        /* Cannot happen: a slot is reused only after its last completion. */
        BW_ERRORF("io_uring: completion for a reused slot %u", id);
        if (op == OP_RECV && (flags & IORING_CQE_F_BUFFER))
            recycle_buf(r, (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT));
        return;
    }
    switch (op) {
    case OP_RECV:
        on_recv(loop, id, res, flags);
        return;
    case OP_SEND:
        on_send(loop, id, res);
        return;
    case OP_POLL:
        on_poll(loop, id, res);
        return;
    case OP_EPOLL:
    case OP_CANCEL:
    case OP_FILES:
    case OP_GRACE:
        return;
    }
}

static void close_pending_fds(struct bw_ring *r)
{
    for (size_t i = 0; i < r->nclose; i++)
        close(r->close_fds[i]);
    r->nclose = 0;
}

/* Moves queued SQEs to the kernel's tail, as io_uring_submit does before
 * entering; returns how many are waiting to be submitted. (liburing 2.3 has
 * no call that submits and waits with a minimum wait.) */
static unsigned flush_sq(struct io_uring *ring)
{
    struct io_uring_sq *sq = &ring->sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - io_uring_smp_load_acquire(sq->khead);
}

/* Submits and waits for up to BATCH_EVENTS completions, returning once
 * batch_wait_us passed with at least one (or the timer's timeout). */
static int submit_and_wait_batch(struct bw_loop *loop, struct bw_ring *r,
                                 struct __kernel_timespec *ts)
{
    unsigned to_submit = flush_sq(&r->ring);
    struct io_uring_getevents_arg arg = {
        .sigmask = 0,
        .sigmask_sz = _NSIG / 8,
        .pad = loop->batch_wait_us, /* min_wait_usec since Linux 6.12 */
        .ts = ts ? (uint64_t)(uintptr_t)ts : 0,
    };
    errno = 0;
    int rc = io_uring_enter2((unsigned)r->ring.ring_fd, to_submit, BATCH_EVENTS,
                             IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg,
                             sizeof arg);
    /* Depending on how liburing was built, the call returns -errno (its
     * own system call) or -1 with errno set (through libc's syscall()). */
    if (rc == -1 && errno != 0)
        return -errno;
    return rc;
}

void bw__ring_run(struct bw_loop *loop)
{
    struct bw_ring *r = loop->ring;
    while (!loop->stop) {
        loop->now_ms = bw_monotonic_ms();
        int timeout = bw__loop_run_timers(loop);
        if (loop->stop)
            break;
        if (loop->posted_head || r->epoll_ready)
            timeout = 0;
        if (!r->epoll_armed)
            arm_epoll(loop, r);
        int rc;
        if (timeout == 0) {
            rc = io_uring_submit_and_get_events(&r->ring);
        } else {
            struct io_uring_cqe *cqe;
            struct __kernel_timespec ts = {.tv_sec = timeout / 1000,
                                           .tv_nsec = (long long)(timeout % 1000) * 1000000};
            /* Batch only while busy: a loop handling one event at a time
             * (one connection, light load) would only add the wait to each
             * of them. */
            /* Nor while a body streams: a receive that filled its buffer
             * means more is waiting, and each wait would pace the stream. */
            if (r->min_wait && loop->batch_wait_us && r->last_events >= BATCH_BUSY && !r->streaming)
                rc = submit_and_wait_batch(loop, r, timeout < 0 ? NULL : &ts);
            else
                rc = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, timeout < 0 ? NULL : &ts,
                                                      NULL);
        }
        if (rc == -EINVAL && r->min_wait && loop->batch_wait_us) {
            /* A kernel that claims the feature but refuses the argument:
             * no batching rather than no service. */
            BW_ERRORF("io_uring_enter refused io_batch_wait; running without it");
            r->min_wait = false;
        } else if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            BW_ERRORF("io_uring_enter: %s", strerror(-rc));
        }
        close_pending_fds(r);
        loop->now_ms = bw_monotonic_ms();
        struct io_uring_cqe *cqe;
        r->last_events = 0;
        r->streaming = false;
        while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
            r->last_events++;
            uint64_t data = cqe->user_data;
            int res = cqe->res;
            uint32_t flags = cqe->flags;
            io_uring_cqe_seen(&r->ring, cqe);
            on_cqe(loop, data, res, flags);
        }
        bw_loop_run_deferred(loop);
        if (r->epoll_ready) {
            /* Again next time until it comes back empty: a level-triggered
             * fd still ready (a listener with more to accept) is put back on
             * epoll's ready list without waking the ring's poll of it. */
            int n = bw__loop_poll_epoll(loop, 0);
            r->epoll_ready = n > 0;
            bw_loop_run_deferred(loop);
        }
        bw__loop_run_posted(loop);
    }
    /* What closed in the last iteration: its SQEs go out, then its fds. */
    (void)io_uring_submit(&r->ring);
    close_pending_fds(r);
}
