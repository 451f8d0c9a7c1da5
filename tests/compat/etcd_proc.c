/* etcd_proc.c - start and stop a real etcd for the differential suites. */
#define _GNU_SOURCE
#include "etcd_proc.h"

#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

const char *etcd_bin(void)
{
    const char *e = getenv("ETCD_BIN");
    if (e && *e)
        return access(e, X_OK) == 0 ? e : NULL;
    return access("/usr/bin/etcd", X_OK) == 0 ? "/usr/bin/etcd" : NULL;
}

int etcd_missing(const char *name)
{
    if (etcd_bin())
        return -1;
    const char *e = getenv("ETCD_BIN");
    if (e && *e) {
        fprintf(stderr, "%s: ETCD_BIN=%s is not an executable file\n", name, e);
        return EXIT_FAILURE;
    }
    printf("%s: no /usr/bin/etcd (install etcd-server or set ETCD_BIN): SKIPPED\n", name);
    return 77;
}

pid_t etcd_member_launch(const char *etcd, const char *dir, const struct etcd_member *m)
{
    char curl[64], purl[64], data[4200], log[4200];
    snprintf(curl, sizeof(curl), "http://127.0.0.1:%d", m->client_port);
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", m->peer_port);
    snprintf(data, sizeof(data), "%s/etcd", dir);
    snprintf(log, sizeof(log), "%s/etcd.log", dir);
    const char *argv[32] = {etcd,
                            "--name",
                            m->name,
                            "--data-dir",
                            data,
                            "--listen-client-urls",
                            curl,
                            "--advertise-client-urls",
                            curl,
                            "--listen-peer-urls",
                            purl,
                            "--initial-advertise-peer-urls",
                            purl,
                            "--initial-cluster",
                            m->initial_cluster,
                            "--initial-cluster-state",
                            m->state,
                            "--log-level",
                            "error",
                            "--logger",
                            "zap"};
    if (m->token) {
        size_t n = 0;
        while (argv[n])
            n++;
        argv[n++] = "--initial-cluster-token";
        argv[n] = m->token;
    }
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execv(etcd, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

bool etcd_wait_healthy(pid_t pid, int port, int timeout_ms)
{
    int64_t until = tu_now_ms() + timeout_ms;
    for (;;) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        struct tu_resp r;
        tu_http(port, "GET", "/health", NULL, &r);
        bool up = r.status == 200;
        tu_resp_free(&r);
        if (up)
            return true;
        if (tu_now_ms() >= until)
            return false;
        tu_sleep_ms(20);
    }
}

pid_t etcd_start(const char *etcd, const char *dir, int *cport)
{
    int pport = tu_free_port();
    *cport = tu_free_port();
    char ic[96];
    snprintf(ic, sizeof(ic), "default=http://127.0.0.1:%d", pport);
    struct etcd_member m = {.name = "default",
                            .client_port = *cport,
                            .peer_port = pport,
                            .initial_cluster = ic,
                            .state = "new"};
    pid_t pid = etcd_member_launch(etcd, dir, &m);
    ck_assert_msg(etcd_wait_healthy(pid, *cport, 20000), "etcd did not start, see %s/etcd.log",
                  dir);
    return pid;
}

bool etcd_wait_exit(pid_t pid, int timeout_ms, int *status)
{
    int64_t until = tu_now_ms() + timeout_ms;
    for (;;) {
        if (waitpid(pid, status, WNOHANG) == pid)
            return true;
        if (tu_now_ms() >= until)
            return false;
        tu_sleep_ms(10);
    }
}

int etcd_stop(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    if (!etcd_wait_exit(pid, 20000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    return status;
}
