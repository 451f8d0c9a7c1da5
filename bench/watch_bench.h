/* watch_bench.h - what watch_bench's two front doors share: the options, the clock, the
 * latency samples, and the operations the driver in watch_bench.c calls on a door.
 *
 * A door is the JSON gateway (HTTP/1.1, in watch_bench.c) or gRPC (HTTP/2, in
 * watch_bench_grpc.c). Every connection a door opens is registered with the driver's epoll
 * set, with the door's own connection struct as its data pointer.
 */
#ifndef WATCH_BENCH_H
#define WATCH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WB_KEY "bench/key" /* the key every watcher watches and every put writes */

struct wb_opts {
    const char *host;
    int port;
    bool grpc;
    long watchers;
    long streams;
    long watch_conns; /* gRPC: HTTP/2 connections carrying the watch streams */
    long puts;
    long conns;
    long window;
    long rate;
    long timeout_s;
    int pid;
};

struct wb_door {
    /* Open o->streams watch streams holding o->watchers watchers in all; return once every
     * watcher is created (exits on failure or at deadline). */
    void (*open_watchers)(const struct wb_opts *o, int ep, uint64_t deadline);
    /* Open o->conns connections for the puts. */
    void (*open_putters)(const struct wb_opts *o, int ep);
    /* Send up to max puts on put connection i, as its window allows; returns how many. */
    long (*put)(const struct wb_opts *o, long i, long max);
    /* conn (an epoll data pointer) is ready: read what came. Adds the events delivered and
     * the puts answered; false when the server closed the connection. */
    bool (*ready)(void *conn, uint32_t epoll_events, long *events, long *acks);
    /* Check that every stream got its watchers × puts events, then close and free all.
     * Returns false (after saying why) when one did not. */
    bool (*finish)(const struct wb_opts *o);
};

extern const struct wb_door wb_gateway;
extern const struct wb_door wb_grpc;

uint64_t wb_now_ns(void);
/* perror(what), then exit 1. */
void wb_die(const char *what) __attribute__((noreturn));
/* A connected TCP socket to o->host:o->port, TCP_NODELAY (blocking). */
int wb_dial(const struct wb_opts *o);
/* Read what the socket fd has now, handing each chunk to take(arg, p, n). False at the end of
 * the connection or on an error. */
bool wb_read(int fd, void (*take)(void *arg, const uint8_t *p, size_t n), void *arg);
/* One event read at now_ns whose value carried the decimal send time text p[0..n). */
void wb_event(uint64_t now_ns, const char *p, size_t n);

#endif
