/* The main-config loader (src/config/load.c, yaml_tree.c, match.c): invalid
 * configs with their exact diagnostics, defaults, a config with every key,
 * hostile input, and reading files. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "test.h"

/* A minimal valid config: 8 lines, so what a case appends starts at line 9. */
#define BASE                                                                                       \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "upstreams:\n"                                                                                 \
    "  app:\n"                                                                                     \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:9000\n"                                                            \
    "routes:\n"                                                                                    \
    "  - upstream: app\n"

/* The same with upstream `app` last, so a case can append keys to it (line 9). */
#define UP                                                                                         \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "routes:\n"                                                                                    \
    "  - upstream: app\n"                                                                          \
    "upstreams:\n"                                                                                 \
    "  app:\n"                                                                                     \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:9000\n"

/* The same with routes last, so a case can append routes (line 9). */
#define RT                                                                                         \
    "listen:\n"                                                                                    \
    "  - address: 127.0.0.1:8080\n"                                                                \
    "upstreams:\n"                                                                                 \
    "  app:\n"                                                                                     \
    "    servers:\n"                                                                               \
    "      - address: 127.0.0.1:9000\n"                                                            \
    "routes:\n"                                                                                    \
    "  - upstream: app\n"

/* Every diagnostic as "line:col: msg", one per line, into buf. */
static const char *diags_text(const struct bw_config_diags *d, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < d->n && o < cap; i++) {
        int w = snprintf(buf + o, cap - o, "%s%u:%u: %s", i ? "\n" : "", d->items[i].line,
                         d->items[i].col, d->items[i].msg);
        if (w < 0)
            break;
        o += (size_t)w;
    }
    return buf;
}

static bw_status parse(const char *text, size_t len, struct bw_config **cfg,
                       struct bw_config_diags *d)
{
    return bw_config_parse("t.yaml", text, len, cfg, d);
}

static bw_status parse_str(const char *text, struct bw_config **cfg, struct bw_config_diags *d)
{
    return parse(text, strlen(text), cfg, d);
}

static const struct {
    const char *name, *yaml, *want;
} invalid[] = {
    /* top level */
    {"unknown top-level key", BASE "listn: x\n",
     "9:1: unknown key \"listn\" in the top level; did you mean \"listen\"? (expected one of: "
     "listen, workers, io_engine, "
     "io_batch_wait, admin, state_dir, client_ip, limits, upstreams, routes, access_log, modules, "
     "reload)"},
    {"duplicate top-level key", BASE "listen:\n  - address: 127.0.0.1:8081\n",
     "9:1: duplicate key \"listen\" in the top level (first at line 1)"},
    {"missing listen",
     "upstreams:\n  app:\n    servers: [{address: 127.0.0.1:9000}]\nroutes: [{upstream: app}]\n",
     "1:1: missing required key \"listen\" in the top level"},
    {"missing upstreams and routes", "listen: [{address: 127.0.0.1:8080}]\n",
     "1:1: missing required key \"upstreams\" in the top level\n"
     "1:1: missing required key \"routes\" in the top level"},
    {"root is a list", "- listen\n",
     "1:1: the config: expected a mapping of keys like listen: and upstreams:, got a list"},
    {"root is a scalar", "hello\n",
     "1:1: the config: expected a mapping of keys like listen: and upstreams:, got \"hello\""},
    {"non-string key", BASE "? [a, b]\n: c\n",
     "9:3: the top level: keys must be strings, got a list"},
    {"reload watch yes", BASE "reload: {watch: yes}\n",
     "9:17: reload.watch: expected true or false, got \"yes\""},
    {"reload debounce", BASE "reload: {watch: true, debounce: 2h}\n",
     "9:33: reload.debounce: expected a duration from 1ms to 1h, got \"2h\""},
    {"reload unknown", BASE "reload: {inotify: true}\n",
     "9:10: unknown key \"inotify\" in reload (expected one of: watch, debounce)"},
    {"bot_score without features", BASE "modules:\n  bot_score: { on_error: open }\n",
     "10:3: missing required key \"features\" in modules.bot_score"},
    {"bot_score features empty", BASE "modules:\n  bot_score: { features: \"\" }\n",
     "10:26: modules.bot_score.features: expected a file path (1 to 4096 bytes, no control "
     "characters), got \"\""},
    {"bot_score features list", BASE "modules:\n  bot_score: { features: [a.json] }\n",
     "10:26: modules.bot_score.features: expected a file path, got a list"},
    {"bot_score on_error", BASE "modules:\n  bot_score: { features: f.json, on_error: maybe }\n",
     "10:44: modules.bot_score.on_error: expected open or closed, got \"maybe\""},
    {"bot_score error_status",
     BASE "modules:\n  bot_score: { features: f.json, error_status: 499 }\n",
     "10:48: modules.bot_score.error_status: expected an integer from 500 to 599, got \"499\""},
    {"bot_score max_features 0",
     BASE "modules:\n  bot_score: { features: f.json, max_features: 0 }\n",
     "10:48: modules.bot_score.max_features: expected an integer from 1 to 1024, got \"0\""},
    {"bot_score max_features 1025",
     BASE "modules:\n  bot_score: { features: f.json, max_features: 1025 }\n",
     "10:48: modules.bot_score.max_features: expected an integer from 1 to 1024, got \"1025\""},
    {"bot_score unknown key", BASE "modules:\n  bot_score: { features: f.json, feature: g.json }\n",
     "10:34: unknown key \"feature\" in modules.bot_score; did you mean \"features\"? (expected "
     "one of: features, on_error, "
     "error_status, max_features)"},
    {"bot_score not a mapping", BASE "modules:\n  bot_score: f.json\n",
     "10:14: modules.bot_score: expected a mapping like {features: features.json, on_error: open}, "
     "got \"f.json\""},
    {"modules unknown", BASE "modules:\n  waf: {}\n",
     "10:3: unknown key \"waf\" in modules (expected one of: rules, bot_score)"},
    {"rules without rulesets", BASE "modules:\n  rules: {on_error: open}\n",
     "10:3: missing required key \"rulesets\" in modules.rules"},
    {"rules rulesets empty", BASE "modules:\n  rules: {rulesets: []}\n",
     "10:21: modules.rules.rulesets: expected 1 to 256 files, got 0"},
    {"rules rulesets twice", BASE "modules:\n  rules: {rulesets: [a.yaml, a.yaml]}\n",
     "10:30: modules.rules.rulesets[1]: \"a.yaml\" is listed twice"},
    {"rules on_error", BASE "modules:\n  rules: {rulesets: [a.yaml], on_error: maybe}\n",
     "10:41: modules.rules.on_error: expected open or closed, got \"maybe\""},
    {"rules error_status", BASE "modules:\n  rules: {rulesets: [a.yaml], error_status: 200}\n",
     "10:45: modules.rules.error_status: expected an integer from 500 to 599, got \"200\""},
    {"rules rate table", BASE "modules:\n  rules: {rulesets: [a.yaml], rate_limit_entries: 3}\n",
     "10:51: modules.rules.rate_limit_entries: expected an integer from 4 to 16777216, got \"3\""},
    {"rules unknown key", BASE "modules:\n  rules: {rulesets: [a.yaml], ruleset: b.yaml}\n",
     "10:31: unknown key \"ruleset\" in modules.rules; did you mean \"rulesets\"? (expected one "
     "of: rulesets, on_error, "
     "error_status, rate_limit_entries)"},
    /* io_engine, io_batch_wait: limits 0us and 1ms, and just past */
    {"io_engine word", BASE "io_engine: kqueue\n",
     "9:12: io_engine: expected auto, epoll or io_uring, got \"kqueue\""},
    {"io_engine list", BASE "io_engine: [epoll]\n",
     "9:12: io_engine: expected auto, epoll or io_uring, got a list"},
    {"io_batch_wait past 1ms", BASE "io_batch_wait: 1001us\n",
     "9:16: io_batch_wait: expected a duration from 0us to 1ms, like 50us, got \"1001us\""},
    {"io_batch_wait 2ms", BASE "io_batch_wait: 2ms\n",
     "9:16: io_batch_wait: expected a duration from 0us to 1ms, like 50us, got \"2ms\""},
    {"io_batch_wait no unit", BASE "io_batch_wait: 50\n",
     "9:16: io_batch_wait: expected a duration from 0us to 1ms, like 50us, got \"50\"; a duration "
     "needs a unit: \"50us\" or \"50ms\"?"},
    {"io_batch_wait negative", BASE "io_batch_wait: -1us\n",
     "9:16: io_batch_wait: expected a duration from 0us to 1ms, like 50us, got \"-1us\""},
    /* workers */
    {"workers 0", BASE "workers: 0\n",
     "9:10: workers: expected auto or an integer from 1 to 256, got \"0\""},
    {"workers 257", BASE "workers: 257\n",
     "9:10: workers: expected auto or an integer from 1 to 256, got \"257\""},
    {"workers word", BASE "workers: many\n",
     "9:10: workers: expected auto or an integer from 1 to 256, got \"many\""},
    {"workers map", BASE "workers: {n: 1}\n",
     "9:10: workers: expected auto or an integer from 1 to 256, got a mapping"},
    {"workers leading zero", BASE "workers: 08\n",
     "9:10: workers: expected auto or an integer from 1 to 256, got \"08\", which has a leading "
     "zero; write 8"},
    /* Every number refuses a leading zero (10, or octal 8?) and says how to
     * write it, as a port does. */
    {"duration leading zero", BASE "limits: {keepalive_timeout: 010s}\n",
     "9:29: limits.keepalive_timeout: expected a duration like 10s or 500ms, got \"010s\", "
     "which has a leading zero; write 10s"},
    {"duration zeros", BASE "limits: {keepalive_timeout: 000500ms}\n",
     "9:29: limits.keepalive_timeout: expected a duration like 10s or 500ms, got \"000500ms\", "
     "which has a leading zero; write 500ms"},
    {"size leading zero", BASE "limits: {header_bytes: 032KiB}\n",
     "9:24: limits.header_bytes: expected a size like 32KiB, got \"032KiB\", which has a "
     "leading zero; write 32KiB"},
    {"integer leading zero", BASE "limits: {headers: 0100}\n",
     "9:19: limits.headers: expected an integer from 1 to 1000, got \"0100\", which has a "
     "leading zero; write 100"},
    {"io_batch_wait leading zero", BASE "io_batch_wait: 050us\n",
     "9:16: io_batch_wait: expected a duration from 0us to 1ms, like 50us, got \"050us\", which "
     "has a leading zero; write 50us"},
    {"leading zero and a bad unit", BASE "limits: {keepalive_timeout: 010sec}\n",
     "9:29: limits.keepalive_timeout: expected a duration like 10s or 500ms, got \"010sec\"; did "
     "you mean \"10s\"?"},
    /* listen */
    {"listen empty",
     "listen: []\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
     "routes: [{upstream: app}]\n",
     "1:9: listen: expected 1 to 16 addresses, got 0"},
    {"listen 17",
     "listen: [{address: 127.0.0.1:1}, {address: 127.0.0.1:2}, {address: 127.0.0.1:3}, "
     "{address: 127.0.0.1:4}, {address: 127.0.0.1:5}, {address: 127.0.0.1:6}, "
     "{address: 127.0.0.1:7}, {address: 127.0.0.1:8}, {address: 127.0.0.1:9}, "
     "{address: 127.0.0.1:10}, {address: 127.0.0.1:11}, {address: 127.0.0.1:12}, "
     "{address: 127.0.0.1:13}, {address: 127.0.0.1:14}, {address: 127.0.0.1:15}, "
     "{address: 127.0.0.1:16}, {address: 127.0.0.1:17}]\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "1:9: listen: expected 1 to 16 addresses, got 17"},
    {"listen scalar",
     "listen: 127.0.0.1:8080\nupstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
     "routes: [{upstream: app}]\n",
     "1:9: listen: expected a list like [{address: 127.0.0.1:8080}], got \"127.0.0.1:8080\""},
    {"listen item scalar",
     "listen:\n  - 127.0.0.1:8080\nupstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
     "routes: [{upstream: app}]\n",
     "2:5: listen[0]: expected a mapping like {address: 127.0.0.1:8080}, got \"127.0.0.1:8080\""},
    {"listen item without address",
     "listen:\n  - port: 80\nupstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
     "routes: [{upstream: app}]\n",
     "2:5: unknown key \"port\" in listen[0] (expected one of: address, tls)\n"
     "2:5: missing required key \"address\" in listen[0]"},
    {"tls without certificates",
     "listen:\n  - address: 127.0.0.1:8443\n    tls: {protocols: [TLSv1.3]}\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "3:10: missing required key \"certificates\" in listen[0].tls"},
    {"tls empty certificate list",
     "listen:\n  - address: 127.0.0.1:8443\n    tls: {certificates: []}\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "3:25: listen[0].tls.certificates: expected 1 to 256 certificates, got 0"},
    {"tls certificate without key",
     "listen:\n  - address: 127.0.0.1:8443\n    tls: {certificates: [{cert: a.pem}]}\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "3:26: missing required key \"key\" in listen[0].tls.certificates[0]"},
    {"tls old protocol",
     "listen:\n  - address: 127.0.0.1:8443\n    tls: {certificates: [{cert: a.pem, key: a.key}], "
     "protocols: [TLSv1.1]}\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "3:66: listen[0].tls.protocols: expected TLSv1.2 or TLSv1.3 (older versions are not "
     "offered), got \"TLSv1.1\""},
    {"tls unknown key",
     "listen:\n  - address: 127.0.0.1:8443\n    tls: {certificates: [{cert: a.pem, key: a.key}], "
     "ciphers: ALL}\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "3:54: unknown key \"ciphers\" in listen[0].tls (expected one of: certificates, protocols)"},
    {"upstream tls unknown key", UP "    tls: {verify: yes, cafile: x.pem}\n",
     "9:19: upstreams.app.tls.verify: expected true or false, got \"yes\"\n"
     "9:24: unknown key \"cafile\" in upstreams.app.tls; did you mean \"ca_file\"? (expected one "
     "of: verify, ca_file, sni)"},
    {"upstream tls bad sni", UP "    tls: {sni: \"a b\"}\n",
     "9:16: upstreams.app.tls.sni: expected a DNS name like app.internal, got \"a b\""},
    {"upstream tls ca_file without verify", UP "    tls: {verify: false, ca_file: ca.pem}\n",
     "9:35: upstreams.app.tls: ca_file is only used with verify: true"},
    {"listen host name",
     "listen:\n  - address: localhost:8080\nupstreams: {app: {servers: [{address: "
     "127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "2:14: listen[0].address: invalid address \"localhost:8080\": bulwark does not resolve "
     "names in the config; use an IP address"},
    {"listen port too big",
     "listen:\n  - address: 127.0.0.1:65536\nupstreams: {app: {servers: [{address: "
     "127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "2:14: listen[0].address: invalid address \"127.0.0.1:65536\": the port must be a number "
     "from 0 to 65535"},
    {"listen duplicate",
     "listen:\n  - address: 127.0.0.1:8080\n  - address: 127.0.0.1:8080\nupstreams: {app: "
     "{servers: [{address: 127.0.0.1:9000}]}}\nroutes: [{upstream: app}]\n",
     "3:14: listen[1].address: 127.0.0.1:8080 is already listed in listen[0]"},
    /* admin, state_dir, access_log */
    {"admin scalar", BASE "admin: 5\n",
     "9:8: admin: expected a mapping like {address: 127.0.0.1:9901}, got \"5\""},
    {"admin without address", BASE "admin:\n  token_file: t\n",
     "9:1: missing required key \"address\" in admin"},
    {"admin token_file empty", BASE "admin:\n  address: 127.0.0.1:9901\n  token_file: \"\"\n",
     "11:15: admin.token_file: expected a file path (1 to 4096 bytes, no control "
     "characters), got \"\""},
    {"state_dir empty", BASE "state_dir:\n", "9:11: state_dir: expected a file path, got nothing"},
    {"state_dir control char", BASE "state_dir: \"/var/\\tlib\"\n",
     "9:12: state_dir: expected a file path (1 to 4096 bytes, no control characters), got "
     "\"/var/\\x09lib\""},
    {"access_log bool", BASE "access_log: false\n",
     "9:13: access_log: expected a file path, \"-\" (stdout) or off, got \"false\""},
    {"access_log list", BASE "access_log: [a]\n",
     "9:13: access_log: expected a file path, \"-\" (stdout) or off, got a list"},
    /* client_ip */
    {"client_ip missing from", BASE "client_ip:\n  trusted: [10.0.0.0/8]\n",
     "9:1: missing required key \"from\" in client_ip"},
    {"client_ip bad from", BASE "client_ip:\n  trusted: [10.0.0.0/8]\n  from: cf_connecting_ip\n",
     "11:9: client_ip.from: expected x_forwarded_for, x_real_ip or proxy_protocol, got "
     "\"cf_connecting_ip\""},
    {"client_ip host bits", BASE "client_ip:\n  trusted: [10.0.0.1/8]\n  from: x_real_ip\n",
     "10:13: client_ip.trusted[0]: invalid CIDR \"10.0.0.1/8\": host bits set; did you mean "
     "10.0.0.0/8?"},
    {"client_ip empty trusted", BASE "client_ip:\n  trusted: []\n  from: x_real_ip\n",
     "10:12: client_ip.trusted: expected 1 to 1024 CIDRs, got 0"},
    {"client_ip trusted scalar", BASE "client_ip:\n  trusted: 10.0.0.0/8\n  from: x_real_ip\n",
     "10:12: client_ip.trusted: expected a list of CIDRs like [10.0.0.0/8], got \"10.0.0.0/8\""},
    /* limits */
    {"limits scalar", BASE "limits: 5\n",
     "9:9: limits: expected a mapping like {header_bytes: 32KiB}, got \"5\""},
    {"limits unknown key", BASE "limits:\n  header_size: 1KiB\n",
     "10:3: unknown key \"header_size\" in limits (expected one of: request_line_bytes, "
     "header_bytes, headers, body_bytes, client_header_timeout, client_body_timeout, "
     "keepalive_timeout, send_timeout, drain_timeout, max_connections, body_buffer_bytes, "
     "read_ahead_bytes)"},
    {"limits duplicate key", BASE "limits:\n  headers: 10\n  headers: 20\n",
     "11:3: duplicate key \"headers\" in limits (first at line 10)"},
    {"header_bytes not a size", BASE "limits:\n  header_bytes: lots\n",
     "10:17: limits.header_bytes: expected a size like 32KiB, got \"lots\""},
    {"header_bytes below 1KiB", BASE "limits:\n  header_bytes: 1023\n",
     "10:17: limits.header_bytes: expected a size from 1KiB to 1MiB, got \"1023\""},
    {"header_bytes above 1MiB", BASE "limits:\n  header_bytes: 1048577B\n",
     "10:17: limits.header_bytes: expected a size from 1KiB to 1MiB, got \"1048577B\""},
    {"request_line_bytes below 256B", BASE "limits:\n  request_line_bytes: 255B\n",
     "10:23: limits.request_line_bytes: expected a size from 256B to 64KiB, got \"255B\""},
    {"request_line_bytes above 64KiB", BASE "limits:\n  request_line_bytes: 65537\n",
     "10:23: limits.request_line_bytes: expected a size from 256B to 64KiB, got \"65537\""},
    {"header_bytes below request_line_bytes", BASE "limits:\n  header_bytes: 4KiB\n",
     "10:17: limits.header_bytes: must be at least request_line_bytes (8192 bytes), got "
     "\"4KiB\""},
    {"request_line_bytes above default header_bytes", BASE "limits:\n  request_line_bytes: 64KiB\n",
     "10:23: limits.request_line_bytes: must not exceed header_bytes (32768 bytes), got "
     "\"64KiB\""},
    {"headers 0", BASE "limits:\n  headers: 0\n",
     "10:12: limits.headers: expected an integer from 1 to 1000, got \"0\""},
    {"headers 1001", BASE "limits:\n  headers: 1001\n",
     "10:12: limits.headers: expected an integer from 1 to 1000, got \"1001\""},
    {"headers negative", BASE "limits:\n  headers: -5\n",
     "10:12: limits.headers: expected an integer from 1 to 1000, got \"-5\""},
    {"body_bytes over 1TiB", BASE "limits:\n  body_bytes: 1099511627777\n",
     "10:15: limits.body_bytes: expected a size from 0 (unlimited) to 1TiB, got "
     "\"1099511627777\""},
    {"body_buffer_bytes over 8KiB", BASE "limits:\n  body_buffer_bytes: 8193\n",
     "10:22: limits.body_buffer_bytes: expected a size from 0 (stream every body) to 8KiB, got "
     "\"8193\""},
    {"read_ahead_bytes over 1TiB", BASE "limits:\n  read_ahead_bytes: 1025GiB\n",
     "10:21: limits.read_ahead_bytes: expected a size from 0 to 1TiB, got \"1025GiB\""},
    {"bare number duration", BASE "limits:\n  keepalive_timeout: 10\n",
     "10:22: limits.keepalive_timeout: expected a duration like 10s or 500ms, got \"10\"; a "
     "duration needs a unit: \"10s\" or \"10ms\"? (a bare number is seconds to nginx, "
     "milliseconds to HAProxy)"},
    {"zero duration", BASE "limits:\n  drain_timeout: 0s\n",
     "10:18: limits.drain_timeout: expected a duration from 1ms to 1h, got \"0s\""},
    {"duration over 1h", BASE "limits:\n  send_timeout: 3600001ms\n",
     "10:17: limits.send_timeout: expected a duration from 1ms to 1h, got \"3600001ms\""},
    {"duration is a map", BASE "limits:\n  client_body_timeout: {s: 1}\n",
     "10:24: limits.client_body_timeout: expected a duration like 10s or 500ms, got a "
     "mapping"},
    {"max_connections over", BASE "limits:\n  max_connections: 1000001\n",
     "10:20: limits.max_connections: expected an integer from 1 to 1000000, got \"1000001\""},
    /* upstreams */
    {"upstreams empty",
     "listen: [{address: 127.0.0.1:8080}]\nupstreams: {}\n"
     "routes: [{upstream: app}]\n",
     "2:12: upstreams: expected 1 to 1024 upstreams, got 0"},
    {"upstreams list",
     "listen: [{address: 127.0.0.1:8080}]\nupstreams: [app]\n"
     "routes: [{upstream: app}]\n",
     "2:12: upstreams: expected a mapping of names to upstreams, like {app: {servers: [...]}}, "
     "got a list"},
    {"upstream bad name", UP "  a.b:\n    servers: [{address: 127.0.0.1:9001}]\n",
     "9:3: upstreams: invalid upstream name \"a.b\" (expected 1 to 64 of A-Z a-z 0-9 _ -)"},
    {"upstream name too long",
     UP "  a234567890123456789012345678901234567890123456789012345678901234x:\n"
        "    servers: [{address: 127.0.0.1:9001}]\n",
     "9:3: upstreams: invalid upstream name \"a234567890123456789012345678901234567890...\" "
     "(expected 1 to 64 of A-Z a-z 0-9 _ -)"},
    {"upstream without servers", UP "  b:\n    keepalive: 1\n",
     "9:3: missing required key \"servers\" in upstreams.b"},
    {"upstream unknown key", UP "    server: x\n",
     "9:5: unknown key \"server\" in upstreams.app; did you mean \"servers\"? (expected one of: "
     "servers, balance, "
     "keepalive, keepalive_timeout, keepalive_requests, connect_timeout, read_timeout, "
     "write_timeout, max_fails, fail_timeout, health_check, tls)"},
    {"servers empty", UP "  b:\n    servers: []\n",
     "10:14: upstreams.b.servers: expected 1 to 256 servers, got 0"},
    {"server weight 0", UP "  b:\n    servers: [{address: 127.0.0.1:9001, weight: 0}]\n",
     "10:49: upstreams.b.servers[0].weight: expected an integer from 1 to 1000, got \"0\""},
    {"server weight 1001", UP "  b:\n    servers: [{address: 127.0.0.1:9001, weight: 1001}]\n",
     "10:49: upstreams.b.servers[0].weight: expected an integer from 1 to 1000, got \"1001\""},
    {"server max_conns 100001",
     UP "  b:\n    servers: [{address: 127.0.0.1:9001, max_conns: 100001}]\n",
     "10:52: upstreams.b.servers[0].max_conns: expected an integer from 0 to 100000, got "
     "\"100001\""},
    {"server duplicate", UP "      - address: 127.0.0.1:9000\n",
     "9:18: upstreams.app.servers[1].address: duplicate server 127.0.0.1:9000 (also "
     "upstreams.app.servers[0])"},
    {"server port 0", UP "      - address: 127.0.0.1:0\n",
     "9:18: upstreams.app.servers[1].address: an upstream server needs a port from 1 to 65535, "
     "got \"127.0.0.1:0\""},
    {"server port 080", UP "      - address: 127.0.0.1:080\n",
     "9:18: upstreams.app.servers[1].address: invalid address \"127.0.0.1:080\": the port "
     "\"080\" has a leading zero; write 80"},
    {"server port 65536", UP "      - address: 127.0.0.1:65536\n",
     "9:18: upstreams.app.servers[1].address: invalid address \"127.0.0.1:65536\": the port must "
     "be a number from 0 to 65535"},
    {"listen port 08080",
     "listen:\n  - address: \"[::1]:08080\"\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
     "routes: [{upstream: app}]\n",
     "2:14: listen[0].address: invalid address \"[::1]:08080\": the port \"08080\" has a leading "
     "zero; write 8080"},
    {"server without brackets", UP "      - address: ::1:80\n",
     "9:18: upstreams.app.servers[1].address: invalid address \"::1:80\": an IPv6 address needs "
     "brackets, like [::1]:8080"},
    {"balance random", UP "    balance: random\n",
     "9:14: upstreams.app.balance: expected round_robin, least_conn or hash(<field>), got "
     "\"random\""},
    {"balance unknown hash field", UP "    balance: hash(ip.dst)\n",
     "9:14: upstreams.app.balance: expected hash(ip.src), hash(http.host), "
     "hash(http.request.uri.path), hash(http.request.uri) or "
     "hash(http.request.headers[\"<name>\"]), got \"hash(ip.dst)\""},
    {"balance bad header name", UP "    balance: 'hash(http.request.headers[\"a b\"])'\n",
     "9:14: upstreams.app.balance: expected hash(ip.src), hash(http.host), "
     "hash(http.request.uri.path), hash(http.request.uri) or "
     "hash(http.request.headers[\"<name>\"]), got \"hash(http.request.headers[\\\"a b\\\"])\""},
    {"keepalive over", UP "    keepalive: 10001\n",
     "9:16: upstreams.app.keepalive: expected an integer from 0 to 10000, got \"10001\""},
    {"upstream keepalive_timeout 0", UP "    keepalive_timeout: 0s\n",
     "9:24: upstreams.app.keepalive_timeout: expected a duration from 1ms to 1h, got \"0s\""},
    {"upstream keepalive_timeout over 1h", UP "    keepalive_timeout: 3600001ms\n",
     "9:24: upstreams.app.keepalive_timeout: expected a duration from 1ms to 1h, got "
     "\"3600001ms\""},
    {"upstream keepalive_timeout bare", UP "    keepalive_timeout: 60\n",
     "9:24: upstreams.app.keepalive_timeout: expected a duration like 10s or 500ms, got \"60\"; "
     "a duration needs a unit: \"60s\" or \"60ms\"? (a bare number is seconds to nginx, "
     "milliseconds to HAProxy)"},
    {"keepalive_requests 0", UP "    keepalive_requests: 0\n",
     "9:25: upstreams.app.keepalive_requests: expected an integer from 1 to 1000000, got \"0\""},
    {"keepalive_requests over", UP "    keepalive_requests: 1000001\n",
     "9:25: upstreams.app.keepalive_requests: expected an integer from 1 to 1000000, got "
     "\"1000001\""},
    {"max_fails over", UP "    max_fails: 1001\n",
     "9:16: upstreams.app.max_fails: expected an integer from 0 to 1000, got \"1001\""},
    {"fail_timeout over", UP "    fail_timeout: 2h\n",
     "9:19: upstreams.app.fail_timeout: expected a duration from 1ms to 1h, got \"2h\""},
    {"connect_timeout bare", UP "    connect_timeout: 1\n",
     "9:22: upstreams.app.connect_timeout: expected a duration like 10s or 500ms, got \"1\"; a "
     "duration needs a unit: \"1s\" or \"1ms\"? (a bare number is seconds to nginx, milliseconds "
     "to HAProxy)"},
    {"health_check scalar", UP "    health_check: yes\n",
     "9:19: upstreams.app.health_check: expected a mapping like {path: /healthz, interval: "
     "2s}, got \"yes\""},
    {"health_check null", UP "    health_check:\n",
     "9:18: upstreams.app.health_check: expected a mapping like {path: /healthz, interval: "
     "2s}, got nothing"},
    {"health_check path without slash", UP "    health_check: {path: healthz}\n",
     "9:26: upstreams.app.health_check.path: expected a path starting with / without spaces or "
     "control characters, like /healthz, got \"healthz\""},
    {"health_check path with space", UP "    health_check: {path: \"/a b\"}\n",
     "9:26: upstreams.app.health_check.path: expected a path starting with / without spaces or "
     "control characters, like /healthz, got \"/a b\""},
    {"health_check rise 0", UP "    health_check: {rise: 0}\n",
     "9:26: upstreams.app.health_check.rise: expected an integer from 1 to 100, got \"0\""},
    {"health_check fall 101", UP "    health_check: {fall: 101}\n",
     "9:26: upstreams.app.health_check.fall: expected an integer from 1 to 100, got \"101\""},
    {"health_check unknown key", UP "    health_check: {url: /x}\n",
     "9:20: unknown key \"url\" in upstreams.app.health_check (expected one of: path, interval, "
     "timeout, rise, fall)"},
    /* routes */
    {"routes empty",
     "listen: [{address: 127.0.0.1:8080}]\n"
     "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\nroutes: []\n",
     "3:9: routes: expected 1 to 1024 routes, got 0"},
    {"route without upstream", RT "  - match: 'http.host eq \"a.example\"'\n",
     "9:5: missing required key \"upstream\" in routes[1]"},
    {"route unknown upstream", RT "  - upstream: nope\n",
     "9:15: routes[1].upstream: no upstream named \"nope\" (defined: app)"},
    {"route match unknown field", RT "  - match: 'http.hots eq \"a\"'\n    upstream: app\n",
     "9:13: routes[1].match: unknown field \"http.hots\" (did you mean \"http.host\"?)\n"
     "      - match: 'http.hots eq \"a\"'\n                ^~~~~~~~~"},
    {"route match not bool", RT "  - match: 'http.host'\n    upstream: app\n",
     "9:13: routes[1].match: the expression must be Bool, but http.host is Bytes\n"
     "      - match: 'http.host'\n                ^~~~~~~~~"},
    {"route match type error", RT "  - match: 'ip.src contains \"x\"'\n    upstream: app\n",
     "9:13: routes[1].match: \"contains\" needs Bytes on both sides, but ip.src is Ip\n"
     "      - match: 'ip.src contains \"x\"'\n                ^~~~~~"},
    {"route match response field", RT "  - match: 'http.response.code eq 200'\n    upstream: app\n",
     "9:13: routes[1].match: http.response.code is only available in the response phase, but "
     "this is a request-phase expression\n      - match: 'http.response.code eq 200'\n             "
     "   ^~~~~~~~~~~~~~~~~~"},
    {"route match in block scalar",
     RT "  - match: |\n      http.host eq \"a\" and\n        len(ssl) gt 1\n    upstream: app\n",
     "11:13: routes[1].match: len() takes Bytes or an Array, but ssl is Bool\n"
     "            len(ssl) gt 1\n                ^~~"},
    {"route match in a folded scalar",
     RT "  - match: >\n      http.host eq \"a\" and\n      len(ssl) gt 1\n    upstream: app\n",
     "11:11: routes[1].match: len() takes Bytes or an Array, but ssl is Bool\n"
     "          len(ssl) gt 1\n              ^~~"},
    {"route match double-quoted with escapes",
     RT "  - match: \"http.host eq \\\"a\\\"\\tand len(ssl) gt 1\"\n    upstream: app\n",
     "9:41: routes[1].match: len() takes Bytes or an Array, but ssl is Bool\n"
     "      - match: \"http.host eq \\\"a\\\"\\tand len(ssl) gt 1\"\n                              "
     "              ^~~"},
    {"route match null", RT "  - match:\n    upstream: app\n",
     "9:11: routes[1].match: expected a rules expression like 'http.host eq \"a.example\"', got "
     "nothing"},
    {"route is a scalar", RT "  - app\n",
     "9:5: routes[1]: expected a mapping like {match: '...', upstream: app}, got \"app\""},
    /* YAML itself */
    {"anchor and alias", BASE "x: &a [1]\ny: *a\n",
     "9:4: YAML anchors (&a) are not supported; write the value out in full"},
    {"alias only", BASE "x: *a\n",
     "9:4: YAML aliases (*a) are not supported; write the value out in full"},
    {"tag", BASE "state_dir: !!str /var/lib\n",
     "9:12: YAML tags (like !!str) are not supported; the key decides the type"},
    {"syntax error", BASE "limits: {a: 1\n",
     "10:1: truncated: the file ends inside the { } mapping that starts at line 9, column 9 "
     "(did not find expected ',' or '}')"},
    {"tab indentation", "listen:\n\t- address: 127.0.0.1:8080\n",
     "2:1: invalid YAML: a tab character indents this line; YAML indents with spaces only: "
     "replace the tab with spaces"},
    {"two documents", BASE "---\nlisten: []\n",
     "9:1: a second YAML document; the config must be a single document"},
    {"invalid UTF-8", BASE "state_dir: /var/\xff\n",
     "9:17: not valid UTF-8: byte 0xFF never appears in UTF-8 (Latin-1 or Windows-1252 text?); "
     "save the file as UTF-8"},
    {"overlong UTF-8", BASE "state_dir: /\xc0\xaf\n",
     "9:13: not valid UTF-8: byte 0xC0 never appears in UTF-8 (Latin-1 or Windows-1252 text?); "
     "save the file as UTF-8"},
    {"control character", BASE "state_dir: /var\x01\n",
     "9:16: contains the control character U+0001, which YAML does not allow (a binary or "
     "corrupted file?)"},
    {"Latin-1 in a quoted string", BASE "state_dir: \"/var/caf\xe9\"\n",
     "9:21: not valid UTF-8: byte 0xE9 is not followed by the 2 continuation bytes it needs "
     "(Latin-1 or Windows-1252 text?); save the file as UTF-8"},
    {"Latin-1 at the end of a line", BASE "state_dir: /var/caf\xe9\n",
     "9:20: not valid UTF-8: byte 0xE9 is not followed by the 2 continuation bytes it needs "
     "(Latin-1 or Windows-1252 text?); save the file as UTF-8"},
    {"a continuation byte first", BASE "state_dir: /\x80\n",
     "9:13: not valid UTF-8: byte 0x80 cannot start a character (Latin-1 or Windows-1252 text?); "
     "save the file as UTF-8"},
    {"overlong 3-byte", BASE "state_dir: /\xe0\x80\xaf\n",
     "9:13: not valid UTF-8: U+002F written in 3 bytes (an overlong encoding)"},
    {"past U+10FFFF", BASE "state_dir: /\xf4\x90\x80\x80\n",
     "9:13: not valid UTF-8: U+110000 is past the last character"},
    {"DEL", BASE "state_dir: /var\x7f\n",
     "9:16: contains the control character U+007F, which YAML does not allow (a binary or "
     "corrupted file?)"},
    {"C1 control", BASE "state_dir: /var\xc2\x80\n",
     "9:16: contains the control character U+0080, which YAML does not allow (a binary or "
     "corrupted file?)"},
    {"U+FFFE", BASE "state_dir: /var\xef\xbf\xbe\n",
     "9:16: contains the non-character U+FFFE, which YAML does not allow (a binary or corrupted "
     "file?)"},
    {"UTF-16 BE with BOM", "\xfe\xff",
     "1:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"},
    {"UTF-16 LE byte-order mark only", "\xff\xfe",
     "1:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"},
    {"truncated in a flow list", BASE "listen: [a, b",
     "9:14: truncated: the file ends inside the [ ] list that starts at line 9, column 9 (did not "
     "find expected ',' or ']')"},
    {"truncated in a key", BASE "limi",
     "9:5: truncated: the file ends inside the key that starts at line 9, column 1 (could not find "
     "expected ':')"},
    {"truncated in a quoted string after a non-ASCII character",
     BASE "state_dir: /caf\xc3\xa9\nlimits: \"x",
     "10:11: truncated: the file ends inside the quoted string that starts at line 10, column 9 "
     "(or its closing quote is missing)"},
    {"truncated in a single-quoted string", BASE "state_dir: '/var/li",
     "9:20: truncated: the file ends inside the quoted string that starts at line 9, column 12 (or "
     "its closing quote is missing)"},
    {"truncated after a flow list opens", BASE "listen: [",
     "9:10: truncated: the file ends too early (did not find expected node content)"},
    /* The mistakes an operator coming from nginx or HAProxy makes first:
     * each says where, what was expected, and the likely fix. */
    {"typo'd top-level key", BASE "wrokers: 2\n",
     "9:1: unknown key \"wrokers\" in the top level; did you mean \"workers\"? (expected one of: "
     "listen, workers, io_engine, io_batch_wait, admin, state_dir, client_ip, limits, upstreams, "
     "routes, access_log, modules, reload)"},
    {"key in the wrong case", BASE "Workers: 2\n",
     "9:1: unknown key \"Workers\" in the top level; did you mean \"workers\"? (expected one of: "
     "listen, workers, io_engine, io_batch_wait, admin, state_dir, client_ip, limits, upstreams, "
     "routes, access_log, modules, reload)"},
    {"nginx's name for a limit", BASE "limits:\n  client_max_body_size: 16m\n",
     "10:3: unknown key \"client_max_body_size\" in limits; did you mean \"body_bytes\"? "
     "(expected one of: request_line_bytes, header_bytes, headers, body_bytes, "
     "client_header_timeout, client_body_timeout, keepalive_timeout, send_timeout, drain_timeout, "
     "max_connections, body_buffer_bytes, read_ahead_bytes)"},
    {"HAProxy's name for workers", BASE "nbthread: 4\n",
     "9:1: unknown key \"nbthread\" in the top level; did you mean \"workers\"? (expected one of: "
     "listen, workers, io_engine, io_batch_wait, admin, state_dir, client_ip, limits, upstreams, "
     "routes, access_log, modules, reload)"},
    {"key indented one space too far", "listen:\n  - address: 127.0.0.1:8080\n workers: 1\n",
     "3:2: invalid YAML: did not find expected key (while parsing a block mapping at line 1, "
     "column 1): is this line indented like the keys or list items it belongs with? Keys of one "
     "mapping, and items of one list, start in the same column"},
    {"list item key not under its dash", "listen:\n  - address: 127.0.0.1:8080\n  weight: 2\n",
     "3:3: invalid YAML: did not find expected '-' indicator (while parsing a block collection at "
     "line 2, column 3): is this line indented like the keys or list items it belongs with? Keys "
     "of one mapping, and items of one list, start in the same column"},
    {"tab after spaces", "listen:\n  \t- address: 127.0.0.1:8080\n",
     "2:3: invalid YAML: a tab character indents this line; YAML indents with spaces only: "
     "replace the tab with spaces"},
    {"size in nginx's units", BASE "limits:\n  body_bytes: 16m\n",
     "10:15: limits.body_bytes: expected a size like 32KiB, got \"16m\"; did you mean \"16MiB\"?"},
    {"size unit in the wrong case", BASE "limits:\n  body_bytes: 16mb\n",
     "10:15: limits.body_bytes: expected a size like 32KiB, got \"16mb\"; did you mean \"16MB\" or "
     "\"16MiB\"? Units are case-sensitive"},
    {"size with a space", BASE "limits:\n  body_bytes: 16 MiB\n",
     "10:15: limits.body_bytes: expected a size like 32KiB, got \"16 MiB\"; did you mean "
     "\"16MiB\"?"},
    {"duration spelled out", BASE "limits:\n  send_timeout: 30sec\n",
     "10:17: limits.send_timeout: expected a duration like 10s or 500ms, got \"30sec\"; did you "
     "mean \"30s\"?"},
    {"duration without a unit", BASE "limits:\n  send_timeout: 30\n",
     "10:17: limits.send_timeout: expected a duration like 10s or 500ms, got \"30\"; a duration "
     "needs a unit: \"30s\" or \"30ms\"? (a bare number is seconds to nginx, milliseconds to "
     "HAProxy)"},
    {"server address as a URL",
     UP "    balance: round_robin\n    tls: {}\n"
        "  b:\n    servers: [{address: \"http://127.0.0.1:9000\"}]\n",
     "12:25: upstreams.b.servers[0].address: invalid address \"http://127.0.0.1:9000\": write the "
     "address without a scheme, like 127.0.0.1:9000 (TLS to upstream servers is "
     "upstreams.<name>.tls)"},
    {"route to a misspelt upstream", RT "  - upstream: ap\n",
     "9:15: routes[1].upstream: no upstream named \"ap\"; did you mean \"app\"? (defined: app)"},
    {"route to an address", RT "  - upstream: 127.0.0.1:9000\n",
     "9:15: routes[1].upstream: no upstream named \"127.0.0.1:9000\" (defined: app): a route names "
     "an upstream; its servers' addresses go under upstreams.<name>.servers"},
    {"route with an action", RT "  - match: 'http.host eq \"a\"'\n    action: block\n",
     "9:5: missing required key \"upstream\" in routes[1]\n"
     "10:5: unknown key \"action\" in routes[1] (expected one of: match, upstream): a route only "
     "picks an upstream; to block, redirect or rewrite, write a rule in a ruleset (docs/rules.md)"},
    {"route with neither upstream nor anything", RT "  - match: 'http.host eq \"a\"'\n",
     "9:5: missing required key \"upstream\" in routes[1]"},
    {"only a comment", "# nothing here\n",
     "0:0: the config is empty; it needs at least listen, upstreams and routes"},
    {"empty document", "---\n",
     "0:0: the config is empty; it needs at least listen, upstreams and routes"},
};

TEST(invalid_configs_table)
{
    CHECK(sizeof invalid / sizeof invalid[0] >= 40);
    int bad = 0;
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        struct bw_config *cfg = NULL;
        struct bw_config_diags d;
        char got[4096];
        if (parse_str(invalid[i].yaml, &cfg, &d) == BW_OK) {
            T_FAILF("%s: accepted", invalid[i].name);
            cfg = bw_config_free(cfg);
            bad++;
            continue;
        }
        CHECK(cfg == NULL);
        diags_text(&d, got, sizeof got);
        if (strcmp(got, invalid[i].want) != 0) {
            T_FAILF("%s:\n       got  %s\n       want %s", invalid[i].name, got, invalid[i].want);
            bad++;
        }
        CHECK_STR_EQ(d.file, "t.yaml");
        CHECK_INT_EQ(d.dropped, 0);
    }
    CHECK_INT_EQ(bad, 0);
}

TEST(several_errors_all_reported_in_file_order)
{
    const char *y = "routes:\n"                         /* 1 */
                    "  - upstream: missing\n"           /* 2 */
                    "listen:\n"                         /* 3 */
                    "  - address: 1.2.3.4:99999\n"      /* 4 */
                    "workers: none\n"                   /* 5 */
                    "limits:\n"                         /* 6 */
                    "  header_bytes: lots\n"            /* 7 */
                    "  body_bytes: -1\n"                /* 8 */
                    "upstreams:\n"                      /* 9 */
                    "  app:\n"                          /* 10 */
                    "    servers:\n"                    /* 11 */
                    "      - address: 127.0.0.1:9000\n" /* 12 */
                    "    balance: random\n"             /* 13 */
                    "bogus: 1\n";                       /* 14 */
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse_str(y, &cfg, &d) == BW_ERR);
    char got[4096];
    CHECK_STR_EQ(diags_text(&d, got, sizeof got),
                 "2:15: routes[0].upstream: no upstream named \"missing\" (defined: app)\n"
                 "4:14: listen[0].address: invalid address \"1.2.3.4:99999\": the port must be a "
                 "number from 0 to 65535\n"
                 "5:10: workers: expected auto or an integer from 1 to 256, got \"none\"\n"
                 "7:17: limits.header_bytes: expected a size like 32KiB, got \"lots\"\n"
                 "8:15: limits.body_bytes: expected a size like 32KiB, got \"-1\"\n"
                 "13:14: upstreams.app.balance: expected round_robin, least_conn or "
                 "hash(<field>), got \"random\"\n"
                 "14:1: unknown key \"bogus\" in the top level (expected one of: listen, "
                 "workers, io_engine, io_batch_wait, admin, state_dir, client_ip, limits, "
                 "upstreams, routes, access_log, modules, reload)");
}

TEST(diags_cap_counts_the_rest)
{
    /* 100 routes to an unknown upstream: 64 kept, 36 counted. */
    char y[8192];
    size_t o = (size_t)snprintf(y, sizeof y,
                                "listen: [{address: 127.0.0.1:8080}]\n"
                                "upstreams: {app: {servers: [{address: "
                                "127.0.0.1:9000}]}}\nroutes:\n");
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(y + o, sizeof y - o, "  - upstream: x%d\n", i);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse_str(y, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, BW_CONFIG_MAX_DIAGS);
    CHECK_INT_EQ(d.dropped, 36);
    CHECK_INT_EQ(d.items[0].line, 4);
    CHECK_INT_EQ(d.items[63].line, 67);

    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    CHECK(f != NULL);
    bw_config_diags_print(&d, f);
    fclose(f);
    CHECK(strstr(out, "t.yaml:4:15: error: routes[0].upstream: no upstream named \"x0\" "
                      "(defined: app)\n") == out);
    CHECK(strstr(out, "t.yaml: error: 36 more errors not shown\n") != NULL);
    free(out);
}

TEST(diags_print_format)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse_str(BASE "workers: 0\n", &cfg, &d) == BW_ERR);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    CHECK(f != NULL);
    bw_config_diags_print(&d, f);
    fclose(f);
    CHECK_STR_EQ(out, "t.yaml:9:10: error: workers: expected auto or an integer from 1 to 256, "
                      "got \"0\"\n");
    free(out);

    CHECK(parse_str("", &cfg, &d) == BW_ERR);
    f = open_memstream(&out, &outlen);
    CHECK(f != NULL);
    bw_config_diags_print(&d, f);
    fclose(f);
    CHECK_STR_EQ(out, "t.yaml: error: the config is empty; it needs at least listen, upstreams "
                      "and routes\n");
    free(out);
}

TEST(defaults_from_minimal_config)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse_str(BASE, &cfg, &d) == BW_OK);
    CHECK_SLICE_EQ(cfg->path, "t.yaml");
    CHECK_INT_EQ(cfg->nlisten, 1);
    CHECK_STR_EQ(cfg->listen[0].addr.text, "127.0.0.1:8080");
    CHECK(!cfg->listen[0].has_tls);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_INT_EQ(cfg->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    CHECK(!cfg->admin.enabled);
    CHECK(!cfg->admin.has_token_file);
    CHECK(!cfg->has_state_dir);
    CHECK_INT_EQ(cfg->client_ip.from, BW_CLIENT_IP_PEER);
    CHECK_INT_EQ(cfg->client_ip.ntrusted, 0);
    const struct bw_config_limits *l = &cfg->limits;
    CHECK_INT_EQ(l->request_line_bytes, 8192);
    CHECK_INT_EQ(l->header_bytes, 32768);
    CHECK_INT_EQ(l->headers, 100);
    CHECK_INT_EQ(l->body_bytes, 16 * 1024 * 1024);
    CHECK_INT_EQ(l->body_buffer_bytes, 8192);
    CHECK_INT_EQ(l->read_ahead_bytes, 16 * 1024 * 1024);
    CHECK_INT_EQ(l->client_header_timeout_ms, 10000);
    CHECK_INT_EQ(l->client_body_timeout_ms, 60000);
    CHECK_INT_EQ(l->keepalive_timeout_ms, 60000);
    CHECK_INT_EQ(l->send_timeout_ms, 60000);
    CHECK_INT_EQ(l->drain_timeout_ms, 30000);
    CHECK_INT_EQ(l->max_connections, 10000);
    CHECK_INT_EQ(cfg->nupstreams, 1);
    const struct bw_config_upstream *u = &cfg->upstreams[0];
    CHECK_SLICE_EQ(u->name, "app");
    CHECK_INT_EQ(u->nservers, 1);
    CHECK_STR_EQ(u->servers[0].addr.text, "127.0.0.1:9000");
    CHECK_INT_EQ(u->servers[0].weight, 1);
    CHECK_INT_EQ(u->balance, BW_BALANCE_ROUND_ROBIN);
    CHECK_INT_EQ(u->keepalive, 64);
    /* Not limits.keepalive_timeout: the client side's setting. */
    CHECK_INT_EQ(u->keepalive_timeout_ms, 60000);
    CHECK_INT_EQ(u->keepalive_requests, 1000);
    CHECK_INT_EQ(u->connect_timeout_ms, 1000);
    CHECK_INT_EQ(u->read_timeout_ms, 30000);
    CHECK_INT_EQ(u->write_timeout_ms, 30000);
    CHECK_INT_EQ(u->max_fails, 3);
    CHECK_INT_EQ(u->fail_timeout_ms, 10000);
    CHECK(!u->health.enabled);
    CHECK_INT_EQ(cfg->nroutes, 1);
    CHECK(!cfg->routes[0].has_match);
    CHECK(!cfg->modules.rules.enabled);
    CHECK_INT_EQ(cfg->routes[0].upstream, 0);
    CHECK(cfg->log.access_enabled);
    CHECK_SLICE_EQ(cfg->log.access_path, "-");
    CHECK_INT_EQ(cfg->io_engine, BW_CONFIG_IO_AUTO);
    CHECK_INT_EQ(cfg->io_batch_wait_us, 50);
    cfg = bw_config_free(cfg);
    CHECK(cfg == NULL);

    /* The io settings at their limits. */
    static const struct {
        const char *yaml;
        enum bw_config_io_engine engine;
        uint32_t wait_us;
    } io[] = {
        {"io_engine: epoll\nio_batch_wait: 0us\n", BW_CONFIG_IO_EPOLL, 0},
        {"io_engine: io_uring\nio_batch_wait: 1ms\n", BW_CONFIG_IO_IO_URING, 1000},
        {"io_engine: auto\nio_batch_wait: 1000us\n", BW_CONFIG_IO_AUTO, 1000},
        {"io_batch_wait: 0s\n", BW_CONFIG_IO_AUTO, 0},
    };
    for (size_t i = 0; i < sizeof io / sizeof io[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", BASE, io[i].yaml);
        CHECK(parse_str(text, &cfg, &d) == BW_OK);
        CHECK_INT_EQ(cfg->io_engine, io[i].engine);
        CHECK_INT_EQ(cfg->io_batch_wait_us, io[i].wait_us);
        cfg = bw_config_free(cfg);
    }

    /* Sections present but empty also give every default. */
    CHECK(parse_str(BASE "limits: {}\nworkers: auto\n", &cfg, &d) == BW_OK);
    CHECK_INT_EQ(cfg->limits.header_bytes, 32768);
    CHECK_INT_EQ(cfg->limits.max_connections, 10000);
    cfg = bw_config_free(cfg);

    /* An empty health_check mapping enables it with its defaults. */
    CHECK(parse_str(UP "    health_check: {}\n", &cfg, &d) == BW_OK);
    const struct bw_config_health_check *h = &cfg->upstreams[0].health;
    CHECK(h->enabled);
    CHECK_SLICE_EQ(h->path, "/healthz");
    CHECK_INT_EQ(h->interval_ms, 2000);
    CHECK_INT_EQ(h->timeout_ms, 1000);
    CHECK_INT_EQ(h->rise, 2);
    CHECK_INT_EQ(h->fall, 3);
    cfg = bw_config_free(cfg);
}

static const char FULL[] =
    "listen:\n"
    "  - address: 127.0.0.1:0\n"
    "  - address: \"[::1]:8443\"\n"
    "workers: 4\n"
    "admin:\n"
    "  address: 127.0.0.1:9901\n"
    "  token_file: admin.token\n"
    "state_dir: /var/lib/bulwark\n"
    "client_ip:\n"
    "  trusted: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.1]\n"
    "  from: proxy_protocol\n"
    "limits:\n"
    "  request_line_bytes: 256B\n"
    "  header_bytes: 1MiB\n"
    "  headers: 1000\n"
    "  body_bytes: 0\n"
    "  body_buffer_bytes: 0\n"
    "  read_ahead_bytes: 1TiB\n"
    "  client_header_timeout: 1ms\n"
    "  client_body_timeout: 2s\n"
    "  keepalive_timeout: 3m\n"
    "  send_timeout: 1h\n"
    "  drain_timeout: 500ms\n"
    "  max_connections: 1000000\n"
    "upstreams:\n"
    "  app:\n"
    "    servers:\n"
    "      - { address: 127.0.0.1:9000, weight: 1000, max_conns: 100000 }\n"
    "      - { address: \"[::1]:9000\" }\n"
    "    balance: 'hash(http.request.headers[\"X-User-ID\"])'\n"
    "    keepalive: 10000\n"
    "    keepalive_timeout: 1h\n"
    "    keepalive_requests: 1000000\n"
    "    connect_timeout: 250ms\n"
    "    read_timeout: 5s\n"
    "    write_timeout: 6s\n"
    "    max_fails: 0\n"
    "    fail_timeout: 1h\n"
    "    health_check: { path: /ready, interval: 5s, timeout: 2s, rise: 1, fall: 100 }\n"
    "  static-1:\n"
    "    servers: [{address: 10.0.0.2:80}]\n"
    "    balance: least_conn\n"
    "  h:\n"
    "    servers: [{address: 10.0.0.3:80}]\n"
    "    balance: hash(http.request.uri.path)\n"
    "routes:\n"
    "  - match: 'http.host eq \"API.Example\" and starts_with(http.request.uri.path, "
    "\"/v1/\")'\n"
    "    upstream: app\n"
    "  - match: 'starts_with( http.request.uri.path , \"/static/\" ) and http.host == "
    "\"cdn.example\"'\n"
    "    upstream: static-1\n"
    "  - match: 'http.host==\"a\\\\b\"'\n"
    "    upstream: h\n"
    "  - upstream: app\n"
    "access_log: /var/log/bulwark/access.log\n";

TEST(full_config_every_key)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    bw_status st = parse(FULL, sizeof FULL - 1, &cfg, &d);
    if (st != BW_OK) {
        char got[4096];
        T_FAILF("%s", diags_text(&d, got, sizeof got));
        return;
    }
    CHECK_INT_EQ(cfg->nlisten, 2);
    CHECK_STR_EQ(cfg->listen[0].addr.text, "127.0.0.1:0");
    CHECK_STR_EQ(cfg->listen[1].addr.text, "[::1]:8443");
    CHECK_INT_EQ(cfg->workers, 4);
    CHECK(cfg->admin.enabled);
    CHECK_STR_EQ(cfg->admin.addr.text, "127.0.0.1:9901");
    CHECK(cfg->admin.has_token_file);
    CHECK_SLICE_EQ(cfg->admin.token_file, "admin.token");
    CHECK(cfg->has_state_dir);
    CHECK_SLICE_EQ(cfg->state_dir, "/var/lib/bulwark");
    CHECK_INT_EQ(cfg->client_ip.from, BW_CLIENT_IP_PROXY_PROTOCOL);
    CHECK_INT_EQ(cfg->client_ip.ntrusted, 3);
    CHECK_INT_EQ(cfg->client_ip.trusted[0].family, AF_INET);
    CHECK_INT_EQ(cfg->client_ip.trusted[0].prefix, 8);
    CHECK_INT_EQ(cfg->client_ip.trusted[1].family, AF_INET6);
    CHECK_INT_EQ(cfg->client_ip.trusted[1].prefix, 32);
    CHECK_INT_EQ(cfg->client_ip.trusted[2].prefix, 32);
    const struct bw_config_limits *l = &cfg->limits;
    CHECK_INT_EQ(l->request_line_bytes, 256);
    CHECK_INT_EQ(l->header_bytes, 1024 * 1024);
    CHECK_INT_EQ(l->headers, 1000);
    CHECK_INT_EQ(l->body_bytes, 0);
    CHECK_INT_EQ(l->body_buffer_bytes, 0);
    CHECK_INT_EQ(l->read_ahead_bytes, (uint64_t)1 << 40);
    CHECK_INT_EQ(l->client_header_timeout_ms, 1);
    CHECK_INT_EQ(l->client_body_timeout_ms, 2000);
    CHECK_INT_EQ(l->keepalive_timeout_ms, 180000);
    CHECK_INT_EQ(l->send_timeout_ms, 3600000);
    CHECK_INT_EQ(l->drain_timeout_ms, 500);
    CHECK_INT_EQ(l->max_connections, 1000000);

    CHECK_INT_EQ(cfg->nupstreams, 3);
    const struct bw_config_upstream *u = &cfg->upstreams[0];
    CHECK_SLICE_EQ(u->name, "app");
    CHECK_INT_EQ(u->nservers, 2);
    CHECK_STR_EQ(u->servers[0].addr.text, "127.0.0.1:9000");
    CHECK_INT_EQ(u->servers[0].weight, 1000);
    CHECK_INT_EQ(u->servers[0].max_conns, 100000);
    CHECK_STR_EQ(u->servers[1].addr.text, "[::1]:9000");
    CHECK_INT_EQ(u->servers[1].weight, 1);
    CHECK_INT_EQ(u->servers[1].max_conns, 0);
    CHECK_INT_EQ(u->balance, BW_BALANCE_HASH);
    CHECK_INT_EQ(u->hash_field, BW_HASH_HEADER);
    CHECK_SLICE_EQ(u->hash_header, "x-user-id");
    CHECK_INT_EQ(u->keepalive, 10000);
    CHECK_INT_EQ(u->keepalive_timeout_ms, 3600000);
    CHECK_INT_EQ(u->keepalive_requests, 1000000);
    CHECK_INT_EQ(u->connect_timeout_ms, 250);
    CHECK_INT_EQ(u->read_timeout_ms, 5000);
    CHECK_INT_EQ(u->write_timeout_ms, 6000);
    CHECK_INT_EQ(u->max_fails, 0);
    CHECK_INT_EQ(u->fail_timeout_ms, 3600000);
    CHECK(u->health.enabled);
    CHECK_SLICE_EQ(u->health.path, "/ready");
    CHECK_INT_EQ(u->health.interval_ms, 5000);
    CHECK_INT_EQ(u->health.timeout_ms, 2000);
    CHECK_INT_EQ(u->health.rise, 1);
    CHECK_INT_EQ(u->health.fall, 100);
    CHECK_SLICE_EQ(cfg->upstreams[1].name, "static-1");
    CHECK_INT_EQ(cfg->upstreams[1].balance, BW_BALANCE_LEAST_CONN);
    CHECK(!cfg->upstreams[1].health.enabled);
    CHECK_SLICE_EQ(cfg->upstreams[2].name, "h");
    CHECK_INT_EQ(cfg->upstreams[2].balance, BW_BALANCE_HASH);
    CHECK_INT_EQ(cfg->upstreams[2].hash_field, BW_HASH_URI_PATH);

    CHECK_INT_EQ(cfg->nroutes, 4);
    const struct bw_config_route *r = cfg->routes;
    CHECK(r[0].has_match);
    CHECK_INT_EQ(r[0].match->phase, BW_RULES_PHASE_REQUEST);
    CHECK_INT_EQ(r[0].upstream, 0);
    CHECK_SLICE_EQ(r[0].match_text,
                   "http.host eq \"API.Example\" and starts_with(http.request.uri.path, \"/v1/\")");
    char fmt[256];
    bw_rules_format(r[0].match->root, fmt, sizeof fmt);
    CHECK_STR_EQ(fmt, "(and (eq http.host \"API.Example\") "
                      "(starts_with http.request.uri.path \"/v1/\"))");
    CHECK(r[1].has_match);
    CHECK_INT_EQ(r[1].upstream, 1);
    CHECK(r[2].has_match);
    bw_rules_format(r[2].match->root, fmt, sizeof fmt);
    CHECK_STR_EQ(fmt, "(eq http.host \"a\\\\b\")");
    CHECK_INT_EQ(r[2].upstream, 2);
    CHECK(!r[3].has_match);
    CHECK_INT_EQ(r[3].upstream, 0);
    CHECK(cfg->log.access_enabled);
    CHECK_SLICE_EQ(cfg->log.access_path, "/var/log/bulwark/access.log");
    cfg = bw_config_free(cfg);
}

TEST(small_variants_accepted)
{
    static const char *const ok[] = {
        BASE "access_log: off\n",
        BASE "access_log: \"-\"\n",
        BASE "reload: {watch: true, debounce: 50ms}\n",
        BASE "reload: {watch: false}\n",
        BASE "workers: 1\n",
        BASE "workers: 256\n",
        BASE "limits: {header_bytes: 1KiB, request_line_bytes: 1KiB}\n",
        BASE "limits: {body_bytes: 1TiB, headers: 1}\n",
        BASE "limits: {keepalive_timeout: 1h, send_timeout: 1ms}\n",
        UP "    balance: hash(ip.src)\n",
        UP "    balance: hash(http.host)\n",
        UP "    balance: hash(http.request.uri)\n",
        UP "    keepalive: 0\n    max_fails: 1000\n",
        RT "  - match: 'starts_with(http.request.uri.path, \"/\")'\n    upstream: app\n",
        BASE "client_ip: {trusted: [\"::/0\"], from: x_forwarded_for}\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct bw_config *cfg = NULL;
        struct bw_config_diags d;
        char got[4096];
        if (parse_str(ok[i], &cfg, &d) != BW_OK) {
            T_FAILF("case %zu refused: %s", i, diags_text(&d, got, sizeof got));
            return;
        }
        cfg = bw_config_free(cfg);
    }
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse_str(BASE "access_log: off\n", &cfg, &d) == BW_OK);
    CHECK(!cfg->log.access_enabled);
    cfg = bw_config_free(cfg);
    /* The upstream's keepalive settings at their lower limits (the upper
     * ones are in FULL). */
    CHECK(parse_str(UP "    keepalive_timeout: 1ms\n    keepalive_requests: 1\n", &cfg, &d) ==
          BW_OK);
    CHECK_INT_EQ(cfg->upstreams[0].keepalive_timeout_ms, 1);
    CHECK_INT_EQ(cfg->upstreams[0].keepalive_requests, 1);
    CHECK_INT_EQ(cfg->limits.keepalive_timeout_ms, 60000);
    cfg = bw_config_free(cfg);
    CHECK(parse_str(BASE "client_ip: {trusted: [10.0.0.0/8], from: x_real_ip}\n", &cfg, &d) ==
          BW_OK);
    CHECK_INT_EQ(cfg->client_ip.from, BW_CLIENT_IP_X_REAL_IP);
    cfg = bw_config_free(cfg);
}

/* listen[].tls: certificate paths resolved against the config's directory,
 * both protocols by default, and a chosen subset kept. */
TEST(tls_listener)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    char got[4096];
    const char *y = "listen:\n"
                    "  - address: 127.0.0.1:8080\n"
                    "  - address: 127.0.0.1:8443\n"
                    "    tls:\n"
                    "      certificates:\n"
                    "        - { cert: certs/a.pem, key: certs/a.key }\n"
                    "        - { cert: /etc/b.pem, key: /etc/b.key }\n"
                    "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
                    "routes: [{upstream: app}]\n";
    if (bw_config_parse("/srv/conf/bulwark.yaml", y, strlen(y), &cfg, &d) != BW_OK) {
        T_FAILF("refused: %s", diags_text(&d, got, sizeof got));
        return;
    }
    CHECK(!cfg->listen[0].has_tls);
    CHECK(cfg->listen[1].has_tls);
    CHECK_INT_EQ(cfg->listen[1].tls.ncerts, 2);
    CHECK_SLICE_EQ(cfg->listen[1].tls.certs[0].cert, "/srv/conf/certs/a.pem");
    CHECK_SLICE_EQ(cfg->listen[1].tls.certs[0].key, "/srv/conf/certs/a.key");
    CHECK_SLICE_EQ(cfg->listen[1].tls.certs[1].cert, "/etc/b.pem");
    CHECK_INT_EQ(cfg->listen[1].tls.certs[1].line, 7);
    CHECK_INT_EQ(cfg->listen[1].tls.protocols, BW_CONFIG_TLS_V12 | BW_CONFIG_TLS_V13);
    cfg = bw_config_free(cfg);
    CHECK(parse_str("listen:\n  - address: 127.0.0.1:8443\n    tls: {certificates: [{cert: a, "
                    "key: b}], protocols: [TLSv1.3]}\n"
                    "upstreams: {app: {servers: [{address: 127.0.0.1:9000}]}}\n"
                    "routes: [{upstream: app}]\n",
                    &cfg, &d) == BW_OK);
    CHECK_INT_EQ(cfg->listen[0].tls.protocols, BW_CONFIG_TLS_V13);
    cfg = bw_config_free(cfg);
}

/* upstreams.<name>.tls: verification on by default, the CA file resolved
 * against the config's directory, SNI kept. */
TEST(upstream_tls)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    char got[4096];
    const char *y = UP "    tls: {ca_file: ca/internal.pem, sni: app.internal}\n";
    if (bw_config_parse("/srv/conf/bulwark.yaml", y, strlen(y), &cfg, &d) != BW_OK) {
        T_FAILF("refused: %s", diags_text(&d, got, sizeof got));
        return;
    }
    CHECK(cfg->upstreams[0].has_tls);
    CHECK(cfg->upstreams[0].tls.verify);
    CHECK(cfg->upstreams[0].tls.has_ca_file);
    CHECK_SLICE_EQ(cfg->upstreams[0].tls.ca_file, "/srv/conf/ca/internal.pem");
    CHECK(cfg->upstreams[0].tls.has_sni);
    CHECK_STR_EQ(cfg->upstreams[0].tls.sni.ptr, "app.internal");
    cfg = bw_config_free(cfg);
    CHECK(parse_str(UP "    tls: {}\n", &cfg, &d) == BW_OK);
    CHECK(cfg->upstreams[0].has_tls && cfg->upstreams[0].tls.verify);
    CHECK(!cfg->upstreams[0].tls.has_ca_file && !cfg->upstreams[0].tls.has_sni);
    cfg = bw_config_free(cfg);
    CHECK(parse_str(UP "    tls: {verify: false}\n", &cfg, &d) == BW_OK);
    CHECK(!cfg->upstreams[0].tls.verify);
    cfg = bw_config_free(cfg);
    CHECK(parse_str(BASE, &cfg, &d) == BW_OK);
    CHECK(!cfg->upstreams[0].has_tls);
    cfg = bw_config_free(cfg);
}

/* modules.bot_score: defaults, the bounds of max_features, and the feature
 * file's path taken from the config file's directory. */
/* Keys that name something outside the file keep where they are, so a
 * problem found when it is used (a missing ruleset, a port taken) is said
 * there: file:line:col, as DESIGN.md asks of a bad config. */
TEST(positions_of_keys_that_name_files)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    char got[4096];
    static const char text[] = BASE "admin:\n"                            /* 9 */
                                    "  address: 127.0.0.1:9901\n"         /* 10 */
                                    "  token_file: admin.token\n"         /* 11 */
                                    "state_dir: state\n"                  /* 12 */
                                    "access_log: 'logs/a.log'\n"          /* 13 */
                                    "modules:\n"                          /* 14 */
                                    "  bot_score: { features: f.json }\n" /* 15 */
                                    "  rules:\n"                          /* 16 */
                                    "    rulesets:\n"                     /* 17 */
                                    "      - rules/a.yaml\n"              /* 18 */
                                    "      - \"rules/nope.yaml\"\n";      /* 19 */
    if (bw_config_parse("conf/bulwark.yaml", text, sizeof text - 1, &cfg, &d) != BW_OK) {
        T_FAILF("refused: %s", diags_text(&d, got, sizeof got));
        return;
    }
    CHECK_INT_EQ(cfg->listen[0].addr_pos.line, 2);
    CHECK_INT_EQ(cfg->listen[0].addr_pos.col, 14);
    CHECK_INT_EQ(cfg->admin.addr_pos.line, 10);
    CHECK_INT_EQ(cfg->admin.addr_pos.col, 12);
    CHECK_INT_EQ(cfg->admin.token_file_pos.line, 11);
    CHECK_INT_EQ(cfg->admin.token_file_pos.col, 15);
    CHECK_INT_EQ(cfg->state_dir_pos.line, 12);
    CHECK_INT_EQ(cfg->state_dir_pos.col, 12);
    CHECK_INT_EQ(cfg->log.access_pos.line, 13);
    CHECK_INT_EQ(cfg->log.access_pos.col, 13);
    CHECK_INT_EQ(cfg->modules.bot_score.features_pos.line, 15);
    CHECK_INT_EQ(cfg->modules.bot_score.features_pos.col, 26);
    CHECK_INT_EQ(cfg->modules.rules.nrulesets, 2);
    CHECK_INT_EQ(cfg->modules.rules.ruleset_pos[0].line, 18);
    CHECK_INT_EQ(cfg->modules.rules.ruleset_pos[0].col, 9);
    CHECK_INT_EQ(cfg->modules.rules.ruleset_pos[1].line, 19);
    CHECK_INT_EQ(cfg->modules.rules.ruleset_pos[1].col, 9);

    bw_config_where(cfg, cfg->modules.rules.ruleset_pos[1], "modules.rules.rulesets[1]", got,
                    sizeof got);
    CHECK_STR_EQ(got, "conf/bulwark.yaml:19:9: error: modules.rules.rulesets[1]");
    /* A key that was not written (a default) has no position to give. */
    bw_config_where(cfg, (struct bw_config_pos){0, 0}, "access_log", got, sizeof got);
    CHECK_STR_EQ(got, "conf/bulwark.yaml: error: access_log");
    cfg = bw_config_free(cfg);
}

TEST(bot_score_module)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    char got[4096];
    CHECK(parse_str(BASE, &cfg, &d) == BW_OK);
    CHECK(!cfg->modules.bot_score.enabled);
    cfg = bw_config_free(cfg);

    CHECK(parse_str(BASE "modules:\n  bot_score: { features: f.json }\n", &cfg, &d) == BW_OK);
    const struct bw_config_bot_module *m = &cfg->modules.bot_score;
    CHECK(m->enabled);
    CHECK_SLICE_EQ(m->features, "f.json"); /* t.yaml has no directory */
    CHECK_INT_EQ(m->on_error, BW_ON_ERROR_OPEN);
    CHECK_INT_EQ(m->error_status, 503);
    CHECK_INT_EQ(m->max_features, 200);
    cfg = bw_config_free(cfg);

    static const char text[] = BASE "modules:\n  bot_score: { features: models/f.json, on_error: "
                                    "closed, error_status: 599, max_features: 1024 }\n";
    if (bw_config_parse("/etc/bulwark/bulwark.yaml", text, sizeof text - 1, &cfg, &d) != BW_OK) {
        T_FAILF("refused: %s", diags_text(&d, got, sizeof got));
        return;
    }
    m = &cfg->modules.bot_score;
    CHECK_SLICE_EQ(m->features, "/etc/bulwark/models/f.json");
    CHECK_INT_EQ(m->on_error, BW_ON_ERROR_CLOSED);
    CHECK_INT_EQ(m->error_status, 599);
    CHECK_INT_EQ(m->max_features, 1024);
    cfg = bw_config_free(cfg);

    static const char abs[] =
        BASE "modules:\n  bot_score: { features: /srv/f.json, max_features: 1 }\n";
    CHECK(bw_config_parse("conf/b.yaml", abs, sizeof abs - 1, &cfg, &d) == BW_OK);
    CHECK_SLICE_EQ(cfg->modules.bot_score.features, "/srv/f.json");
    CHECK_INT_EQ(cfg->modules.bot_score.max_features, 1);
    cfg = bw_config_free(cfg);
}

/* ---- hostile input ---------------------------------------------------- */

static void expect_one_diag(const char *what, const char *text, size_t len, const char *want)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    char got[4096];
    if (parse(text, len, &cfg, &d) == BW_OK) {
        T_FAILF("%s: accepted", what);
        bw_config_free(cfg);
        return;
    }
    diags_text(&d, got, sizeof got);
    if (d.n != 1 || strcmp(got, want) != 0)
        T_FAILF("%s:\n       got  %s\n       want %s", what, got, want);
}

TEST(garbage_input)
{
    static const unsigned char bin[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0xff, 0xfe};
    expect_one_diag("binary", (const char *)bin, sizeof bin,
                    "1:8: contains a NUL byte: YAML must be text (a binary or corrupted file?)");
    expect_one_diag("NUL byte", "listen:\0", 8,
                    "1:8: contains a NUL byte: YAML must be text (a binary or corrupted file?)");
    static const char nul_mid[] = "listen:\n  - address: 127\0.0.0.1:8080\n";
    expect_one_diag("NUL byte inside valid YAML", nul_mid, sizeof nul_mid - 1,
                    "2:17: contains a NUL byte: YAML must be text (a binary or corrupted file?)");
    /* A NUL anywhere is reported before an earlier encoding problem: it is
     * what a binary file looks like. */
    expect_one_diag("NUL after bad UTF-8", "\xff\xff a\0", 5,
                    "1:5: contains a NUL byte: YAML must be text (a binary or corrupted file?)");
    expect_one_diag("DEL first",
                    "\x7f"
                    "ELF",
                    4,
                    "1:1: contains the control character U+007F, which YAML does not allow (a "
                    "binary or corrupted file?)");
    expect_one_diag("empty", "", 0,
                    "0:0: the config is empty; it needs at least listen, upstreams and routes");
    expect_one_diag("whitespace", " \n\n  \n", 6,
                    "0:0: the config is empty; it needs at least listen, upstreams and routes");
    /* UTF-16 with a byte-order mark is not guessed at: UTF-8 only. */
    expect_one_diag("UTF-16", "\xff\xfel\0i\0", 6,
                    "1:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it "
                    "as UTF-8");
    expect_one_diag("UTF-16 BE", "\xfe\xff\0l\0i", 6,
                    "1:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it "
                    "as UTF-8");
    expect_one_diag("UTF-32 LE", "\xff\xfe\0\0l\0\0\0", 8,
                    "1:1: the file is UTF-32 (it starts with a UTF-32 byte-order mark); save it "
                    "as UTF-8");
    expect_one_diag("UTF-32 BE", "\0\0\xfe\xff\0\0\0l", 8,
                    "1:1: the file is UTF-32 (it starts with a UTF-32 byte-order mark); save it "
                    "as UTF-8");
    expect_one_diag("UTF-16 LE without a BOM", "l\0i\0s\0", 6,
                    "1:1: the file looks like UTF-16 (a NUL byte next to every character); save "
                    "it as UTF-8");
    expect_one_diag("UTF-16 BE without a BOM", "\0l\0i\0s", 6,
                    "1:1: the file looks like UTF-16 (a NUL byte next to every character); save "
                    "it as UTF-8");
    expect_one_diag("truncated UTF-8", "a: \xe2\x82", 5,
                    "1:4: truncated: the file ends in the middle of a UTF-8 character (byte 0xE2 "
                    "needs 1 more)");
    expect_one_diag("UTF-8 surrogate", "a: \xed\xa0\x80\n", 7,
                    "1:4: not valid UTF-8: U+D800 is a UTF-16 surrogate, not a character (was "
                    "this converted from UTF-16 by hand?)");
    expect_one_diag("stray quote", "listen: \"abc\n", 13,
                    "2:1: truncated: the file ends inside the quoted string that starts at line "
                    "1, column 9 (or its closing quote is missing)");
    /* A UTF-8 byte-order mark is UTF-8: accepted, like an editor writes it. */
    static const char bom[] = "\xef\xbb\xbf" BASE;
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse(bom, sizeof bom - 1, &cfg, &d) == BW_OK);
    cfg = bw_config_free(cfg);
    expect_one_diag("UTF-8 BOM then an error", "\xef\xbb\xbfx: \x01", 7,
                    "1:4: contains the control character U+0001, which YAML does not allow (a "
                    "binary or corrupted file?)");
}

TEST(echoed_values_are_escaped_and_shortened)
{
    /* A key of 30 tabs: every byte escapes to 4 characters; the echo stops
     * early with "..." rather than overflowing (found by fuzz_config). */
    char y[512];
    size_t o = (size_t)snprintf(y, sizeof y, "%s\"", BASE);
    for (int i = 0; i < 30; i++)
        o += (size_t)snprintf(y + o, sizeof y - o, "\\t");
    o += (size_t)snprintf(y + o, sizeof y - o, "\": 1\n");
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse(y, o, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    char want[256];
    size_t w = (size_t)snprintf(want, sizeof want, "unknown key \"");
    for (int i = 0; i < 18; i++)
        w += (size_t)snprintf(want + w, sizeof want - w, "\\x09");
    snprintf(want + w, sizeof want - w,
             "...\" in the top level (expected one of: listen, "
             "workers, io_engine, io_batch_wait, admin, state_dir, client_ip, limits, "
             "upstreams, routes, access_log, modules, reload)");
    CHECK_STR_EQ(d.items[0].msg, want);

    /* A long UTF-8 value is cut at a character boundary, not inside one. */
    char y2[512];
    o = (size_t)snprintf(y2, sizeof y2, "%sstate_dir: [\"", BASE);
    for (int i = 0; i < 30; i++)
        o += (size_t)snprintf(y2 + o, sizeof y2 - o, "\xc3\xa9");
    o += (size_t)snprintf(y2 + o, sizeof y2 - o, "\"]\nworkers: \"");
    o += (size_t)snprintf(y2 + o, sizeof y2 - o, "x");
    for (int i = 0; i < 30; i++)
        o += (size_t)snprintf(y2 + o, sizeof y2 - o, "\xc3\xa9");
    o += (size_t)snprintf(y2 + o, sizeof y2 - o, "\"\n");
    CHECK(parse(y2, o, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 2);
    CHECK_STR_EQ(d.items[0].msg, "state_dir: expected a file path, got a list");
    w = (size_t)snprintf(want, sizeof want,
                         "workers: expected auto or an integer from 1 to 256, got \"x");
    for (int i = 0; i < 19; i++)
        w += (size_t)snprintf(want + w, sizeof want - w, "\xc3\xa9");
    snprintf(want + w, sizeof want - w, "...\"");
    CHECK_STR_EQ(d.items[1].msg, want);
}

TEST(billion_laughs_refused)
{
    const char *y =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    expect_one_diag("billion laughs", y, strlen(y),
                    "1:4: YAML anchors (&a) are not supported; write the value out in full");
    /* An anchor on a scalar and on a mapping, too. */
    const char *y2 = BASE "state_dir: &d /x\n";
    expect_one_diag("scalar anchor", y2, strlen(y2),
                    "9:12: YAML anchors (&d) are not supported; write the value out in full");
    const char *y3 = BASE "limits: &l {headers: 5}\n";
    expect_one_diag("mapping anchor", y3, strlen(y3),
                    "9:9: YAML anchors (&l) are not supported; write the value out in full");
    const char *y4 = "x: *nope\n";
    expect_one_diag("undefined alias", y4, strlen(y4),
                    "1:4: YAML aliases (*nope) are not supported; write the value out in full");
}

TEST(deep_nesting_bounded)
{
    /* 100000 nested flow lists: refused at the depth limit, quickly. */
    size_t n = 100000;
    char *y = malloc(2 * n + 8);
    CHECK(y != NULL);
    memcpy(y, "a: ", 3);
    memset(y + 3, '[', n);
    memset(y + 3 + n, ']', n);
    expect_one_diag("deep lists", y, 3 + 2 * n, "1:35: YAML nested deeper than 32 levels");
    free(y);
    /* Block mappings as deep as the limit allow are fine as YAML (and then
     * rejected by the schema as unknown keys). */
    char buf[4096];
    size_t o = 0;
    for (int i = 0; i < 31; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%*sk%d:\n", i * 2, "", i);
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%*sv: 1\n", 31 * 2, "");
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse(buf, o, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.items[0].line, 1);
    CHECK(strstr(d.items[0].msg, "unknown key \"k0\" in the top level") == d.items[0].msg);
    /* One more level is one too many. */
    o += (size_t)snprintf(buf + o, sizeof buf - o, "%*sw: [1]\n", 31 * 2, "");
    expect_one_diag("33 levels", buf, o, "33:66: YAML nested deeper than 32 levels");
}

TEST(oversized_text_refused)
{
    size_t n = BW_CONFIG_MAX_FILE_BYTES + 1;
    char *y = malloc(n);
    CHECK(y != NULL);
    memset(y, '#', n);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse(y, n, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_STR_EQ(d.items[0].msg, "the config is 4194305 bytes, over the limit of 4194304 bytes");
    free(y);
}

TEST(many_keys_duplicate_check_is_fast)
{
    /* 100000 distinct keys in one mapping, then one repeated: sorting keeps
     * the duplicate check far from quadratic. */
    size_t cap = 2 * 1024 * 1024;
    char *y = malloc(cap);
    CHECK(y != NULL);
    size_t o = (size_t)snprintf(y, cap, "limits:\n");
    for (int i = 0; i < 100000; i++)
        o += (size_t)snprintf(y + o, cap - o, "  k%d: 1\n", i);
    o += (size_t)snprintf(y + o, cap - o, "  k5: 1\n");
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(parse(y, o, &cfg, &d) == BW_ERR);
    CHECK(d.n == BW_CONFIG_MAX_DIAGS);
    CHECK(d.dropped > 0);
    free(y);
}

/* ---- counts at and one past their limits -------------------------------- */

/* Builds a config whose one list has n entries; `kind` picks which list. */
enum count_kind { C_LISTEN, C_SERVERS, C_UPSTREAMS, C_ROUTES, C_TRUSTED, C__COUNT };

static char *config_with(enum count_kind kind, int n, size_t *ret_len)
{
    size_t cap = 256 + (size_t)n * 80;
    char *y = malloc(cap);
    if (!y)
        return NULL;
    size_t o = 0;
#define PUT(...) o += (size_t)snprintf(y + o, cap - o, __VA_ARGS__)
    PUT("listen:\n");
    for (int i = 0; i < (kind == C_LISTEN ? n : 1); i++)
        PUT("  - address: 127.0.0.1:%d\n", 1000 + i);
    PUT("upstreams:\n  app:\n    servers:\n");
    for (int i = 0; i < (kind == C_SERVERS ? n : 1); i++)
        PUT("      - address: 10.0.%d.%d:80\n", i / 250, 1 + i % 250);
    for (int i = 1; kind == C_UPSTREAMS && i < n; i++)
        PUT("  u%d: {servers: [{address: 10.1.0.1:80}]}\n", i);
    PUT("routes:\n");
    for (int i = 0; i < (kind == C_ROUTES ? n : 1); i++)
        PUT("  - upstream: app\n");
    if (kind == C_TRUSTED) {
        PUT("client_ip:\n  from: x_real_ip\n  trusted:\n");
        for (int i = 0; i < n; i++)
            PUT("    - 10.%d.%d.0/24\n", i / 250, i % 250);
    }
#undef PUT
    *ret_len = o;
    return y;
}

TEST(list_counts_at_and_past_limits)
{
    static const struct {
        enum count_kind kind;
        int max;
        const char *over;
    } lim[] = {
        {C_LISTEN, BW_CONFIG_MAX_LISTEN, "listen: expected 1 to 16 addresses, got 17"},
        {C_SERVERS, BW_CONFIG_MAX_SERVERS,
         "upstreams.app.servers: expected 1 to 256 servers, got 257"},
        {C_UPSTREAMS, BW_CONFIG_MAX_UPSTREAMS, "upstreams: expected 1 to 1024 upstreams, got 1025"},
        {C_ROUTES, BW_CONFIG_MAX_ROUTES, "routes: expected 1 to 1024 routes, got 1025"},
        {C_TRUSTED, BW_CONFIG_MAX_TRUSTED, "client_ip.trusted: expected 1 to 1024 CIDRs, got 1025"},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        size_t len;
        char *y = config_with(lim[i].kind, lim[i].max, &len);
        CHECK(y != NULL);
        struct bw_config *cfg = NULL;
        struct bw_config_diags d;
        char got[4096];
        if (parse(y, len, &cfg, &d) != BW_OK) {
            T_FAILF("%d entries refused: %s", lim[i].max, diags_text(&d, got, sizeof got));
            free(y);
            return;
        }
        cfg = bw_config_free(cfg);
        free(y);
        y = config_with(lim[i].kind, lim[i].max + 1, &len);
        CHECK(y != NULL);
        bw_status st = parse(y, len, &cfg, &d);
        free(y);
        CHECK(st == BW_ERR);
        CHECK_INT_EQ(d.n, 1);
        CHECK_STR_EQ(d.items[0].msg, lim[i].over);
    }
}

TEST(node_count_bounded)
{
    size_t n = BW_CONFIG_MAX_NODES + 10;
    char *y = malloc(2 * n + 16);
    CHECK(y != NULL);
    size_t o = 0;
    memcpy(y, "a: [", 4);
    o = 4;
    for (size_t i = 0; i < n; i++) {
        y[o++] = '1';
        y[o++] = ',';
    }
    y[o++] = ']';
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    bw_status st = parse(y, o, &cfg, &d);
    free(y);
    CHECK(st == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_INT_EQ(d.items[0].line, 1);
    CHECK_STR_EQ(d.items[0].msg, "too many YAML values (limit 500000)");
}

/* ---- files ------------------------------------------------------------ */

static char tmpdir[64];

static void path_in_tmp(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
}

TEST(load_file_missing)
{
    char p[128];
    path_in_tmp(p, sizeof p, "nope.yaml");
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_INT_EQ(d.items[0].line, 0);
    CHECK_STR_EQ(d.items[0].msg, "cannot open the config: No such file or directory");
    CHECK_STR_EQ(d.file, p);
}

TEST(load_file_directory)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(tmpdir, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_STR_EQ(d.items[0].msg, "is a directory, expected a config file");
}

TEST(load_file_empty)
{
    char p[128];
    path_in_tmp(p, sizeof p, "empty.yaml");
    write_file(p, "", 0);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_STR_EQ(d.items[0].msg, "the config file is empty");
}

TEST(load_file_oversized)
{
    char p[128];
    path_in_tmp(p, sizeof p, "big.yaml");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)BW_CONFIG_MAX_FILE_BYTES + 1) == 0);
    close(fd);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_STR_EQ(d.items[0].msg, "the config is 4194305 bytes, over the limit of 4194304 bytes");

    /* Exactly at the limit is read (and then judged as YAML: all NULs). */
    fd = open(p, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)BW_CONFIG_MAX_FILE_BYTES) == 0);
    close(fd);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    CHECK_STR_EQ(d.items[0].msg,
                 "contains a NUL byte: YAML must be text (a binary or corrupted file?)");
}

TEST(load_file_fifo_and_unreadable)
{
    char p[128];
    path_in_tmp(p, sizeof p, "fifo");
    CHECK(mkfifo(p, 0600) == 0);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(d.items[0].msg, "is a FIFO (named pipe), expected a regular file");
    unlink(p);

    if (geteuid() != 0) { /* root reads anything */
        path_in_tmp(p, sizeof p, "secret.yaml");
        write_file(p, BASE, strlen(BASE));
        CHECK(chmod(p, 0) == 0);
        CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
        char want[128];
        snprintf(want, sizeof want,
                 "cannot open the config: Permission denied (bulwark runs as uid %u)",
                 (unsigned)geteuid());
        CHECK_STR_EQ(d.items[0].msg, want);
        unlink(p);
    }
}

TEST(load_file_symlinks)
{
    char p[128], target[128], want[512];
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    path_in_tmp(p, sizeof p, "dangling.yaml");
    path_in_tmp(target, sizeof target, "nowhere.yaml");
    CHECK(symlink(target, p) == 0);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_INT_EQ(d.n, 1);
    snprintf(want, sizeof want, "is a symlink to \"%s\", which does not exist", target);
    CHECK_STR_EQ(d.items[0].msg, want);
    /* Once the target exists, the symlink is followed. */
    write_file(target, BASE, strlen(BASE));
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_OK);
    cfg = bw_config_free(cfg);
    unlink(target);
    unlink(p);

    char q[128];
    path_in_tmp(p, sizeof p, "loop-a.yaml");
    path_in_tmp(q, sizeof q, "loop-b.yaml");
    CHECK(symlink(q, p) == 0);
    CHECK(symlink(p, q) == 0);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(d.items[0].msg, "cannot open the config: a loop of symlinks");
    unlink(p);
    unlink(q);
}

TEST(load_file_special_files)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file("/dev/null", &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(d.items[0].msg, "is a character device, expected a regular file");

    char p[128];
    path_in_tmp(p, sizeof p, "sock");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    CHECK(strlen(p) < sizeof sun.sun_path);
    memcpy(sun.sun_path, p, strlen(p) + 1);
    CHECK(bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(d.items[0].msg, "is a socket, expected a regular file");
    close(fd);
    unlink(p);
}

/* A valid config padded with a comment to exactly the limit loads; one byte
 * more is refused before it is parsed. */
TEST(load_file_valid_at_the_limit)
{
    char p[128];
    path_in_tmp(p, sizeof p, "padded.yaml");
    size_t n = BW_CONFIG_MAX_FILE_BYTES + 1;
    char *text = malloc(n);
    CHECK(text != NULL);
    size_t base = strlen(BASE);
    memcpy(text, BASE, base);
    text[base] = '#';
    memset(text + base + 1, 'x', n - base - 1);
    text[BW_CONFIG_MAX_FILE_BYTES - 1] = '\n';
    write_file(p, text, BW_CONFIG_MAX_FILE_BYTES);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_OK);
    cfg = bw_config_free(cfg);
    text[BW_CONFIG_MAX_FILE_BYTES] = '\n';
    write_file(p, text, BW_CONFIG_MAX_FILE_BYTES + 1);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(d.items[0].msg, "the config is 4194305 bytes, over the limit of 4194304 bytes");
    free(text);
    unlink(p);
}

/* A file cut short can still be YAML; its errors then get a note at the end. */
TEST(load_file_truncation_note)
{
    char p[128], got[4096];
    path_in_tmp(p, sizeof p, "cut.yaml");
    static const char cut[] = BASE "limits:\n  header_by";
    write_file(p, cut, sizeof cut - 1);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(diags_text(&d, got, sizeof got),
                 "10:3: limits: expected a mapping like {header_bytes: 32KiB}, got \"header_by\"\n"
                 "10:12: the file ends here, in the middle of a line: was it truncated? (that "
                 "would explain the error at 10:3)");
    /* Only an error at the very end can be explained by a cut: not one
     * earlier on a last line written whole, nor the others of the file. */
    static const char whole_line[] = BASE "workers: 1\nlimits: {header_bytes: lots}";
    write_file(p, whole_line, sizeof whole_line - 1);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(diags_text(&d, got, sizeof got),
                 "10:24: limits.header_bytes: expected a size like 32KiB, got \"lots\"");
    static const char others[] = BASE "workrs: 1\nlimits:\n  header_by";
    write_file(p, others, sizeof others - 1);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(diags_text(&d, got, sizeof got),
                 "9:1: unknown key \"workrs\" in the top level; did you mean \"workers\"? "
                 "(expected one of: listen, workers, io_engine, io_batch_wait, admin, state_dir, "
                 "client_ip, limits, upstreams, routes, access_log, modules, reload)\n"
                 "11:3: limits: expected a mapping like {header_bytes: 32KiB}, got \"header_by\"\n"
                 "11:12: the file ends here, in the middle of a line: was it truncated? (that "
                 "would explain the error at 11:3)");
    /* Not when the file ends with a newline, nor on a YAML error that
     * already says "truncated". */
    static const char whole[] = BASE "limits:\n  header_by\n";
    write_file(p, whole, sizeof whole - 1);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(diags_text(&d, got, sizeof got),
                 "10:3: limits: expected a mapping like {header_bytes: 32KiB}, got \"header_by\"");
    static const char quote[] = BASE "state_dir: \"/var/li";
    write_file(p, quote, sizeof quote - 1);
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(diags_text(&d, got, sizeof got),
                 "9:20: truncated: the file ends inside the quoted string that starts at line 9, "
                 "column 12 (or its closing quote is missing)");
    unlink(p);
}

TEST(load_file_good_and_errors_name_the_file)
{
    char p[128];
    path_in_tmp(p, sizeof p, "good.yaml");
    write_file(p, BASE, strlen(BASE));
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_OK);
    CHECK_SLICE_EQ(cfg->path, p);
    cfg = bw_config_free(cfg);

    path_in_tmp(p, sizeof p, "bad.yaml");
    write_file(p, BASE "workers: 0\n", strlen(BASE "workers: 0\n"));
    CHECK(bw_config_load_file(p, &cfg, &d) == BW_ERR);
    CHECK_STR_EQ(d.file, p);
    CHECK_INT_EQ(d.items[0].line, 9);
}

TEST(example_config_loads)
{
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    if (bw_config_load_file("examples/bulwark.yaml", &cfg, &d) != BW_OK) {
        bw_config_diags_print(&d, stdout);
        T_FAILF("examples/bulwark.yaml does not load");
        return;
    }
    CHECK_INT_EQ(cfg->nlisten, 2);
    CHECK_STR_EQ(cfg->listen[0].addr.text, "127.0.0.1:8080");
    CHECK(cfg->listen[1].has_tls);
    CHECK_INT_EQ(cfg->nupstreams, 1);
    CHECK_SLICE_EQ(cfg->upstreams[0].name, "demo");
    CHECK_STR_EQ(cfg->upstreams[0].servers[0].addr.text, "127.0.0.1:8081");
    CHECK(cfg->upstreams[0].health.enabled);
    CHECK_SLICE_EQ(cfg->upstreams[0].health.path, "/healthz");
    CHECK_INT_EQ(cfg->nroutes, 2);
    CHECK(cfg->routes[0].has_match);
    CHECK(!cfg->routes[1].has_match);
    CHECK(cfg->log.access_enabled);
    CHECK_SLICE_EQ(cfg->log.access_path, "-");
    cfg = bw_config_free(cfg);
}

/* The complete example at the top of docs/config.md is a valid config. */
TEST(docs_example_loads)
{
    FILE *f = fopen("docs/config.md", "rb");
    CHECK(f != NULL);
    static char doc[128 * 1024];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    const char *start = strstr(doc, "```yaml\n");
    CHECK(start != NULL);
    start += strlen("```yaml\n");
    const char *end = strstr(start, "```");
    CHECK(end != NULL);
    struct bw_config *cfg = NULL;
    struct bw_config_diags d;
    if (bw_config_parse("docs/config.md", start, (size_t)(end - start), &cfg, &d) != BW_OK) {
        bw_config_diags_print(&d, stdout);
        T_FAILF("the example in docs/config.md does not load");
        return;
    }
    CHECK_INT_EQ(cfg->nlisten, 3);
    CHECK_INT_EQ(cfg->nupstreams, 2);
    CHECK_INT_EQ(cfg->nroutes, 3);
    CHECK(cfg->admin.enabled);
    CHECK_INT_EQ(cfg->client_ip.from, BW_CLIENT_IP_X_FORWARDED_FOR);
    cfg = bw_config_free(cfg);
}

static void cleanup_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bw-config-test-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(invalid_configs_table);
    RUN(several_errors_all_reported_in_file_order);
    RUN(diags_cap_counts_the_rest);
    RUN(diags_print_format);
    RUN(defaults_from_minimal_config);
    RUN(full_config_every_key);
    RUN(small_variants_accepted);
    RUN(tls_listener);
    RUN(upstream_tls);
    RUN(bot_score_module);
    RUN(positions_of_keys_that_name_files);
    RUN(garbage_input);
    RUN(echoed_values_are_escaped_and_shortened);
    RUN(billion_laughs_refused);
    RUN(deep_nesting_bounded);
    RUN(oversized_text_refused);
    RUN(many_keys_duplicate_check_is_fast);
    RUN(list_counts_at_and_past_limits);
    RUN(node_count_bounded);
    RUN(load_file_missing);
    RUN(load_file_directory);
    RUN(load_file_empty);
    RUN(load_file_oversized);
    RUN(load_file_fifo_and_unreadable);
    RUN(load_file_symlinks);
    RUN(load_file_special_files);
    RUN(load_file_valid_at_the_limit);
    RUN(load_file_truncation_note);
    RUN(load_file_good_and_errors_name_the_file);
    RUN(example_config_loads);
    RUN(docs_example_loads);
    cleanup_tmp();
    return t_done();
}
