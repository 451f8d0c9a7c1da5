/* testutil_http.c - start/stop the server binary and speak HTTP/1.1 to it over loopback.
 * Every wait here is bounded so a broken server fails a test instead of hanging it. */
#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int tu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    return ntohs(a.sin_port);
}

void tu_server_launch(struct tu_server *s, const char *const *extra)
{
    tu_server_launch_env(s, extra, NULL);
}

void tu_server_launch_env(struct tu_server *s, const char *const *extra, const char *env)
{
    const char *bin = getenv("METASTORE_BIN");
    ck_assert_msg(bin != NULL, "METASTORE_BIN is not set");
    char url[64], dir[4200];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s->port);
    snprintf(dir, sizeof(dir), "%s/data", s->dir);
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen-client-urls";
    argv[n++] = url;
    argv[n++] = "--advertise-client-urls";
    argv[n++] = url;
    argv[n++] = "--data-dir";
    argv[n++] = dir;
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* The child's environment, made here: setenv in a process with threads races their getenv. */
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 2, sizeof(*envp));
    ck_assert_ptr_nonnull(envp);
    memcpy(envp, environ, ne * sizeof(*envp));
    if (env)
        envp[ne] = (char *)env;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execve(bin, (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    s->pid = pid;
}

int tu_server_wait_up(struct tu_server *s, int tries, int *status)
{
    for (int i = 0; i < tries; i++) {
        if (s->pid > 0 && waitpid(s->pid, status, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        int fd = tu_connect(s->port);
        if (fd >= 0) {
            close(fd);
            struct tu_resp r;
            tu_http(s->port, "GET", "/health", NULL, &r);
            int ok = r.status == 200;
            tu_resp_free(&r);
            if (ok)
                return 1;
        }
        tu_sleep_ms(10);
    }
    return 0;
}

void tu_server_wait_healthy(struct tu_server *s)
{
    /* Bounded: 20 s, generous for sanitizer builds. */
    int status = 0;
    int up = tu_server_wait_up(s, 2000, &status);
    if (up < 0)
        ck_abort_msg("server exited during start (status %d), see %s", status, s->log);
    if (up == 0)
        ck_abort_msg("server did not become healthy, see %s", s->log);
}

void tu_server_init(struct tu_server *s)
{
    memset(s, 0, sizeof(*s));
    s->dir = tu_mkdtemp("ms-integ");
    ck_assert_ptr_nonnull(s->dir);
    s->port = tu_free_port();
}

void tu_server_start(struct tu_server *s, const char *const *extra)
{
    tu_server_init(s);
    tu_server_launch(s, extra);
    tu_server_wait_healthy(s);
}

void tu_server_start_lean(struct tu_server *s, const char *const *extra)
{
    const char *asan = getenv("ASAN_OPTIONS");
    char *saved = asan ? strdup(asan) : NULL;
    char opts[1024];
    snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=4", asan ? asan : "", asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    tu_server_start(s, extra);
    if (saved) {
        setenv("ASAN_OPTIONS", saved, 1);
        free(saved);
    } else {
        unsetenv("ASAN_OPTIONS");
    }
}

void tu_server_restart(struct tu_server *s, const char *const *extra)
{
    tu_server_launch(s, extra);
    tu_server_wait_healthy(s);
}

static int wait_exit(int pid, int timeout_ms, int *status)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        if (waitpid(pid, status, WNOHANG) == pid)
            return 1;
        tu_sleep_ms(10);
    }
    return 0;
}

void tu_server_stop_keep(struct tu_server *s, int keep_dir)
{
    int status = 0;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (!wait_exit(s->pid, 20000, &status)) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            ck_abort_msg("server did not stop on SIGTERM, see %s", s->log);
        }
        s->pid = 0;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char cmd[4400];
        snprintf(cmd, sizeof(cmd), "tail -n 60 %s >&2", s->log);
        if (system(cmd) < 0)
            perror("system");
        ck_abort_msg("server exit status %d (sanitizer report or crash), see %s", status, s->log);
    }
    if (!keep_dir) {
        tu_rmtree(s->dir);
        free(s->dir);
        s->dir = NULL;
    }
}

void tu_server_stop(struct tu_server *s)
{
    tu_server_stop_keep(s, 0);
}

void tu_server_kill(struct tu_server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        int status;
        waitpid(s->pid, &status, 0);
        s->pid = 0;
    }
}

int tu_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int tu_connect_rcvbuf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

void tu_send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* the server may close on us: the caller checks the reply */
        data += w;
        len -= (size_t)w;
    }
}

char *tu_read_all(int fd, int timeout_ms, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (spent >= timeout_ms)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(timeout_ms - spent)) <= 0)
            break;
        if (n + 1 >= cap) {
            cap *= 2;
            b = realloc(b, cap);
            ck_assert_ptr_nonnull(b);
        }
        ssize_t r = read(fd, b + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    b[n] = 0;
    if (len)
        *len = n;
    return b;
}

/* Parse a raw response (headers + body, Content-Length or chunked or until EOF). */
static void parse_response(char *raw, size_t n, struct tu_resp *out)
{
    memset(out, 0, sizeof(*out));
    char *p = raw;
    /* Skip interim 100 Continue responses. */
    while (strncmp(p, "HTTP/1.1 100", 12) == 0 || strncmp(p, "HTTP/1.0 100", 12) == 0) {
        char *e = strstr(p, "\r\n\r\n");
        if (!e)
            break;
        p = e + 4;
    }
    char *hend = strstr(p, "\r\n\r\n");
    if (!hend || sscanf(p, "HTTP/1.%*d %d", &out->status) != 1) {
        out->status = -1;
        out->headers = strdup("");
        out->body = strdup("");
        return;
    }
    out->headers = strndup(p, (size_t)(hend - p + 2));
    char *body = hend + 4;
    size_t left = n - (size_t)(body - raw);
    out->body = malloc(left + 1);
    const char *te = tu_header(out, "Transfer-Encoding");
    if (te && strcasecmp(te, "chunked") == 0) {
        size_t o = 0;
        char *q = body;
        while (q < body + left) {
            unsigned long sz = strtoul(q, NULL, 16);
            char *crlf = strstr(q, "\r\n");
            if (!crlf || sz == 0)
                break;
            q = crlf + 2;
            if (q + sz > body + left)
                sz = (size_t)(body + left - q);
            memcpy(out->body + o, q, sz);
            o += sz;
            q += sz + 2;
        }
        out->body_len = o;
    } else {
        const char *cl = tu_header(out, "Content-Length");
        size_t want = cl ? strtoul(cl, NULL, 10) : left;
        if (want > left)
            want = left;
        memcpy(out->body, body, want);
        out->body_len = want;
    }
    out->body[out->body_len] = 0;
}

void tu_http(int port, const char *method, const char *path, const char *body, struct tu_resp *out)
{
    tu_http_hdr(port, method, path, NULL, body, out);
}

void tu_http_hdr(int port, const char *method, const char *path, const char *headers,
                 const char *body, struct tu_resp *out)
{
    int fd = tu_connect(port);
    if (fd < 0) {
        memset(out, 0, sizeof(*out));
        out->status = -1;
        out->refused = true;
        out->headers = strdup("");
        out->body = strdup("");
        return;
    }
    size_t bl = body ? strlen(body) : 0;
    if (!headers)
        headers = "";
    size_t hl = strlen(method) + strlen(path) + strlen(headers) + 200;
    char *req = malloc(hl + bl);
    int k = snprintf(req, hl,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, path, headers, bl);
    memcpy(req + k, body ? body : "", bl);
    tu_send_all(fd, req, (size_t)k + bl);
    free(req);
    size_t n;
    char *raw = tu_read_all(fd, 20000, &n);
    close(fd);
    parse_response(raw, n, out);
    free(raw);
}

void tu_resp_free(struct tu_resp *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

const char *tu_header(const struct tu_resp *r, const char *name)
{
    static _Thread_local char val[512]; /* per thread: clients run in threads */
    size_t nl = strlen(name);
    const char *p = r->headers;
    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(eol - v);
            if (vl >= sizeof(val))
                vl = sizeof(val) - 1;
            memcpy(val, v, vl);
            val[vl] = 0;
            return val;
        }
        p = eol + 2;
    }
    return NULL;
}

char *tu_norm(const char *json)
{
    static const struct {
        const char *key;
        const char *repl;
    } ids[] = {{"\"cluster_id\":\"", "C"}, {"\"member_id\":\"", "M"}, {"\"raft_term\":\"", "T"}};
    size_t n = strlen(json);
    char *out = malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int done = 0;
        for (size_t k = 0; k < 3 && !done; k++) {
            size_t kl = strlen(ids[k].key);
            if (strncmp(json + i, ids[k].key, kl) == 0) {
                memcpy(out + o, json + i, kl);
                o += kl;
                i += kl;
                while (i < n && json[i] >= '0' && json[i] <= '9')
                    i++;
                out[o++] = ids[k].repl[0];
                done = 1;
            }
        }
        if (!done)
            out[o++] = json[i++];
    }
    out[o] = 0;
    return out;
}

char *tu_post(int port, const char *path, const char *body, int *status)
{
    struct tu_resp r;
    tu_http(port, "POST", path, body, &r);
    if (status)
        *status = r.status;
    char *n = tu_norm(r.body);
    tu_resp_free(&r);
    return n;
}

long tu_metric(int port, const char *name)
{
    struct tu_resp r;
    tu_http(port, "GET", "/metrics", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    char pat[512];
    snprintf(pat, sizeof(pat), "\n%s ", name);
    char *p = strstr(r.body, pat);
    ck_assert_msg(p != NULL, "%s missing", name);
    long v = strtol(p + strlen(pat), NULL, 10);
    tu_resp_free(&r);
    return v;
}

int tu_run(const char *const *args, char *const *envp, int timeout_ms, char **out)
{
    const char *bin = getenv("METASTORE_BIN");
    ck_assert_ptr_nonnull(bin);
    return tu_run_bin(bin, args, envp, timeout_ms, out);
}

int tu_run_bin(const char *bin, const char *const *args, char *const *envp, int timeout_ms,
               char **out)
{
    int pfd[2];
    ck_assert_int_eq(pipe(pfd), 0);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *const empty[] = {NULL};
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execve(bin, (char *const *)argv, envp ? envp : empty);
        _exit(127);
    }
    close(pfd[1]);
    size_t len;
    *out = tu_read_all(pfd[0], timeout_ms, &len);
    close(pfd[0]);
    int status;
    if (!wait_exit(pid, timeout_ms, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

extern char **environ;

int tu_exec(const char *const *argv, int timeout_ms, char **out)
{
    char path[4096] = "";
    const char *dirs = getenv("PATH");
    for (const char *d = dirs ? dirs : "/usr/bin:/bin"; *d && !path[0];) {
        size_t n = strcspn(d, ":");
        snprintf(path, sizeof(path), "%.*s/%s", (int)n, d, argv[0]);
        if (access(path, X_OK) != 0)
            path[0] = 0;
        d += n + (d[n] == ':');
    }
    ck_assert_msg(path[0], "%s is not installed (not in PATH)", argv[0]);
    return tu_run_bin(path, argv + 1, environ, timeout_ms, out);
}

void tu_member_id(int port, char *out, size_t cap)
{
    struct tu_resp r;
    tu_http(port, "POST", "/v3/cluster/member/list", "{}", &r);
    const char *p = strstr(r.body, "\"ID\":\"");
    ck_assert_ptr_nonnull(p);
    p += 6;
    size_t n = strspn(p, "0123456789");
    ck_assert_uint_lt(n, cap);
    memcpy(out, p, n);
    out[n] = 0;
    tu_resp_free(&r);
}

#define PIPE_CONNS  32
#define PIPE_WINDOW 64

struct pipe_conn {
    int fd;
    size_t next_send; /* index into this connection's share: i = k * PIPE_CONNS + c */
    size_t next_recv;
    char *in;
    size_t len;
    size_t cap;
};

/* One complete response at the front of c->in? Consumes it and returns its status. */
static int pipe_take(struct pipe_conn *c)
{
    c->in[c->len] = 0;
    char *hend = strstr(c->in, "\r\n\r\n");
    if (!hend)
        return 0;
    const char *cl = strcasestr(c->in, "Content-Length:");
    size_t blen = cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0;
    size_t total = (size_t)(hend + 4 - c->in) + blen;
    if (c->len < total)
        return 0;
    int status = -1;
    sscanf(c->in, "HTTP/1.%*d %d", &status);
    memmove(c->in, c->in + total, c->len - total);
    c->len -= total;
    return status;
}

size_t tu_pipeline(int port, const char *path, char *const *bodies, size_t n, int *statuses)
{
    struct pipe_conn cs[PIPE_CONNS];
    size_t got = 0;
    for (int c = 0; c < PIPE_CONNS; c++) {
        cs[c] = (struct pipe_conn){.fd = tu_connect(port), .cap = 1 << 16};
        ck_assert_int_ge(cs[c].fd, 0);
        cs[c].in = malloc(cs[c].cap);
    }
    while (got < n) {
        /* Keep up to PIPE_WINDOW requests in flight per connection. */
        for (int c = 0; c < PIPE_CONNS; c++) {
            struct pipe_conn *pc = &cs[c];
            while (pc->next_send - pc->next_recv < PIPE_WINDOW) {
                size_t i = pc->next_send * PIPE_CONNS + (size_t)c;
                if (i >= n)
                    break;
                char hdr[256];
                size_t bl = strlen(bodies[i]);
                int k = snprintf(hdr, sizeof(hdr),
                                 "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", path,
                                 bl);
                tu_send_all(pc->fd, hdr, (size_t)k);
                tu_send_all(pc->fd, bodies[i], bl);
                pc->next_send++;
            }
        }
        struct pollfd p[PIPE_CONNS];
        for (int c = 0; c < PIPE_CONNS; c++)
            p[c] = (struct pollfd){.fd = cs[c].fd, .events = POLLIN};
        if (poll(p, PIPE_CONNS, 20000) <= 0)
            break;
        for (int c = 0; c < PIPE_CONNS; c++) {
            struct pipe_conn *pc = &cs[c];
            if (!(p[c].revents & POLLIN))
                continue;
            if (pc->len + 4096 > pc->cap) {
                pc->cap *= 2;
                pc->in = realloc(pc->in, pc->cap);
            }
            ssize_t r = recv(pc->fd, pc->in + pc->len, pc->cap - pc->len - 1, 0);
            if (r <= 0)
                goto out;
            pc->len += (size_t)r;
            int status;
            while ((status = pipe_take(pc)) != 0) {
                size_t i = pc->next_recv * PIPE_CONNS + (size_t)c;
                if (statuses && i < n)
                    statuses[i] = status;
                pc->next_recv++;
                got++;
            }
        }
    }
out:
    for (int c = 0; c < PIPE_CONNS; c++) {
        close(cs[c].fd);
        free(cs[c].in);
    }
    return got;
}

/* /proc/net/tcp (IPv4; loopback tests only): "sl: local rem st tx_queue:rx_queue ...". */
int tu_tcp_queues(int local_port, int remote_port, long *tx, long *rx)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    if (!f)
        return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned lp, rp, st;
        unsigned long t, r;
        if (sscanf(line, " %*u: %*x:%x %*x:%x %x %lx:%lx", &lp, &rp, &st, &t, &r) != 5)
            continue;
        if ((int)lp == local_port && (int)rp == remote_port && st != 0x0A /* LISTEN */) {
            *tx = (long)t;
            *rx = (long)r;
            found = 1;
        }
    }
    fclose(f);
    return found;
}

int tu_local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    return ntohs(a.sin_port);
}

/* Fetch /v3/maintenance/snapshot into path, checking the stream as a client would: 32 KiB
 * pieces, remaining_bytes counting down (omitted when 0), no header, and a last message holding
 * the SHA-256 of everything before it. */
void tu_fetch_snapshot(int port, const char *path)
{
    char cmd[9000];
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import json,base64,hashlib,urllib.request\n"
             "r=urllib.request.urlopen(urllib.request.Request(\"http://127.0.0.1:%d/v3/"
             "maintenance/snapshot\",data=b\"{}\"))\n"
             "m=[json.loads(l)[\"result\"] for l in r.read().splitlines() if l]\n"
             "b=[base64.b64decode(x[\"blob\"]) for x in m]\n"
             "d=b\"\".join(b[:-1])\n"
             "assert len(m)>=2 and all(\"header\" not in x for x in m)\n"
             "assert all(len(x)==32768 for x in b[:-2])\n"
             "sent=0\n"
             "for x,y in zip(m[:-1],b[:-1]):\n"
             "  sent+=len(y); assert int(x.get(\"remaining_bytes\",0))==len(d)-sent\n"
             "assert \"remaining_bytes\" not in m[-1]\n"
             "assert hashlib.sha256(d).digest()==b[-1]\n"
             "open(\"%s\",\"wb\").write(d)'",
             port, path);
    ck_assert_msg(system(cmd) == 0, "snapshot stream check failed");
}
