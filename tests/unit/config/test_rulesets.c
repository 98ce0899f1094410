/* Ruleset files: the YAML schema, every action's parameters, expression
 * errors with their carets, embedded tests run through the rulebook, and
 * the file-level failures. Each invalid file is checked against the exact
 * diagnostics a user sees. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/rulesets.h"
#include "test.h"

static bw_arena A;

/* "line:col: msg" per diagnostic, joined by newlines. */
static void render(const struct bw_config_diags *d, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d->n && o < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s%u:%u: %s", i ? "\n" : "", d->items[i].line,
                         d->items[i].col, d->items[i].msg);
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

static bw_status parse(const char *text, struct bw_ruleset *s, struct bw_config_diags *d)
{
    bw_arena_reset(&A);
    bw_arena_init(&A, 16 * 1024, 0);
    return bw_ruleset_parse(&A, "r.yaml", text, strlen(text), s, d);
}

/* ---- invalid files ------------------------------------------------------------- */

static const struct bad {
    const char *name;
    const char *text;
    const char *want;
} bad[] = {
    {"unknown top key",
     "id: a\n"
     "rules: []\n"
     "extra: 1\n"
     "",
     "3:1: unknown key \"extra\" in the ruleset (expected one of: id, phase, enabled, rules, "
     "tests)"},
    {"missing id",
     "rules: []\n"
     "",
     "1:1: missing required key \"id\" in the ruleset"},
    {"missing rules",
     "id: a\n"
     "",
     "1:1: missing required key \"rules\" in the ruleset"},
    {"bad id chars",
     "id: \"a b\"\n"
     "rules: []\n"
     "",
     "1:5: id: expected an id of 1 to 128 letters, digits, '_', '.' or '-', got \"a b\""},
    {"bad phase",
     "id: a\n"
     "phase: both\n"
     "rules: []\n"
     "",
     "2:8: phase: expected request or response, got \"both\""},
    {"enabled not bool",
     "id: a\n"
     "enabled: yes\n"
     "rules: []\n"
     "",
     "2:10: enabled: expected true or false, got \"yes\""},
    {"rules not a list",
     "id: a\n"
     "rules: {x: 1}\n"
     "",
     "2:8: rules: expected a list of rules, got a mapping"},
    {"rule not a mapping",
     "id: a\n"
     "rules:\n"
     "  - block\n"
     "",
     "3:5: rules[0]: expected a mapping with id, expression and action, got \"block\""},
    {"rule missing expression and action",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "",
     "3:5: missing required key \"expression\" in rules[0]\n"
     "3:5: missing required key \"action\" in rules[0]"},
    {"unknown rule key",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: log\n"
     "    colour: red\n"
     "",
     "6:5: unknown key \"colour\" in rules[0] (expected one of: id, enabled, expression, action, "
     "status, body, rulesets, modules, ruleset, characteristics, requests, period, location, "
     "preserve_query, headers, path, name, value)"},
    {"bad action",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: drop\n"
     "",
     "5:13: rules[0].action: expected one of block, log, skip, execute, rate_limit, redirect, "
     "rewrite, set_header, remove_header, got \"drop\""},
    {"param of another action",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: log\n"
     "    status: 403\n"
     "",
     "6:5: rules[0]: status is not a parameter of log"},
    {"expression type error",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'ip.src contains \"x\"'\n"
     "    action: log\n"
     "",
     "4:18: rules[0].expression: \"contains\" needs Bytes on both sides, but ip.src is Ip\n"
     "        expression: 'ip.src contains \"x\"'\n"
     "                     ^~~~~~"},
    {"expression block scalar error",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: |\n"
     "      http.host eq \"a\"\n"
     "        and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     "6:17: rules[0].expression: len() takes Bytes or an Array, but ssl is Bool\n"
     "            and len(ssl) gt 1\n"
     "                    ^~~"},
    {"expression response field in request",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.response.code eq 200\"\n"
     "    action: log\n"
     "",
     "4:18: rules[0].expression: http.response.code is only available in the response phase, but "
     "this is a request-phase expression\n"
     "        expression: \"http.response.code eq 200\"\n"
     "                     ^~~~~~~~~~~~~~~~~~"},
    {"expression not a string",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: [1]\n"
     "    action: log\n"
     "",
     "4:17: rules[0].expression: expected an expression, got a list"},
    {"block status out of range",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: block\n"
     "    status: 302\n"
     "",
     "6:13: rules[0].status: expected an integer from 400 to 599, got \"302\""},
    {"block body not string",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: block\n"
     "    body: {a: 1}\n"
     "",
     "6:11: rules[0].body: expected a string, got a mapping"},
    {"duplicate rule id",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: log\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: log\n"
     "",
     "6:9: rules[1].id: duplicate rule id \"r\" (first at line 3)"},
    {"duplicate key",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    id: s\n"
     "    expression: 'true'\n"
     "    action: log\n"
     "",
     "4:5: duplicate key \"id\" in rules[0] (first at line 3)"},
    {"execute without ruleset",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: execute\n"
     "",
     "3:5: rules[0]: missing required key \"ruleset\" for action execute"},
    {"execute bad ruleset id",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: execute\n"
     "    ruleset: \"x/y\"\n"
     "",
     "6:14: rules[0].ruleset: expected an id of 1 to 128 letters, digits, '_', '.' or '-', got "
     "\"x/y\""},
    {"skip empty rulesets",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: skip\n"
     "    rulesets: []\n"
     "",
     "6:15: rules[0].rulesets: expected a list of ruleset ids, got an empty list"},
    {"skip bad module",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: skip\n"
     "    modules: [waf]\n"
     "",
     "6:15: rules[0].modules[0]: expected bot_score or rules, got \"waf\""},
    {"skip module twice",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: skip\n"
     "    modules: [rules, rules]\n"
     "",
     "6:22: rules[0].modules[1]: module \"rules\" is listed twice"},
    {"rate_limit missing params",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "",
     "3:5: rules[0]: missing required key \"characteristics\" for action rate_limit\n"
     "3:5: rules[0]: missing required key \"requests\" for action rate_limit\n"
     "3:5: rules[0]: missing required key \"period\" for action rate_limit"},
    {"rate_limit bad characteristic",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.dst]\n"
     "    requests: 10\n"
     "    period: 60s\n"
     "",
     "6:23: rules[0].characteristics[0]: expected one of ip.src, http.host, http.request.method, "
     "http.request.uri.path, http.user_agent, http.request.headers[\"name\"], got \"ip.dst\""},
    {"rate_limit too many characteristics",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.src, http.host, http.request.method, http.request.uri.path, "
     "http.user_agent, 'http.request.headers[\"a\"]', 'http.request.headers[\"b\"]', "
     "'http.request.headers[\"c\"]', 'http.request.headers[\"d\"]']\n"
     "    requests: 10\n"
     "    period: 60s\n"
     "",
     "6:22: rules[0].characteristics: expected 1 to 8 characteristics, got 9"},
    {"rate_limit duplicate characteristic",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.src, ip.src]\n"
     "    requests: 10\n"
     "    period: 60s\n"
     "",
     "6:31: rules[0].characteristics[1]: \"ip.src\" is listed twice"},
    {"rate_limit requests zero",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.src]\n"
     "    requests: 0\n"
     "    period: 60s\n"
     "",
     "7:15: rules[0].requests: expected an integer from 1 to 1000000000, got \"0\""},
    {"rate_limit requests past limit",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.src]\n"
     "    requests: 1000000001\n"
     "    period: 60s\n"
     "",
     "7:15: rules[0].requests: expected an integer from 1 to 1000000000, got \"1000000001\""},
    {"rate_limit period too short",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.src]\n"
     "    requests: 10\n"
     "    period: 500ms\n"
     "",
     "8:13: rules[0].period: expected a whole number of seconds from 1s to 24h, like 60s, got "
     "\"500ms\""},
    {"rate_limit period past limit",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: [ip.src]\n"
     "    requests: 10\n"
     "    period: 86401s\n"
     "",
     "8:13: rules[0].period: expected a whole number of seconds from 1s to 24h, like 60s, got "
     "\"86401s\""},
    {"redirect missing location",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "",
     "3:5: rules[0]: missing required key \"location\" for action redirect"},
    {"redirect bad status",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: /x\n"
     "    status: 304\n"
     "",
     "7:13: rules[0].status: expected 301, 302, 303, 307 or 308, got \"304\""},
    {"redirect protocol relative",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: //evil.example/\n"
     "",
     "6:15: rules[0].location: expected an absolute path like /new or a URL like "
     "https://a.example/new, got \"//evil.example/\""},
    {"redirect location with space",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: \"/a b\"\n"
     "",
     "6:15: rules[0].location: expected an absolute path like /new or a URL like "
     "https://a.example/new in URI characters (letters, digits, -._~!$&'()*+,;=:@/?#[] and "
     "%XX; percent-encode others), got \"/a b\""},
    {"redirect location with a backslash",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: /\\evil.example/\n"
     "",
     "6:15: rules[0].location: expected an absolute path like /new or a URL like "
     "https://a.example/new in URI characters (letters, digits, -._~!$&'()*+,;=:@/?#[] and "
     "%XX; percent-encode others), got \"/\\\\evil.example/\""},
    {"redirect URL with a backslash before userinfo",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: 'https://good.example\\@evil.example/'\n"
     "",
     "6:15: rules[0].location: expected an absolute path like /new or a URL like "
     "https://a.example/new in URI characters (letters, digits, -._~!$&'()*+,;=:@/?#[] and "
     "%XX; percent-encode others), got \"https://good.example\\\\@evil.example/\""},
    {"redirect location not ASCII",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: /caf\xC3\xA9\n"
     "",
     "6:15: rules[0].location: expected an absolute path like /new or a URL like "
     "https://a.example/new in URI characters (letters, digits, -._~!$&'()*+,;=:@/?#[] and "
     "%XX; percent-encode others), got \"/caf\xC3\xA9\""},
    {"redirect URL without a host",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: https:///x\n"
     "",
     "6:15: rules[0].location: expected an absolute path like /new or a URL like "
     "https://a.example/new, got \"https:///x\""},
    {"rewrite path with a quote",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: '/a\"b'\n"
     "",
     "6:11: rules[0].path: expected a path starting with / in URI path characters (letters, "
     "digits, -._~!$&'()*+,;=:@/ and %XX; no query), got \"/a\\\"b\""},
    {"rewrite path with a bad escape",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /a%zz\n"
     "",
     "6:11: rules[0].path: expected a path starting with / in URI path characters (letters, "
     "digits, -._~!$&'()*+,;=:@/ and %XX; no query), got \"/a%zz\""},
    {"rewrite path not ASCII",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /caf\xC3\xA9\n"
     "",
     "6:11: rules[0].path: expected a path starting with / in URI path characters (letters, "
     "digits, -._~!$&'()*+,;=:@/ and %XX; no query), got \"/caf\xC3\xA9\""},
    {"rewrite path with a dot segment",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /static/../admin\n"
     "",
     "6:11: rules[0].path: expected a normalised path (no \".\" or \"..\" segment, no "
     "\"//\", no %XX for a letter, digit or -._~, hex digits in upper case), got "
     "\"/static/../admin\" (did you mean \"/admin\"?)"},
    {"rewrite path with an encoded letter",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /%61dmin\n"
     "",
     "6:11: rules[0].path: expected a normalised path (no \".\" or \"..\" segment, no "
     "\"//\", no %XX for a letter, digit or -._~, hex digits in upper case), got "
     "\"/%61dmin\" (did you mean \"/admin\"?)"},
    {"rewrite path with two slashes",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /a//b%2f\n"
     "",
     "6:11: rules[0].path: expected a normalised path (no \".\" or \"..\" segment, no "
     "\"//\", no %XX for a letter, digit or -._~, hex digits in upper case), got "
     "\"/a//b%2f\" (did you mean \"/a/b%2F\"?)"},
    {"redirect preserve_query not bool",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: redirect\n"
     "    location: /x\n"
     "    preserve_query: 1\n"
     "",
     "7:21: rules[0].preserve_query: expected true or false, got \"1\""},
    {"rewrite nothing",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "",
     "3:5: rules[0]: action rewrite needs headers, path or both"},
    {"rewrite path with query",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /a?b\n"
     "",
     "6:11: rules[0].path: expected a path starting with / in URI path characters (letters, "
     "digits, -._~!$&'()*+,;=:@/ and %XX; no query), got \"/a?b\""},
    {"rewrite host header",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {set: {Host: b.example}}\n"
     "",
     "6:21: rules[0].headers.set: rules cannot set or remove \"Host\": the proxy manages it"},
    {"rewrite remove hop-by-hop",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {remove: [Connection]}\n"
     "",
     "6:24: rules[0].headers.remove[0]: rules cannot set or remove \"Connection\": the proxy "
     "manages it"},
    {"rewrite x-forwarded-for",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {set: {X-Forwarded-For: 192.0.2.7}}\n"
     "",
     "6:21: rules[0].headers.set: rules cannot set or remove \"X-Forwarded-For\": the proxy "
     "writes it for the upstream (see client_ip)"},
    {"rewrite remove x-forwarded-proto",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {remove: [x-forwarded-proto]}\n"
     "",
     "6:24: rules[0].headers.remove[0]: rules cannot set or remove \"x-forwarded-proto\": the "
     "proxy writes it for the upstream"},
    {"rewrite expect",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {set: {expect: 100-continue}}\n"
     "",
     "6:21: rules[0].headers.set: rules cannot set or remove \"expect\": the proxy answers "
     "100-continue itself"},
    {"rewrite content_length",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {set: {Content_Length: 5}}\n"
     "",
     "6:21: rules[0].headers.set: rules cannot set or remove \"Content_Length\": upstreams that "
     "read '_' as '-' (CGI, PHP, WSGI) would take it for content-length, and the proxy manages "
     "it"},
    {"rewrite x_forwarded_for",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {remove: [x_forwarded_for]}\n"
     "",
     "6:24: rules[0].headers.remove[0]: rules cannot set or remove \"x_forwarded_for\": "
     "upstreams that read '_' as '-' (CGI, PHP, WSGI) would take it for x-forwarded-for, and the "
     "proxy writes it for the upstream (see client_ip)"},
    {"set_header transfer-encoding",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: set_header\n"
     "    name: Transfer-Encoding\n"
     "    value: chunked\n"
     "",
     "7:11: rules[0].name: rules cannot set or remove \"Transfer-Encoding\": the proxy manages "
     "it"},
    {"set_header pseudo-header",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: set_header\n"
     "    name: ':status'\n"
     "    value: '200'\n"
     "",
     "7:11: rules[0].name: expected a header name (letters, digits and !#$%&'*+-.^_`|~), got "
     "\":status\""},
    {"rewrite header value with newline",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers:\n"
     "      set:\n"
     "        x-a: \"v\\r\\nx-evil: 1\"\n"
     "",
     "8:14: rules[0].headers.set.x-a: a header value cannot hold CR, LF, NUL or another "
     "control character (tab aside), got \"v\\x0D\\x0Ax-evil: 1\""},
    {"rewrite header value with a control character",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers:\n"
     "      set:\n"
     "        x-a: \"v\\x01w\"\n"
     "",
     "8:14: rules[0].headers.set.x-a: a header value cannot hold CR, LF, NUL or another "
     "control character (tab aside), got \"v\\x01w\""},
    {"set_header value with DEL",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: set_header\n"
     "    name: x-a\n"
     "    value: \"v\\x7F\"\n"
     "",
     "8:12: rules[0].value: a header value cannot hold CR, LF, NUL or another control character "
     "(tab aside), got \"v\\x7F\""},
    {"rewrite header value with a leading space",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers:\n"
     "      set:\n"
     "        x-a: \" v\"\n"
     "",
     "8:14: rules[0].headers.set.x-a: a header value cannot start or end with a space or tab, "
     "got \" v\""},
    {"set_header value with a trailing tab",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: set_header\n"
     "    name: x-a\n"
     "    value: \"v\\t\"\n"
     "",
     "8:12: rules[0].value: a header value cannot start or end with a space or tab, got "
     "\"v\\x09\""},
    {"rewrite bad header name",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {set: {\"x a\": b}}\n"
     "",
     "6:21: rules[0].headers.set: expected a header name (letters, digits and !#$%&'*+-.^_`|~), "
     "got \"x a\""},
    {"rewrite unknown headers key",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {add: {x-a: b}}\n"
     "",
     "6:15: unknown key \"add\" in rules[0].headers (expected one of: set, remove)"},
    {"rewrite in response phase",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    path: /b\n"
     "",
     "6:13: rules[0].action: rewrite is a request-phase action, but this ruleset is response "
     "phase"},
    {"set_header in request phase",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: set_header\n"
     "    name: x-a\n"
     "    value: b\n"
     "",
     "5:13: rules[0].action: set_header is a response-phase action, but this ruleset is request "
     "phase"},
    {"set_header missing value",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: set_header\n"
     "    name: x-a\n"
     "",
     "4:5: rules[0]: missing required key \"value\" for action set_header"},
    {"remove_header content-length",
     "id: a\n"
     "phase: response\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: remove_header\n"
     "    name: Content-Length\n"
     "",
     "7:11: rules[0].name: rules cannot set or remove \"Content-Length\": the proxy manages it"},
    {"test missing expect",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {path: /}\n"
     "",
     "4:5: missing required key \"expect\" in tests[0]"},
    {"test bad expect action",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {path: /}\n"
     "    expect: {action: deny}\n"
     "",
     "5:22: tests[0].expect.action: expected none or one of block, log, skip, execute, rate_limit, "
     "redirect, rewrite, set_header, remove_header, got \"deny\""},
    {"test log without rule",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {path: /}\n"
     "    expect: {action: log}\n"
     "",
     "5:13: tests[0].expect: rule is required for action log (which rule must fire)"},
    {"test none with rule",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {path: /}\n"
     "    expect: {action: none, rule: r}\n"
     "",
     "5:28: tests[0].expect: rule does not go with action none"},
    {"test status with log",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {path: /}\n"
     "    expect: {action: log, rule: r, status: 200}\n"
     "",
     "5:36: tests[0].expect: status goes only with block, redirect and rate_limit"},
    {"test bad path",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {path: \"a b\"}\n"
     "    expect: {action: none}\n"
     "",
     "4:21: tests[0].request.path: expected a path like /a/b?q=1 (no spaces or control "
     "characters), got \"a b\""},
    {"test bad ip",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {ip: 300.1.1.1}\n"
     "    expect: {action: none}\n"
     "",
     "4:19: tests[0].request.ip: expected an IPv4 or IPv6 address like 203.0.113.9, got "
     "\"300.1.1.1\""},
    {"test bot_score out of range",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {bot_score: 0}\n"
     "    expect: {action: none}\n"
     "",
     "4:26: tests[0].request.bot_score: expected an integer from 1 to 99, got \"0\""},
    {"test response in request phase",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {}\n"
     "    response: {status: 200}\n"
     "    expect: {action: none}\n"
     "",
     "5:5: tests[0]: response goes only in tests of response-phase rulesets"},
    {"test header value list with mapping",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {headers: {x-a: [b, {c: d}]}}\n"
     "    expect: {action: none}\n"
     "",
     "4:34: tests[0].request.headers.x-a[1]: expected a header value, got a mapping"},
    {"test unknown request key",
     "id: a\n"
     "rules: []\n"
     "tests:\n"
     "  - request: {url: /}\n"
     "    expect: {action: none}\n"
     "",
     "4:15: unknown key \"url\" in tests[0].request (expected one of: method, path, headers, ip, "
     "ssl, bot_score)"},
    {"yaml syntax error",
     "id: a\n"
     "rules: [\n"
     "",
     "3:1: truncated: the file ends too early (did not find expected node content)"},
    {"truncated in a quoted expression",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'http.request.uri.path eq \"/adm",
     "4:48: truncated: the file ends inside the quoted string that starts at line 4, column 17 "
     "(or its closing quote is missing)"},
    {"truncated in a key",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expr",
     "4:9: truncated: the file ends inside the key that starts at line 4, column 5 (could not "
     "find expected ':')"},
    {"Latin-1 in an expression",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'http.request.uri.path eq \"/caf\xe9\"'\n"
     "    action: block\n",
     "4:48: not valid UTF-8: byte 0xE9 is not followed by the 2 continuation bytes it needs "
     "(Latin-1 or Windows-1252 text?); save the file as UTF-8"},
    {"control character in an expression",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'http.host eq \"a\x1b\"'\n"
     "    action: block\n",
     "4:33: contains the control character U+001B, which YAML does not allow (a binary or "
     "corrupted file?)"},
    {"yaml anchor",
     "id: &x a\n"
     "rules: []\n"
     "",
     "1:5: YAML anchors (&x) are not supported; write the value out in full"},
    {"top level list",
     "- id: a\n"
     "",
     "1:1: the ruleset: expected a mapping with id and rules, got a list"},
    {"several errors at once",
     "id: a\n"
     "phase: sideways\n"
     "rules:\n"
     "  - id: r1\n"
     "    expression: 'true'\n"
     "    action: block\n"
     "    status: 99\n"
     "  - id: r2\n"
     "    expression: 'true'\n"
     "    action: bogus\n"
     "",
     "2:8: phase: expected request or response, got \"sideways\"\n"
     "7:13: rules[0].status: expected an integer from 400 to 599, got \"99\"\n"
     "10:13: rules[1].action: expected one of block, log, skip, execute, rate_limit, redirect, "
     "rewrite, set_header, remove_header, got \"bogus\""},
    {"rewrite empty headers",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rewrite\n"
     "    headers: {}\n"
     "",
     "6:14: rules[0].headers: expected at least one header to set or remove"},
    {"id past the limit",
     "id: "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
     "rules: []\n"
     "",
     "1:5: id: expected an id of 1 to 128 letters, digits, '_', '.' or '-', got "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\""},
    {"expression empty",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: ''\n"
     "    action: log\n"
     "",
     "4:18: rules[0].expression: the expression is empty\n"
     "    \n"
     "    ^"},
    {"skip rulesets not a list",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: skip\n"
     "    rulesets: other\n"
     "",
     "6:15: rules[0].rulesets: expected a list of ruleset ids, got \"other\""},
    {"characteristic header bad name",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'true'\n"
     "    action: rate_limit\n"
     "    characteristics: ['http.request.headers[\"x y\"]']\n"
     "    requests: 1\n"
     "    period: 1s\n"
     "",
     "6:23: rules[0].characteristics[0]: expected one of ip.src, http.host, http.request.method, "
     "http.request.uri.path, http.user_agent, http.request.headers[\"name\"], got "
     "\"http.request.headers[\\\"x y\\\"]\""},
};

TEST(invalid_files_say_where_and_why)
{
    static char got[8192];
    int failures = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bw_ruleset s;
        struct bw_config_diags d;
        bw_status st = parse(bad[i].text, &s, &d);
        render(&d, got, sizeof got);
        if (st == BW_OK || strcmp(got, bad[i].want) != 0) {
            printf("     %s:\n     got:  %s\n     want: %s\n", bad[i].name, got, bad[i].want);
            failures++;
        }
    }
    CHECK_INT_EQ(failures, 0);
    CHECK(sizeof bad / sizeof bad[0] >= 40);
}

/* An error inside an expression points at the token in the file, whatever
 * the YAML style of the scalar that holds it: YAML folds lines and decodes
 * escapes, so the value's own lines and columns are not the file's. Each
 * case has the token `ssl` of len(ssl) once; line:col is where it is in the
 * text (columns in bytes). */
static const struct styled {
    const char *name;
    const char *text;
    uint32_t line, col;
} styled[] = {
    {"plain",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: http.host eq \"a\" and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     4, 42},
    {"plain with UTF-8",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: http.host eq \"\xC3\xA9\xC3\xA9\" and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     4, 45},
    {"plain in a flow mapping",
     "id: a\n"
     "rules:\n"
     "  - { id: r, expression: http.host eq \"a\" and len(ssl) gt 1, action: log }\n"
     "",
     3, 51},
    {"plain over two lines",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: http.host eq \"a\"\n"
     "      and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     5, 15},
    {"plain over lines with an empty one",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: http.host eq \"a\"\n"
     "\n"
     "      and\n"
     "        len(ssl) gt 1\n"
     "    action: log\n"
     "",
     7, 13},
    {"plain with CRLF",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: http.host eq \"a\"\r\n"
     "      and len(ssl) gt 1\r\n"
     "    action: log\r\n"
     "",
     5, 15},
    {"single-quoted",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'http.host eq \"a\" and len(ssl) gt 1'\n"
     "    action: log\n"
     "",
     4, 43},
    {"single-quoted with ''",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'http.host eq \"it''s\" and len(ssl) gt 1'\n"
     "    action: log\n"
     "",
     4, 47},
    {"single-quoted over two lines",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: 'http.host eq \"it''s\"   \n"
     "      and len(ssl) gt 1'\n"
     "    action: log\n"
     "",
     5, 15},
    {"double-quoted",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.host eq \\\"a\\\" and len(ssl) gt 1\"\n"
     "    action: log\n"
     "",
     4, 45},
    {"double-quoted with \\t",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.host\\teq \\\"a\\\"\\tand len(ssl) gt 1\"\n"
     "    action: log\n"
     "",
     4, 47},
    {"double-quoted with \\u and \\x",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.host eq \\\"\\u00e9\\x41\\\" and len(ssl) gt 1\"\n"
     "    action: log\n"
     "",
     4, 54},
    {"double-quoted with \\\\",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.host eq \\\"a\\\\\\\\b\\\" and len(ssl) gt 1\"\n"
     "    action: log\n"
     "",
     4, 50},
    {"double-quoted over two lines",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.host eq \\\"a\\\"\n"
     "      and len(ssl) gt 1\"\n"
     "    action: log\n"
     "",
     5, 15},
    {"double-quoted, escaped line break",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: \"http.host eq \\\"a\\\" and \\\n"
     "      len(ssl) gt 1\"\n"
     "    action: log\n"
     "",
     5, 11},
    {"literal",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: |\n"
     "      http.host eq \"a\"\n"
     "        and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     6, 17},
    {"literal, empty first line",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: |-\n"
     "\n"
     "      http.host eq \"a\" and\n"
     "      len(ssl) gt 1\n"
     "    action: log\n"
     "",
     7, 11},
    {"folded",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: >\n"
     "      http.host eq \"a\"\n"
     "      and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     6, 15},
    {"folded with an empty line",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: >-\n"
     "      http.host eq \"a\"\n"
     "\n"
     "      and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     7, 15},
    {"folded, more indented",
     "id: a\n"
     "rules:\n"
     "  - id: r\n"
     "    expression: >\n"
     "      http.host eq \"a\"\n"
     "        and len(ssl) gt 1\n"
     "    action: log\n"
     "",
     6, 17},
};

TEST(expression_errors_point_into_every_scalar_style)
{
    int failures = 0;
    for (size_t i = 0; i < sizeof styled / sizeof styled[0]; i++) {
        struct bw_ruleset s;
        struct bw_config_diags d;
        bw_status st = parse(styled[i].text, &s, &d);
        const char *want = "rules[0].expression: len() takes Bytes or an Array, but ssl is Bool\n";
        if (st == BW_OK || d.n != 1 || d.items[0].line != styled[i].line ||
            d.items[0].col != styled[i].col || strncmp(d.items[0].msg, want, strlen(want)) != 0) {
            printf("     %s: got %u:%u: %s\n     want %u:%u\n", styled[i].name,
                   d.n ? d.items[0].line : 0, d.n ? d.items[0].col : 0, d.n ? d.items[0].msg : "",
                   styled[i].line, styled[i].col);
            failures++;
        }
    }
    CHECK_INT_EQ(failures, 0);
}

TEST(expression_error_positions_at_the_end_and_with_an_indentation_indicator)
{
    static char got[4096];
    struct bw_ruleset s;
    struct bw_config_diags d;
    /* the end of a folded expression: after its last token, not on the
     * empty line that the block's final newline would make */
    CHECK(parse("id: a\n"
                "rules:\n"
                "  - id: r\n"
                "    expression: >\n"
                "      http.host eq \"a\" and\n"
                "      ssl and\n"
                "    action: log\n",
                &s, &d) == BW_ERR);
    render(&d, got, sizeof got);
    CHECK_STR_EQ(got, "6:14: rules[0].expression: expected a field, a function call, a literal or "
                      "\"(\", but found the end of the expression\n"
                      "          ssl and\n"
                      "                 ^");
    CHECK(parse("id: a\n"
                "rules:\n"
                "  - id: r\n"
                "    expression: |\n"
                "      http.host eq \"a\" and\n"
                "        ssl and\n"
                "    action: log\n",
                &s, &d) == BW_ERR);
    render(&d, got, sizeof got);
    CHECK_STR_EQ(got, "6:16: rules[0].expression: expected a field, a function call, a literal or "
                      "\"(\", but found the end of the expression\n"
                      "            ssl and\n"
                      "                   ^");
    /* |2: the content is indented 2 past the key, and the value keeps the
     * spaces beyond that */
    CHECK(parse("id: a\n"
                "rules:\n"
                "  - id: r\n"
                "    expression: |2\n"
                "        http.host eq \"a\"\n"
                "          and len(ssl) gt 1\n"
                "    action: log\n",
                &s, &d) == BW_ERR);
    render(&d, got, sizeof got);
    CHECK_STR_EQ(got, "6:19: rules[0].expression: len() takes Bytes or an Array, but ssl is Bool\n"
                      "              and len(ssl) gt 1\n"
                      "                      ^~~");
}

TEST(diag_print_has_file_line_col_and_caret)
{
    struct bw_ruleset s;
    struct bw_config_diags d;
    CHECK(parse("id: a\nrules:\n  - id: r\n    expression: 'ssl eq 1'\n    action: log\n", &s,
                &d) == BW_ERR);
    char buf[2048];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    bw_config_diags_print(&d, f);
    fclose(f);
    CHECK_STR_EQ(buf, "r.yaml:4:25: error: rules[0].expression: \"eq\" needs the same type on "
                      "both sides, but ssl is Bool and 1 is Int\n"
                      "        expression: 'ssl eq 1'\n"
                      "                            ^\n");
}

/* ---- valid files ------------------------------------------------------------------ */

static const char every_request_action[] =
    "id: entry\n"
    "rules:\n"
    "  - id: b\n"
    "    expression: 'starts_with(http.request.uri.path, \"/admin\")'\n"
    "    action: block\n"
    "    status: 451\n"
    "    body: \"no\"\n"
    "  - id: b2\n"
    "    enabled: false\n"
    "    expression: 'true'\n"
    "    action: block\n"
    "  - id: l\n"
    "    expression: |\n"
    "      http.host eq \"a.example\"\n"
    "        and not ssl\n"
    "    action: log\n"
    "  - id: s\n"
    "    expression: 'false'\n"
    "    action: skip\n"
    "  - id: s2\n"
    "    expression: 'false'\n"
    "    action: skip\n"
    "    rulesets: [managed, other]\n"
    "    modules: [bot_score, rules]\n"
    "  - id: x\n"
    "    expression: 'true'\n"
    "    action: execute\n"
    "    ruleset: managed\n"
    "  - id: rl\n"
    "    expression: 'true'\n"
    "    action: rate_limit\n"
    "    characteristics: [ip.src, http.host, http.request.method, http.request.uri.path,\n"
    "                      http.user_agent, 'http.request.headers[\"X-Api-Key\"]']\n"
    "    requests: 100\n"
    "    period: 1m\n"
    "  - id: rd\n"
    "    expression: 'http.host eq \"old.example\"'\n"
    "    action: redirect\n"
    "    location: https://new.example/\n"
    "    status: 308\n"
    "    preserve_query: true\n"
    "  - id: rd2\n"
    "    expression: 'false'\n"
    "    action: redirect\n"
    "    location: /moved\n"
    "  - id: rw\n"
    "    expression: 'true'\n"
    "    action: rewrite\n"
    "    headers:\n"
    "      remove: [X-Internal]\n"
    "      set: {X-From: bulwark, x-b: \"\"}\n"
    "    path: /v2/\n";

TEST(valid_request_file_with_every_request_action)
{
    struct bw_ruleset s;
    struct bw_config_diags d;
    char got[4096];
    bw_status st = parse(every_request_action, &s, &d);
    render(&d, got, sizeof got);
    CHECK_STR_EQ(got, "");
    CHECK(st == BW_OK);
    CHECK_SLICE_EQ(s.id, "entry");
    CHECK_SLICE_EQ(s.file, "r.yaml");
    CHECK_INT_EQ(s.pos.line, 1);
    CHECK_INT_EQ(s.pos.col, 5);
    CHECK_INT_EQ(s.phase, BW_RULES_PHASE_REQUEST);
    CHECK(s.enabled);
    CHECK_INT_EQ(s.nrules, 10);
    CHECK_INT_EQ(s.ntests, 0);
    const struct bw_rule *r = s.rules;
    CHECK_INT_EQ(r[0].action.kind, BW_ACTION_BLOCK);
    CHECK_INT_EQ(r[0].action.u.block.status, 451);
    CHECK(r[0].action.u.block.has_body);
    CHECK_SLICE_EQ(r[0].action.u.block.body, "no");
    CHECK_INT_EQ(r[0].pos.line, 3);
    CHECK_INT_EQ(r[0].pos.col, 9);
    CHECK(r[0].enabled && !r[1].enabled);
    CHECK_INT_EQ(r[1].action.u.block.status, 403);
    CHECK(!r[1].action.u.block.has_body);
    CHECK_SLICE_EQ(r[2].expr->text, "http.host eq \"a.example\"\n  and not ssl\n");
    CHECK_INT_EQ(r[3].action.u.skip.scope, BW_SKIP_REST);
    CHECK_INT_EQ(r[4].action.u.skip.scope, BW_SKIP_TARGETS);
    CHECK_INT_EQ(r[4].action.u.skip.nrulesets, 2);
    CHECK_SLICE_EQ(r[4].action.u.skip.ruleset_ids[1], "other");
    CHECK_INT_EQ(r[4].action.u.skip.modules, (1u << BW_MODULE_BOT_SCORE) | (1u << BW_MODULE_RULES));
    CHECK_INT_EQ(r[4].action_pos.line, 23);
    CHECK_SLICE_EQ(r[5].action.u.execute.ruleset_id, "managed");
    CHECK_INT_EQ(r[5].action_pos.line, 28);
    CHECK_INT_EQ(r[5].action_pos.col, 14);
    const struct bw_action_rate_limit *rl = &r[6].action.u.rate_limit;
    CHECK_INT_EQ(rl->nchars, 6);
    CHECK_INT_EQ(rl->chars[0].kind, BW_RL_IP_SRC);
    CHECK_INT_EQ(rl->chars[4].kind, BW_RL_USER_AGENT);
    CHECK_INT_EQ(rl->chars[5].kind, BW_RL_HEADER);
    CHECK_SLICE_EQ(rl->chars[5].header, "x-api-key");
    CHECK_INT_EQ(rl->requests, 100);
    CHECK_INT_EQ(rl->period_ms, 60000);
    CHECK_INT_EQ(rl->status, 429);
    CHECK_INT_EQ(r[7].action.u.redirect.status, 308);
    CHECK_SLICE_EQ(r[7].action.u.redirect.location, "https://new.example/");
    CHECK(r[7].action.u.redirect.preserve_query);
    CHECK_INT_EQ(r[8].action.u.redirect.status, 302);
    CHECK(!r[8].action.u.redirect.preserve_query);
    const struct bw_action_rewrite *rw = &r[9].action.u.rewrite;
    CHECK(rw->has_path);
    CHECK_SLICE_EQ(rw->path, "/v2/");
    CHECK_INT_EQ(rw->nops, 3);
    CHECK_INT_EQ(rw->ops[0].kind, BW_HEADER_REMOVE);
    CHECK_SLICE_EQ(rw->ops[0].name, "x-internal");
    CHECK_INT_EQ(rw->ops[1].kind, BW_HEADER_SET);
    CHECK_SLICE_EQ(rw->ops[1].name, "x-from");
    CHECK_SLICE_EQ(rw->ops[1].value, "bulwark");
    CHECK_SLICE_EQ(rw->ops[2].value, "");
}

TEST(valid_response_file)
{
    struct bw_ruleset s;
    struct bw_config_diags d;
    char got[4096];
    bw_status st = parse("id: resp\n"
                         "phase: response\n"
                         "enabled: false\n"
                         "rules:\n"
                         "  - id: hsts\n"
                         "    expression: 'ssl and not has(http.response.headers[\"sts\"])'\n"
                         "    action: set_header\n"
                         "    name: Strict-Transport-Security\n"
                         "    value: max-age=63072000\n"
                         "  - id: nosrv\n"
                         "    expression: 'http.response.code lt 500'\n"
                         "    action: remove_header\n"
                         "    name: Server\n"
                         /* Only the upstream hop has a proxy-written
                          * X-Forwarded-For, a forwarded Expect and
                          * CGI-style readers of '_'. */
                         "  - id: xff\n"
                         "    expression: 'true'\n"
                         "    action: set_header\n"
                         "    name: x-forwarded-for\n"
                         "    value: a\n"
                         "  - id: expect\n"
                         "    expression: 'true'\n"
                         "    action: remove_header\n"
                         "    name: Content_Length\n"
                         "tests:\n"
                         "  - request: {ssl: true}\n"
                         "    response: {status: 503, headers: {server: x, set-cookie: [a, b]}}\n"
                         "    expect: {action: set_header, rule: hsts}\n",
                         &s, &d);
    render(&d, got, sizeof got);
    CHECK_STR_EQ(got, "");
    CHECK(st == BW_OK);
    CHECK_INT_EQ(s.phase, BW_RULES_PHASE_RESPONSE);
    CHECK(!s.enabled);
    CHECK_SLICE_EQ(s.rules[0].action.u.set_header.name, "strict-transport-security");
    CHECK_SLICE_EQ(s.rules[0].action.u.set_header.value, "max-age=63072000");
    CHECK_INT_EQ(s.rules[1].action.u.remove_header.kind, BW_HEADER_REMOVE);
    CHECK_SLICE_EQ(s.rules[1].action.u.remove_header.name, "server");
    const struct bw_ruleset_test *t = &s.tests[0];
    CHECK_SLICE_EQ(t->name, "test 1");
    CHECK(t->request.has_response);
    CHECK_INT_EQ(t->request.response_code, 503);
    CHECK_INT_EQ(t->request.response_headers.n, 3);
    CHECK_SLICE_EQ(t->request.response_headers.items[2].value, "b");
    CHECK(t->request.ssl);
}

TEST(test_request_view_is_filled)
{
    struct bw_ruleset s;
    struct bw_config_diags d;
    char got[4096];
    bw_status st = parse("id: a\n"
                         "rules: []\n"
                         "tests:\n"
                         "  - name: full\n"
                         "    request:\n"
                         "      method: POST\n"
                         "      path: /admin/x?q=1\n"
                         "      headers: {Host: a.example, user-agent: curl/8, x-f: [1, 2]}\n"
                         "      ip: 2001:db8::9\n"
                         "      bot_score: 5\n"
                         "    expect: {action: block, status: 403}\n"
                         "  - request: {}\n"
                         "    expect: {action: none}\n",
                         &s, &d);
    render(&d, got, sizeof got);
    CHECK_STR_EQ(got, "");
    CHECK(st == BW_OK);
    CHECK_INT_EQ(s.ntests, 2);
    const struct bw_request_view *v = &s.tests[0].request;
    CHECK_SLICE_EQ(s.tests[0].name, "full");
    CHECK_INT_EQ(s.tests[0].pos.line, 4);
    CHECK_SLICE_EQ(v->method, "POST");
    CHECK_SLICE_EQ(v->uri, "/admin/x?q=1");
    CHECK_SLICE_EQ(v->raw_path, "/admin/x");
    CHECK_SLICE_EQ(v->query, "q=1");
    CHECK(v->host.known);
    CHECK_SLICE_EQ(v->host.value, "a.example");
    CHECK_INT_EQ(v->headers.n, 4);
    CHECK_SLICE_EQ(v->headers.items[0].name, "host");
    CHECK_SLICE_EQ(v->headers.items[3].value, "2");
    CHECK(v->src.known);
    CHECK_INT_EQ(v->src.addr.ss_family, AF_INET6);
    CHECK(v->bot_score.known);
    CHECK_INT_EQ(v->bot_score.value, 5);
    CHECK(!v->has_response);
    CHECK_INT_EQ(s.tests[0].expect, BW_EXPECT_ACTION);
    CHECK_INT_EQ(s.tests[0].action, BW_ACTION_BLOCK);
    CHECK(!s.tests[0].has_rule && s.tests[0].has_status);
    v = &s.tests[1].request;
    CHECK_SLICE_EQ(v->method, "GET");
    CHECK_SLICE_EQ(v->uri, "/");
    CHECK(!v->host.known);
    CHECK(!v->bot_score.known);
    CHECK(v->src.known);
    CHECK_INT_EQ(v->src.addr.ss_family, AF_INET);
    CHECK_INT_EQ(s.tests[1].expect, BW_EXPECT_NONE);
}

/* ---- embedded tests through the rulebook ---------------------------------------------- */

/* Parses each file, builds them into one book and runs the tests. "" when
 * all is well, else the first error. */
static void load_and_test(const char *const *texts, size_t n, char *out, size_t cap)
{
    bw_arena_reset(&A);
    bw_arena_init(&A, 16 * 1024, 0);
    struct bw_ruleset sets[4];
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        struct bw_config_diags d;
        char name[32];
        snprintf(name, sizeof name, "f%zu.yaml", i);
        if (bw_ruleset_parse(&A, name, texts[i], strlen(texts[i]), &sets[i], &d) != BW_OK) {
            render(&d, out, cap);
            return;
        }
    }
    struct bw_rulebook *book;
    bw_error err;
    if (bw_rulebook_build(&A, sets, n, NULL, 0, &book, &err) != BW_OK) {
        snprintf(out, cap, "%s", err.msg);
        return;
    }
    bw_arena scratch;
    bw_arena_init(&scratch, 4096, 1 << 20);
    if (bw_rulebook_run_tests(book, &scratch, &err) != BW_OK)
        snprintf(out, cap, "%s", err.msg);
    book = bw_rulebook_free(book);
}

static const char entry_yaml[] =
    "id: entry\n"
    "rules:\n"
    "  - id: block-admin\n"
    "    expression: 'starts_with(http.request.uri.path, \"/admin\")'\n"
    "    action: block\n"
    "  - id: run-managed\n"
    "    expression: 'true'\n"
    "    action: execute\n"
    "    ruleset: managed\n"
    "tests:\n"
    "  - name: admin is blocked\n"
    "    request: { method: GET, path: /admin/x?q=1, headers: { host: a.example, user-agent: "
    "curl/8 }, ip: 203.0.113.9, ssl: false, bot_score: 5 }\n"
    "    expect: { action: block, rule: block-admin, status: 403 }\n"
    "  - name: bots blocked below\n"
    "    request: { path: /, bot_score: 3 }\n"
    "    expect: { action: block, rule: managed/bots }\n"
    "  - name: unknown score goes on\n"
    "    request: { path: / }\n"
    "    expect: { action: none }\n"
    "  - name: managed ran\n"
    "    request: { path: / }\n"
    "    expect: { action: execute, rule: run-managed }\n";

static const char managed_yaml[] =
    "id: managed\n"
    "rules:\n"
    "  - id: bots\n"
    "    expression: 'bot.score lt 10'\n"
    "    action: block\n"
    "  - id: api\n"
    "    expression: 'starts_with(http.request.uri.path, \"/api/\")'\n"
    "    action: rate_limit\n"
    "    characteristics: [ip.src]\n"
    "    requests: 1\n"
    "    period: 60s\n"
    "tests:\n"
    "  - request: { path: /api/x }\n"
    "    expect: { action: rate_limit, rule: api, status: 429 }\n"
    "  - request: { path: /x, bot_score: 2 }\n"
    "    expect: { action: block, rule: bots }\n";

TEST(embedded_tests_pass)
{
    char got[2048];
    const char *files[] = {entry_yaml, managed_yaml};
    load_and_test(files, 2, got, sizeof got);
    CHECK_STR_EQ(got, "");
}

TEST(embedded_tests_fail_with_the_exact_message)
{
    char got[2048];
    char entry[2048];
    snprintf(entry, sizeof entry, "%s", entry_yaml);
    /* Make the admin test expect the wrong status. */
    char *st = strstr(entry, "status: 403");
    CHECK(st != NULL);
    memcpy(st, "status: 401", 11);
    const char *files[] = {entry, "id: managed\nrules: []\n"};
    load_and_test(files, 2, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:11:5: error: test \"admin is blocked\" of ruleset \"entry\": "
                      "expected block by rule \"block-admin\" with status 401, got block by rule "
                      "\"block-admin\" with status 403 (rules that fired: block-admin)");
}

TEST(unknown_never_satisfies_a_block_expectation)
{
    char got[2048];
    const char *files[] = {"id: m\n"
                           "rules:\n"
                           "  - id: bots\n"
                           "    expression: 'bot.score lt 10'\n"
                           "    action: block\n"
                           "tests:\n"
                           "  - request: { path: /x }\n"
                           "    expect: { action: block, rule: bots }\n"};
    load_and_test(files, 1, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:7:5: error: test \"test 1\" of ruleset \"m\": expected block by "
                      "rule \"bots\", got continue (no rule fired)");
}

TEST(cross_file_errors_come_from_the_build)
{
    char got[2048];
    const char *missing[] = {entry_yaml};
    load_and_test(missing, 1, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:9:14: error: rule \"run-managed\": execute target ruleset "
                      "\"managed\" does not exist");
    const char *cycle[] = {entry_yaml, "id: managed\n"
                                       "rules:\n"
                                       "  - id: back\n"
                                       "    expression: 'true'\n"
                                       "    action: execute\n"
                                       "    ruleset: entry\n"};
    load_and_test(cycle, 2, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:9:14: error: execute cycle: entry -> managed -> entry");
    const char *dup[] = {"id: x\nrules: []\n", "\nid: x\nrules: []\n"};
    load_and_test(dup, 2, got, sizeof got);
    CHECK_STR_EQ(got,
                 "f1.yaml:2:5: error: duplicate ruleset id \"x\" (first in f0.yaml at line 1)");
}

/* Parses each file and builds with every problem listed; then runs every
 * test, listing each failure. One "msg\n" line per problem. */
static void load_and_test_all(const char *const *texts, size_t n, char *out, size_t cap)
{
    bw_arena_reset(&A);
    bw_arena_init(&A, 16 * 1024, 0);
    struct bw_ruleset sets[4];
    static struct bw_rulebook_errors e;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        struct bw_config_diags d;
        char name[32];
        snprintf(name, sizeof name, "f%zu.yaml", i);
        if (bw_ruleset_parse(&A, name, texts[i], strlen(texts[i]), &sets[i], &d) != BW_OK) {
            render(&d, out, cap);
            return;
        }
    }
    struct bw_rulebook *book = NULL;
    bw_status st = bw_rulebook_build_all(&A, sets, n, NULL, 0, &book, &e);
    if (st == BW_OK) {
        bw_arena scratch;
        bw_arena_init(&scratch, 4096, 1 << 20);
        st = bw_rulebook_run_tests_all(book, &scratch, &e);
        book = bw_rulebook_free(book);
    }
    if (st == BW_OK)
        return;
    size_t o = 0;
    for (size_t i = 0; i < e.n && o < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s\n", e.items[i].msg);
        if (w > 0)
            o += (size_t)w;
    }
    if (e.dropped && o < cap)
        snprintf(out + o, cap - o, "%zu more\n", e.dropped);
}

TEST(every_error_of_a_file_is_reported)
{
    char got[4096];
    /* three independent bad rules the file alone cannot judge */
    const char *build[] = {"id: entry\n"
                           "rules:\n"
                           "  - id: a\n"
                           "    expression: 'true'\n"
                           "    action: execute\n"
                           "    ruleset: nope\n"
                           "  - id: fine\n"
                           "    expression: 'true'\n"
                           "    action: log\n"
                           "  - id: b\n"
                           "    expression: 'true'\n"
                           "    action: skip\n"
                           "    rulesets: [gone]\n"
                           "  - id: c\n"
                           "    expression: 'true'\n"
                           "    action: execute\n"
                           "    ruleset: resp\n",
                           "id: resp\nphase: response\nrules: []\n"};
    load_and_test_all(build, 2, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:6:14: error: rule \"a\": execute target ruleset \"nope\" does "
                      "not exist\n"
                      "f0.yaml:13:15: error: rule \"b\": skip target ruleset \"gone\" does not "
                      "exist\n"
                      "f0.yaml:17:14: error: rule \"c\": execute target ruleset \"resp\" is "
                      "response phase, but ruleset \"entry\" is request phase\n");
    /* three bad expressions: each with its position and caret */
    const char *exprs = "id: entry\n"
                        "rules:\n"
                        "  - id: a\n"
                        "    expression: 'ip.src contains \"x\"'\n"
                        "    action: block\n"
                        "  - id: b\n"
                        "    expression: 'http.hots eq \"a\"'\n"
                        "    action: block\n"
                        "  - id: c\n"
                        "    expression: 'len(ssl) gt 1'\n"
                        "    action: log\n";
    load_and_test_all(&exprs, 1, got, sizeof got);
    CHECK_STR_EQ(got, "4:18: rules[0].expression: \"contains\" needs Bytes on both sides, but "
                      "ip.src is Ip\n"
                      "        expression: 'ip.src contains \"x\"'\n"
                      "                     ^~~~~~\n"
                      "7:18: rules[1].expression: unknown field \"http.hots\" (did you mean "
                      "\"http.host\"?)\n"
                      "        expression: 'http.hots eq \"a\"'\n"
                      "                     ^~~~~~~~~\n"
                      "10:22: rules[2].expression: len() takes Bytes or an Array, but ssl is Bool\n"
                      "        expression: 'len(ssl) gt 1'\n"
                      "                         ^~~");
    /* every failing embedded test, not only the first */
    const char *tests = "id: entry\n"
                        "rules:\n"
                        "  - id: a\n"
                        "    expression: 'true'\n"
                        "    action: log\n"
                        "tests:\n"
                        "  - request: { path: / }\n"
                        "    expect: { action: log, rule: zz }\n"
                        "  - request: { path: / }\n"
                        "    expect: { action: log, rule: a }\n"
                        "  - request: { path: / }\n"
                        "    expect: { action: block }\n";
    load_and_test_all(&tests, 1, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:7:5: error: test \"test 1\" of ruleset \"entry\": expected log by "
                      "rule \"zz\", got continue (rules that fired: a)\n"
                      "f0.yaml:11:5: error: test \"test 3\" of ruleset \"entry\": expected block, "
                      "got continue (rules that fired: a)\n");
}

/* Parses every file, keeping what failed ones held, and when one failed
 * runs the link checks: its own diagnostics, then the cross-file ones. */
static void load_with_links(const char *const *texts, size_t n, char *out, size_t cap)
{
    bw_arena_reset(&A);
    bw_arena_init(&A, 16 * 1024, 0);
    struct bw_ruleset sets[4];
    static struct bw_rulebook_errors e;
    size_t o = 0;
    out[0] = '\0';
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        struct bw_config_diags d;
        char name[32];
        snprintf(name, sizeof name, "f%zu.yaml", i);
        if (bw_ruleset_parse(&A, name, texts[i], strlen(texts[i]), &sets[i], &d) != BW_OK) {
            failed = true;
            for (size_t k = 0; k < d.n && o < cap; k++) {
                int w = snprintf(out + o, cap - o, "%s:%u:%u: %s\n", name, d.items[k].line,
                                 d.items[k].col, d.items[k].msg);
                if (w > 0)
                    o += (size_t)w;
            }
        }
    }
    if (!failed || bw_rulebook_check_links(&A, sets, n, &e) == BW_OK)
        return;
    for (size_t i = 0; i < e.n && o < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s\n", e.items[i].msg);
        if (w > 0)
            o += (size_t)w;
    }
}

TEST(a_file_that_fails_still_gets_its_cross_file_errors)
{
    char got[4096];
    const char *bad_rule = "id: entry\n"
                           "rules:\n"
                           "  - id: a\n"
                           "    expression: 'true'\n"
                           "    action: execute\n"
                           "    ruleset: nope\n"
                           "  - id: b\n"
                           "    expression: 'http.hots eq \"a\"'\n"
                           "    action: execute\n"
                           "    ruleset: gone\n"
                           "  - id: c\n"
                           "    expression: 'true'\n"
                           "    action: set_header\n"
                           "    name: x\n"
                           "    value: y\n"
                           "  - id: d\n"
                           "    expression: 'true'\n"
                           "    action: execute\n"
                           "    ruleset: other\n"
                           "  - id: e\n"
                           "    expression: 'true'\n"
                           "    action: execute\n"
                           "    ruleset: [not, an, id]\n";
    const char *other = "id: other\n"
                        "rules:\n"
                        "  - id: back\n"
                        "    expression: 'true'\n"
                        "    action: execute\n"
                        "    ruleset: entry\n";
    const char *files[] = {bad_rule, other};
    load_with_links(files, 2, got, sizeof got);
    /* a bad expression does not hide the rule's target; a bad target (e) is
     * said once, by the file */
    CHECK_STR_EQ(got,
                 "f0.yaml:8:18: rules[1].expression: unknown field \"http.hots\" (did you "
                 "mean \"http.host\"?)\n"
                 "        expression: 'http.hots eq \"a\"'\n"
                 "                     ^~~~~~~~~\n"
                 "f0.yaml:13:13: rules[2].action: set_header is a response-phase action, but "
                 "this ruleset is request phase\n"
                 "f0.yaml:23:14: rules[4].ruleset: expected an id of 1 to 128 letters, digits, "
                 "'_', '.' or '-', got a list\n"
                 "f0.yaml:6:14: error: rule \"a\": execute target ruleset \"nope\" does not "
                 "exist\n"
                 "f0.yaml:10:14: error: rule \"b\": execute target ruleset \"gone\" does not "
                 "exist\n"
                 "f0.yaml:19:14: error: execute cycle: entry -> other -> entry\n");
    /* a file whose id did not read: a target may be that ruleset, so none is
     * said not to exist; duplicates among the others still are */
    const char *no_id[] = {"rules:\n"
                           "  - id: a\n"
                           "    expression: 'true'\n"
                           "    action: execute\n"
                           "    ruleset: maybe\n",
                           "id: x\nrules: []\n", "id: x\nrules: []\n"};
    load_with_links(no_id, 3, got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:1:1: missing required key \"id\" in the ruleset\n"
                      "f2.yaml:1:5: error: duplicate ruleset id \"x\" (first in f1.yaml at line "
                      "1)\n");
    /* all files good: nothing from here (the build says the rest) */
    const char *good[] = {"id: a\nrules: []\n"};
    load_with_links(good, 1, got, sizeof got);
    CHECK_STR_EQ(got, "");
}

/* `expect.rule: bots` is the rule of the test's own ruleset, never a rule of
 * the same name in a ruleset it executes; `managed/bots` names that one. */
static const char same_name_entry[] = "id: entry\n"
                                      "rules:\n"
                                      "  - id: run-managed\n"
                                      "    expression: 'true'\n"
                                      "    action: execute\n"
                                      "    ruleset: managed\n"
                                      "  - id: bots\n"
                                      "    expression: 'bot.score lt 10'\n"
                                      "    action: block\n"
                                      "  - id: seen\n"
                                      "    expression: 'false'\n"
                                      "    action: log\n"
                                      "tests:\n"
                                      "  - request: { bot_score: 30 }\n"
                                      "    expect: { action: block, rule: %s }\n";
static const char same_name_managed[] = "id: managed\n"
                                        "rules:\n"
                                        "  - id: seen\n"
                                        "    expression: 'true'\n"
                                        "    action: log\n"
                                        "  - id: bots\n"
                                        "    expression: 'bot.score lt 50'\n"
                                        "    action: block\n";

static void same_name(const char *rule, const char *action, char *out, size_t cap)
{
    static char entry[2048];
    snprintf(entry, sizeof entry, same_name_entry, rule);
    if (strcmp(action, "block") != 0) {
        char *a = strstr(entry, "action: block, rule:");
        memcpy(a + 8, action, strlen(action)); /* same length: "log  " */
    }
    const char *files[] = {entry, same_name_managed};
    load_and_test_all(files, 2, out, cap);
}

TEST(expected_rule_is_of_the_tests_ruleset_unless_qualified)
{
    char got[4096];
    /* a terminating action by a same-named rule below is not the expected one */
    same_name("bots", "block", got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:14:5: error: test \"test 1\" of ruleset \"entry\": expected block "
                      "by rule \"bots\", got block by rule \"managed/bots\" with status 403 "
                      "(rules that fired: run-managed, managed/seen, managed/bots)\n");
    same_name("managed/bots", "block", got, sizeof got);
    CHECK_STR_EQ(got, "");
    same_name("entry/bots", "block", got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:14:5: error: test \"test 1\" of ruleset \"entry\": expected block "
                      "by rule \"entry/bots\", got block by rule \"managed/bots\" with status 403 "
                      "(rules that fired: run-managed, managed/seen, managed/bots)\n");
    /* the same for a rule that only has to fire */
    same_name("seen", "log  ", got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:14:5: error: test \"test 1\" of ruleset \"entry\": expected log by "
                      "rule \"seen\", got block by rule \"managed/bots\" with status 403 (rules "
                      "that fired: run-managed, managed/seen, managed/bots)\n");
    same_name("managed/seen", "log  ", got, sizeof got);
    CHECK_STR_EQ(got, "");
    /* a ruleset that is not there */
    same_name("other/bots", "block", got, sizeof got);
    CHECK_STR_EQ(got, "f0.yaml:15:36: error: test \"test 1\" of ruleset \"entry\": expect.rule "
                      "names ruleset \"other\", which does not exist\n");
    /* not an id, nor ruleset/id */
    static const char *const bad_refs[] = {"a/b/c", "/bots", "bots/", "a b"};
    for (size_t i = 0; i < sizeof bad_refs / sizeof bad_refs[0]; i++) {
        char ref[32], want[256];
        snprintf(ref, sizeof ref, "'%s'", bad_refs[i]);
        same_name(ref, "block", got, sizeof got);
        snprintf(want, sizeof want,
                 "15:36: tests[0].expect.rule: expected a rule id, or <ruleset>/<rule> for a rule "
                 "of an executed ruleset, got \"%s\"",
                 bad_refs[i]);
        CHECK_STR_EQ(got, want);
    }
}

/* ---- limits ------------------------------------------------------------------------ */

static char *grow(char *buf, size_t *o, size_t *cap, const char *fmt, ...) BW_PRINTF(4, 5);
static char *grow(char *buf, size_t *o, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(buf + *o, *cap - *o, fmt, ap);
        va_end(ap);
        if ((size_t)w < *cap - *o) {
            *o += (size_t)w;
            return buf;
        }
        *cap *= 2;
        buf = realloc(buf, *cap);
        if (!buf)
            abort();
    }
}

/* A ruleset with n rules and m tests. */
static char *big(size_t nrules, size_t ntests)
{
    size_t o = 0, cap = 1024;
    char *b = malloc(cap);
    b = grow(b, &o, &cap, "id: big\nrules:\n");
    if (nrules == 0)
        b = grow(b, &o, &cap, "  []\n");
    for (size_t i = 0; i < nrules; i++)
        b = grow(b, &o, &cap, "  - {id: r%zu, expression: 'true', action: log}\n", i);
    if (ntests)
        b = grow(b, &o, &cap, "tests:\n");
    for (size_t i = 0; i < ntests; i++)
        b = grow(b, &o, &cap, "  - {request: {}, expect: {action: none}}\n");
    return b;
}

static void first_diag(const char *text, char *out, size_t cap)
{
    struct bw_ruleset s;
    struct bw_config_diags d;
    if (parse(text, &s, &d) == BW_OK) {
        snprintf(out, cap, "OK");
        return;
    }
    snprintf(out, cap, "%u:%u: %s", d.items[0].line, d.items[0].col, d.items[0].msg);
}

TEST(limits_at_and_past)
{
    char got[2048];
    char *t = big(BW_RULES_MAX_RULES, 0);
    first_diag(t, got, sizeof got);
    CHECK_STR_EQ(got, "OK");
    free(t);
    t = big(BW_RULES_MAX_RULES + 1, 0);
    first_diag(t, got, sizeof got);
    CHECK_STR_EQ(got, "3:3: rules: 4097 rules, over the limit of 4096");
    free(t);
    t = big(0, BW_RULES_MAX_TESTS);
    first_diag(t, got, sizeof got);
    CHECK_STR_EQ(got, "OK");
    free(t);
    t = big(0, BW_RULES_MAX_TESTS + 1);
    first_diag(t, got, sizeof got);
    CHECK_STR_EQ(got, "5:3: tests: 1025 tests, over the limit of 1024");
    free(t);

    /* Ids: 128 bytes, then 129. */
    char id[BW_RULES_MAX_ID_LEN + 2];
    memset(id, 'a', sizeof id);
    id[BW_RULES_MAX_ID_LEN] = '\0';
    char text[1024];
    snprintf(text, sizeof text, "id: %s\nrules: []\n", id);
    first_diag(text, got, sizeof got);
    CHECK_STR_EQ(got, "OK");
    id[BW_RULES_MAX_ID_LEN] = 'a';
    id[BW_RULES_MAX_ID_LEN + 1] = '\0';
    snprintf(text, sizeof text, "id: %s\nrules: []\n", id);
    first_diag(text, got, sizeof got);
    CHECK(strstr(got, "1:5: id: expected an id of 1 to 128 letters") == got);

    /* Header operations in one rewrite: 32, then 33. */
    size_t o = 0, cap = 1024;
    char *b = malloc(cap);
    b = grow(b, &o, &cap,
             "id: a\nrules:\n  - id: r\n    expression: 'true'\n    action: rewrite\n"
             "    headers:\n      remove: [");
    for (int i = 0; i < BW_RULES_MAX_HEADER_OPS; i++)
        b = grow(b, &o, &cap, "%sx-%d", i ? ", " : "", i);
    size_t at = o;
    b = grow(b, &o, &cap, "]\n");
    first_diag(b, got, sizeof got);
    CHECK_STR_EQ(got, "OK");
    o = at;
    b = grow(b, &o, &cap, ", x-last]\n");
    first_diag(b, got, sizeof got);
    CHECK_STR_EQ(got, "7:7: rules[0].headers: 33 header operations, over the limit of 32");
    free(b);

    /* Block body: 8 KiB, then one byte more. */
    o = 0;
    cap = 1024;
    b = malloc(cap);
    b = grow(b, &o, &cap,
             "id: a\nrules:\n  - id: r\n    expression: 'true'\n    action: block\n"
             "    body: \"");
    for (int i = 0; i < BW_RULES_MAX_BODY_LEN; i++)
        b = grow(b, &o, &cap, "x");
    at = o;
    b = grow(b, &o, &cap, "\"\n");
    first_diag(b, got, sizeof got);
    CHECK_STR_EQ(got, "OK");
    o = at;
    b = grow(b, &o, &cap, "x\"\n");
    first_diag(b, got, sizeof got);
    CHECK_STR_EQ(got, "6:11: rules[0].body: expected at most 8192 bytes, got 8193");
    free(b);

    /* Rate-limit period: 1s and 24h, and just outside each. */
    const char *periods[][2] = {{"1s", "OK"},
                                {"86400s", "OK"},
                                {"999ms", "9:13: rules[0].period: expected a whole number of "
                                          "seconds from 1s to 24h, like 60s, got \"999ms\""},
                                {"1500ms", "9:13: rules[0].period: expected a whole number of "
                                           "seconds from 1s to 24h, like 60s, got \"1500ms\""}};
    for (size_t i = 0; i < 4; i++) {
        snprintf(text, sizeof text,
                 "id: a\nrules:\n  - id: r\n    expression: 'true'\n    action: rate_limit\n"
                 "    characteristics: [ip.src]\n    requests: 1000000000\n    status: 503\n"
                 "    period: %s\n",
                 periods[i][0]);
        first_diag(text, got, sizeof got);
        CHECK_STR_EQ(got, periods[i][1]);
    }

    /* The file size limit is checked before anything is read. */
    struct bw_ruleset s;
    struct bw_config_diags d;
    CHECK(bw_ruleset_parse(&A, "r.yaml", "id: a", BW_RULESET_MAX_FILE_BYTES + 1, &s, &d) == BW_ERR);
    CHECK_STR_EQ(d.items[0].msg, "the ruleset file is 8388609 bytes, over the limit of 8388608 "
                                 "bytes");
}

/* ---- files ------------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void load_first(const char *path, char *out, size_t cap)
{
    struct bw_ruleset s;
    struct bw_config_diags d;
    bw_arena_reset(&A);
    bw_arena_init(&A, 16 * 1024, 0);
    if (bw_ruleset_load_file(&A, path, &s, &d, NULL) == BW_OK)
        snprintf(out, cap, "OK %.*s", (int)s.id.len, s.id.ptr);
    else
        snprintf(out, cap, "%u:%u: %s", d.items[0].line, d.items[0].col, d.items[0].msg);
}

TEST(file_level_errors)
{
    char dir[] = "/tmp/bw-rulesets-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], got[2048];

    snprintf(path, sizeof path, "%s/ok.yaml", dir);
    write_file(path, "id: ok\nrules: []\n");
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "OK ok");

    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "0:0: cannot open the ruleset file: No such file or directory");

    snprintf(path, sizeof path, "%s/empty.yaml", dir);
    write_file(path, "");
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "0:0: the ruleset file is empty");

    snprintf(path, sizeof path, "%s/comments.yaml", dir);
    write_file(path, "# nothing here\n");
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "0:0: the ruleset file is empty; it needs at least id and rules");

    load_first(dir, got, sizeof got);
    CHECK_STR_EQ(got, "0:0: is a directory, expected a ruleset file");

    snprintf(path, sizeof path, "%s/huge.yaml", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)BW_RULESET_MAX_FILE_BYTES + 1) == 0);
    close(fd);
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "0:0: the ruleset file is 8388609 bytes, over the limit of 8388608 bytes");

    /* Exactly at the limit is read (and then judged as YAML). */
    CHECK(truncate(path, (off_t)BW_RULESET_MAX_FILE_BYTES) == 0);
    load_first(path, got, sizeof got);
    CHECK(strstr(got, "over the limit") == NULL);

    /* A valid file padded with a comment to exactly the limit loads. */
    {
        size_t base = strlen("id: ok\nrules: []\n");
        char *text = malloc(BW_RULESET_MAX_FILE_BYTES + 1);
        CHECK(text != NULL);
        memcpy(text, "id: ok\nrules: []\n", base);
        memset(text + base, '#', BW_RULESET_MAX_FILE_BYTES - base);
        text[BW_RULESET_MAX_FILE_BYTES - 1] = '\n';
        text[BW_RULESET_MAX_FILE_BYTES] = '\0';
        write_file(path, text);
        free(text);
        load_first(path, got, sizeof got);
        CHECK_STR_EQ(got, "OK ok");
    }

    char target[256], want[600];
    snprintf(path, sizeof path, "%s/dangling.yaml", dir);
    snprintf(target, sizeof target, "%s/nowhere.yaml", dir);
    CHECK(symlink(target, path) == 0);
    load_first(path, got, sizeof got);
    snprintf(want, sizeof want, "0:0: is a symlink to \"%s\", which does not exist", target);
    CHECK_STR_EQ(got, want);

    snprintf(path, sizeof path, "%s/fifo.yaml", dir);
    CHECK(mkfifo(path, 0600) == 0);
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "0:0: is a FIFO (named pipe), expected a regular file");

    load_first("/dev/null", got, sizeof got);
    CHECK_STR_EQ(got, "0:0: is a character device, expected a regular file");

    snprintf(path, sizeof path, "%s/nul.yaml", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, "id: a\nru\0les: []\n", 18) == 18);
    close(fd);
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(got, "2:3: contains a NUL byte: YAML must be text (a binary or corrupted file?)");

    snprintf(path, sizeof path, "%s/utf16.yaml", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, "\xff\xfei\0d\0:\0", 8) == 8);
    close(fd);
    load_first(path, got, sizeof got);
    CHECK_STR_EQ(
        got, "1:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8");

    /* Cut short but still YAML: the schema error, then a note at the end. */
    snprintf(path, sizeof path, "%s/cut.yaml", dir);
    write_file(path, "id: a\nrules:\n  - id: r\n    expression: 'true'\n    action: blo");
    {
        struct bw_ruleset s;
        struct bw_config_diags d;
        bw_arena_reset(&A);
        bw_arena_init(&A, 16 * 1024, 0);
        CHECK(bw_ruleset_load_file(&A, path, &s, &d, NULL) == BW_ERR);
        render(&d, got, sizeof got);
        CHECK_STR_EQ(got, "5:13: rules[0].action: expected one of block, log, skip, execute, "
                          "rate_limit, redirect, rewrite, set_header, remove_header, got \"blo\"\n"
                          "5:16: the file ends here, in the middle of a line: was it truncated? "
                          "(that would explain the error at 5:13)");
    }

    const char *names[] = {"ok.yaml",   "empty.yaml", "comments.yaml", "huge.yaml", "dangling.yaml",
                           "fifo.yaml", "nul.yaml",   "utf16.yaml",    "cut.yaml"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    bw_arena_init(&A, 16 * 1024, 0);
    RUN(invalid_files_say_where_and_why);
    RUN(diag_print_has_file_line_col_and_caret);
    RUN(expression_errors_point_into_every_scalar_style);
    RUN(expression_error_positions_at_the_end_and_with_an_indentation_indicator);
    RUN(valid_request_file_with_every_request_action);
    RUN(valid_response_file);
    RUN(test_request_view_is_filled);
    RUN(embedded_tests_pass);
    RUN(embedded_tests_fail_with_the_exact_message);
    RUN(unknown_never_satisfies_a_block_expectation);
    RUN(cross_file_errors_come_from_the_build);
    RUN(every_error_of_a_file_is_reported);
    RUN(a_file_that_fails_still_gets_its_cross_file_errors);
    RUN(expected_rule_is_of_the_tests_ruleset_unless_qualified);
    RUN(limits_at_and_past);
    RUN(file_level_errors);
    bw_arena_reset(&A);
    return t_done();
}
