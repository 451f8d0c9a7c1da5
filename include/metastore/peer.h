/* peer.h - the Raft message transport between cluster members, over HTTP/1.1 on the peer URL
 * (src/http), modeled on etcd's rafthttp stream. Layer L2: it knows raft's messages and codec,
 * http and util; the server owns it and hears from it through the callbacks below.
 *
 * Streams. Every member dials every peer it knows: "GET /raft/stream/<its own ID in hex>" with
 * the headers X-Etcd-Cluster-ID, X-Server-From (the dialer), X-Raft-To (the member dialed) and
 * X-Peer-Version (PEER_FRAME_VERSION). The member dialed checks them and keeps the response
 * open, chunked and endless: it is *its* outbound stream to the dialer. So each pair of members
 * has two long-lived connections, one per direction, each carrying frames from the listening
 * side to the dialing side; a member sends to a peer only over the stream that peer opened, and
 * receives on the streams it opened itself (etcd's receiver-dialed streams, rafthttp/stream.go).
 * The dialer redials with backoff (PEER_DIAL_MIN_MS doubling to PEER_DIAL_MAX_MS, back to the
 * minimum once a stream stayed up PEER_HEALTHY_MS). The listening side sends a heartbeat frame
 * when a stream was silent for heartbeat_ms, and the dialer drops a stream silent for
 * read_timeout_ms, so a dead link is noticed both ways.
 *
 * Refusals. The cluster ID is checked on every connection, by both sides: the listener answers
 * a dialer of another cluster 412, a member it does not know 404, a removed member 410, a
 * dialer that names another member as X-Raft-To 412, another transport version 400; the dialer
 * drops a response whose X-Etcd-Cluster-ID or X-Server-From is not what it expects. Each
 * refusal is logged with both IDs. The peer port serves nothing else (404).
 *
 * Frames (peer_frame_*): version (1 byte), type (1), payload length (4, big-endian), payload.
 * A message frame carries one raft_msg_encode'd message. A snapshot is a SNAP_BEGIN frame (the
 * MsgSnap), SNAP_DATA frames of at most PEER_SNAP_PIECE bytes, and SNAP_END (total size and
 * CRC32C of the data) or SNAP_ABORT. The dialer's decoder is strict: another version, an unknown
 * type, a length over max_frame_bytes, a message that raft_msg_decode refuses, a local message
 * type, a message whose from is not the stream's peer or whose to is not this member, or a
 * snapshot frame out of order closes the connection (logged); the transport goes on serving the
 * others and redials.
 *
 * Queues. peer_send encodes each message into its destination's queue at once. Everything
 * queued in one loop turn is written with one write per peer, from a zero-delay event (or
 * peer_flush). A queue is bounded by max_queue_msgs messages not yet handed to the connection
 * and max_queue_bytes bytes not yet written to the socket (queued plus the connection's unsent
 * output); a message over a bound, or for a peer whose stream is down, is dropped, counted as a
 * send failure, and on_unreachable reports the peer (Raft tolerates loss: etcd does the same).
 * A message that finds the queue and the connection's output empty goes whatever its size (up
 * to max_frame_bytes): a MsgApp carries at least one entry, which may exceed max_queue_bytes.
 *
 * Snapshots. peer_send_snapshot pulls the state machine's bytes from a source a piece at a time,
 * only while the stream's unsent output is below PEER_SNAP_LOW_BYTES, so a snapshot of any size
 * holds at most about that much memory and a loop turn at most PEER_SNAP_PIECES_PER_TURN pieces.
 * Its frames interleave with ordinary messages on the same stream. The receiver writes the data
 * to "<snap_dir>/<from>-<index>.part", then fsyncs, renames it to "<from>-<term>-<index>.snap"
 * (16 hex digits each), syncs the directory and calls on_snapshot; a snapshot cut off (an abort
 * frame, a short or corrupt end, the connection lost, a write error) leaves no file behind.
 *
 * Callbacks run from the loop, never nested in a peer_* call of the owner's. Inside them the
 * owner may call peer_send, peer_send_snapshot, peer_add, peer_update and peer_remove (also for
 * the member the news is about), but not peer_destroy.
 */
#ifndef METASTORE_PEER_H
#define METASTORE_PEER_H

#include "metastore/buf.h"
#include "metastore/err.h"
#include "metastore/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct peer;
struct tls_ctx;

#define PEER_FRAME_VERSION        1
#define PEER_FRAME_HDR            6            /* version, type, be32 length */
#define PEER_SNAP_PIECE           (64u << 10)  /* data bytes per SNAP_DATA frame */
#define PEER_SNAP_LOW_BYTES       (256u << 10) /* pull more while unsent is below */
#define PEER_SNAP_PIECES_PER_TURN 16           /* pieces pulled per loop turn, most */
#define PEER_DIAL_MIN_MS          100          /* first redial delay */
#define PEER_DIAL_MAX_MS          2000         /* the delay doubles up to this */
#define PEER_HEALTHY_MS           10000        /* a stream up this long resets it */
#define PEER_MAX_URLS             8            /* peer URLs per member */
#define PEER_STREAM_PATH          "/raft/stream/"

/* A received message from a known peer, checked (from is the peer, to is us). Borrowed for the
 * call only. */
typedef void (*peer_message_fn)(void *ctx, const struct raft_msg *m);
/* An application message from a known peer (peer_send_app): borrowed for the call. */
typedef void (*peer_app_fn)(void *ctx, uint64_t from, const uint8_t *data, size_t len);
/* A message to peer id was dropped (queue full, stream down): raft_report_unreachable. Called
 * at most once per peer per loop turn, however many were dropped. */
typedef void (*peer_unreachable_fn)(void *ctx, uint64_t id);
/* A snapshot from snap_msg->from arrived whole in the file at path (fsynced, directory synced).
 * snap_msg (a MsgSnap) and path are borrowed for the call; the file is the owner's from now on
 * (to step snap_msg into the core and restore from, or to delete). */
typedef void (*peer_snapshot_fn)(void *ctx, const struct raft_msg *snap_msg, const char *path);
/* The snapshot given to peer_send_snapshot for peer id ended: ok when every byte including the
 * end frame was written to the socket, false otherwise (raft_report_snapshot). */
typedef void (*peer_snapshot_sent_fn)(void *ctx, uint64_t id, bool ok);

/* A member dialed told us that we were removed from the cluster (410): we must stop. */
typedef void (*peer_removed_fn)(void *ctx, uint64_t by);
/* GET /members on the peer port (a member joining the cluster asks for them): append the
 * members' list to out (peer_fetch_members's body). */
typedef void (*peer_members_fn)(void *ctx, struct buf *out);

/* The state machine's bytes for one snapshot, pulled a piece at a time from the loop. */
struct peer_snap_source {
    /* Copy the next at most cap bytes into buf. Returns the count (> 0), 0 at the end, or
     * -1 on an error (the snapshot is aborted). Must not call back into the transport. */
    long (*read)(void *ctx, void *buf, size_t cap);
    /* The transport is done with the source (sent, failed or dropped): called exactly once,
     * from the loop or from peer_remove / peer_destroy; may be NULL. */
    void (*close)(void *ctx);
    void *ctx;
};

struct peer_config {
    uint64_t id;         /* this member, != 0 */
    uint64_t cluster_id; /* != 0 */
    /* --listen-peer-urls: "http://host:port" or "https://host:port" with a numeric IPv4 or
     * [IPv6] host. Copied. */
    const char *const *listen_urls;
    size_t n_listen_urls;
    struct tls_ctx *tls_server;  /* serves the https listen URLs (borrowed; outlives the peer) */
    struct tls_ctx *tls_client;  /* dials members' https URLs (borrowed; outlives the peer) */
    const char *snap_dir;        /* received snapshots go here (created if missing; files an
                                  * earlier run left there are removed); copied */
    size_t max_queue_bytes;      /* per peer; 0: 50 MiB (etcd's) */
    size_t max_queue_msgs;       /* per peer; 0: 4096 (etcd's streamBufSize) */
    size_t max_frame_bytes;      /* 0 or above: RAFT_CODEC_MAX_MSG_BYTES */
    uint32_t heartbeat_ms;       /* 0: 1000 */
    uint32_t read_timeout_ms;    /* 0: 5000 (etcd's ConnReadTimeout) */
    uint32_t write_timeout_ms;   /* unsent output making no progress this long; 0: 5000 */
    uint32_t connect_timeout_ms; /* 0: 1000 */
    peer_message_fn on_message;
    peer_unreachable_fn on_unreachable;     /* may be NULL */
    peer_snapshot_fn on_snapshot;           /* may be NULL: snapshots are refused */
    peer_snapshot_sent_fn on_snapshot_sent; /* may be NULL */
    peer_app_fn on_app;                     /* may be NULL: application frames are dropped */
    peer_removed_fn on_removed;             /* may be NULL */
    peer_members_fn members;                /* may be NULL: GET /members is 404 */
    void *ctx;                              /* the callbacks' first argument */
};

/* Create the transport and listen on every listen URL.
 * @param[in] cfg  copied.
 * @param[out] out the transport, owned by the caller (peer_destroy).
 * @return MS_OK; MS_E_BAD_REQUEST for an invalid config or URL; MS_E_IO if a URL cannot be
 * listened on or snap_dir cannot be made; MS_E_NOMEM. */
ms_err peer_create(struct event_base *base, const struct peer_config *cfg, struct peer **out);
/* Close every connection and timer, close the sources of snapshots in flight (no callback
 * runs), remove partial snapshot files, free. Not from inside a callback. Accepts NULL. */
void peer_destroy(struct peer *p);

/* Add member id with its peer URLs ("http://host:port", numeric host; "https://" only with
 * tls_client; copied) and start dialing it. MS_E_BAD_REQUEST for id 0 or our own id;
 * MS_E_MEMBER_EXISTS; MS_E_MEMBER_BAD_URLS;
 * MS_E_NOMEM. A member removed earlier may not come back (MS_E_MEMBER_NOT_FOUND): etcd never
 * reuses an ID. */
ms_err peer_add(struct peer *p, uint64_t id, const char *const *urls, size_t n);
/* Replace id's URLs; its dialed stream is redialed at once. MS_E_MEMBER_NOT_FOUND,
 * MS_E_MEMBER_BAD_URLS, MS_E_NOMEM. */
ms_err peer_update(struct peer *p, uint64_t id, const char *const *urls, size_t n);
/* Forget id: its queue is dropped, its connections closed, its snapshot source closed (no
 * on_snapshot_sent), and its dials are refused (410) from now on. MS_E_MEMBER_NOT_FOUND. */
ms_err peer_remove(struct peer *p, uint64_t id);

/* Queue msgs[0..n) to their m->to. Never blocks, never grows past the bounds; a message that
 * cannot be queued is dropped (see Queues). A MsgSnap is dropped and reported through
 * on_snapshot_sent(false) (snapshots go through peer_send_snapshot); a message for a member
 * not added, or of a local type, is dropped and counted. Messages are copied. */
void peer_send(struct peer *p, const struct raft_msg *msgs, size_t n);
/* Queue an application message (1..PEER_APP_MAX bytes, copied) to member to, in order with the
 * Raft messages on the same stream; the owner gives it meaning (on_app at the other end). Like
 * a message, it is dropped when the queue is full or the stream is down: MS_E_MEMBER_NOT_FOUND,
 * MS_E_BAD_REQUEST for a size out of range, MS_E_TOO_MANY_REQUESTS when dropped. */
ms_err peer_send_app(struct peer *p, uint64_t to, const void *data, size_t len);
/* Write what is queued now rather than at the end of the loop turn. */
void peer_flush(struct peer *p);
/* Stream a snapshot to snap_msg->to: snap_msg (a MsgSnap, copied), then src's bytes.
 * MS_OK: src is the transport's until its close callback, and on_snapshot_sent is called once
 * (false at once, from the loop, if the stream is down). MS_E_BAD_REQUEST if snap_msg is not a
 * MsgSnap from us; MS_E_MEMBER_NOT_FOUND; MS_E_TOO_MANY_REQUESTS while a snapshot to that peer
 * is in flight; MS_E_NOMEM. On an error src is untouched (not closed). */
ms_err peer_send_snapshot(struct peer *p, const struct raft_msg *snap_msg,
                          const struct peer_snap_source *src);

/* Counters of one peer, named after the etcd metrics they feed. */
struct peer_stats {
    uint64_t sent_bytes;     /* etcd_network_peer_sent_bytes_total: frame bytes to the peer */
    uint64_t received_bytes; /* etcd_network_peer_received_bytes_total */
    uint64_t sent_failures;  /* etcd_network_peer_sent_failures_total: messages dropped */
    uint64_t msgs_sent;      /* messages handed to the connection */
    uint64_t msgs_received;
    uint64_t writes;          /* batches handed to the connection (one per peer per turn) */
    uint64_t dials;           /* connections attempted */
    uint64_t refusals;        /* dials of ours refused or dropped (status, IDs, bad frames) */
    uint64_t rtt_us;          /* the last stream request's round trip (etcd's probing RTT) */
    size_t queue_bytes;       /* not yet written to the socket, now */
    size_t queue_bytes_max;   /* the most queue_bytes ever was */
    bool stream_out;          /* the peer's stream to us, that we send on, is up */
    bool stream_in;           /* our stream from the peer, that we receive on, is up */
    uint64_t active_since_ms; /* since when a stream with the peer has been up (monotonic), 0
                               * while none is (etcd's ActiveSince) */
};
/* false if id is not a member. */
bool peer_stats(const struct peer *p, uint64_t id, struct peer_stats *out);

/* Ask the members of a cluster for their list, as a member joining it does at start (etcd's
 * GetClusterFromRemotePeers): GET /members on each URL in turn, each bounded by timeout_ms
 * (https URLs through tls, which may be NULL for none), until one answers. Blocking: for the
 * start only, before the loop runs. On MS_OK, *cluster_id is the cluster's ID and body holds
 * the list (what the member's peer_members_fn wrote). MS_E_IO when none answered (each failure
 * logged), MS_E_NOMEM. */
ms_err peer_fetch_members(const char *const *urls, size_t n, struct tls_ctx *tls,
                          uint32_t timeout_ms, uint64_t *cluster_id, struct buf *body);

/* Connections the listener refused (another cluster, unknown or removed member, bad request). */
uint64_t peer_refused(const struct peer *p);

/* ---- frames, exposed for tests and fuzzing ---- */

enum peer_frame_type {
    PEER_FRAME_MSG = 1,        /* payload: one raft_msg_encode'd message */
    PEER_FRAME_SNAP_BEGIN = 2, /* payload: the MsgSnap */
    PEER_FRAME_SNAP_DATA = 3,  /* payload: snapshot bytes (at least one) */
    PEER_FRAME_SNAP_END = 4,   /* payload: be64 total data bytes, be32 CRC32C of the data */
    PEER_FRAME_SNAP_ABORT = 5, /* empty: the sender gave up; drop what arrived */
    PEER_FRAME_HEARTBEAT = 6,  /* empty: the link is alive */
    PEER_FRAME_APP = 7,        /* payload: the owner's message (peer_send_app), not Raft's */
};

#define PEER_APP_MAX 4096 /* payload bytes of an application frame, most */

#define PEER_SNAP_END_BYTES 12

struct peer_frame {
    enum peer_frame_type type;
    const uint8_t *payload; /* borrowed from the parsed input */
    size_t len;
};

enum peer_parse {
    PEER_PARSE_MORE = 0, /* need more bytes */
    PEER_PARSE_OK = 1,   /* *out filled; *used bytes form the frame */
    PEER_PARSE_BAD = 2,  /* another version, an unknown type, a bad or oversized length */
};

/* Parse one frame from p[0..len). The header is judged as soon as it is complete, so an
 * oversized length is refused before its payload is waited for. */
enum peer_parse peer_frame_parse(const uint8_t *p, size_t len, size_t max_payload,
                                 struct peer_frame *out, size_t *used);
/* Write a frame header for a payload of len bytes. */
void peer_frame_header(uint8_t out[PEER_FRAME_HDR], enum peer_frame_type type, uint32_t len);
/* Decode a MSG or SNAP_BEGIN frame's message and check it: not a local type, a MsgSnap exactly
 * for SNAP_BEGIN, from == from, to == to. *out as raft_msg_decode leaves it (entries borrow
 * f->payload; raft_msg_decoded_fini). MS_OK or MS_E_DATA_CORRUPT (out left empty); MS_E_NOMEM. */
ms_err peer_frame_msg(const struct peer_frame *f, uint64_t from, uint64_t to, struct raft_msg *out);
/* A SNAP_END frame's size and CRC. MS_E_DATA_CORRUPT for a wrong length. */
ms_err peer_frame_snap_end(const struct peer_frame *f, uint64_t *size, uint32_t *crc);

#endif
