/* test_peer.c - the peer transport: two or three transports (and raw sockets posing as peers)
 * on free 127.0.0.1 ports in one event loop. Every wait is bounded in turns and time.
 */
#define _GNU_SOURCE
#include "metastore/peer.h"
#include "metastore/raft_codec.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLUSTER  0xc1u
#define MAX_NODE 4

static struct event_base *base;
static struct event *tick_ev;

/* What one transport heard. */
struct node {
    struct peer *p;
    uint64_t id;
    uint64_t cluster;
    int port;
    char url[64];
    char *dir;
    size_t max_queue_bytes;
    uint32_t write_timeout_ms;
    uint32_t read_timeout_ms;
    size_t got[MAX_NODE + 1];    /* messages from each sender */
    uint64_t last[MAX_NODE + 1]; /* the last index from each sender */
    bool out_of_order;
    bool bad_data;
    size_t unreachable[MAX_NODE + 1];
    size_t snaps;
    char snap_path[512];
    struct raft_msg snap_msg;
    size_t snap_sent;
    bool snap_ok;
    size_t apps;           /* application messages heard */
    uint64_t app_last_seq; /* the last one's sequence number (its first 8 bytes) */
    uint64_t app_at_index; /* the last Raft index from the sender when it arrived */
    bool app_bad;
};

static struct node nodes[MAX_NODE + 1];

/* ---- the loop ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 5000};
    event_add(tick_ev, &tv);
    memset(nodes, 0, sizeof(nodes));
}

static void teardown(void)
{
    for (int i = 0; i <= MAX_NODE; i++) {
        peer_destroy(nodes[i].p);
        if (nodes[i].dir) {
            tu_rmtree(nodes[i].dir);
            free(nodes[i].dir);
        }
    }
    event_free(tick_ev);
    event_base_free(base);
}

typedef bool (*pred_fn)(void);

/* Run the loop until pred holds; false after timeout_ms (at most 100,000 turns). */
static bool run_until(pred_fn pred, int timeout_ms)
{
    int64_t end = tu_now_ms() + timeout_ms;
    for (int i = 0; i < 100000 && tu_now_ms() < end; i++) {
        if (pred && pred())
            return true;
        event_base_loop(base, EVLOOP_ONCE);
    }
    return pred && pred();
}

static void run_for(int ms)
{
    run_until(NULL, ms);
}

/* ---- transports ---- */

static void on_message(void *ctx, const struct raft_msg *m)
{
    struct node *n = ctx;
    ck_assert_uint_eq(m->to, n->id);
    ck_assert_uint_le(m->from, MAX_NODE);
    if (m->index != n->last[m->from] + 1)
        n->out_of_order = true;
    n->last[m->from] = m->index;
    n->got[m->from]++;
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        for (size_t k = 0; k < e->len; k++)
            if (e->data[k] != (uint8_t)(m->index + k))
                n->bad_data = true;
    }
}

/* An application message: 8 bytes of sequence number, then bytes (uint8_t)(seq + k). */
static void on_app(void *ctx, uint64_t from, const uint8_t *data, size_t len)
{
    struct node *n = ctx;
    uint64_t seq = len >= 8 ? be64_get(data) : 0;
    if (len < 8 || seq != n->app_last_seq + 1)
        n->app_bad = true;
    for (size_t k = 8; k < len; k++)
        if (data[k] != (uint8_t)(seq + k))
            n->app_bad = true;
    n->app_last_seq = seq;
    n->app_at_index = n->last[from];
    n->apps++;
}

static void on_unreachable(void *ctx, uint64_t id)
{
    struct node *n = ctx;
    ck_assert_uint_le(id, MAX_NODE + 5);
    if (id <= MAX_NODE)
        n->unreachable[id]++;
}

static void on_snapshot(void *ctx, const struct raft_msg *m, const char *path)
{
    struct node *n = ctx;
    n->snaps++;
    n->snap_msg = *m;
    n->snap_msg.entries = NULL;
    snprintf(n->snap_path, sizeof(n->snap_path), "%s", path);
}

static void on_snapshot_sent(void *ctx, uint64_t id, bool ok)
{
    struct node *n = ctx;
    (void)id;
    n->snap_sent++;
    n->snap_ok = ok;
}

static void node_init(uint64_t id, uint64_t cluster)
{
    struct node *n = &nodes[id];
    n->id = id;
    n->cluster = cluster;
    n->port = tu_free_port();
    snprintf(n->url, sizeof(n->url), "http://127.0.0.1:%d", n->port);
    n->dir = tu_mkdtemp("peer");
}

static void node_start(uint64_t id)
{
    struct node *n = &nodes[id];
    const char *listen[] = {n->url};
    struct peer_config c = {.id = id,
                            .cluster_id = n->cluster,
                            .listen_urls = listen,
                            .n_listen_urls = 1,
                            .snap_dir = n->dir,
                            .max_queue_bytes = n->max_queue_bytes,
                            .heartbeat_ms = 200,
                            .read_timeout_ms = n->read_timeout_ms ? n->read_timeout_ms : 3000,
                            .write_timeout_ms = n->write_timeout_ms,
                            .connect_timeout_ms = 1000,
                            .on_message = on_message,
                            .on_unreachable = on_unreachable,
                            .on_snapshot = on_snapshot,
                            .on_snapshot_sent = on_snapshot_sent,
                            .on_app = on_app,
                            .ctx = n};
    ck_assert_int_eq(peer_create(base, &c, &n->p), MS_OK);
}

static void node_stop(uint64_t id)
{
    peer_destroy(nodes[id].p);
    nodes[id].p = NULL;
}

static void add(uint64_t at, uint64_t id)
{
    const char *u[] = {nodes[id].url};
    ck_assert_int_eq(peer_add(nodes[at].p, id, u, 1), MS_OK);
}

static struct peer_stats stats(uint64_t at, uint64_t id)
{
    struct peer_stats s;
    ck_assert(peer_stats(nodes[at].p, id, &s));
    return s;
}

static uint64_t ids[MAX_NODE];
static size_t n_ids;

/* Every started node in ids[] has both streams up with every other. */
static bool all_up(void)
{
    for (size_t i = 0; i < n_ids; i++)
        for (size_t j = 0; j < n_ids; j++) {
            struct peer_stats s;
            if (i != j &&
                (!peer_stats(nodes[ids[i]].p, ids[j], &s) || !s.stream_out || !s.stream_in))
                return false;
        }
    return true;
}

static void mesh(size_t n)
{
    n_ids = n;
    for (size_t i = 0; i < n; i++) {
        ids[i] = i + 1;
        node_init(i + 1, CLUSTER);
    }
    for (size_t i = 1; i <= n; i++)
        node_start(i);
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= n; j++)
            if (i != j)
                add(i, j);
    ck_assert_msg(run_until(all_up, 5000), "streams did not come up");
}

static uint64_t next_index[MAX_NODE + 1][MAX_NODE + 1];
static uint8_t entry_data[4096];

/* An append with one entry of len bytes in data: data[k] = index + k, checked by on_message. */
static struct raft_msg app_in(uint64_t from, uint64_t to, uint8_t *data, size_t len,
                              struct raft_entry *e)
{
    uint64_t idx = ++next_index[from][to];
    for (size_t k = 0; k < len; k++)
        data[k] = (uint8_t)(idx + k);
    *e = (struct raft_entry){
        .term = 1, .index = idx, .type = RAFT_ENTRY_NORMAL, .data = data, .len = len};
    return (struct raft_msg){.type = RAFT_MSG_APP,
                             .from = from,
                             .to = to,
                             .term = 1,
                             .index = idx,
                             .n_entries = len ? 1 : 0,
                             .entries = e};
}

static struct raft_msg app(uint64_t from, uint64_t to, size_t len, struct raft_entry *e)
{
    return app_in(from, to, entry_data, len, e);
}

static void send_app(uint64_t from, uint64_t to, size_t len)
{
    struct raft_entry e;
    struct raft_msg m = app(from, to, len, &e);
    peer_send(nodes[from].p, &m, 1);
}

/* ---- order and batching ---- */

#define TURNS    50
#define PER_TURN 40

static bool all_delivered(void)
{
    for (uint64_t i = 1; i <= 3; i++)
        for (uint64_t j = 1; j <= 3; j++)
            if (i != j && nodes[j].got[i] < TURNS * PER_TURN)
                return false;
    return true;
}

START_TEST(t_order)
{
    mesh(3);
    uint64_t writes0[4][4] = {{0}};
    for (uint64_t i = 1; i <= 3; i++)
        for (uint64_t j = 1; j <= 3; j++)
            if (i != j)
                writes0[i][j] = stats(i, j).writes;
    for (int turn = 0; turn < TURNS; turn++) {
        for (uint64_t i = 1; i <= 3; i++)
            for (uint64_t j = 1; j <= 3; j++)
                for (int k = 0; i != j && k < PER_TURN; k++)
                    send_app(i, j, (size_t)(k * 37) % 300);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    ck_assert_msg(run_until(all_delivered, 10000), "not everything arrived");
    for (uint64_t i = 1; i <= 3; i++)
        for (uint64_t j = 1; j <= 3; j++) {
            if (i == j)
                continue;
            ck_assert_uint_eq(nodes[j].got[i], TURNS * PER_TURN);
            ck_assert_uint_eq(nodes[j].last[i], TURNS * PER_TURN);
            struct peer_stats s = stats(i, j);
            ck_assert_uint_eq(s.msgs_sent, TURNS * PER_TURN);
            ck_assert_uint_eq(s.sent_failures, 0);
            /* one write per peer per turn, heartbeats aside */
            uint64_t w = s.writes - writes0[i][j];
            ck_assert_uint_le(w, TURNS + 2);
            ck_assert_uint_ge(w, 1);
            ck_assert_uint_gt(s.sent_bytes, 0);
            ck_assert_uint_eq(stats(j, i).msgs_received, TURNS * PER_TURN);
            ck_assert_uint_gt(stats(j, i).received_bytes, 0);
            ck_assert_uint_gt(s.rtt_us, 0);
        }
    for (uint64_t j = 1; j <= 3; j++) {
        ck_assert(!nodes[j].out_of_order);
        ck_assert(!nodes[j].bad_data);
        ck_assert_uint_eq(
            nodes[j].unreachable[1] + nodes[j].unreachable[2] + nodes[j].unreachable[3], 0);
    }
    /* local types and unknown members are dropped without harm */
    struct raft_msg local = {.type = RAFT_MSG_HUP, .from = 1, .to = 2};
    struct raft_msg stranger = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 77};
    peer_send(nodes[1].p, &local, 1);
    peer_send(nodes[1].p, &stranger, 1);
    run_for(50);
    ck_assert_uint_eq(nodes[2].got[1], TURNS * PER_TURN);
}
END_TEST

/* ---- a peer down, then up: drops, then reconnects ---- */

static bool one_has_out_to_2(void)
{
    return stats(1, 2).stream_out;
}

static bool one_lost_2(void)
{
    return !stats(1, 2).stream_out;
}

static bool two_has_out_to_1(void)
{
    return nodes[2].p && stats(2, 1).stream_out;
}

static bool two_got_5(void)
{
    return nodes[2].got[1] >= 5;
}

static bool one_got_3(void)
{
    return nodes[1].got[2] >= 3;
}

START_TEST(t_down_up)
{
    node_init(1, CLUSTER);
    node_init(2, CLUSTER);
    node_start(1);
    add(1, 2);
    run_for(300); /* 1 dials 2 in vain a few times */
    send_app(1, 2, 10);
    send_app(1, 2, 10);
    run_for(20);
    ck_assert_uint_eq(nodes[1].unreachable[2], 1); /* once per turn */
    struct peer_stats s = stats(1, 2);
    ck_assert_uint_eq(s.sent_failures, 2);
    ck_assert_uint_ge(s.dials, 2);
    ck_assert(!s.stream_in && !s.stream_out);

    node_start(2);
    add(2, 1);
    ck_assert(run_until(one_has_out_to_2, 3000));
    next_index[1][2] = 0;
    for (int i = 0; i < 5; i++)
        send_app(1, 2, 100);
    ck_assert(run_until(two_got_5, 3000));
    /* 1's backoff (at most PEER_DIAL_MAX_MS) brings its dial of 2 up too */
    ck_assert(run_until(two_has_out_to_1, PEER_DIAL_MAX_MS + 2000));
    for (int i = 0; i < 3; i++)
        send_app(2, 1, 0);
    ck_assert(run_until(one_got_3, 3000));

    /* 2 goes away: 1 notices, drops and reports; 2 comes back: delivery resumes */
    node_stop(2);
    ck_assert(run_until(one_lost_2, 3000));
    size_t before = nodes[1].unreachable[2];
    send_app(1, 2, 1);
    run_for(20);
    ck_assert_uint_eq(nodes[1].unreachable[2], before + 1);
    memset(nodes[2].got, 0, sizeof(nodes[2].got));
    memset(nodes[2].last, 0, sizeof(nodes[2].last));
    next_index[1][2] = 0;
    node_start(2);
    add(2, 1);
    ck_assert(run_until(one_has_out_to_2, 3000));
    for (int i = 0; i < 5; i++)
        send_app(1, 2, 100);
    ck_assert(run_until(two_got_5, 3000));
    ck_assert(!nodes[2].out_of_order);
}
END_TEST

/* ---- refusals: another cluster, a removed member ---- */

START_TEST(t_other_cluster)
{
    node_init(1, CLUSTER);
    node_init(2, CLUSTER + 1);
    node_start(1);
    node_start(2);
    add(1, 2);
    add(2, 1);
    run_for(700);
    for (uint64_t i = 1; i <= 2; i++) {
        uint64_t j = 3 - i;
        ck_assert_uint_ge(peer_refused(nodes[i].p), 1); /* the listener refused */
        struct peer_stats s = stats(i, j);
        ck_assert_uint_ge(s.refusals, 1); /* and the dialer was refused */
        ck_assert(!s.stream_in && !s.stream_out);
        send_app(i, j, 5);
    }
    run_for(20);
    for (uint64_t i = 1; i <= 2; i++) {
        ck_assert_uint_eq(nodes[i].unreachable[3 - i], 1);
        ck_assert_uint_eq(nodes[i].got[3 - i], 0);
    }
}
END_TEST

static uint64_t refused_before;

static bool one_refused_3(void)
{
    return peer_refused(nodes[1].p) > refused_before && !stats(3, 1).stream_out &&
           !stats(3, 1).stream_in;
}

START_TEST(t_removed)
{
    mesh(3);
    refused_before = peer_refused(nodes[1].p);
    ck_assert_int_eq(peer_remove(nodes[1].p, 3), MS_OK);
    ck_assert_int_eq(peer_remove(nodes[1].p, 3), MS_E_MEMBER_NOT_FOUND);
    ck_assert(!peer_stats(nodes[1].p, 3, &(struct peer_stats){0}));
    /* 3 redials 1 and is refused with 410 */
    ck_assert(run_until(one_refused_3, 3000));
    send_app(3, 1, 1);
    run_for(20);
    ck_assert_uint_eq(nodes[1].got[3], 0);
    ck_assert_uint_ge(nodes[3].unreachable[1], 1);
    const char *u[] = {nodes[3].url};
    ck_assert_int_eq(peer_add(nodes[1].p, 3, u, 1), MS_E_MEMBER_NOT_FOUND);
    /* the others go on */
    send_app(2, 1, 3);
    send_app(1, 2, 3);
    run_for(50);
    ck_assert_uint_eq(nodes[1].got[2], 1);
    ck_assert_uint_eq(nodes[2].got[1], 1);
}
END_TEST

/* ---- hostile bytes: a fake peer answering garbage, garbage sent to the peer port ---- */

static int fake_lfd = -1;
static struct event *fake_ev;
static const char *fake_answer;
static size_t fake_answer_len;
static int fake_conns[64];
static int n_fake_conns;

static void on_fake_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int c = accept(fd, NULL, NULL);
    if (c < 0)
        return;
    ck_assert_int_lt(n_fake_conns, 64);
    fake_conns[n_fake_conns++] = c;
    /* the answer goes out at once; the request, whenever it comes, is never read */
    tu_send_all(c, fake_answer, fake_answer_len);
}

static void fake_start(int port)
{
    fake_lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fake_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fake_lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(fake_lfd, 16), 0);
    fake_ev = event_new(base, fake_lfd, EV_READ | EV_PERSIST, on_fake_accept, NULL);
    event_add(fake_ev, NULL);
}

static void fake_stop(void)
{
    event_free(fake_ev);
    close(fake_lfd);
    for (int i = 0; i < n_fake_conns; i++)
        close(fake_conns[i]);
    n_fake_conns = 0;
}

static uint64_t refusals_before;

static bool fake_refused(void)
{
    return stats(1, 9).refusals > refusals_before;
}

static bool one_got_2(void)
{
    return nodes[1].got[2] >= 2;
}

/* 1 still hears 2. */
static void two_still_heard(void)
{
    nodes[1].got[2] = 0;
    nodes[1].last[2] = 0;
    next_index[2][1] = 0;
    send_app(2, 1, 7);
    send_app(2, 1, 7);
    ck_assert(run_until(one_got_2, 3000));
}

/* Serve answer to 1's next dial of 9 and wait until 1 drops it. */
static void fake_round(const char *answer, size_t len)
{
    fake_answer = answer;
    fake_answer_len = len;
    refusals_before = stats(1, 9).refusals;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", nodes[3].port);
    const char *u[] = {url};
    ck_assert_int_eq(peer_update(nodes[1].p, 9, u, 1), MS_OK); /* redial at once */
    ck_assert_msg(run_until(fake_refused, 3000), "not refused: %s", answer);
    two_still_heard();
}

#define HEAD_OK                                                                                    \
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Etcd-Cluster-ID: 00000000000000c1\r\n"     \
    "X-Server-From: 0000000000000009\r\n\r\n"

/* A chunk holding a frame header (version, type, length) and payload bytes. */
static size_t frame_answer(char *out, size_t cap, uint8_t ver, uint8_t type, uint32_t len,
                           const uint8_t *payload, size_t n, bool close_after)
{
    size_t k = (size_t)snprintf(out, cap, "%s%zx\r\n", HEAD_OK, PEER_FRAME_HDR + n);
    out[k++] = (char)ver;
    out[k++] = (char)type;
    out[k++] = (char)(len >> 24);
    out[k++] = (char)(len >> 16);
    out[k++] = (char)(len >> 8);
    out[k++] = (char)len;
    memcpy(out + k, payload, n);
    k += n;
    k += (size_t)snprintf(out + k, cap - k, "\r\n%s", close_after ? "0\r\n\r\n" : "");
    return k;
}

static int raw_fd = -1;
static char raw_in[8192];
static size_t raw_len;

/* The raw connection was closed, or answered 4xx. */
static bool raw_refused(void)
{
    for (;;) {
        ssize_t k = read(raw_fd, raw_in + raw_len, sizeof(raw_in) - 1 - raw_len);
        if (k > 0) {
            raw_len += (size_t)k;
            raw_in[raw_len] = '\0';
            if (strncmp(raw_in, "HTTP/1.1 4", 10) == 0)
                return true;
            continue;
        }
        return k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
}

START_TEST(t_garbage)
{
    node_init(1, CLUSTER);
    node_init(2, CLUSTER);
    node_init(3, CLUSTER); /* only its port: the fake peer 9 listens there */
    node_start(1);
    node_start(2);
    add(1, 2);
    add(2, 1);
    n_ids = 2;
    ids[0] = 1;
    ids[1] = 2;
    ck_assert(run_until(all_up, 5000));
    fake_start(nodes[3].port);
    const char *u[] = {"http://127.0.0.1:1"};
    ck_assert_int_eq(peer_add(nodes[1].p, 9, u, 1), MS_OK);

    char a[8192];
    uint8_t pay[64] = {0};
    /* the wrong cluster in the answer */
    const char wrong[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         "X-Etcd-Cluster-ID: 00000000000000c2\r\n"
                         "X-Server-From: 0000000000000009\r\n\r\n";
    fake_round(wrong, strlen(wrong));
    /* another member answering */
    const char other[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         "X-Etcd-Cluster-ID: 00000000000000c1\r\n"
                         "X-Server-From: 0000000000000008\r\n\r\n";
    fake_round(other, strlen(other));
    /* a bad version, an unknown type, an oversized length, an empty message */
    fake_round(a, frame_answer(a, sizeof(a), 7, PEER_FRAME_MSG, 4, pay, 4, false));
    fake_round(a, frame_answer(a, sizeof(a), 1, 99, 4, pay, 4, false));
    fake_round(a, frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, 0x7fffffff, pay, 4, false));
    fake_round(a, frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, 0, pay, 0, false));
    /* a payload that is no message */
    fake_round(a, frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, 8, pay, 8, false));
    /* a truncated frame, then the end */
    fake_round(a, frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, 40, pay, 10, true));
    /* data before any snapshot began */
    fake_round(a, frame_answer(a, sizeof(a), 1, PEER_FRAME_SNAP_DATA, 4, pay, 4, false));
    /* a valid message, but from 8 rather than 9, and another to 5 rather than 1 */
    struct buf b;
    buf_init(&b);
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 8, .to = 1, .term = 1};
    ck_assert_int_eq(raft_msg_encode(&m, &b), MS_OK);
    fake_round(a,
               frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, (uint32_t)b.len, b.p, b.len, false));
    b.len = 0;
    m.from = 9;
    m.to = 5;
    ck_assert_int_eq(raft_msg_encode(&m, &b), MS_OK);
    fake_round(a,
               frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, (uint32_t)b.len, b.p, b.len, false));
    /* a MsgSnap as a plain message */
    b.len = 0;
    m = (struct raft_msg){.type = RAFT_MSG_SNAP, .from = 9, .to = 1, .term = 1};
    m.snap.index = 5;
    m.snap.term = 1;
    ck_assert_int_eq(raft_msg_encode(&m, &b), MS_OK);
    fake_round(a,
               frame_answer(a, sizeof(a), 1, PEER_FRAME_MSG, (uint32_t)b.len, b.p, b.len, false));
    buf_fini(&b);
    fake_stop();

    /* garbage on 1's peer port: 400 and closed; other paths and methods: 404 */
    const char *bad[] = {"GARBAGE\r\n\r\n", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                         "POST /raft/stream/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
                         "GET /raft/stream/zz HTTP/1.1\r\nHost: x\r\n\r\n"};
    uint64_t refused0 = peer_refused(nodes[1].p);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_fd = tu_connect(nodes[1].port);
        tu_send_all(raw_fd, bad[i], strlen(bad[i]));
        fcntl(raw_fd, F_SETFL, O_NONBLOCK);
        raw_len = 0;
        ck_assert_msg(run_until(raw_refused, 3000), "not refused: %s", bad[i]);
        close(raw_fd);
    }
    ck_assert_uint_ge(peer_refused(nodes[1].p), refused0 + 3);
    two_still_heard();
}
END_TEST

/* ---- a dead link: a peer that accepts the stream, then says nothing ---- */

static bool one_redialed_9(void)
{
    return stats(1, 9).dials >= 2;
}

static bool one_has_9(void)
{
    return stats(1, 9).stream_in;
}

START_TEST(t_silent)
{
    node_init(1, CLUSTER);
    node_init(3, CLUSTER); /* only its port: the fake peer 9 listens there */
    nodes[1].read_timeout_ms = 600;
    node_start(1);
    fake_start(nodes[3].port);
    fake_answer = HEAD_OK;
    fake_answer_len = strlen(HEAD_OK);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", nodes[3].port);
    const char *u[] = {url};
    ck_assert_int_eq(peer_add(nodes[1].p, 9, u, 1), MS_OK);
    ck_assert(run_until(one_has_9, 3000));
    int64_t t0 = tu_now_ms();
    ck_assert(run_until(one_redialed_9, 5000));
    int64_t waited = tu_now_ms() - t0;
    ck_assert_int_ge(waited, 500); /* not before the read timeout */
    ck_assert_uint_eq(stats(1, 9).refusals, 0);
    fake_stop();
}
END_TEST

/* ---- a peer that stops reading ---- */

#define STALL_LIMIT (256u << 10)

static bool one_has_out_to_2_only(void)
{
    return stats(1, 2).stream_out;
}

START_TEST(t_stalled)
{
    node_init(1, CLUSTER);
    node_init(2, CLUSTER);
    nodes[1].max_queue_bytes = STALL_LIMIT;
    nodes[1].write_timeout_ms = 60000;
    node_start(1);
    add(1, 2);
    /* 2 is a raw socket: it dials 1 as a peer would, then never reads */
    int fd = tu_connect(nodes[1].port);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    const char req[] = "GET /raft/stream/0000000000000002 HTTP/1.1\r\nHost: x\r\n"
                       "X-Etcd-Cluster-ID: c1\r\nX-Server-From: 2\r\nX-Raft-To: 1\r\n"
                       "X-Peer-Version: 1\r\n\r\n";
    tu_send_all(fd, req, strlen(req));
    ck_assert(run_until(one_has_out_to_2_only, 3000));
    size_t sent = 0;
    for (int turn = 0; turn < 400; turn++) {
        for (int k = 0; k < 20; k++, sent++)
            send_app(1, 2, 4000);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ck_assert_uint_le(stats(1, 2).queue_bytes, STALL_LIMIT);
    }
    run_for(50);
    struct peer_stats s = stats(1, 2);
    ck_assert_uint_le(s.queue_bytes_max, STALL_LIMIT);
    ck_assert_uint_gt(s.queue_bytes_max, STALL_LIMIT / 2);
    ck_assert_uint_gt(s.sent_failures, 0);
    ck_assert_uint_eq(s.msgs_sent + s.sent_failures, sent);
    ck_assert_uint_gt(nodes[1].unreachable[2], 0);
    ck_assert_uint_le(nodes[1].unreachable[2], 400); /* at most once per turn */
    printf("stalled peer: %zu messages, %" PRIu64 " sent, %" PRIu64
           " dropped, queue at most %zu bytes (limit %u)\n",
           sent, s.msgs_sent, s.sent_failures, s.queue_bytes_max, STALL_LIMIT);
    close(fd);
}
END_TEST

/* A message larger than the queue's bound goes when nothing waits before it (a MsgApp carries
 * at least one entry, and an entry may exceed the bound); one that would queue behind it is
 * dropped, so what waits stays within the bound plus that one message. */
static void send_big(uint8_t *data, size_t len)
{
    struct raft_entry e;
    struct raft_msg m = app_in(1, 2, data, len, &e);
    peer_send(nodes[1].p, &m, 1);
}

static bool got_three(void)
{
    return nodes[2].got[1] >= 3;
}

static bool got_one(void)
{
    return nodes[2].got[1] >= 1;
}

START_TEST(t_big_entry)
{
    n_ids = 2;
    for (size_t i = 0; i < 2; i++) {
        ids[i] = i + 1;
        node_init(i + 1, CLUSTER);
    }
    nodes[1].max_queue_bytes = STALL_LIMIT;
    node_start(1);
    node_start(2);
    add(1, 2);
    add(2, 1);
    ck_assert_msg(run_until(all_up, 5000), "streams did not come up");
    size_t len = 3 * STALL_LIMIT;
    uint8_t *data = malloc(len);
    ck_assert_ptr_nonnull(data);
    send_big(data, len); /* alone: goes */
    send_app(1, 2, 100); /* behind it, over the bound: dropped */
    ck_assert_uint_eq(stats(1, 2).sent_failures, 1);
    next_index[1][2]--; /* the dropped one's index is sent again */
    ck_assert(run_until(got_one, 5000));
    run_for(50); /* the big one's bytes leave the connection */
    send_app(1, 2, 100);
    run_for(50);
    send_big(data, len); /* alone again */
    ck_assert(run_until(got_three, 5000));
    ck_assert(!nodes[2].out_of_order);
    ck_assert(!nodes[2].bad_data);
    ck_assert_uint_eq(stats(1, 2).sent_failures, 1);
    ck_assert_uint_gt(nodes[1].unreachable[2], 0);
    free(data);
}
END_TEST

static size_t dir_files(const char *dir);

/* A snapshot received in part or whole by an earlier run is removed when the transport starts:
 * each is a whole copy of a store, and none is of use. Other files stay. */
START_TEST(t_leftovers)
{
    node_init(1, CLUSTER);
    const char *names[] = {"0000000000000002-00000000000004d2.part",
                           "0000000000000002-0000000000000005-00000000000004d2.snap", "keep.txt"};
    for (size_t i = 0; i < 3; i++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", nodes[1].dir, names[i]);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "x", 1), 1);
        close(fd);
    }
    node_start(1);
    ck_assert_uint_eq(dir_files(nodes[1].dir), 1);
    char keep[600];
    snprintf(keep, sizeof(keep), "%s/keep.txt", nodes[1].dir);
    ck_assert_int_eq(access(keep, F_OK), 0);
}
END_TEST

/* ---- snapshots ---- */

#define SNAP_BYTES ((8u << 20) + 12345)

struct source {
    uint64_t off;
    uint64_t fail_at; /* 0: never */
    size_t reads;
    size_t closes;
};

static uint8_t snap_byte(uint64_t i)
{
    uint64_t x = i * 0x9e3779b97f4a7c15ull;
    return (uint8_t)(x >> 56);
}

static long src_read(void *ctx, void *buf, size_t cap)
{
    struct source *s = ctx;
    s->reads++;
    if (s->fail_at && s->off >= s->fail_at)
        return -1;
    size_t n = SNAP_BYTES - s->off < cap ? SNAP_BYTES - s->off : cap;
    if (n > 50000)
        n = 50000; /* pieces need not be full */
    uint8_t *p = buf;
    for (size_t i = 0; i < n; i++)
        p[i] = snap_byte(s->off + i);
    s->off += n;
    return (long)n;
}

static void src_close(void *ctx)
{
    struct source *s = ctx;
    s->closes++;
}

static struct raft_msg snap_msg(void)
{
    struct raft_msg m = {.type = RAFT_MSG_SNAP, .from = 1, .to = 2, .term = 5};
    m.snap.index = 1234;
    m.snap.term = 5;
    m.snap.conf.n_voters = 2;
    m.snap.conf.voters[0] = 1;
    m.snap.conf.voters[1] = 2;
    return m;
}

static bool snap_done(void)
{
    return nodes[1].snap_sent > 0 && (nodes[2].snaps > 0 || !nodes[1].snap_ok);
}

static size_t dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

START_TEST(t_snapshot)
{
    n_ids = 2;
    mesh(2);
    struct source src = {0};
    struct peer_snap_source ps = {src_read, src_close, &src};
    struct raft_msg m = snap_msg();
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_OK);
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_E_TOO_MANY_REQUESTS);
    /* messages keep flowing beside it */
    for (int i = 0; i < 10; i++)
        send_app(1, 2, 100);
    ck_assert(run_until(snap_done, 20000));
    ck_assert(nodes[1].snap_ok);
    ck_assert_uint_eq(src.closes, 1);
    ck_assert_uint_eq(nodes[2].got[1], 10);
    ck_assert_uint_eq(nodes[2].snaps, 1);
    ck_assert_uint_eq(nodes[2].snap_msg.snap.index, 1234);
    ck_assert_uint_eq(nodes[2].snap_msg.snap.term, 5);
    ck_assert_uint_eq(nodes[2].snap_msg.snap.conf.n_voters, 2);
    ck_assert_uint_eq(nodes[2].snap_msg.from, 1);
    FILE *f = fopen(nodes[2].snap_path, "rb");
    ck_assert_ptr_nonnull(f);
    uint64_t i = 0;
    int c;
    bool same = true;
    while ((c = fgetc(f)) != EOF)
        same &= (uint8_t)c == snap_byte(i++);
    fclose(f);
    ck_assert(same);
    ck_assert_uint_eq(i, SNAP_BYTES);
    struct peer_stats s = stats(1, 2);
    ck_assert_uint_le(s.queue_bytes_max, PEER_SNAP_LOW_BYTES + PEER_SNAP_PIECE + 4096);
    ck_assert_uint_ge(s.sent_bytes, SNAP_BYTES);
    printf("snapshot: %u bytes in %zu pulls, sender's queue at most %zu bytes\n", SNAP_BYTES,
           src.reads, s.queue_bytes_max);
    unlink(nodes[2].snap_path);
    ck_assert_uint_eq(dir_files(nodes[2].dir), 0);

    /* the source fails half-way: no file, failure reported */
    struct source bad = {.fail_at = 1u << 20};
    ps.ctx = &bad;
    nodes[1].snap_sent = 0;
    nodes[2].snaps = 0;
    m.snap.index = 2000;
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_OK);
    ck_assert(run_until(snap_done, 20000));
    ck_assert(!nodes[1].snap_ok);
    ck_assert_uint_eq(bad.closes, 1);
    run_for(100);
    ck_assert_uint_eq(nodes[2].snaps, 0);
    ck_assert_uint_eq(dir_files(nodes[2].dir), 0);

    /* a MsgSnap through peer_send is refused as a failed snapshot */
    nodes[1].snap_sent = 0;
    peer_send(nodes[1].p, &m, 1);
    run_for(20);
    ck_assert_uint_eq(nodes[1].snap_sent, 1);
    ck_assert(!nodes[1].snap_ok);
}
END_TEST

static struct source *cut_src;

static bool cut_half_way(void)
{
    return cut_src->off >= (2u << 20);
}

static bool two_lost_1(void)
{
    return !stats(2, 1).stream_in;
}

START_TEST(t_snapshot_cut)
{
    mesh(2);
    struct source src = {0};
    cut_src = &src;
    struct peer_snap_source ps = {src_read, src_close, &src};
    struct raft_msg m = snap_msg();
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_OK);
    ck_assert(run_until(cut_half_way, 10000));
    /* the sender goes away mid-way: its source is closed, the receiver keeps nothing */
    node_stop(1);
    ck_assert_uint_eq(src.closes, 1);
    ck_assert(run_until(two_lost_1, 5000));
    ck_assert_uint_eq(nodes[2].snaps, 0);
    ck_assert_uint_eq(dir_files(nodes[2].dir), 0);

    /* the receiver goes away mid-way: the sender reports failure */
    node_start(1);
    add(1, 2);
    ck_assert(run_until(all_up, 5000));
    struct source src2 = {0};
    cut_src = &src2;
    ps.ctx = &src2;
    nodes[1].snap_sent = 0;
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_OK);
    ck_assert(run_until(cut_half_way, 10000));
    node_stop(2);
    ck_assert(run_until(snap_done, 5000));
    ck_assert(!nodes[1].snap_ok);
    ck_assert_uint_eq(src2.closes, 1);
}
END_TEST

/* ---- API edges ---- */

START_TEST(t_api)
{
    node_init(1, CLUSTER);
    node_start(1);
    const char *bad_urls[][1] = {{"https://127.0.0.1:1"},
                                 {"http://localhost"},
                                 {"http://127.0.0.1:0"},
                                 {"http://127.0.0.1:5/x"}};
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(peer_add(nodes[1].p, 2, bad_urls[i], 1), MS_E_MEMBER_BAD_URLS);
    const char *ok[] = {"http://127.0.0.1:1", "http://[::1]:2"};
    ck_assert_int_eq(peer_add(nodes[1].p, 1, ok, 1), MS_E_BAD_REQUEST);
    ck_assert_int_eq(peer_add(nodes[1].p, 0, ok, 1), MS_E_BAD_REQUEST);
    ck_assert_int_eq(peer_add(nodes[1].p, 2, ok, 2), MS_OK);
    ck_assert_int_eq(peer_add(nodes[1].p, 2, ok, 2), MS_E_MEMBER_EXISTS);
    ck_assert_int_eq(peer_update(nodes[1].p, 3, ok, 1), MS_E_MEMBER_NOT_FOUND);
    ck_assert_int_eq(peer_update(nodes[1].p, 2, ok, 1), MS_OK);
    struct raft_msg m = snap_msg();
    struct peer_snap_source ps = {src_read, src_close, NULL};
    m.to = 3;
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_E_MEMBER_NOT_FOUND);
    m.type = RAFT_MSG_APP;
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_E_BAD_REQUEST);
    /* a snapshot for a peer whose stream is down fails from the loop, not at once */
    struct source src = {0};
    ps.ctx = &src;
    m = snap_msg();
    ck_assert_int_eq(peer_send_snapshot(nodes[1].p, &m, &ps), MS_OK);
    ck_assert_uint_eq(nodes[1].snap_sent, 0);
    run_for(20);
    ck_assert_uint_eq(nodes[1].snap_sent, 1);
    ck_assert(!nodes[1].snap_ok);
    ck_assert_uint_eq(src.closes, 1);
    /* the same port twice cannot be listened on */
    const char *listen[] = {nodes[1].url};
    struct peer_config c = {.id = 5,
                            .cluster_id = 1,
                            .listen_urls = listen,
                            .n_listen_urls = 1,
                            .snap_dir = nodes[1].dir,
                            .on_message = on_message};
    struct peer *p2 = NULL;
    ck_assert_int_eq(peer_create(base, &c, &p2), MS_E_IO);
    c.cluster_id = 0;
    ck_assert_int_eq(peer_create(base, &c, &p2), MS_E_BAD_REQUEST);
    ck_assert_int_eq(peer_remove(nodes[1].p, 2), MS_OK);
    run_for(10);
}
END_TEST

/* ---- frames ---- */

static bool apps_arrived(void)
{
    return nodes[2].apps == 100;
}

/* Application messages travel in order with the Raft messages on the same stream. */
START_TEST(t_app)
{
    mesh(2);
    uint8_t buf[PEER_APP_MAX];
    for (uint64_t seq = 1; seq <= 100; seq++) {
        send_app(1, 2, 10);
        size_t len = 8 + (size_t)(seq * 41) % (PEER_APP_MAX - 8);
        be64_put(buf, seq);
        for (size_t k = 8; k < len; k++)
            buf[k] = (uint8_t)(seq + k);
        ck_assert_int_eq(peer_send_app(nodes[1].p, 2, buf, len), MS_OK);
        if (seq % 10 == 0)
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    ck_assert_msg(run_until(apps_arrived, 10000), "%zu arrived", nodes[2].apps);
    ck_assert(!nodes[2].app_bad);
    ck_assert_uint_eq(nodes[2].app_at_index, 100); /* after the 100th append, in order */
    ck_assert_int_eq(peer_send_app(nodes[1].p, 2, buf, 0), MS_E_BAD_REQUEST);
    ck_assert_int_eq(peer_send_app(nodes[1].p, 2, buf, PEER_APP_MAX + 1), MS_E_BAD_REQUEST);
    ck_assert_int_eq(peer_send_app(nodes[1].p, 9, buf, 8), MS_E_MEMBER_NOT_FOUND);
    /* A frame over PEER_APP_MAX is a bad stream, like any oversized frame. */
    uint8_t f[PEER_FRAME_HDR];
    struct peer_frame fr;
    size_t used;
    peer_frame_header(f, PEER_FRAME_APP, 0);
    ck_assert_int_eq(peer_frame_parse(f, sizeof(f), 1 << 20, &fr, &used), PEER_PARSE_BAD);
}
END_TEST

START_TEST(t_frame)
{
    uint8_t f[64];
    peer_frame_header(f, PEER_FRAME_SNAP_END, PEER_SNAP_END_BYTES);
    be64_put(f + PEER_FRAME_HDR, 77);
    be32_put(f + PEER_FRAME_HDR + 8, 0xabcdef01u);
    size_t whole = PEER_FRAME_HDR + PEER_SNAP_END_BYTES;
    struct peer_frame fr;
    size_t used;
    for (size_t n = 0; n < whole; n++)
        ck_assert_int_eq(peer_frame_parse(f, n, 1024, &fr, &used), PEER_PARSE_MORE);
    ck_assert_int_eq(peer_frame_parse(f, whole, 1024, &fr, &used), PEER_PARSE_OK);
    ck_assert_uint_eq(used, whole);
    uint64_t size;
    uint32_t crc;
    ck_assert_int_eq(peer_frame_snap_end(&fr, &size, &crc), MS_OK);
    ck_assert_uint_eq(size, 77);
    ck_assert_uint_eq(crc, 0xabcdef01u);
    /* a length over the cap is refused from the header alone */
    peer_frame_header(f, PEER_FRAME_MSG, 2000);
    ck_assert_int_eq(peer_frame_parse(f, PEER_FRAME_HDR, 1024, &fr, &used), PEER_PARSE_BAD);
    f[0] = 2;
    ck_assert_int_eq(peer_frame_parse(f, 1, 1024, &fr, &used), PEER_PARSE_BAD);
    peer_frame_header(f, PEER_FRAME_HEARTBEAT, 1);
    ck_assert_int_eq(peer_frame_parse(f, PEER_FRAME_HDR, 1024, &fr, &used), PEER_PARSE_BAD);
}
END_TEST

static Suite *peer_suite(void)
{
    Suite *s = suite_create("peer");
    struct {
        const char *name;
        const TTest *t;
    } cases[] = {{"frame", t_frame},
                 {"app", t_app},
                 {"api", t_api},
                 {"order", t_order},
                 {"down_up", t_down_up},
                 {"other_cluster", t_other_cluster},
                 {"removed", t_removed},
                 {"garbage", t_garbage},
                 {"silent", t_silent},
                 {"stalled", t_stalled},
                 {"snapshot", t_snapshot},
                 {"snapshot_cut", t_snapshot_cut},
                 {"big_entry", t_big_entry},
                 {"leftovers", t_leftovers}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, cases[i].t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tu_run_suite(peer_suite());
}
