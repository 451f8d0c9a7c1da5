/* faultnet.h - the fault campaign's network: one TCP proxy per member in front of its peer port,
 * so that the test decides what reaches whom. Every member advertises its proxy's port as its
 * peer URL and listens on a port only its proxy connects to. A proxied connection names its
 * sender in its first request's X-Server-From header (metastore's peer transport and etcd's
 * rafthttp both send it), so each connection belongs to a link from one member to another, and
 * each direction of a link has a mode:
 *   FN_PASS  bytes flow;
 *   FN_STALL bytes are held: the proxy stops reading them, so the sender's socket backs up as
 *            behind a partitioned network (TCP retransmitting); they flow again once healed;
 *   FN_DROP  bytes are read and thrown away (a lossy link); a connection that lost bytes is
 *            closed when its link passes again (nothing after a hole could be delivered).
 * A partition stalls both directions between the sides; one-way loss drops one direction.
 * Connections whose sender is unknown (no X-Server-From: a joining member's GET /members)
 * pass. Everything runs on one thread of the test; the calls below are thread-safe. */
#ifndef METASTORE_FAULTNET_H
#define METASTORE_FAULTNET_H

#include <stdint.h>

#define FN_MAX 8 /* members (slots) */

enum fn_mode { FN_PASS, FN_STALL, FN_DROP };

struct fn_net;

/* Proxies for n slots: slot i accepts on 127.0.0.1:listen[i] and forwards to target[i]. */
struct fn_net *fn_start(int n, const int *listen, const int *target);
/* The member ID now in slot i (0: none), as its X-Server-From header names it. */
void fn_set_id(struct fn_net *net, int slot, uint64_t id);
/* The mode of the bytes sent from slot from to slot to. */
void fn_set(struct fn_net *net, int from, int to, enum fn_mode mode);
/* Every link passes again. */
void fn_heal(struct fn_net *net);
/* Connections accepted, and bytes dropped, so far. */
void fn_stats(struct fn_net *net, uint64_t *accepted, uint64_t *dropped);
/* Stop the thread and close everything. */
void fn_stop(struct fn_net *net);

#endif
