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

pid_t etcd_start(const char *etcd, const char *dir, int *cport)
{
    int pport = tu_free_port();
    *cport = tu_free_port();
    char curl[64], purl[64], ic[96], data[4200], log[4200];
    snprintf(curl, sizeof(curl), "http://127.0.0.1:%d", *cport);
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", pport);
    snprintf(ic, sizeof(ic), "default=%s", purl);
    snprintf(data, sizeof(data), "%s/etcd", dir);
    snprintf(log, sizeof(log), "%s/etcd.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(etcd, etcd, "--name", "default", "--data-dir", data, "--listen-client-urls", curl,
              "--advertise-client-urls", curl, "--listen-peer-urls", purl,
              "--initial-advertise-peer-urls", purl, "--initial-cluster", ic, "--log-level",
              "error", "--logger", "zap", (char *)NULL);
        _exit(127);
    }
    int up = 0;
    for (int i = 0; i < 1000 && !up; i++) {
        struct tu_resp r;
        tu_http(*cport, "GET", "/health", NULL, &r);
        up = r.status == 200;
        tu_resp_free(&r);
        if (!up)
            tu_sleep_ms(20);
    }
    ck_assert_msg(up, "etcd did not start, see %s", log);
    return pid;
}

void etcd_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}
