/* The main configuration (bulwark.yaml) as typed, validated values.
 *
 * Loading goes file -> YAML events (libyaml) -> these structs -> validation.
 * Strict: an unknown key, a wrong type or an out-of-range value is an error
 * with file:line:col. Errors are collected (up to BW_CONFIG_MAX_DIAGS), not
 * stopped at the first, so `bulwark check` shows them all at once.
 *
 * A loaded config lives entirely in its own arena: freeing the config frees
 * everything it points to. Once loaded it is immutable and may be read by
 * any number of threads. */
#ifndef BW_CONFIG_CONFIG_H
#define BW_CONFIG_CONFIG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/arena.h"
#include "base/cidr.h"
#include "base/error.h"
#include "base/slice.h"
#include "config/file.h"
#include "rules/rules.h"

/* Sizes of the main config file itself. */
#define BW_CONFIG_MAX_FILE_BYTES ((size_t)4 * 1024 * 1024)
#define BW_CONFIG_MAX_DIAGS 64

/* Structural limits of the YAML itself (added with the loader). */
#define BW_CONFIG_MAX_DEPTH 32     /* nested mappings/lists */
#define BW_CONFIG_MAX_NODES 500000 /* scalars + mappings + lists */

/* Counts the loader enforces (added with the loader). */
#define BW_CONFIG_MAX_LISTEN 16
#define BW_CONFIG_MAX_TLS_CERTS 256 /* per listener */
#define BW_CONFIG_MAX_UPSTREAMS 1024
#define BW_CONFIG_MAX_SERVERS 256 /* per upstream */
#define BW_CONFIG_MAX_ROUTES 1024
#define BW_CONFIG_MAX_TRUSTED 1024 /* client_ip.trusted CIDRs */
#define BW_CONFIG_MAX_WORKERS 256

/* Where a key's value is in the config file, 1-based; {0, 0} when there is
 * none (the key is absent and a default applies). Kept for the values that
 * name something outside the file (a ruleset, the feature file, a
 * directory, an address): a problem found when that thing is used has no
 * line of its own, so it is reported at the key (bw_config_where). */
struct bw_config_pos {
    uint32_t line, col;
};

struct bw_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* "127.0.0.1:8080" / "[::1]:8080", for logs */
};

/* TLS on a listener. Certificates are files the proxy reads and checks
 * when it builds a snapshot (proxy.c), so a bad one rejects the reload. */
struct bw_config_tls_cert {
    bw_slice cert, key; /* paths, resolved against the config's directory */
    uint32_t line, col; /* of the entry, for messages about the files */
};

enum { BW_CONFIG_TLS_V12 = 1u << 0, BW_CONFIG_TLS_V13 = 1u << 1 };

struct bw_config_tls {
    struct bw_config_tls_cert *certs; /* >= 1; the first is the default */
    size_t ncerts;
    unsigned protocols; /* BW_CONFIG_TLS_*; default both */
};

struct bw_config_listen {
    struct bw_sockaddr addr;
    struct bw_config_pos addr_pos;
    bool has_tls;
    struct bw_config_tls tls; /* when has_tls */
};

/* limits.body_buffer_bytes: a request body of at most this many bytes (by
 * its Content-Length) is received whole before an upstream connection is
 * taken. The default and the most: half a small buffer, so the body always
 * fits beside what is left of the head. */
#define BW_CONFIG_BODY_BUFFER_MAX ((uint64_t)8 * 1024)

struct bw_config_limits {
    uint64_t request_line_bytes;       /* default 8KiB */
    uint64_t header_bytes;             /* default 32KiB */
    uint64_t headers;                  /* default 100, max BW_HTTP_MAX_HEADERS */
    uint64_t body_bytes;               /* default 16MiB; 0 = unlimited */
    uint64_t body_buffer_bytes;        /* default 8KiB: smaller bodies are read whole first */
    uint64_t read_ahead_bytes;         /* default 16MiB per worker: io_uring multishot receives */
    uint64_t client_header_timeout_ms; /* default 10s */
    uint64_t client_body_timeout_ms;   /* default 60s: between body reads */
    uint64_t keepalive_timeout_ms;     /* default 60s: idle between requests */
    uint64_t send_timeout_ms;          /* default 60s: client not reading */
    uint64_t drain_timeout_ms;         /* default 30s: shutdown grace */
    uint64_t max_connections;          /* per worker, default 10000 */
};

enum bw_balance_kind {
    BW_BALANCE_ROUND_ROBIN,
    BW_BALANCE_LEAST_CONN,
    BW_BALANCE_HASH,
    BW_BALANCE__COUNT
};

/* What hash(<field>) hashes on. */
enum bw_hash_field {
    BW_HASH_IP_SRC,   /* hash(ip.src) */
    BW_HASH_HOST,     /* hash(http.host) */
    BW_HASH_URI_PATH, /* hash(http.request.uri.path) */
    BW_HASH_URI,      /* hash(http.request.uri) */
    BW_HASH_HEADER,   /* hash(http.request.headers["name"]) */
    BW_HASH__COUNT
};

struct bw_config_server {
    struct bw_sockaddr addr;
    uint32_t weight;    /* 1..1000, default 1 */
    uint32_t max_conns; /* requests in flight per worker, 0 (default): no limit */
};

enum { BW_CONFIG_MAX_CONNS_MAX = 100000 };

struct bw_config_health_check {
    bool enabled;
    bw_slice path;        /* default "/healthz"; must start with '/' */
    uint64_t interval_ms; /* default 2s */
    uint64_t timeout_ms;  /* default 1s */
    uint32_t rise;        /* consecutive passes to mark up, default 2 */
    uint32_t fall;        /* consecutive failures to mark down, default 3 */
};

/* upstreams.<name>.tls: TLS to the servers. */
struct bw_config_upstream_tls {
    bool verify;      /* default true: chain and name checked */
    bool has_ca_file; /* else the system's trusted certificates */
    bw_slice ca_file; /* resolved against the config's directory */
    bool has_sni;     /* else no SNI, and the server's IP address is verified */
    bw_slice sni;     /* a DNS name, NUL-terminated */
};

struct bw_config_upstream {
    bw_slice name;
    struct bw_config_server *servers;
    size_t nservers; /* >= 1 */
    enum bw_balance_kind balance;
    enum bw_hash_field hash_field; /* when balance == BW_BALANCE_HASH */
    bw_slice hash_header;          /* when hash_field == BW_HASH_HEADER (lowercased) */
    uint32_t keepalive;            /* idle connections kept per worker, default 64 */
    uint64_t keepalive_timeout_ms; /* a pooled one idle this long is closed, default 60s */
    uint32_t keepalive_requests;   /* requests one connection carries, default 1000 */
    uint64_t connect_timeout_ms;   /* default 1s */
    uint64_t read_timeout_ms;      /* default 30s */
    uint64_t write_timeout_ms;     /* default 30s */
    uint32_t max_fails;            /* passive health: failures to eject, default 3 */
    uint64_t fail_timeout_ms;      /* passive health: ejection cooldown, default 10s */
    struct bw_config_health_check health;
    bool has_tls; /* `tls:` present: connections (and health checks) use TLS */
    struct bw_config_upstream_tls tls;
};

/* A route: the first whose match is true wins (DESIGN.md §2). The match is
 * a request-phase rules expression, checked at load (rules/rules.h); a
 * route without one matches every request. */
struct bw_config_route {
    bool has_match;
    const struct bw_rules_expr *match; /* in the config's arena, when has_match */
    bw_slice match_text;               /* as written, for logs and `bulwark eval` */
    size_t upstream;                   /* index into bw_config.upstreams */
};

/* What a module does when it cannot do its job (no valid artifact, an
 * evaluation limit, an internal error): let the request go on with its
 * outputs unknown, or answer it. DESIGN.md §1. */
enum bw_on_error { BW_ON_ERROR_OPEN, BW_ON_ERROR_CLOSED, BW_ON_ERROR__COUNT };

#define BW_CONFIG_MAX_RULESET_FILES 256

struct bw_config_rules_module {
    bool enabled;                      /* `modules: {rules: ...}` present */
    bw_slice *rulesets;                /* file paths, relative ones resolved against the
                                        * config file's directory */
    size_t nrulesets;                  /* 1..BW_CONFIG_MAX_RULESET_FILES */
    struct bw_config_pos *ruleset_pos; /* parallel to rulesets */
    enum bw_on_error on_error;         /* default open */
    uint16_t error_status;             /* fail-closed answer, default 503 */
    uint64_t rate_limit_entries;       /* shared rate-limit table size, default 65536 */
};

/* Feature counts a bot model may hold (DESIGN.md §2 "Feature file"): the
 * default, and the hard cap no configuration can raise (outage 1: a feature
 * file that doubled in size must be refused, not grown into). */
#define BW_CONFIG_BOT_DEFAULT_MAX_FEATURES 200
#define BW_CONFIG_BOT_MAX_FEATURES_CAP 1024

struct bw_config_bot_module {
    bool enabled;                      /* `modules: {bot_score: ...}` present */
    bw_slice features;                 /* the feature file (JSON); a relative path is resolved
                                        * against the config file's directory */
    struct bw_config_pos features_pos; /* of the value, for messages about the file */
    enum bw_on_error on_error;         /* default open */
    uint16_t error_status;             /* fail-closed answer, default 503 */
    uint32_t max_features;             /* 1..BW_CONFIG_BOT_MAX_FEATURES_CAP, default 200 */
};

struct bw_config_modules {
    struct bw_config_rules_module rules;
    struct bw_config_bot_module bot_score;
};

enum bw_client_ip_source {
    BW_CLIENT_IP_PEER, /* no client_ip: the TCP peer */
    BW_CLIENT_IP_X_FORWARDED_FOR,
    BW_CLIENT_IP_X_REAL_IP,
    BW_CLIENT_IP_PROXY_PROTOCOL,
    BW_CLIENT_IP__COUNT
};

struct bw_config_client_ip {
    enum bw_client_ip_source from;
    struct bw_cidr *trusted;
    size_t ntrusted;
};

struct bw_config_admin {
    bool enabled;
    struct bw_sockaddr addr;
    struct bw_config_pos addr_pos;
    bool has_token_file;
    bw_slice token_file;
    struct bw_config_pos token_file_pos;
};

struct bw_config_log {
    bool access_enabled;
    bw_slice access_path; /* "-" or absent = stdout; "off" disables */
    struct bw_config_pos access_pos;
};

/* io_batch_wait: how long an io_uring worker with work waiting may wait for
 * more before handling it (docs/config.md). */
#define BW_CONFIG_DEFAULT_BATCH_WAIT_US 50u
#define BW_CONFIG_MAX_BATCH_WAIT_US 1000u

/* `io_engine`: how workers drive their sockets (docs/config.md). */
enum bw_config_io_engine {
    BW_CONFIG_IO_AUTO, /* io_uring where the kernel allows it, else epoll */
    BW_CONFIG_IO_EPOLL,
    BW_CONFIG_IO_IO_URING, /* io_uring, or refuse to start */
};

struct bw_config {
    bw_arena arena; /* owns everything below but source */
    bw_slice path;  /* file it came from */
    uint64_t hash;  /* bw_file_hash of the text parsed */
    /* The file's bytes when bw_config_load_file read it: kept until they
     * are saved as last-known-good (bw_file_bytes_release), freed with the
     * config otherwise. Only the control thread touches it. */
    struct bw_file_bytes source;

    struct bw_config_listen *listen;
    size_t nlisten;   /* >= 1 */
    uint32_t workers; /* resolved: `auto` -> number of CPUs */
    enum bw_config_io_engine io_engine;
    uint32_t io_batch_wait_us; /* 0: off; at most BW_CONFIG_MAX_BATCH_WAIT_US */
    struct bw_config_admin admin;
    bool watch;                 /* reload.watch: reload when an artifact file changes */
    uint64_t watch_debounce_ms; /* reload.debounce, default 500ms */
    bool has_state_dir;
    bw_slice state_dir;
    struct bw_config_pos state_dir_pos;
    struct bw_config_client_ip client_ip;
    struct bw_config_limits limits;
    struct bw_config_upstream *upstreams;
    size_t nupstreams;
    struct bw_config_route *routes;
    size_t nroutes;
    struct bw_config_log log;
    struct bw_config_modules modules;
};

/* One problem found while loading: file:line:col: message. line and col are
 * 1-based; 0 when the problem is with the file as a whole. */
struct bw_config_diag {
    uint32_t line;
    uint32_t col;
    char msg[1280]; /* may span lines: an expression error ends with its caret rendering */
};

struct bw_config_diags {
    const char *file;
    struct bw_config_diag items[BW_CONFIG_MAX_DIAGS];
    size_t n;
    size_t dropped; /* found beyond BW_CONFIG_MAX_DIAGS */
};

/* Parses and validates YAML text (no I/O: `path` only names it in errors).
 * On success *ret_cfg is a new config; on failure it is untouched and
 * diags holds every problem found. */
bw_status bw_config_parse(const char *path, const char *text, size_t len,
                          struct bw_config **ret_cfg, struct bw_config_diags *diags) BW_MUST_CHECK;

/* Reads the file (bounded by BW_CONFIG_MAX_FILE_BYTES) and parses it. */
bw_status bw_config_load_file(const char *path, struct bw_config **ret_cfg,
                              struct bw_config_diags *diags) BW_MUST_CHECK;

/* Frees a config and everything in its arena; NULL is fine. Returns NULL. */
struct bw_config *bw_config_free(struct bw_config *cfg);

/* Writes every diag as "file:line:col: error: msg\n" to the stream. */
void bw_config_diags_print(const struct bw_config_diags *diags, void *file_stream);

/* The start of an error line about what the config names at pos (a
 * file, a directory, an address) rather than about the config's text:
 * "bulwark.yaml:16:9: error: modules.rules.rulesets[1]" (key as given, at
 * most 200 bytes; without ":line:col" when pos is {0, 0}). The caller adds
 * ": " and what is wrong, naming the thing itself (the path after
 * resolution) as the TLS certificate errors do. */
void bw_config_where(const struct bw_config *cfg, struct bw_config_pos pos, const char *key,
                     char *out, size_t cap);

/* When the admin API listens on an address other than loopback with no
 * token_file, its mutating calls answer anyone who can reach it: true, and
 * the warning for check and run in buf. Not an error: a private network or
 * a firewall may be what keeps it closed, which bulwark cannot see. */
bool bw_config_admin_open_warning(const struct bw_config *cfg, char *buf, size_t cap);

/* Parses "10s", "500ms", "2m", "1h" (no bare numbers). */
bw_status bw_parse_duration_ms(bw_slice s, uint64_t *ret_ms) BW_MUST_CHECK;
/* "50us", "1ms", "0s": microseconds, for settings finer than a millisecond. */
bw_status bw_parse_duration_us(bw_slice s, uint64_t *ret_us) BW_MUST_CHECK;
/* Parses "32KiB", "16MiB", "1GiB", "512" (bytes), also "KB"/"MB" as 1000-based. */
bw_status bw_parse_size(bw_slice s, uint64_t *ret_bytes) BW_MUST_CHECK;
/* Parses "127.0.0.1:8080", "[::1]:8080". */
bw_status bw_parse_sockaddr(bw_slice s, struct bw_sockaddr *ret) BW_MUST_CHECK;
/* Parses "10.0.0.0/8", "::1/128", and a bare address as a host route. */
bw_status bw_parse_cidr(bw_slice s, struct bw_cidr *ret) BW_MUST_CHECK;
bool bw_cidr_contains(const struct bw_cidr *c, const struct sockaddr *sa);

/* The same two parsers with the reason for a failure in err, phrased for a
 * user ("host bits set; did you mean 10.0.0.0/8?"). (Added with the loader.) */
bw_status bw_parse_sockaddr_err(bw_slice s, struct bw_sockaddr *ret, bw_error *err) BW_MUST_CHECK;
bw_status bw_parse_cidr_err(bw_slice s, struct bw_cidr *ret, bw_error *err) BW_MUST_CHECK;

#endif
