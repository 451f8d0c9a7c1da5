/* peer_int.h - the transport's state, shared by its files: peer.c (members, the listener and
 * the streams we send on, queues, snapshots out, news) and peer_dial.c (the streams we dial
 * and receive on, snapshots in). peer_frame.c is pure and needs none of it.
 */
#ifndef METASTORE_PEER_INT_H
#define METASTORE_PEER_INT_H

#include "metastore/buf.h"
#include "metastore/peer.h"

#include <event2/event.h>

struct http_client;
struct http_request;
struct http_server;

struct peer_url {
    char host[64]; /* numeric IPv4 or IPv6, without brackets */
    uint16_t port;
    bool https; /* dialed or served with TLS */
};

/* A snapshot we send: BEGIN (the MsgSnap not queued yet) → DATA (pulling pieces) → FLUSHING
 * (the end frame queued, waiting for the socket to take it) → DONE (the result waits to be
 * reported from the loop) → NONE. */
enum snap_out_state {
    SNAP_OUT_NONE,
    SNAP_OUT_BEGIN,
    SNAP_OUT_DATA,
    SNAP_OUT_FLUSHING,
    SNAP_OUT_DONE,
};

struct snap_out {
    enum snap_out_state state;
    struct peer_snap_source src;
    struct buf msg; /* the MsgSnap's encoding */
    uint64_t size;  /* data bytes pulled so far */
    uint32_t crc;   /* their CRC32C */
    bool ok;        /* DONE: the result */
};

/* A snapshot we receive: open while fd >= 0. */
struct snap_in {
    int fd;
    char *part;          /* the temporary file's path */
    uint8_t *msg_bytes;  /* the SNAP_BEGIN payload, which msg's fields borrow */
    struct raft_msg msg; /* the MsgSnap */
    uint64_t size;
    uint32_t crc;
};

/* Our dial of a member: WAIT (the redial timer runs, or nothing to do) → ASKING (connected or
 * connecting, the request sent, no answer yet) → UP (the stream is accepted and read). */
enum dial_state {
    DIAL_WAIT,
    DIAL_ASKING,
    DIAL_UP,
};

struct peer_member {
    struct peer *t;
    uint64_t id;
    char hex[17];
    struct peer_url urls[PEER_MAX_URLS];
    size_t n_urls;
    size_t url_next; /* the URL the next dial tries */
    bool dead;       /* removed: freed from the flush event (never inside a callback) */
    struct peer_member *next_dead;

    /* sending: the stream this member opened to us */
    struct http_request *out;
    struct buf q; /* frames queued this turn */
    size_t q_msgs;
    uint64_t out_last_ms; /* when a frame was last handed to the stream */
    uint64_t out_up_ms;   /* when the stream was accepted */
    bool unreachable;     /* a message was dropped: report it from the loop */
    size_t snap_refused;  /* MsgSnaps given to peer_send: report each as failed */
    struct snap_out snap;

    /* receiving: the stream we dial */
    struct http_client *dial;
    enum dial_state dial_state;
    struct event *redial_ev;
    uint32_t backoff_ms;
    uint32_t dial_fails; /* failed dials since the stream was last up */
    uint64_t asked_us;   /* when the request went out (RTT) */
    uint64_t up_ms;      /* when the stream was accepted */
    struct buf in;       /* a frame's bytes not yet complete */
    struct snap_in rsnap;

    struct peer_stats st;
};

struct peer {
    struct event_base *base;
    struct peer_config cfg; /* listen_urls cleared; snap_dir points to snap_dir below */
    char *snap_dir;
    struct http_server *srv;
    struct peer_member **members;
    size_t n_members;
    size_t cap_members;
    uint64_t *removed;
    size_t n_removed;
    size_t cap_removed;
    struct peer_member *dead;
    struct event *flush_ev;
    bool flush_pending;
    struct event *beat_ev;
    uint8_t *piece; /* PEER_SNAP_PIECE bytes for pulling a snapshot */
    uint64_t refused;
    char hex_self[17];
    char hex_cluster[17];
};

#define PEER_MEMBERS_PATH "/members"

/* peer.c */
struct peer_member *peer_member_find(const struct peer *t, uint64_t id);
/* "http://host:port" or "https://host:port" with a numeric host ("[v6]" for IPv6), nothing
 * after the port but an optional "/". */
bool peer_url_parse(const char *s, struct peer_url *out);
void peer_wake(struct peer *t);
/* 16 lowercase hex digits and a NUL. */
void peer_hex(uint64_t v, char out[17]);
/* Strict hex: 1 to 16 digits, nothing else. */
bool peer_hex_parse(const char *s, size_t len, uint64_t *out);

/* peer_dial.c */
/* Set up m's dial state and dial after delay_ms. false on OOM. */
bool peer_dial_init(struct peer_member *m);
void peer_dial_arm(struct peer_member *m, uint32_t delay_ms);
/* Close the dialed stream (no callback runs) and drop a snapshot half received. */
void peer_dial_stop(struct peer_member *m);
/* peer_dial_stop, then free the timer and the buffers. */
void peer_dial_fini(struct peer_member *m);

#endif
