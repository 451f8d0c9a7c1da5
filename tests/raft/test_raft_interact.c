/* test_raft_interact.c - scripted interaction tests with golden output.
 *
 *   test_raft_interact DIR        run every .txt script in DIR, compare outputs, exit 1 on a
 * difference RAFT_REWRITE=1 test_raft_interact DIR   rewrite the expected outputs in place
 *
 * A script is a sequence of blocks: one command line, a "----" line, the expected output, and
 * a blank line. Lines starting with '#' between blocks are comments. Commands (ids are node
 * ids, counts default to 1):
 *   add-nodes N voters=(1,2,3) [learners=(4)] [index=I] [prevote=false] [checkquorum=false]
 *             [max-inflight=N] [max-size=N] [max-uncommitted=N] [lease-reads=true]
 *             [step-down=false] [forwarding=false]
 *   campaign ID | propose ID DATA | propose-conf-change ID add|remove|learner|update NODE
 *   tick-heartbeat ID [N] | tick-election ID | process-ready ID... | stabilize
 *   deliver-msgs [ID] | drop-msgs [ID] | cut A B | isolate ID | heal
 *   read-index ID CTX | transfer-leader ID TO | report-unreachable ID PEER
 *   report-snapshot ID PEER ok|fail | compact ID INDEX | restart ID
 *   raft-log ID | status ID
 * Output is the trace of Readies and deliveries (raft_testnet.c), or "ok".
 */
#include "raft_testnet.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 16

struct cmd {
    int argc;
    char *argv[MAX_ARGS];
};

static void split(char *line, struct cmd *c)
{
    c->argc = 0;
    for (char *tok = strtok(line, " \t"); tok && c->argc < MAX_ARGS; tok = strtok(NULL, " \t"))
        c->argv[c->argc++] = tok;
}

static const char *opt(const struct cmd *c, const char *key)
{
    size_t n = strlen(key);
    for (int i = 1; i < c->argc; i++)
        if (!strncmp(c->argv[i], key, n) && c->argv[i][n] == '=')
            return c->argv[i] + n + 1;
    return NULL;
}

/* "(1,2,3)" -> ids */
static size_t parse_ids(const char *s, uint64_t *out)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (const char *p = s; *p && n < TN_MAX;) {
        if (*p >= '0' && *p <= '9') {
            out[n++] = strtoull(p, (char **)&p, 10);
        } else {
            p++;
        }
    }
    return n;
}

static uint64_t num(const struct cmd *c, int i, uint64_t dflt)
{
    return i < c->argc ? strtoull(c->argv[i], NULL, 10) : dflt;
}

/* Run one command; output goes to t->trace (already set). Returns false on a script error. */
static bool run(struct tn *t, struct cmd *c, struct buf *out)
{
    if (c->argc == 0)
        return false;
    const char *name = c->argv[0];
    uint64_t id = num(c, 1, 0);
    if (!strcmp(name, "add-nodes")) {
        uint64_t voters[TN_MAX], learners[TN_MAX];
        size_t nv = parse_ids(opt(c, "voters"), voters);
        size_t nl = parse_ids(opt(c, "learners"), learners);
        struct tn_opts o = {0};
        const char *v;
        o.no_pre_vote = (v = opt(c, "prevote")) && !strcmp(v, "false");
        o.no_check_quorum = (v = opt(c, "checkquorum")) && !strcmp(v, "false");
        o.lease_reads = (v = opt(c, "lease-reads")) && !strcmp(v, "true");
        o.no_step_down = (v = opt(c, "step-down")) && !strcmp(v, "false");
        o.disable_forwarding = (v = opt(c, "forwarding")) && !strcmp(v, "false");
        if ((v = opt(c, "index")))
            o.snap_index = strtoull(v, NULL, 10);
        if ((v = opt(c, "max-inflight")))
            o.max_inflight = strtoull(v, NULL, 10);
        if ((v = opt(c, "max-size")))
            o.max_size_per_msg = strtoull(v, NULL, 10);
        if ((v = opt(c, "max-uncommitted")))
            o.max_uncommitted = strtoull(v, NULL, 10);
        tn_add_nodes(t, t->n + 1, (size_t)id, voters, nv, learners, nl, &o);
    } else if (!strcmp(name, "campaign")) {
        raft_campaign(tn_raft(t, id));
    } else if (!strcmp(name, "propose") && c->argc >= 3) {
        ms_err e = raft_propose(tn_raft(t, id), (const uint8_t *)c->argv[2], strlen(c->argv[2]));
        if (e != MS_OK)
            buf_printf(out, "error: %s\n", ms_err_name(e));
    } else if (!strcmp(name, "propose-conf-change") && c->argc >= 4) {
        struct raft_conf_change cc = {.node_id = num(c, 3, 0)};
        const char *k = c->argv[2];
        cc.type = !strcmp(k, "add")       ? RAFT_CC_ADD_NODE
                  : !strcmp(k, "remove")  ? RAFT_CC_REMOVE_NODE
                  : !strcmp(k, "learner") ? RAFT_CC_ADD_LEARNER
                                          : RAFT_CC_UPDATE_NODE;
        ms_err e = raft_propose_conf_change(tn_raft(t, id), &cc);
        if (e != MS_OK)
            buf_printf(out, "error: %s\n", ms_err_name(e));
    } else if (!strcmp(name, "tick-heartbeat")) {
        tn_tick(t, id, (int)num(c, 2, 1));
    } else if (!strcmp(name, "tick-election")) {
        tn_tick(t, id, 10);
    } else if (!strcmp(name, "process-ready")) {
        for (int i = 1; i < c->argc; i++)
            tn_process_ready(t, num(c, i, 0));
    } else if (!strcmp(name, "stabilize")) {
        tn_stabilize(t);
    } else if (!strcmp(name, "deliver-msgs")) {
        tn_deliver(t, id, false);
    } else if (!strcmp(name, "drop-msgs")) {
        tn_drop(t, id);
    } else if (!strcmp(name, "cut")) {
        tn_cut(t, id, num(c, 2, 0), true);
    } else if (!strcmp(name, "isolate")) {
        tn_isolate(t, id, true);
    } else if (!strcmp(name, "heal")) {
        tn_heal(t);
    } else if (!strcmp(name, "read-index")) {
        raft_read_index(tn_raft(t, id), num(c, 2, 0));
    } else if (!strcmp(name, "transfer-leader")) {
        raft_transfer_leader(tn_raft(t, id), num(c, 2, 0));
    } else if (!strcmp(name, "report-unreachable")) {
        raft_report_unreachable(tn_raft(t, id), num(c, 2, 0));
    } else if (!strcmp(name, "report-snapshot") && c->argc >= 4) {
        raft_report_snapshot(tn_raft(t, id), num(c, 2, 0), !strcmp(c->argv[3], "ok"));
    } else if (!strcmp(name, "compact")) {
        struct tn_node *nd = &t->nodes[id];
        ms_err e = raft_mem_snapshot(nd->mem, num(c, 2, 0), &nd->conf, 0);
        if (e != MS_OK)
            buf_printf(out, "error: %s\n", ms_err_name(e));
    } else if (!strcmp(name, "restart")) {
        tn_restart(t, id);
    } else if (!strcmp(name, "raft-log")) {
        tn_fmt_log(t, id, out);
    } else if (!strcmp(name, "status")) {
        tn_fmt_status(t, id, out);
    } else {
        return false;
    }
    return true;
}

/* Run one script; with rewrite, produce the updated file in *newtext. */
static int run_file(const char *path, bool rewrite)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    struct buf text;
    buf_init(&text);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&text, chunk, n);
    fclose(f);
    buf_putc(&text, '\0');
    struct tn t;
    tn_init(&t);
    struct buf trace, newtext, got;
    buf_init(&trace);
    buf_init(&newtext);
    buf_init(&got);
    t.trace = &trace;
    int rc = 0;
    char *p = (char *)text.p;
    int lineno = 0;
    while (*p) {
        char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[1024];
        if (len >= sizeof(line))
            len = sizeof(line) - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p += len + (eol ? 1 : 0);
        lineno++;
        if (line[0] == '\0' || line[0] == '#') {
            buf_printf(&newtext, "%s\n", line);
            continue;
        }
        /* a command: then "----", then the expected output up to a blank line */
        buf_printf(&newtext, "%s\n", line);
        int cmd_line = lineno;
        struct buf want;
        buf_init(&want);
        eol = strchr(p, '\n');
        if (!eol || strncmp(p, "----", 4) != 0) {
            fprintf(stderr, "%s:%d: command without ---- line\n", path, cmd_line);
            buf_fini(&want);
            rc = 1;
            break;
        }
        p = eol + 1;
        lineno++;
        while (*p && *p != '\n') {
            eol = strchr(p, '\n');
            size_t l = eol ? (size_t)(eol - p) + 1 : strlen(p);
            buf_append(&want, p, l);
            p += l;
            lineno++;
        }
        struct cmd c = {0};
        char work[1024];
        memcpy(work, line, sizeof(work));
        split(work, &c);
        trace.len = 0;
        got.len = 0;
        if (!run(&t, &c, &got)) {
            fprintf(stderr, "%s:%d: bad command: %s\n", path, cmd_line, line);
            rc = 1;
        }
        buf_append(&got, trace.p ? trace.p : (const uint8_t *)"", trace.len);
        if (got.len == 0)
            buf_puts(&got, "ok\n");
        if (got.len != want.len || memcmp(got.p, want.p ? want.p : got.p, got.len) != 0) {
            if (!rewrite) {
                fprintf(stderr, "%s:%d: %s\n--- expected:\n%.*s--- got:\n%.*s\n", path, cmd_line,
                        line, (int)want.len, want.p ? (const char *)want.p : "", (int)got.len,
                        (const char *)got.p);
                rc = 1;
            }
        }
        buf_puts(&newtext, "----\n");
        buf_append(&newtext, got.p, got.len);
        buf_fini(&want);
    }
    if (rewrite && rc == 0) {
        /* trim the trailing blank line the loop copies */
        while (newtext.len >= 2 && newtext.p[newtext.len - 1] == '\n' &&
               newtext.p[newtext.len - 2] == '\n')
            newtext.len--;
        f = fopen(path, "wb");
        if (!f || fwrite(newtext.p, 1, newtext.len, f) != newtext.len || fclose(f) != 0) {
            perror(path);
            rc = 1;
        }
    }
    buf_fini(&got);
    buf_fini(&trace);
    buf_fini(&newtext);
    buf_fini(&text);
    tn_fini(&t);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_raft_interact DIR\n");
        return 2;
    }
    bool rewrite = getenv("RAFT_REWRITE") && !strcmp(getenv("RAFT_REWRITE"), "1");
    DIR *d = opendir(argv[1]);
    if (!d) {
        perror(argv[1]);
        return 1;
    }
    char *names[256];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256) {
        size_t l = strlen(de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".txt"))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], names[i]);
        int r = run_file(path, rewrite);
        printf("%s %s\n", r ? "FAIL" : "ok  ", names[i]);
        rc |= r;
        free(names[i]);
    }
    if (n == 0) {
        fprintf(stderr, "no scripts in %s\n", argv[1]);
        rc = 1;
    }
    return rc;
}
