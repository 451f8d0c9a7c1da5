/* srv_restore.c - restoring a snapshot file into a new data directory (etcdctl snapshot
 * restore): an entry point beside srv.c, run before the server starts serving.
 *
 * The restored store keeps the keyspace, leases and revisions, and starts a new cluster: it
 * takes the identity of the member it is restored on and none of the old cluster's alarms,
 * configuration or term.
 */
#include "srv_int.h"

#include "metastore/log.h"
#include "metastore/snap.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool meta_is(const uint8_t *k, size_t kl, const char *name)
{
    return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

struct restore_ctx {
    struct be_txn *txn;    /* LMDB: load into the store */
    struct snap_writer *w; /* memory: write the file the server loads at start */
};

/* A restored store gets the identity of the node it is restored on, no alarms, and neither the
 * old cluster's members, its configuration nor its term (etcd does the same: it starts a new
 * cluster, whose members must not mistake it for one of theirs). */
static ms_err restore_record(void *ctx, enum be_bucket b, const uint8_t *k, size_t kl,
                             const uint8_t *v, size_t vl)
{
    struct restore_ctx *rc = ctx;
    if (b == BE_BUCKET_ALARM || b == BE_BUCKET_MEMBERS || b == BE_BUCKET_MEMBERS_RM ||
        (b == BE_BUCKET_META &&
         (meta_is(k, kl, SRV_META_MEMBER_ID) || meta_is(k, kl, SRV_META_CLUSTER_ID) ||
          meta_is(k, kl, SRV_META_CONF_STATE) || meta_is(k, kl, SRV_META_CONSISTENT_TERM))))
        return MS_OK;
    if (rc->w)
        return snap_writer_put(rc->w, b, k, kl, v, vl);
    return be_put(rc->txn, b, k, kl, v, vl);
}

/* Memory backend: the new cluster's configuration and members, which the restoring server
 * holds from its bootstrap, go into the file too (LMDB keeps them in the store itself). Without
 * them each member would start as a cluster of one. */
static ms_err write_new_cluster(struct srv *s, struct snap_writer *w)
{
    struct be_val v;
    ms_err e = be_get(s->wtxn, BE_BUCKET_META, (const uint8_t *)SRV_META_CONF_STATE,
                      strlen(SRV_META_CONF_STATE), &v);
    if (e == MS_OK)
        e = snap_writer_put(w, BE_BUCKET_META, (const uint8_t *)SRV_META_CONF_STATE,
                            strlen(SRV_META_CONF_STATE), v.p, v.len);
    if (e == MS_E_NOT_EXIST && s->n_members > 1) {
        /* Each member would start as a cluster of one. */
        log_error("restore: the new cluster's configuration is missing");
        return MS_E_INTERNAL;
    }
    if (e && e != MS_E_NOT_EXIST)
        return e;
    struct be_cursor *c;
    struct be_val k;
    if ((e = be_cursor_open(s->wtxn, BE_BUCKET_MEMBERS, &c)) != MS_OK)
        return e;
    for (e = be_cursor_seek(c, NULL, 0, &k, &v); e == MS_OK; e = be_cursor_next(c, &k, &v))
        if ((e = snap_writer_put(w, BE_BUCKET_MEMBERS, k.p, k.len, v.p, v.len)) != MS_OK)
            break;
    be_cursor_close(c);
    return e == MS_E_NOT_EXIST ? MS_OK : e;
}

ms_err srv_restore(const struct cfg *cfg, const char *snapshot)
{
    struct snap_header h;
    ms_err e = snap_read(snapshot, &h, NULL, NULL);
    if (e) {
        log_error("restore: %s is not a valid snapshot: %s", snapshot, ms_err_name(e));
        return e;
    }
    char member[4200];
    snprintf(member, sizeof(member), "%s/member", cfg->data_dir);
    struct stat sb;
    if (stat(member, &sb) == 0) {
        log_error("restore: %s already exists; restore into a new data directory", member);
        return MS_E_IO;
    }
    /* Open a server on the empty directory without serving, load, and close. */
    struct cfg c = *cfg;
    struct event_base *base = event_base_new();
    if (!base)
        return MS_E_NOMEM;
    struct srv *s = srv_create(base, &c, &e);
    if (!s) {
        event_base_free(base);
        return e;
    }
    struct restore_ctx rc = {.txn = s->wtxn};
    if (cfg->backend == CFG_BACKEND_MEMORY) {
        /* The memory backend loads the newest file in member/snap at each start. */
        char dir[4200], path[4300];
        srv_snap_dir(s, dir, sizeof(dir));
        mkdir(dir, 0700);
        snprintf(path, sizeof(path), "%s/snap-%016llx.snap", dir, (unsigned long long)h.index);
        rc.w = snap_writer_create(path, &h, &e);
        if (rc.w) {
            e = snap_read(snapshot, &h, restore_record, &rc);
            if (!e)
                e = write_new_cluster(s, rc.w);
            /* Both end the writer: finish frees it on failure too. */
            if (e)
                snap_writer_abort(rc.w);
            else
                e = snap_writer_finish(rc.w);
            rc.w = NULL;
        }
    } else {
        /* The fresh store's own identity goes; the next start derives it from the flags. */
        be_del(s->wtxn, BE_BUCKET_META, (const uint8_t *)SRV_META_MEMBER_ID,
               strlen(SRV_META_MEMBER_ID));
        be_del(s->wtxn, BE_BUCKET_META, (const uint8_t *)SRV_META_CLUSTER_ID,
               strlen(SRV_META_CLUSTER_ID));
        e = snap_read(snapshot, &h, restore_record, &rc);
        /* The store is the result: committed and synced here, where a failure is the
         * restore's (srv_destroy would only log it). A failed load commits nothing. */
        if (!e) {
            e = be_txn_commit(s->wtxn);
            s->wtxn = NULL;
            if (!e)
                e = be_sync(s->be);
        } else {
            be_txn_abort(s->wtxn);
            s->wtxn = NULL;
        }
    }
    srv_destroy(s);
    event_base_free(base);
    if (e) {
        log_error("restore failed: %s; remove %s/member before trying again", ms_err_name(e),
                  cfg->data_dir);
        return e;
    }
    log_info("restored %s into %s (index %llu, revision %lld)", snapshot, cfg->data_dir,
             (unsigned long long)h.index, (long long)h.revision);
    return MS_OK;
}
