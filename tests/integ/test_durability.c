/* test_durability.c - integration: quota and the NOSPACE alarm, defragment (also under
 * concurrent writes, and a crash at each step of its swap), the snapshot stream and restore,
 * memory-backend snapshots across SIGKILL, auto compaction, and the start-up refusals of a
 * damaged data directory (truncated data.mdb, unopenable lock file). */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Put key k<i> with a value of vlen bytes ('a'); returns the HTTP status. */
static int put_n(int port, int i, size_t vlen, char **body_out)
{
    size_t enc = (vlen + 2) / 3 * 4;
    char *body = malloc(enc + 128);
    char key[32], kb[64];
    snprintf(key, sizeof(key), "k%06d", i);
    tu_b64(key, kb);
    size_t k = (size_t)sprintf(body, "{\"key\":\"%s\",\"value\":\"", kb);
    for (size_t j = 0; j < vlen / 3; j++, k += 4)
        memcpy(body + k, "YWFh", 4);
    strcpy(body + k, "\"}");
    int st;
    char *got = tu_post(port, "/v3/kv/put", body, &st);
    free(body);
    if (body_out)
        *body_out = got;
    else
        free(got);
    return st;
}

static void quota_flow(const char *backend)
{
    const char *extra[] = {"--backend", backend, "--quota-backend-bytes", "1000000", NULL};
    struct tu_server s;
    tu_server_start(&s, extra);
    int i = 0, st = 200;
    char *got = NULL;
    for (; i < 5000 && st == 200; i++) {
        free(got);
        st = put_n(s.port, i, 3000, &got);
    }
    ck_assert_msg(st == 429, "quota never hit (%d puts, status %d)", i, st);
    ck_assert_str_eq(got, "{\"error\":\"etcdserver: mvcc: database space exceeded\",\"message\":"
                          "\"etcdserver: mvcc: database space exceeded\",\"code\":8}");
    free(got);
    int written = i - 1;
    /* The alarm is raised and visible; health says so; reads and deletes still work. */
    char idtxt[32], want[128];
    tu_member_id(s.port, idtxt, sizeof(idtxt));
    snprintf(want, sizeof(want), "{\"alarms\":[{\"memberID\":\"%s\",\"alarm\":\"NOSPACE\"}]}",
             idtxt);
    got = tu_post(s.port, "/v3/maintenance/alarm", "{}", &st);
    ck_assert_str_eq(got, want);
    free(got);
    struct tu_resp r;
    tu_http(s.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.body, "{\"health\":\"false\"}\n");
    tu_resp_free(&r);
    got = tu_post(s.port, "/v3/maintenance/status", "{}", NULL);
    ck_assert_ptr_nonnull(strstr(got, "\"errors\":[\"memberID:"));
    ck_assert_ptr_nonnull(strstr(got, " alarm:NOSPACE \"]"));
    free(got);
    got = tu_post(s.port, "/v3/kv/range",
                  "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"count_only\":true}", &st);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(tu_json_num(got, "count", -1), written);
    long rev = tu_json_num(got, "revision", -1);
    free(got);
    ck_assert_int_eq(put_n(s.port, 999999, 10, NULL), 429);
    /* A txn that only reads is fine, one that writes is not. */
    free(tu_post(s.port, "/v3/kv/txn", "{\"success\":[{\"request_range\":{\"key\":\"YQ==\"}}]}",
                 &st));
    ck_assert_int_eq(st, 200);
    free(
        tu_post(s.port, "/v3/kv/txn", "{\"success\":[{\"request_put\":{\"key\":\"YQ==\"}}]}", &st));
    ck_assert_int_eq(st, 429);
    got = tu_post(s.port, "/v3/kv/deleterange", "{\"key\":\"AA==\",\"range_end\":\"AA==\"}", &st);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(tu_json_num(got, "deleted", -1), written);
    free(got);
    /* Compaction + defragment + disarm: writes work again and nothing else was lost. */
    char body[64];
    snprintf(body, sizeof(body), "{\"revision\":%ld,\"physical\":true}", rev + 1);
    free(tu_post(s.port, "/v3/kv/compaction", body, &st));
    ck_assert_int_eq(st, 200);
    got = tu_post(s.port, "/v3/maintenance/defragment", "{}", &st);
    ck_assert_int_eq(st, 200);
    ck_assert_str_eq(got, "{}");
    free(got);
    got = tu_post(s.port, "/v3/maintenance/alarm",
                  "{\"action\":\"DEACTIVATE\",\"memberID\":0,\"alarm\":\"NOSPACE\"}", &st);
    ck_assert_str_eq(got, "{}"); /* wrong member: nothing cleared */
    free(got);
    char deact[160];
    snprintf(deact, sizeof(deact), "{\"action\":2,\"memberID\":\"%s\",\"alarm\":1}", idtxt);
    got = tu_post(s.port, "/v3/maintenance/alarm", deact, &st);
    ck_assert_str_eq(got, want);
    free(got);
    got = tu_post(s.port, "/v3/maintenance/alarm", "{\"action\":\"GET\"}", &st);
    ck_assert_str_eq(got, "{}");
    free(got);
    tu_http(s.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    tu_resp_free(&r);
    ck_assert_int_eq(put_n(s.port, 1, 3000, NULL), 200);
    /* ACTIVATE NONE crashed etcd 3.4 forever; here it is a no-op. */
    free(tu_post(s.port, "/v3/maintenance/alarm", "{\"action\":\"ACTIVATE\",\"alarm\":\"NONE\"}",
                 &st));
    ck_assert_int_eq(st, 200);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, extra);
    tu_http(s.port, "GET", "/health", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    tu_resp_free(&r);
    tu_server_stop(&s);
}

START_TEST(quota_lmdb)
{
    quota_flow("lmdb");
}
END_TEST

START_TEST(quota_memory)
{
    quota_flow("memory");
}
END_TEST

START_TEST(defrag_under_writes)
{
    struct tu_server s;
    tu_server_start(&s, NULL);
    /* Enough records that the copy takes several loop turns (20,000 per turn). */
    for (int i = 0; i < 300; i++) {
        char body[16400];
        size_t o = (size_t)sprintf(body, "{\"success\":[");
        for (int j = 0; j < 100; j++) {
            char key[16], kb[24];
            snprintf(key, sizeof(key), "d%03d%03d", i, j);
            tu_b64(key, kb);
            o +=
                (size_t)sprintf(body + o, "%s{\"request_put\":{\"key\":\"%s\",\"value\":\"dg==\"}}",
                                j ? "," : "", kb);
        }
        strcpy(body + o, "]}");
        free(tu_post(s.port, "/v3/kv/txn", body, NULL));
    }
    /* Defragment while another connection keeps writing. */
    int fd = tu_connect(s.port);
    const char *req = "POST /v3/maintenance/defragment HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      "Connection: close\r\n\r\n{}";
    tu_send_all(fd, req, strlen(req));
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(put_n(s.port, i, 30, NULL), 200);
    size_t n;
    char *out = tu_read_all(fd, 20000, &n);
    close(fd);
    ck_assert_msg(strstr(out, "200 OK") && strstr(out, "{}"), "%s", out);
    free(out);
    for (int i = 200; i < 210; i++)
        ck_assert_int_eq(put_n(s.port, i, 30, NULL), 200);
    char *c1 = tu_post(s.port, "/v3/kv/range",
                       "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"count_only\":true}", NULL);
    ck_assert_int_eq(tu_json_num(c1, "count", -1), 30000 + 210);
    char *h1 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
    tu_server_stop_keep(&s, 1);
    tu_server_restart(&s, NULL);
    char *c2 = tu_post(s.port, "/v3/kv/range",
                       "{\"key\":\"AA==\",\"range_end\":\"AA==\",\"count_only\":true}", NULL);
    char *h2 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
    ck_assert_str_eq(c1, c2);
    ck_assert_str_eq(h1, h2);
    free(c1);
    free(c2);
    free(h1);
    free(h2);
    tu_server_stop(&s);
}
END_TEST

START_TEST(snapshot_and_restore)
{
    const char *backends[] = {"lmdb", "memory"};
    for (int bi = 0; bi < 2; bi++) {
        const char *extra[] = {"--backend", backends[bi], NULL};
        struct tu_server s, t;
        tu_server_start(&s, extra);
        /* Enough data for several 32 KiB pieces. */
        for (int i = 0; i < 300; i++)
            ck_assert_int_eq(put_n(s.port, i, 600, NULL), 200);
        free(tu_post(s.port, "/v3/kv/deleterange", "{\"key\":\"azAwMDAwMQ==\"}", NULL));
        char *h1 = tu_post(s.port, "/v3/maintenance/hash", "{}", NULL);
        char *r1 =
            tu_post(s.port, "/v3/kv/range", "{\"key\":\"AA==\",\"range_end\":\"AA==\"}", NULL);
        char snap[4300], data[4300];
        snprintf(snap, sizeof(snap), "%s/backup.snap", s.dir);
        tu_fetch_snapshot(s.port, snap);

        /* Restore into a new data dir and serve from it. */
        tu_server_init(&t);
        snprintf(data, sizeof(data), "%s/data", t.dir);
        char *out;
        const char *rargs[] = {"--restore-snapshot", snap,          "--data-dir", data, "--backend",
                               backends[bi],         "--log-level", "warn",       NULL};
        ck_assert_int_eq(tu_run(rargs, NULL, 20000, &out), 0);
        free(out);
        /* Restoring over an existing store is refused. */
        ck_assert_int_ne(tu_run(rargs, NULL, 20000, &out), 0);
        ck_assert_ptr_nonnull(strstr(out, "already exists"));
        free(out);
        tu_server_restart(&t, extra);
        char *h2 = tu_post(t.port, "/v3/maintenance/hash", "{}", NULL);
        char *r2 =
            tu_post(t.port, "/v3/kv/range", "{\"key\":\"AA==\",\"range_end\":\"AA==\"}", NULL);
        ck_assert_str_eq(h1, h2);
        ck_assert_str_eq(r1, r2);
        /* It takes writes at the next revision. */
        char *got;
        ck_assert_int_eq(put_n(t.port, 5000, 10, &got), 200);
        ck_assert_int_eq(tu_json_num(got, "revision", -1), tu_json_num(r1, "revision", -1) + 1);
        free(got);
        free(h1);
        free(h2);
        free(r1);
        free(r2);
        tu_server_stop(&t);
        tu_server_stop(&s);
    }
}
END_TEST

/* The hash and every key, in one string to compare across a restart (caller frees). */
static char *store_state(int port)
{
    char *h = tu_post(port, "/v3/maintenance/hash", "{}", NULL);
    char *r = tu_post(port, "/v3/kv/range", "{\"key\":\"AA==\",\"range_end\":\"AA==\"}", NULL);
    size_t n = strlen(h) + strlen(r) + 2;
    char *out = malloc(n);
    ck_assert_ptr_nonnull(out);
    snprintf(out, n, "%s\n%s", h, r);
    free(h);
    free(r);
    return out;
}

START_TEST(memory_snapshots_survive_kill)
{
    const char *extra[] = {"--backend", "memory", "--snapshot-count", "100", NULL};
    struct tu_server s;
    tu_server_start(&s, extra);
    for (int i = 0; i < 550; i++)
        ck_assert_int_eq(put_n(s.port, i % 200, 100, NULL), 200);
    /* Snapshots are taken in the background: wait (bounded) until at least one exists. */
    char snapdir[4300];
    snprintf(snapdir, sizeof(snapdir), "%s/data/member/snap", s.dir);
    int files = 0;
    for (int w = 0; w < 500 && files == 0; w++) {
        DIR *d = opendir(snapdir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL)
            files += strncmp(e->d_name, "snap-", 5) == 0 && !strstr(e->d_name, ".tmp");
        if (d)
            closedir(d);
        if (!files)
            tu_sleep_ms(20);
    }
    ck_assert_int_ge(files, 1);
    ck_assert_int_le(files, 2); /* older ones are pruned */
    char *before = store_state(s.port);
    tu_server_kill(&s);
    tu_server_restart(&s, extra);
    char *after = store_state(s.port);
    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    tu_server_stop(&s);
}
END_TEST

START_TEST(auto_compaction)
{
    const char *extra[] = {"--auto-compaction-mode", "periodic", "--auto-compaction-retention",
                           "1s", NULL};
    struct tu_server s;
    tu_server_start(&s, extra);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(put_n(s.port, 1, 10, NULL), 200);
    /* Within a few retention periods the history before one period ago is compacted. The
     * first compaction may pick revision 1 when its sample predates the puts above: wait
     * (bounded) for one that covers them. */
    long compacted = 0;
    for (int w = 0; w < 200 && compacted <= 1; w++) {
        struct tu_resp r;
        tu_http(s.port, "GET", "/metrics", NULL, &r);
        const char *p = strstr(r.body, "\netcd_debugging_mvcc_compact_revision ");
        compacted = p ? strtol(p + 39, NULL, 10) : -1;
        tu_resp_free(&r);
        if (compacted <= 1) {
            ck_assert_int_eq(put_n(s.port, 2, 10, NULL), 200);
            tu_sleep_ms(50);
        }
    }
    ck_assert_int_gt(compacted, 1);
    int st;
    free(tu_post(s.port, "/v3/kv/range", "{\"key\":\"azAwMDAwMQ==\",\"revision\":1}", &st));
    ck_assert_int_eq(st, 400);
    tu_server_stop(&s);
}
END_TEST

/* True if <data dir>/member/<name> exists. */
static int member_has(const struct tu_server *s, const char *name)
{
    char path[4400];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/data/member/%s", s->dir, name);
    return stat(path, &sb) == 0;
}

/* Some puts, overwrites and deletes, so that defragment has something to reclaim. */
static void fill_for_defrag(int port)
{
    for (int i = 0; i < 120; i++)
        ck_assert_int_eq(put_n(port, i % 60, 500, NULL), 200);
    free(tu_post(port, "/v3/kv/deleterange",
                 "{\"key\":\"azAwMDAxMA==\",\"range_end\":"
                 "\"azAwMDAyMA==\"}",
                 NULL));
}

/* Defragment, started with METASTORE_CRASH_AT=point, stops dead at that step of the swap; the
 * next start recovers every key (same hash) and leaves neither db.defrag nor db.old. */
START_TEST(defrag_crash_recovery)
{
    static const struct {
        const char *point;
        int db, old, defrag; /* what member/ holds after the crash */
    } steps[] = {
        {"defrag_between_renames", 0, 1, 1}, /* the fallback without an atomic exchange */
        {"defrag_copy_synced", 1, 0, 1},     /* the copy durable, applies not yet committed to db */
        {"defrag_before_swap", 1, 0, 1},
        {"defrag_after_swap", 1, 0, 1}, /* db.defrag is the old environment */
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        struct tu_server s;
        setenv("METASTORE_CRASH_AT", steps[i].point, 1);
        tu_server_start(&s, NULL);
        unsetenv("METASTORE_CRASH_AT");
        fill_for_defrag(s.port);
        char *before = store_state(s.port);
        struct tu_resp r;
        tu_http(s.port, "POST", "/v3/maintenance/defragment", "{}", &r);
        tu_resp_free(&r);
        int status = 0, exited = 0;
        for (int w = 0; w < 2000 && !exited; w++) {
            exited = waitpid(s.pid, &status, WNOHANG) == s.pid;
            if (!exited)
                tu_sleep_ms(10);
        }
        ck_assert_msg(exited, "%s: the server did not stop at the crash point", steps[i].point);
        s.pid = 0;
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 86, "%s: status %d",
                      steps[i].point, status);
        ck_assert_int_eq(member_has(&s, "db"), steps[i].db);
        ck_assert_int_eq(member_has(&s, "db.old"), steps[i].old);
        ck_assert_int_eq(member_has(&s, "db.defrag"), steps[i].defrag);

        tu_server_restart(&s, NULL);
        char *after = store_state(s.port);
        ck_assert_str_eq(before, after);
        free(after);
        ck_assert(member_has(&s, "db") && !member_has(&s, "db.old") &&
                  !member_has(&s, "db.defrag"));
        /* And a defragment now runs to the end. */
        char *got = tu_post(s.port, "/v3/maintenance/defragment", "{}", &status);
        ck_assert_int_eq(status, 200);
        free(got);
        after = store_state(s.port);
        ck_assert_str_eq(before, after);
        free(before);
        free(after);
        tu_server_stop(&s);
    }
}
END_TEST

/* The last state the fallback swap can leave (renamed both, db.old not yet removed) and a
 * db.defrag without any store beside it. */
/* Files a stop left in member/snap (a snapshot or backup being written, a pruned snapshot, a
 * backup made for a client) are removed at the next start; others stay. */
START_TEST(snap_dir_leftovers)
{
    struct tu_server s;
    tu_server_start(&s, NULL);
    tu_server_stop_keep(&s, 1);
    char cmd[9000], dir[4200];
    snprintf(dir, sizeof(dir), "%.4000s/data/member/snap", s.dir);
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s && cd %s && touch snap-0000000000000064.snap.tmp "
             "snap-0000000000000032.snap.del backup-0000000000000001.snap "
             "backup-0000000000000002.snap.tmp keep.txt",
             dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    tu_server_restart(&s, NULL);
    snprintf(cmd, sizeof(cmd), "test \"$(ls %s)\" = keep.txt", dir);
    ck_assert_msg(system(cmd) == 0, "leftovers in %s", dir);
    tu_server_stop(&s);
}
END_TEST

START_TEST(defrag_leftovers)
{
    struct tu_server s;
    tu_server_start(&s, NULL);
    fill_for_defrag(s.port);
    char *before = store_state(s.port);
    tu_server_stop_keep(&s, 1);
    char cmd[9000], data[4200];
    snprintf(data, sizeof(data), "%.4000s/data", s.dir);
    snprintf(cmd, sizeof(cmd), "mkdir %s/member/db.old && echo stale > %s/member/db.old/data.mdb",
             data, data);
    ck_assert_int_eq(system(cmd), 0);
    tu_server_restart(&s, NULL);
    char *after = store_state(s.port);
    ck_assert_str_eq(before, after);
    ck_assert(!member_has(&s, "db.old"));
    tu_server_stop_keep(&s, 1);
    snprintf(cmd, sizeof(cmd), "mv %s/member/db %s/member/db.defrag", data, data);
    ck_assert_int_eq(system(cmd), 0);
    char *out;
    const char *args[] = {"--data-dir", data, "--listen-client-urls", "http://127.0.0.1:0", NULL};
    ck_assert_int_ne(tu_run(args, NULL, 20000, &out), 0);
    ck_assert_msg(strstr(out, "not starting with an empty store") != NULL, "%s", out);
    ck_assert(member_has(&s, "db.defrag") && !member_has(&s, "db"));
    free(out);
    free(before);
    free(after);
    tu_rmtree(s.dir);
    free(s.dir);
}
END_TEST

/* An earlier version's defragment that stopped between its renames left the store in db.old
 * beside db.defrag, and its next start created a fresh, empty db. The store goes back to db
 * (the empty one is set aside, not removed), every key is there. A db.defrag newer than db is
 * not a state a defragment leaves: the start is refused and neither is removed. */
START_TEST(defrag_recover_keeps_newer_old)
{
    struct tu_server s, e;
    /* Small WAL segments, released as the store commits: the WAL alone cannot rebuild it. */
    setenv("METASTORE_WAL_SEGMENT_BYTES", "4096", 1);
    tu_server_start(&s, NULL);
    fill_for_defrag(s.port);
    char *before = store_state(s.port);
    /* The store commits (and the WAL lets go of what it holds) on a timer: wait (bounded). */
    for (int w = 0; w < 500 && member_has(&s, "wal/0000000000000000-0000000000000000.wal"); w++)
        tu_sleep_ms(10);
    ck_assert(!member_has(&s, "wal/0000000000000000-0000000000000000.wal"));
    tu_server_stop_keep(&s, 1);
    tu_server_start(&e, NULL); /* a fresh, empty store */
    tu_server_stop_keep(&e, 1);
    char cmd[9000], data[1100];
    snprintf(data, sizeof(data), "%.1000s/data", s.dir);
    snprintf(cmd, sizeof(cmd),
             "mv %s/member/db %s/member/db.old && cp -a %s/member/db.old %s/member/db.defrag && "
             "mv %.1000s/data/member/db %s/member/db",
             data, data, data, data, e.dir, data);
    ck_assert_int_eq(system(cmd), 0);
    tu_rmtree(e.dir);
    free(e.dir);
    tu_server_restart(&s, NULL);
    char *after = store_state(s.port);
    ck_assert_str_eq(before, after);
    free(after);
    ck_assert(member_has(&s, "db") && member_has(&s, "db.discarded") && !member_has(&s, "db.old") &&
              !member_has(&s, "db.defrag"));

    /* db.defrag ahead of db: refused, both kept. */
    tu_server_stop_keep(&s, 1);
    snprintf(cmd, sizeof(cmd), "cp -a %s/member/db %s/member/db.older", data, data);
    ck_assert_int_eq(system(cmd), 0);
    tu_server_restart(&s, NULL);
    ck_assert_int_eq(put_n(s.port, 1000, 10, NULL), 200);
    tu_server_stop_keep(&s, 1);
    snprintf(cmd, sizeof(cmd),
             "mv %s/member/db %s/member/db.defrag && mv %s/member/db.older %s/member/db", data,
             data, data, data);
    ck_assert_int_eq(system(cmd), 0);
    char *out;
    const char *args[] = {"--data-dir", data, "--listen-client-urls", "http://127.0.0.1:0", NULL};
    ck_assert_int_ne(tu_run(args, NULL, 20000, &out), 0);
    ck_assert_msg(strstr(out, "not removing it") != NULL, "%s", out);
    ck_assert(member_has(&s, "db") && member_has(&s, "db.defrag"));
    unsetenv("METASTORE_WAL_SEGMENT_BYTES");
    free(out);
    free(before);
    tu_rmtree(s.dir);
    free(s.dir);
}
END_TEST

/* A truncated data.mdb stops the start with a message naming it, not a SIGBUS. */
START_TEST(truncated_store_refused)
{
    struct tu_server s;
    tu_server_start(&s, NULL);
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(put_n(s.port, i, 600, NULL), 200);
    tu_server_stop_keep(&s, 1);
    char path[4400], data[4200];
    snprintf(data, sizeof(data), "%.4000s/data", s.dir);
    snprintf(path, sizeof(path), "%s/member/db/data.mdb", data);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(truncate(path, sb.st_size / 2), 0);
    char *out;
    const char *args[] = {"--data-dir", data, "--listen-client-urls", "http://127.0.0.1:0", NULL};
    int rc = tu_run(args, NULL, 20000, &out);
    ck_assert_msg(rc == 1, "exit %d: %s", rc, out);
    char want[4600];
    snprintf(want, sizeof(want), "%s is truncated: it has %lld bytes", path,
             (long long)(sb.st_size / 2));
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    free(out);
    tu_rmtree(s.dir);
    free(s.dir);
}
END_TEST

/* A lock file that cannot be opened is reported as such, not as another process's lock. */
START_TEST(lock_file_unopenable)
{
    struct tu_server s;
    tu_server_init(&s);
    char lock[4300], data[4200], cmd[4400];
    snprintf(data, sizeof(data), "%.4000s/data", s.dir);
    snprintf(lock, sizeof(lock), "%s/member/lock", data);
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", lock); /* a directory: open(O_RDWR) fails */
    ck_assert_int_eq(system(cmd), 0);
    char *out;
    const char *args[] = {"--data-dir", data, "--listen-client-urls", "http://127.0.0.1:0", NULL};
    ck_assert_int_ne(tu_run(args, NULL, 20000, &out), 0);
    char want[4600];
    snprintf(want, sizeof(want), "cannot open the lock file %s: %s", lock, strerror(EISDIR));
    ck_assert_msg(strstr(out, want) != NULL, "%s", out);
    ck_assert_msg(strstr(out, "in use by another process") == NULL, "%s", out);
    free(out);
    tu_rmtree(s.dir);
    free(s.dir);
}
END_TEST

/* A restore whose snapshot file cannot be finished (here: the file size limit cuts its one
 * write) fails with a message; the writer is freed once (snap_writer_finish frees it on failure
 * too). */
START_TEST(restore_finish_failure)
{
    const char *extra[] = {"--backend", "memory", NULL};
    struct tu_server s, t;
    tu_server_start(&s, extra);
    for (int i = 0; i < 40; i++) /* about 25 kB: one write at the writer's finish */
        ck_assert_int_eq(put_n(s.port, i, 600, NULL), 200);
    char snap[4300], data[4300];
    snprintf(snap, sizeof(snap), "%s/backup.snap", s.dir);
    tu_fetch_snapshot(s.port, snap);
    tu_server_init(&t);
    snprintf(data, sizeof(data), "%s/data", t.dir);
    const char *rargs[] = {"--restore-snapshot", snap,   "--data-dir", data, "--backend", "memory",
                           "--log-level",        "warn", NULL};
    char *env[] = {"METASTORE_WAL_SEGMENT_BYTES=4096", NULL};
    struct rlimit old, low;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    low = old;
    low.rlim_cur = 16384; /* the WAL's 4 kB segment fits, the 25 kB snapshot does not */
    signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &low), 0);
    char *out;
    int rc = tu_run(rargs, env, 20000, &out);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    ck_assert_msg(rc == 1, "restore exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "restore failed") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "AddressSanitizer") == NULL, "%s", out);
    free(out);
    tu_server_stop(&s);
    tu_rmtree(t.dir);
    free(t.dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("durability");
    TCase *tc = tcase_create("quota");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, quota_lmdb);
    tcase_add_test(tc, quota_memory);
    tcase_add_test(tc, defrag_under_writes);
    tcase_add_test(tc, snapshot_and_restore);
    tcase_add_test(tc, memory_snapshots_survive_kill);
    tcase_add_test(tc, auto_compaction);
    tcase_add_test(tc, defrag_crash_recovery);
    tcase_add_test(tc, defrag_leftovers);
    tcase_add_test(tc, snap_dir_leftovers);
    tcase_add_test(tc, defrag_recover_keeps_newer_old);
    tcase_add_test(tc, truncated_store_refused);
    tcase_add_test(tc, lock_file_unopenable);
    tcase_add_test(tc, restore_finish_failure);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
