/* testutil.c - shared helpers for the Check suites. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

char *tu_mkdtemp(const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    size_t n = strlen(tmp) + strlen(prefix) + 16;
    char *path = malloc(n);
    if (!path)
        return NULL;
    snprintf(path, n, "%s/%s.XXXXXX", tmp, prefix);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tu_rmtree(const char *path)
{
    if (path)
        nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_bytes_eq(const uint8_t *p, size_t n, const char *s)
{
    return strlen(s) == n && (n == 0 || memcmp(p, s, n) == 0);
}

void tu_b64(const char *s, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = 0;
}

int64_t tu_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

long tu_json_num(const char *json, const char *field, long absent)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", field);
    const char *p = strstr(json, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : absent;
}

bool tu_json_str(const char *json, const char *field, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":\"", field);
    const char *p = json ? strstr(json, pat) : NULL;
    const char *e = p ? strchr(p + strlen(pat), '"') : NULL;
    out[0] = 0;
    if (!e || (size_t)(e - p - strlen(pat)) >= cap)
        return false;
    p += strlen(pat);
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return true;
}

char *tu_nested(const char *pre, size_t n, const char *open, const char *inner, const char *close,
                const char *post)
{
    size_t lo = strlen(open), lc = strlen(close), o = 0;
    char *s = malloc(strlen(pre) + n * (lo + lc) + strlen(inner) + strlen(post) + 1);
    ck_assert_ptr_nonnull(s);
    o += (size_t)sprintf(s, "%s", pre);
    for (size_t i = 0; i < n; i++, o += lo)
        memcpy(s + o, open, lo);
    o += (size_t)sprintf(s + o, "%s", inner);
    for (size_t i = 0; i < n; i++, o += lc)
        memcpy(s + o, close, lc);
    sprintf(s + o, "%s", post);
    return s;
}

/* A "Name:   N kB" line of /proc/pid/status, -1 if unknown. */
static long status_kb(int pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    size_t n = strlen(field);
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

long tu_rss_kb(int pid)
{
    return status_kb(pid, "VmRSS");
}

long tu_rss_anon_kb(int pid)
{
    return status_kb(pid, "RssAnon");
}

int tu_open_fds(int pid)
{
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/fd");
    DIR *d = opendir(path);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

void tu_make_certs(const char *dir)
{
    static const char script[] =
        "set -e\n"
        "cd \"$1\"\n"
        "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\" "
        "2>/dev/null; }\n"
        "ca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.crt -days 30 -subj "
        "/CN=$2; }\n"
        "leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj /CN=$2\n"
        "  printf 'subjectAltName=%s\\nextendedKeyUsage=serverAuth,clientAuth\\n' \"$3\" > "
        "$1.ext\n"
        "  openssl x509 -req -in $1.csr -CA $4.crt -CAkey $4.key -CAcreateserial -out $1.crt "
        "-days 30 -extfile $1.ext 2>/dev/null; }\n"
        "ca ca test-ca; ca other-ca other-ca\n"
        "leaf server server IP:127.0.0.1,DNS:localhost ca\n"
        "leaf alice alice DNS:alice ca; leaf root root DNS:root ca\n"
        "leaf intruder intruder IP:127.0.0.1 ca; leaf other alice DNS:alice other-ca\n"
        "key expired.key; openssl req -new -key expired.key -out expired.csr -subj /CN=alice\n"
        "mkdir -p cadb; : > cadb/index.txt; echo 01 > cadb/serial\n"
        "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=cadb/index.txt\\nnew_certs_dir=cadb\\n"
        "serial=cadb/serial\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' > "
        "cadb/ca.cnf\n"
        "openssl ca -batch -config cadb/ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr "
        "-out expired.crt -startdate 20200101000000Z -enddate 20200201000000Z 2>/dev/null\n";
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
        }
        execl("/bin/sh", "sh", "-c", script, "sh", dir, (char *)NULL);
        _exit(127);
    }
    int status = -1;
    for (int i = 0; i < 600 && waitpid(pid, &status, WNOHANG) == 0; i++)
        tu_sleep_ms(100);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ck_abort_msg("openssl took over a minute to make certificates");
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "making certificates with openssl failed (status %d)", status);
}
