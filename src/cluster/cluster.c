/* cluster.c - member and cluster IDs, the bootstrap checks and the member record (etcd 3.4:
 * etcdserver/api/membership/member.go and cluster.go, etcdserver/config.go). */
#include "metastore/cluster.h"

#include "metastore/sha1.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_VERSION 1
#define FLAG_LEARNER   0x01

static uint64_t be64_of(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void be64_to(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The URL texts of u, sorted (etcd sorts with sort.Strings). */
static void sorted_texts(const struct cfg_url *u, size_t n, const char **out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = u[i].text;
    qsort(out, n, sizeof(*out), cmp_str);
}

uint64_t cluster_member_id(const struct cfg_url *peer_urls, size_t n, const char *token)
{
    const char *s[CLUSTER_MAX_URLS];
    if (n > CLUSTER_MAX_URLS)
        n = CLUSTER_MAX_URLS;
    sorted_texts(peer_urls, n, s);
    struct sha1 c;
    uint8_t d[20];
    sha1_init(&c);
    for (size_t i = 0; i < n; i++)
        sha1_update(&c, s[i], strlen(s[i]));
    sha1_update(&c, token, strlen(token));
    sha1_final(&c, d);
    return be64_of(d);
}

uint64_t cluster_id(const uint64_t *member_ids, size_t n)
{
    uint64_t ids[CLUSTER_MAX_MEMBERS];
    if (n > CLUSTER_MAX_MEMBERS)
        n = CLUSTER_MAX_MEMBERS;
    memcpy(ids, member_ids, n * sizeof(*ids));
    qsort(ids, n, sizeof(*ids), cmp_u64);
    struct sha1 c;
    uint8_t d[20];
    sha1_init(&c);
    for (size_t i = 0; i < n; i++) {
        uint8_t b[8];
        be64_to(b, ids[i]);
        sha1_update(&c, b, sizeof(b));
    }
    sha1_final(&c, d);
    return be64_of(d);
}

/* Append to msg at *off, as far as it goes. */
static void put(char *msg, size_t msgsz, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *msg, size_t msgsz, size_t *off, const char *fmt, ...)
{
    if (*off >= msgsz)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(msg + *off, msgsz - *off, fmt, ap);
    va_end(ap);
    if (k > 0)
        *off += (size_t)k;
}

/* Go's %q of a []string: ["a" "b"]. */
static void put_list(char *msg, size_t msgsz, size_t *off, const char **s, size_t n)
{
    put(msg, msgsz, off, "[");
    for (size_t i = 0; i < n; i++)
        put(msg, msgsz, off, i ? " \"%s\"" : "\"%s\"", s[i]);
    put(msg, msgsz, off, "]");
}

static bool has_text(const char **s, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i], t) == 0)
            return true;
    return false;
}

/* etcd's advertiseMatchesCluster, without DNS: the URLs compare as given. */
static bool advertise_matches(const struct cfg *cfg, const struct cfg_member *me, char *msg,
                              size_t msgsz)
{
    const char *ap[CLUSTER_MAX_URLS], *ic[CLUSTER_MAX_URLS];
    size_t nap = cfg->n_initial_advertise_peer, nic = me->n_peer_urls;
    sorted_texts(cfg->initial_advertise_peer, nap, ap);
    sorted_texts(me->peer_urls, nic, ic);
    size_t diff = 0;
    while (diff < nap && diff < nic && strcmp(ap[diff], ic[diff]) == 0)
        diff++;
    if (nap == nic && diff == nap)
        return true;
    size_t off = 0;
    bool first = true;
    for (size_t i = 0; i < nic; i++) {
        if (has_text(ap, nap, ic[i]))
            continue;
        put(msg, msgsz, &off, first ? "--initial-cluster has %s=%s" : ",%s=%s", me->name, ic[i]);
        first = false;
    }
    if (!first) {
        put(msg, msgsz, &off, " but missing from --initial-advertise-peer-urls=");
        for (size_t i = 0; i < nap; i++)
            put(msg, msgsz, &off, i ? ",%s" : "%s", ap[i]);
        put(msg, msgsz, &off, " (");
        if (nap != nic) {
            put(msg, msgsz, &off, "len(");
            put_list(msg, msgsz, &off, ap, nap);
            put(msg, msgsz, &off, ") != len(");
            put_list(msg, msgsz, &off, ic, nic);
            put(msg, msgsz, &off, ")");
        } else {
            put(msg, msgsz, &off, "\"%s\"(resolved from \"%s\")", ap[diff], ap[diff]);
            put(msg, msgsz, &off, " != \"%s\"(resolved from \"%s\")", ic[diff], ic[diff]);
        }
        put(msg, msgsz, &off, ")");
        return false;
    }
    for (size_t i = 0; i < nap; i++) {
        if (has_text(ic, nic, ap[i]))
            continue;
        put(msg, msgsz, &off, first ? "--initial-advertise-peer-urls has %s" : ",%s", ap[i]);
        first = false;
    }
    put(msg, msgsz, &off, " but missing from --initial-cluster=");
    for (size_t i = 0; i < nap; i++)
        put(msg, msgsz, &off, i ? ",%s=%s" : "%s=%s", me->name, ap[i]);
    return false;
}

struct pair {
    const char *name;
    const char *url;
};

static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    /* etcd sorts the "name=url" strings. */
    size_t nx = strlen(x->name), ny = strlen(y->name);
    int c = strncmp(x->name, y->name, nx < ny ? nx : ny);
    if (c)
        return c;
    if (nx != ny) /* '=' against the next character of the longer name */
        return nx < ny ? '=' - (unsigned char)y->name[nx] : (unsigned char)x->name[ny] - '=';
    return strcmp(x->url, y->url);
}

/* etcd's checkDuplicateURL over every member's peer URLs. */
static bool no_duplicate_url(const struct cfg *cfg, char *msg, size_t msgsz)
{
    struct pair p[CLUSTER_MAX_MEMBERS * CLUSTER_MAX_URLS];
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_initial_cluster; i++)
        for (size_t j = 0; j < cfg->initial_cluster[i].n_peer_urls; j++)
            p[n++] = (struct pair){cfg->initial_cluster[i].name,
                                   cfg->initial_cluster[i].peer_urls[j].text};
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++)
        for (size_t j = i + 1; j < n && !dup; j++)
            dup = strcmp(p[i].url, p[j].url) == 0;
    if (!dup)
        return true;
    qsort(p, n, sizeof(p[0]), cmp_pair);
    size_t off = 0;
    put(msg, msgsz, &off, "initial cluster ");
    for (size_t i = 0; i < n; i++)
        put(msg, msgsz, &off, i ? ",%s=%s" : "%s=%s", p[i].name, p[i].url);
    put(msg, msgsz, &off, " has duplicate url");
    return false;
}

static int cmp_member(const void *a, const void *b)
{
    return cmp_u64(&((const struct cluster_member *)a)->id,
                   &((const struct cluster_member *)b)->id);
}

bool cluster_bootstrap(const struct cfg *cfg, struct cluster_boot *out, char *msg, size_t msgsz)
{
    memset(out, 0, sizeof(*out));
    const struct cfg_member *me = NULL;
    for (size_t i = 0; i < cfg->n_initial_cluster; i++)
        if (strcmp(cfg->initial_cluster[i].name, cfg->name) == 0)
            me = &cfg->initial_cluster[i];
    if (!me || me->n_peer_urls == 0) {
        snprintf(msg, msgsz, "couldn't find local name \"%s\" in the initial cluster configuration",
                 cfg->name);
        return false;
    }
    if (!advertise_matches(cfg, me, msg, msgsz) || !no_duplicate_url(cfg, msg, msgsz))
        return false;
    uint64_t ids[CLUSTER_MAX_MEMBERS];
    for (size_t i = 0; i < cfg->n_initial_cluster && i < CLUSTER_MAX_MEMBERS; i++) {
        const struct cfg_member *cm = &cfg->initial_cluster[i];
        struct cluster_member *m = &out->members[out->n_members++];
        m->id = cluster_member_id(cm->peer_urls, cm->n_peer_urls, cfg->initial_cluster_token);
        if (m->id == 0) {
            snprintf(msg, msgsz, "cannot use 0 as member id");
            return false;
        }
        snprintf(m->name, sizeof(m->name), "%s", cm->name);
        memcpy(m->peer_urls, cm->peer_urls, cm->n_peer_urls * sizeof(m->peer_urls[0]));
        m->n_peer_urls = cm->n_peer_urls;
        if (cm == me) {
            memcpy(m->client_urls, cfg->advertise_client,
                   cfg->n_advertise_client * sizeof(m->client_urls[0]));
            m->n_client_urls = cfg->n_advertise_client;
            out->member_id = m->id;
        }
        ids[i] = m->id;
    }
    out->cluster_id = cluster_id(ids, out->n_members);
    qsort(out->members, out->n_members, sizeof(out->members[0]), cmp_member);
    return true;
}

static const struct cluster_member *boot_member(const struct cluster_boot *boot, uint64_t id)
{
    for (size_t i = 0; i < boot->n_members; i++)
        if (boot->members[i].id == id)
            return &boot->members[i];
    return NULL;
}

bool cluster_check_owner(const struct cluster_boot *boot, const char *name, uint64_t member_id,
                         uint64_t cluster_id, char *msg, size_t msgsz)
{
    if (boot->n_members < 2 || boot->member_id == member_id)
        return true;
    const struct cluster_member *owner = boot_member(boot, member_id);
    if (boot->cluster_id == cluster_id) {
        char who[160];
        if (owner)
            snprintf(who, sizeof(who), "%s (%016llx)", owner->name, (unsigned long long)member_id);
        else
            snprintf(who, sizeof(who), "%016llx", (unsigned long long)member_id);
        snprintf(msg, msgsz,
                 "the data directory belongs to member %s of cluster %016llx, not to member %s "
                 "(%016llx): give each member its own --data-dir",
                 who, (unsigned long long)cluster_id, name, (unsigned long long)boot->member_id);
        return false;
    }
    if (owner)
        return true; /* the same member in a cluster whose members have changed since */
    snprintf(msg, msgsz,
             "the data directory belongs to member %016llx of cluster %016llx, but "
             "--initial-cluster and --initial-cluster-token make this member %016llx of cluster "
             "%016llx: it holds another cluster's data (remove it to start a new member, or "
             "start it with the flags it was created with)",
             (unsigned long long)member_id, (unsigned long long)cluster_id,
             (unsigned long long)boot->member_id, (unsigned long long)boot->cluster_id);
    return false;
}

void cluster_member_key(uint64_t id, uint8_t key[CLUSTER_KEY_LEN])
{
    be64_to(key, id);
}

static void put_text(struct buf *out, const char *s)
{
    size_t n = strlen(s);
    uint8_t l[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    buf_append(out, l, 2);
    buf_append(out, s, n);
}

static void put_urls(struct buf *out, const struct cfg_url *u, size_t n)
{
    uint8_t c = (uint8_t)n;
    buf_append(out, &c, 1);
    for (size_t i = 0; i < n; i++)
        put_text(out, u[i].text);
}

/* version 1 | id (8, big-endian) | flags (1) | name | peer URLs | client URLs; a text is its
 * length (2, big-endian) and bytes, a URL list its count (1) and texts. */
void cluster_member_encode(const struct cluster_member *m, struct buf *out)
{
    uint8_t h[10];
    h[0] = RECORD_VERSION;
    be64_to(h + 1, m->id);
    h[9] = m->is_learner ? FLAG_LEARNER : 0;
    buf_append(out, h, sizeof(h));
    put_text(out, m->name);
    put_urls(out, m->peer_urls, m->n_peer_urls);
    put_urls(out, m->client_urls, m->n_client_urls);
}

struct rec {
    const uint8_t *p;
    size_t n;
};

static bool get_text(struct rec *r, char *out, size_t cap)
{
    if (r->n < 2)
        return false;
    size_t len = (size_t)r->p[0] << 8 | r->p[1];
    if (len >= cap || r->n - 2 < len || memchr(r->p + 2, 0, len))
        return false;
    memcpy(out, r->p + 2, len);
    out[len] = 0;
    r->p += 2 + len;
    r->n -= 2 + len;
    return true;
}

static bool get_urls(struct rec *r, struct cfg_url *u, size_t *n)
{
    if (r->n < 1 || r->p[0] > CLUSTER_MAX_URLS)
        return false;
    *n = r->p[0];
    r->p++;
    r->n--;
    for (size_t i = 0; i < *n; i++) {
        char text[sizeof(u[i].text)], msg[128];
        size_t k;
        if (!get_text(r, text, sizeof(text)) || strchr(text, ',') ||
            !cfg_parse_urls(text, &u[i], 1, &k, msg, sizeof(msg)) || k != 1 ||
            strcmp(u[i].text, text) != 0)
            return false;
    }
    return true;
}

ms_err cluster_member_decode(const uint8_t *p, size_t n, struct cluster_member *m)
{
    memset(m, 0, sizeof(*m));
    if (n < 10 || p[0] != RECORD_VERSION || (p[9] & ~FLAG_LEARNER))
        return MS_E_DATA_CORRUPT;
    m->id = be64_of(p + 1);
    m->is_learner = p[9] & FLAG_LEARNER;
    struct rec r = {p + 10, n - 10};
    if (m->id == 0 || !get_text(&r, m->name, sizeof(m->name)) ||
        !get_urls(&r, m->peer_urls, &m->n_peer_urls) || m->n_peer_urls == 0 ||
        !get_urls(&r, m->client_urls, &m->n_client_urls) || r.n != 0) {
        memset(m, 0, sizeof(*m));
        return MS_E_DATA_CORRUPT;
    }
    return MS_OK;
}

uint64_t cluster_new_member_id(const struct cfg_url *peer_urls, size_t n, int64_t unix_s)
{
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)unix_s);
    return cluster_member_id(peer_urls, n, t);
}

#define CC_VERSION 1

/* version 1 | kind (1) | request id (8, big-endian) | the member's record (BOOT, ADD, UPDATE) or
 * its ID (8, big-endian). */
void cluster_cc_encode(const struct cluster_cc *cc, struct buf *out)
{
    uint8_t h[10];
    h[0] = CC_VERSION;
    h[1] = (uint8_t)cc->kind;
    be64_to(h + 2, cc->request_id);
    buf_append(out, h, sizeof(h));
    if (cc->kind == CLUSTER_CC_REMOVE || cc->kind == CLUSTER_CC_PROMOTE) {
        uint8_t id[8];
        be64_to(id, cc->member.id);
        buf_append(out, id, sizeof(id));
        return;
    }
    cluster_member_encode(&cc->member, out);
}

ms_err cluster_cc_decode(const uint8_t *p, size_t n, struct cluster_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    if (n < 10 || p[0] != CC_VERSION || p[1] < CLUSTER_CC_BOOT || p[1] > CLUSTER_CC_PROMOTE)
        return MS_E_DATA_CORRUPT;
    cc->kind = (enum cluster_cc_kind)p[1];
    cc->request_id = be64_of(p + 2);
    if (cc->kind == CLUSTER_CC_REMOVE || cc->kind == CLUSTER_CC_PROMOTE) {
        if (n != 18)
            return MS_E_DATA_CORRUPT;
        cc->member.id = be64_of(p + 10);
        return MS_OK;
    }
    return cluster_member_decode(p + 10, n - 10, &cc->member);
}
