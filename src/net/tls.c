/* TLS contexts, SNI, ALPN, session tickets and non-blocking connection I/O.
 * See tls.h. */
#include "net/tls.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Mozilla's "intermediate" TLS 1.2 suites: forward secrecy and AEAD only.
 * TLS 1.3 keeps OpenSSL's defaults, which are all of that already. */
static const char CIPHERS_TLS12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char GROUPS[] = "X25519:P-256:P-384";
static const unsigned char SESSION_ID_CTX[] = "bulwark";

/* ---- session ticket keys -------------------------------------------------- */

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    int64_t born; /* monotonic seconds */
    bool valid;
};

/* Handshakes are rare next to requests and already cost tens of
 * microseconds: an uncontended mutex around two keys is not worth avoiding. */
static struct {
    pthread_mutex_t mu;
    struct ticket_key cur, prev;
    uint64_t rotate_s;
    bool ready;
} tickets = {.mu = PTHREAD_MUTEX_INITIALIZER, .rotate_s = BW_TLS_TICKET_ROTATE_S};

static int64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

static bool key_make(struct ticket_key *k, int64_t now)
{
    if (RAND_bytes(k->name, sizeof k->name) != 1 || RAND_bytes(k->aes, sizeof k->aes) != 1 ||
        RAND_bytes(k->hmac, sizeof k->hmac) != 1)
        return false;
    k->born = now;
    k->valid = true;
    return true;
}

/* Under tickets.mu. A failed rotation keeps the current key: tickets keep
 * working, only later than scheduled to change. */
static void rotate_locked(int64_t now)
{
    int64_t period = (int64_t)tickets.rotate_s;
    if (now - tickets.cur.born >= period) {
        struct ticket_key next;
        if (key_make(&next, now)) {
            tickets.prev = tickets.cur;
            tickets.cur = next;
        }
    }
    if (tickets.prev.valid && now - tickets.prev.born >= 2 * period) {
        OPENSSL_cleanse(&tickets.prev, sizeof tickets.prev);
        tickets.prev.valid = false;
    }
}

bw_status bw_tls_global_init(uint64_t ticket_rotate_s, bw_error *err)
{
    pthread_mutex_lock(&tickets.mu);
    bw_status st = BW_OK;
    if (!tickets.ready) {
        if (OPENSSL_init_ssl(0, NULL) != 1 || !key_make(&tickets.cur, mono_s()))
            st = bw_error_set(err, "TLS: cannot initialise OpenSSL or draw random ticket keys");
        else
            tickets.ready = true;
    }
    if (ticket_rotate_s)
        tickets.rotate_s = ticket_rotate_s;
    pthread_mutex_unlock(&tickets.mu);
    return st;
}

void bw_tls_set_ticket_rotation(uint64_t ticket_rotate_s)
{
    pthread_mutex_lock(&tickets.mu);
    if (ticket_rotate_s)
        tickets.rotate_s = ticket_rotate_s;
    pthread_mutex_unlock(&tickets.mu);
}

void bw_tls_rotate_ticket_keys(void)
{
    pthread_mutex_lock(&tickets.mu);
    struct ticket_key next;
    if (key_make(&next, mono_s())) {
        tickets.prev = tickets.cur;
        tickets.cur = next;
    }
    pthread_mutex_unlock(&tickets.mu);
}

static int set_mac(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

/* OpenSSL's ticket callback: 1 = use this key, 2 = accepted but issue a
 * fresh ticket (an older key), 0 = unknown key (full handshake), -1 = error. */
static int ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    struct ticket_key k;
    bool current = true;
    pthread_mutex_lock(&tickets.mu);
    rotate_locked(mono_s());
    if (enc) {
        k = tickets.cur;
    } else if (memcmp(key_name, tickets.cur.name, 16) == 0) {
        k = tickets.cur;
    } else if (tickets.prev.valid && memcmp(key_name, tickets.prev.name, 16) == 0) {
        k = tickets.prev;
        current = false;
    } else {
        pthread_mutex_unlock(&tickets.mu);
        return 0;
    }
    pthread_mutex_unlock(&tickets.mu);
    int ret = -1;
    if (enc) {
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, 16) == 1 &&
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
            set_mac(hctx, k.hmac) == 1)
            ret = 1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 &&
               set_mac(hctx, k.hmac) == 1) {
        ret = current ? 1 : 2;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return ret;
}

/* ---- contexts ------------------------------------------------------------- */

struct name_entry {
    char *name; /* lowercase; "*.example.com" for a wildcard */
    size_t cert;
};

struct cert {
    SSL_CTX *ctx;
    char *cert_path;
    char *subject;
    char *names;
    int64_t not_before, not_after;
    unsigned char file_sha256[32]; /* of the certificate file's bytes */
    char *validity_warning;        /* loaded outside its validity period: why; else NULL */
};

struct bw_tls_ctx {
    struct cert *certs;
    size_t ncerts;
    struct name_entry *names; /* sorted by name */
    size_t nnames;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct name_entry *)a)->name, ((const struct name_entry *)b)->name);
}

static bool find_name(const struct bw_tls_ctx *c, const char *name, size_t *cert)
{
    struct name_entry key = {.name = (char *)name};
    const struct name_entry *e = bsearch(&key, c->names, c->nnames, sizeof key, name_cmp);
    if (!e)
        return false;
    *cert = e->cert;
    return true;
}

/* name: NUL-terminated, lowercase. */
static size_t select_cert(const struct bw_tls_ctx *c, const char *name)
{
    size_t i;
    if (find_name(c, name, &i))
        return i;
    /* "*.example.com" covers exactly one label before "example.com". */
    const char *dot = strchr(name, '.');
    if (dot && dot != name && dot[1]) {
        char wild[BW_TLS_NAME_MAX + 2];
        int n = snprintf(wild, sizeof wild, "*%s", dot);
        if (n > 0 && (size_t)n < sizeof wild && find_name(c, wild, &i))
            return i;
    }
    return 0;
}

/* Copies a server name as a lowercase C string; false if it is not one. */
static bool sni_text(bw_slice in, char out[BW_TLS_NAME_MAX + 1])
{
    if (in.len == 0 || in.len > BW_TLS_NAME_MAX)
        return false;
    for (size_t i = 0; i < in.len; i++) {
        unsigned char ch = (unsigned char)in.ptr[i];
        if (!(isalnum(ch) || ch == '-' || ch == '.' || ch == '_'))
            return false;
        out[i] = (char)tolower(ch);
    }
    out[in.len] = '\0';
    return true;
}

size_t bw_tls_ctx_select(const struct bw_tls_ctx *c, bw_slice server_name)
{
    /* "b.example." is b.example (the absolute form, which RFC 6066 leaves
     * out of SNI but some clients send): nginx drops the dot too, and so
     * does http.host. */
    if (server_name.len > 1 && server_name.ptr[server_name.len - 1] == '.' &&
        server_name.ptr[server_name.len - 2] != '.')
        server_name.len--;
    char name[BW_TLS_NAME_MAX + 1];
    if (!sni_text(server_name, name))
        return 0;
    return select_cert(c, name);
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct bw_tls_ctx *c = arg;
    const char *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!sn)
        return SSL_TLSEXT_ERR_OK; /* no SNI: the default certificate */
    size_t i = bw_tls_ctx_select(c, bw_slice_make(sn, strlen(sn)));
    if (SSL_get_SSL_CTX(ssl) != c->certs[i].ctx && !SSL_set_SSL_CTX(ssl, c->certs[i].ctx))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

/* HTTP/1.1 is all we speak. A client that offers ALPN without it gets the
 * no_application_protocol alert (RFC 7301 §3.2), as from nginx; one that
 * offers no ALPN at all is served HTTP/1.1. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char h11[] = "http/1.1";
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || i + 1 + n > inlen)
            break;
        if (n == sizeof h11 - 1 && memcmp(in + i + 1, h11, n) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Declines every passphrase prompt: a key file must not be encrypted, and
 * OpenSSL's default would read the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static const char *ossl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, cap, "no detail from OpenSSL");
    } else {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, cap, "%s", r ? r : "unknown OpenSSL error");
    }
    ERR_clear_error();
    return buf;
}

static bool asn1_time(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

static void cert_free(struct cert *ce)
{
    SSL_CTX_free(ce->ctx);
    free(ce->cert_path);
    free(ce->subject);
    free(ce->names);
    free(ce->validity_warning);
}

void bw_tls_ctx_free(struct bw_tls_ctx *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ncerts; i++)
        cert_free(&c->certs[i]);
    for (size_t i = 0; i < c->nnames; i++)
        free(c->names[i].name);
    free(c->certs);
    free(c->names);
    free(c);
}

size_t bw_tls_ctx_ncerts(const struct bw_tls_ctx *c)
{
    return c->ncerts;
}

struct bw_tls_cert_info bw_tls_ctx_cert(const struct bw_tls_ctx *c, size_t i)
{
    const struct cert *ce = &c->certs[i];
    return (struct bw_tls_cert_info){.cert_path = ce->cert_path,
                                     .subject = ce->subject,
                                     .names = ce->names,
                                     .not_before = ce->not_before,
                                     .not_after = ce->not_after,
                                     .validity_warning = ce->validity_warning};
}

/* Collects the leaf's DNS names (subjectAltName, or the subject CN when it
 * has none, as old certificates do) into c->names and ce->names. */
static bw_status collect_names(struct bw_tls_ctx *c, size_t idx, X509 *leaf, const char *path,
                               bw_error *err)
{
    char *list[BW_TLS_MAX_NAMES];
    size_t n = 0;
    bw_status st = BW_OK;
    GENERAL_NAMES *san = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    if (san) {
        for (int i = 0; i < sk_GENERAL_NAME_num(san) && st == BW_OK; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
            if (g->type != GEN_DNS)
                continue;
            const ASN1_IA5STRING *s = g->d.dNSName;
            if (n == BW_TLS_MAX_NAMES) {
                st = bw_error_set(err, "%s: more than %d DNS names in one certificate", path,
                                  BW_TLS_MAX_NAMES);
                break;
            }
            char buf[BW_TLS_NAME_MAX + 1];
            bw_slice raw = bw_slice_make((const char *)ASN1_STRING_get0_data(s),
                                         (size_t)ASN1_STRING_length(s));
            /* A wildcard is checked as the name it stands for. */
            bool wild = raw.len > 2 && raw.ptr[0] == '*' && raw.ptr[1] == '.';
            if (!sni_text(wild ? bw_slice_make(raw.ptr + 2, raw.len - 2) : raw, buf))
                continue; /* not a DNS name a client can send: unusable */
            char *name = NULL;
            if (asprintf(&name, "%s%s", wild ? "*." : "", buf) < 0)
                st = bw_error_set(err, "out of memory");
            else
                list[n++] = name;
        }
        GENERAL_NAMES_free(san);
    } else {
        char cn[BW_TLS_NAME_MAX + 1];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn,
                                            (int)sizeof cn);
        char buf[BW_TLS_NAME_MAX + 1];
        if (len > 0 && sni_text(bw_slice_make(cn, (size_t)len), buf)) {
            list[0] = strdup(buf);
            if (!list[0])
                st = bw_error_set(err, "out of memory");
            else
                n = 1;
        }
    }
    if (st == BW_OK && n == 0)
        st = bw_error_set(err,
                          "%s: the certificate names no DNS host (no subjectAltName DNS entry and "
                          "no usable common name): no client could select it",
                          path);
    size_t joined = 0;
    for (size_t i = 0; i < n; i++)
        joined += strlen(list[i]) + 2;
    struct name_entry *grown = NULL;
    char *names = NULL;
    if (st == BW_OK) {
        grown = realloc(c->names, (c->nnames + n) * sizeof *grown);
        names = malloc(joined + 1);
        if (grown)
            c->names = grown;
        if (!grown || !names)
            st = bw_error_set(err, "out of memory");
    }
    if (st != BW_OK) {
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(names);
        return st;
    }
    names[0] = '\0';
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        off += (size_t)sprintf(names + off, "%s%s", i ? ", " : "", list[i]);
        c->names[c->nnames++] = (struct name_entry){.name = list[i], .cert = idx};
    }
    c->certs[idx].names = names;
    return BW_OK;
}

static bw_status configure_ctx(SSL_CTX *x, struct bw_tls_ctx *c, const struct bw_tls_options *o,
                               bw_error *err)
{
    int min = (o->protocols & BW_TLS_V12) ? TLS1_2_VERSION : TLS1_3_VERSION;
    int max = (o->protocols & BW_TLS_V13) ? TLS1_3_VERSION : TLS1_2_VERSION;
    char why[160];
    if (SSL_CTX_set_min_proto_version(x, min) != 1 || SSL_CTX_set_max_proto_version(x, max) != 1 ||
        SSL_CTX_set_cipher_list(x, CIPHERS_TLS12) != 1 ||
        SSL_CTX_set1_groups_list(x, GROUPS) != 1 ||
        SSL_CTX_set_session_id_context(x, SESSION_ID_CTX, sizeof SESSION_ID_CTX - 1) != 1 ||
        SSL_CTX_set_num_tickets(x, 1) != 1)
        return bw_error_set(err, "TLS: cannot apply the protocol settings: %s",
                            ossl_reason(why, sizeof why));
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Buffers go back while a connection idles; writes report partial
     * progress and may resume from a buffer that moved. */
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead: one read() takes whatever the socket holds, up to a
     * record buffer, instead of a record header and then its body. A full
     * TLS 1.3 handshake with one request then costs about 4 reads instead of
     * 11, and a kept-alive request 2 instead of 3 (nginx does the same).
     * The session reads until OpenSSL wants more (bw_tls_read returns
     * WANT_READ), so bytes buffered here never wait for an edge that will
     * not come. */
    SSL_CTX_set_read_ahead(x, 1);
    /* Resumption is by ticket only: nothing per session held here. */
    SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
    pthread_mutex_lock(&tickets.mu);
    uint64_t life = 2 * tickets.rotate_s;
    pthread_mutex_unlock(&tickets.mu);
    SSL_CTX_set_timeout(x, (long)(life > 604800 ? 604800 : life));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(x, ticket_cb);
    SSL_CTX_set_tlsext_servername_callback(x, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(x, c);
    SSL_CTX_set_alpn_select_cb(x, alpn_cb, NULL);
    return BW_OK;
}

static bool running_serves(const struct bw_tls_options *o, const unsigned char sha[32])
{
    for (size_t i = 0; i < o->nrunning; i++) {
        const struct bw_tls_ctx *r = o->running[i];
        for (size_t k = 0; r && k < r->ncerts; k++)
            if (memcmp(r->certs[k].file_sha256, sha, 32) == 0)
                return true;
    }
    return false;
}

static bw_status load_cert(struct bw_tls_ctx *c, size_t idx, const struct bw_tls_pem *p,
                           const struct bw_tls_options *o, int64_t now, bw_error *err)
{
    struct cert *ce = &c->certs[idx];
    char why[160];
    bw_status st = BW_ERR;
    X509 *leaf = NULL;
    X509 *chain[BW_TLS_MAX_CHAIN];
    size_t nchain = 0;
    EVP_PKEY *key = NULL;
    BIO *b = NULL;
    ERR_clear_error();

    ce->cert_path = strdup(p->cert_path);
    if (!ce->cert_path)
        return bw_error_set(err, "out of memory");
    if (p->cert.len > BW_TLS_PEM_MAX || p->key.len > BW_TLS_PEM_MAX)
        return bw_error_set(err, "%s: larger than %d bytes",
                            p->cert.len > BW_TLS_PEM_MAX ? p->cert_path : p->key_path,
                            BW_TLS_PEM_MAX);
    unsigned int shalen = 0;
    if (EVP_Digest(p->cert.ptr, p->cert.len, ce->file_sha256, &shalen, EVP_sha256(), NULL) != 1 ||
        shalen != sizeof ce->file_sha256)
        return bw_error_set(err, "%s: cannot hash the file (%s)", p->cert_path,
                            ossl_reason(why, sizeof why));
    b = BIO_new_mem_buf(p->cert.ptr, (int)p->cert.len);
    if (!b)
        return bw_error_set(err, "out of memory");
    leaf = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (!leaf) {
        bw_error_set(err, "%s: no PEM certificate could be read (%s)", p->cert_path,
                     ossl_reason(why, sizeof why));
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
        if (!x) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error(); /* the end of the file */
                break;
            }
            bw_error_set(err, "%s: certificate %zu of the chain does not parse (%s)", p->cert_path,
                         nchain + 2, ossl_reason(why, sizeof why));
            goto out;
        }
        if (nchain == BW_TLS_MAX_CHAIN) {
            X509_free(x);
            bw_error_set(err, "%s: more than %d intermediate certificates", p->cert_path,
                         BW_TLS_MAX_CHAIN);
            goto out;
        }
        chain[nchain++] = x;
    }
    BIO_free(b);
    b = BIO_new_mem_buf(p->key.ptr, (int)p->key.len);
    if (!b) {
        bw_error_set(err, "out of memory");
        goto out;
    }
    key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    if (!key) {
        bw_error_set(err, "%s: no unencrypted PEM private key could be read (%s)", p->key_path,
                     ossl_reason(why, sizeof why));
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        ERR_clear_error();
        bw_error_set(err, "%s: the key does not match the certificate in %s", p->key_path,
                     p->cert_path);
        goto out;
    }
    /* Usable chain: each certificate issued the one before it, and every
     * one is inside its validity period now. */
    for (size_t i = 0; i < nchain; i++) {
        X509 *child = i == 0 ? leaf : chain[i - 1];
        if (X509_check_issued(chain[i], child) != X509_V_OK) {
            bw_error_set(err,
                         "%s: certificate %zu of the file did not issue certificate %zu: the "
                         "chain must run leaf first, then each issuer in order",
                         p->cert_path, i + 2, i + 1);
            goto out;
        }
    }
    for (size_t i = 0; i <= nchain; i++) {
        X509 *x = i == 0 ? leaf : chain[i - 1];
        int64_t nb, na;
        if (!asn1_time(X509_get0_notBefore(x), &nb) || !asn1_time(X509_get0_notAfter(x), &na)) {
            bw_error_set(err, "%s: certificate %zu has an unreadable validity period", p->cert_path,
                         i + 1);
            goto out;
        }
        if (now < nb || now >= na) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg,
                     "%s: certificate %zu is %s (valid from %lld to %lld, unix time)", p->cert_path,
                     i + 1, now < nb ? "not valid yet" : "expired", (long long)nb, (long long)na);
            if (!o->allow_outside_validity && !running_serves(o, ce->file_sha256)) {
                bw_error_set(err, "%s", msg);
                goto out;
            }
            if (!ce->validity_warning && !(ce->validity_warning = strdup(msg))) {
                bw_error_set(err, "out of memory");
                goto out;
            }
        }
        if (i == 0) {
            ce->not_before = nb;
            ce->not_after = na;
        }
    }
    ce->subject = X509_NAME_oneline(X509_get_subject_name(leaf), NULL, 0);
    if (!ce->subject) {
        bw_error_set(err, "out of memory");
        goto out;
    }
    if (collect_names(c, idx, leaf, p->cert_path, err) != BW_OK)
        goto out;

    ce->ctx = SSL_CTX_new(TLS_server_method());
    if (!ce->ctx) {
        bw_error_set(err, "TLS: cannot create a context: %s", ossl_reason(why, sizeof why));
        goto out;
    }
    if (configure_ctx(ce->ctx, c, o, err) != BW_OK)
        goto out;
    if (SSL_CTX_use_certificate(ce->ctx, leaf) != 1 || SSL_CTX_use_PrivateKey(ce->ctx, key) != 1) {
        bw_error_set(err, "%s: OpenSSL refuses the certificate or its key (%s)", p->cert_path,
                     ossl_reason(why, sizeof why));
        goto out;
    }
    for (size_t i = 0; i < nchain; i++) {
        if (SSL_CTX_add1_chain_cert(ce->ctx, chain[i]) != 1) {
            bw_error_set(err, "%s: OpenSSL refuses intermediate %zu (%s)", p->cert_path, i + 1,
                         ossl_reason(why, sizeof why));
            goto out;
        }
    }
    st = BW_OK;
out:
    BIO_free(b);
    X509_free(leaf);
    for (size_t i = 0; i < nchain; i++)
        X509_free(chain[i]);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return st;
}

bw_status bw_tls_ctx_new(const struct bw_tls_pem *certs, size_t ncerts,
                         const struct bw_tls_options *opt, int64_t now, struct bw_tls_ctx **ret,
                         size_t *failed, bw_error *err)
{
    *failed = 0;
    if (ncerts == 0 || ncerts > BW_TLS_MAX_CERTS)
        return bw_error_set(err, "TLS: a listener needs 1 to %d certificates, got %zu",
                            BW_TLS_MAX_CERTS, ncerts);
    if (!(opt->protocols & (BW_TLS_V12 | BW_TLS_V13)))
        return bw_error_set(err, "TLS: no protocol version enabled");
    if (bw_tls_global_init(0, err) != BW_OK)
        return BW_ERR;
    struct bw_tls_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return bw_error_set(err, "out of memory");
    c->certs = calloc(ncerts, sizeof *c->certs);
    if (!c->certs) {
        free(c);
        return bw_error_set(err, "out of memory");
    }
    for (size_t i = 0; i < ncerts; i++) {
        c->ncerts = i + 1; /* so a failure frees what this one holds too */
        if (load_cert(c, i, &certs[i], opt, now, err) != BW_OK) {
            *failed = i;
            bw_tls_ctx_free(c);
            return BW_ERR;
        }
    }
    qsort(c->names, c->nnames, sizeof *c->names, name_cmp);
    /* The same name on two certificates: the first listed wins, so an
     * operator's order is the tie-break, not the sort. */
    size_t w = 0;
    for (size_t i = 0; i < c->nnames; i++) {
        if (w > 0 && strcmp(c->names[w - 1].name, c->names[i].name) == 0) {
            if (c->names[i].cert < c->names[w - 1].cert)
                c->names[w - 1].cert = c->names[i].cert;
            free(c->names[i].name);
            continue;
        }
        c->names[w++] = c->names[i];
    }
    c->nnames = w;
    *ret = c;
    return BW_OK;
}

/* ---- client contexts -------------------------------------------------------- */

struct bw_tls_client {
    SSL_CTX *ctx;
    bool verify;
};

bw_status bw_tls_client_new(const struct bw_tls_client_options *o, struct bw_tls_client **ret,
                            bw_error *err)
{
    if (bw_tls_global_init(0, err) != BW_OK)
        return BW_ERR;
    char why[160];
    ERR_clear_error();
    struct bw_tls_client *c = calloc(1, sizeof *c);
    if (!c)
        return bw_error_set(err, "out of memory");
    c->verify = o->verify;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        free(c);
        return bw_error_set(err, "TLS: cannot create a client context: %s",
                            ossl_reason(why, sizeof why));
    }
    SSL_CTX *x = c->ctx;
    static const unsigned char alpn[] = "\x08http/1.1";
    if (SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(x, CIPHERS_TLS12) != 1 ||
        SSL_CTX_set1_groups_list(x, GROUPS) != 1 ||
        SSL_CTX_set_alpn_protos(x, alpn, sizeof alpn - 1) != 0) {
        bw_tls_client_free(c);
        return bw_error_set(err, "TLS: cannot apply the client settings: %s",
                            ossl_reason(why, sizeof why));
    }
    /* Many servers close without close_notify; a response that ends at
     * EOF is delimited by the connection anyway, as over plain TCP. */
    SSL_CTX_set_options(x, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(x, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->verify) {
        if (!o->has_ca) {
            if (SSL_CTX_set_default_verify_paths(x) != 1) {
                bw_tls_client_free(c);
                return bw_error_set(err, "TLS: cannot load the system's trusted certificates: %s",
                                    ossl_reason(why, sizeof why));
            }
        } else {
            if (o->ca.len > BW_TLS_PEM_MAX) {
                bw_tls_client_free(c);
                return bw_error_set(err, "%s: larger than %d bytes", o->ca_path, BW_TLS_PEM_MAX);
            }
            BIO *b = BIO_new_mem_buf(o->ca.ptr, (int)o->ca.len);
            STACK_OF(X509_INFO) *infos =
                b ? PEM_X509_INFO_read_bio(b, NULL, no_passphrase, NULL) : NULL;
            BIO_free(b);
            X509_STORE *store = SSL_CTX_get_cert_store(x);
            int added = 0;
            for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
                X509_INFO *xi = sk_X509_INFO_value(infos, i);
                if (xi->x509 && X509_STORE_add_cert(store, xi->x509) == 1)
                    added++;
            }
            sk_X509_INFO_pop_free(infos, X509_INFO_free);
            ERR_clear_error();
            if (added == 0) {
                bw_tls_client_free(c);
                return bw_error_set(err, "%s: no PEM certificate could be read", o->ca_path);
            }
        }
    }
    *ret = c;
    return BW_OK;
}

void bw_tls_client_free(struct bw_tls_client *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

bw_status bw_tls_client_conn_new(struct bw_tls_client *c, int fd, const struct bw_tls_peer *peer,
                                 struct ssl_st **ret, bw_error *err)
{
    char why[160];
    ERR_clear_error();
    SSL *ssl = SSL_new(c->ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto fail;
    if (peer->has_sni && SSL_set_tlsext_host_name(ssl, peer->sni) != 1)
        goto fail;
    if (c->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = peer->has_sni ? X509_VERIFY_PARAM_set1_host(vp, peer->sni, 0)
                               : X509_VERIFY_PARAM_set1_ip_asc(vp, peer->ip);
        if (ok != 1)
            goto fail;
    }
    SSL_set_connect_state(ssl);
    *ret = ssl;
    return BW_OK;
fail:
    SSL_free(ssl);
    return bw_error_set(err, "TLS: cannot set up an upstream connection: %s",
                        ossl_reason(why, sizeof why));
}

const char *bw_tls_verify_error(const struct ssl_st *ssl)
{
    long v = SSL_get_verify_result(ssl);
    return v == X509_V_OK ? "" : X509_verify_cert_error_string(v);
}

/* ---- connections -------------------------------------------------------- */

bw_status bw_tls_conn_new(struct bw_tls_ctx *c, int fd, struct ssl_st **ret, bw_error *err)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(c->certs[0].ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        char why[160];
        SSL_free(ssl);
        return bw_error_set(err, "TLS: cannot set up a connection: %s",
                            ossl_reason(why, sizeof why));
    }
    SSL_set_accept_state(ssl);
    *ret = ssl;
    return BW_OK;
}

void bw_tls_conn_free(struct ssl_st *ssl)
{
    SSL_free(ssl);
}

static enum bw_tls_result classify(SSL *ssl, int rc)
{
    int e = SSL_get_error(ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return BW_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return BW_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return BW_TLS_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (errno == EAGAIN || errno == EINTR)
            return BW_TLS_WANT_READ;
        return rc == 0 ? BW_TLS_CLOSED : BW_TLS_FAILED;
    default:
        return BW_TLS_FAILED;
    }
}

enum bw_tls_result bw_tls_handshake(struct ssl_st *ssl)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    return rc == 1 ? BW_TLS_OK : classify(ssl, rc);
}

enum bw_tls_result bw_tls_read(struct ssl_st *ssl, char *buf, size_t cap, size_t *n)
{
    ERR_clear_error();
    size_t got = 0;
    int rc = SSL_read_ex(ssl, buf, cap, &got);
    if (rc == 1) {
        *n = got;
        return BW_TLS_OK;
    }
    *n = 0;
    return classify(ssl, rc);
}

enum bw_tls_result bw_tls_write(struct ssl_st *ssl, const char *buf, size_t len, size_t *n)
{
    ERR_clear_error();
    size_t put = 0;
    int rc = SSL_write_ex(ssl, buf, len, &put);
    if (rc == 1) {
        *n = put;
        return BW_TLS_OK;
    }
    *n = 0;
    return classify(ssl, rc);
}

bool bw_tls_pending(const struct ssl_st *ssl)
{
    return SSL_has_pending(ssl) == 1;
}

void bw_tls_close_notify(struct ssl_st *ssl)
{
    ERR_clear_error();
    (void)SSL_shutdown(ssl);
    ERR_clear_error();
}

const char *bw_tls_version(const struct ssl_st *ssl)
{
    return SSL_get_version(ssl);
}

const char *bw_tls_server_name(const struct ssl_st *ssl)
{
    const char *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    return sn ? sn : "";
}

bool bw_tls_resumed(const struct ssl_st *ssl)
{
    return SSL_session_reused(ssl) == 1;
}

const char *bw_tls_last_error(char *buf, size_t cap)
{
    return ossl_reason(buf, cap);
}

bool bw_tls_has_error(void)
{
    return ERR_peek_last_error() != 0;
}
