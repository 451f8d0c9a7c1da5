/* auth_hash.c - bcrypt off the loop: the one helper thread of the process.
 *
 * bcrypt at etcd's cost takes tens of milliseconds, which the loop must not spend. Jobs go into
 * a bounded queue under a mutex; the thread takes them one at a time, computes with libxcrypt's
 * crypt_r, moves each to the finished list and writes the eventfd; the loop reads the eventfd
 * and calls auth_hasher_poll, which runs the callbacks. The thread touches nothing but the job
 * (copies of its inputs) and the two lists. Hash comparison is constant-time.
 */
#define _GNU_SOURCE
#include "auth_int.h"

#include "metastore/log.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#define HASH_MAX 128

struct job {
    struct job *next;
    uint64_t id;
    enum auth_job_kind kind;
    bool cancelled;
    auth_job_fn done;
    void *ctx;
    ms_err err;
    char hash[HASH_MAX]; /* CHECK: the stored hash; HASH: the result */
    size_t password_len;
    uint8_t password[]; /* NUL-terminated copy */
};

struct auth_hasher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    int efd;
    int cost;
    size_t max_jobs;
    size_t n_jobs; /* queued + running + finished, not yet polled */
    uint64_t next_id;
    struct job *queue_head; /* waiting */
    struct job *queue_tail;
    struct job *running;
    struct job *finished; /* any order */
    struct job *polling;  /* taken by auth_hasher_poll, not yet called back */
};

static void wipe_free(struct job *j)
{
    /* The password copy does not outlive the job. */
    volatile uint8_t *p = j->password;
    for (size_t i = 0; i < j->password_len; i++)
        p[i] = 0;
    free(j);
}

static bool ct_equal(const char *a, const char *b)
{
    size_t an = strlen(a), bn = strlen(b);
    unsigned diff = an != bn;
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
    return diff == 0;
}

static ms_err do_hash(struct crypt_data *cd, const uint8_t *pw, int cost, char *out)
{
    uint8_t rnd[16];
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return MS_E_INTERNAL;
    if (!crypt_gensalt_rn("$2b$", (unsigned long)cost, (const char *)rnd, sizeof(rnd), setting,
                          sizeof(setting)))
        return MS_E_INTERNAL;
    const char *h = crypt_r((const char *)pw, setting, cd);
    if (!h || h[0] == '*' || strlen(h) >= HASH_MAX)
        return MS_E_INTERNAL;
    strcpy(out, h);
    return MS_OK;
}

static bool do_check(struct crypt_data *cd, const uint8_t *pw, const char *hash)
{
    if (strncmp(hash, "$2", 2) != 0)
        return false;
    const char *h = crypt_r((const char *)pw, hash, cd);
    return h && h[0] != '*' && ct_equal(h, hash);
}

ms_err auth_bcrypt_hash(const uint8_t *password, size_t len, int cost, char *hash_out)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char *pw = malloc(len + 1);
    ms_err e = MS_E_NOMEM;
    if (cd && pw) {
        memcpy(pw, password, len);
        pw[len] = 0;
        e = do_hash(cd, (const uint8_t *)pw, cost, hash_out);
    }
    free(pw);
    free(cd);
    return e;
}

bool auth_bcrypt_check(const uint8_t *password, size_t len, const char *hash)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char *pw = malloc(len + 1);
    bool ok = false;
    if (cd && pw) {
        memcpy(pw, password, len);
        pw[len] = 0;
        ok = do_check(cd, (const uint8_t *)pw, hash);
    }
    free(pw);
    free(cd);
    return ok;
}

static void *worker(void *arg)
{
    struct auth_hasher *h = arg;
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->stop && !h->queue_head)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop)
            break;
        struct job *j = h->queue_head;
        h->queue_head = j->next;
        if (!h->queue_head)
            h->queue_tail = NULL;
        h->running = j;
        pthread_mutex_unlock(&h->mu);
        if (!cd)
            j->err = MS_E_NOMEM;
        else if (j->kind == AUTH_JOB_HASH)
            j->err = do_hash(cd, j->password, h->cost, j->hash);
        else
            j->err = do_check(cd, j->password, j->hash) ? MS_OK : MS_E_AUTH_FAILED;
        pthread_mutex_lock(&h->mu);
        h->running = NULL;
        j->next = h->finished;
        h->finished = j;
        uint64_t one = 1;
        /* Only a full counter (2^64 - 2 unread wakeups) could refuse this; poll drains it. */
        (void)!write(h->efd, &one, sizeof(one));
    }
    pthread_mutex_unlock(&h->mu);
    free(cd);
    return NULL;
}

struct auth_hasher *auth_hasher_create(int cost, size_t max_jobs)
{
    struct auth_hasher *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->cost = cost;
    h->max_jobs = max_jobs;
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->efd < 0) {
        log_error("eventfd: %s", strerror(errno));
        free(h);
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    int rc = pthread_create(&h->thread, NULL, worker, h);
    if (rc) {
        log_error("cannot start the password hashing thread: %s", strerror(rc));
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        close(h->efd);
        free(h);
        return NULL;
    }
    return h;
}

static void free_list(struct job *j)
{
    while (j) {
        struct job *next = j->next;
        wipe_free(j);
        j = next;
    }
}

void auth_hasher_destroy(struct auth_hasher *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    free_list(h->queue_head);
    free_list(h->finished);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    close(h->efd);
    free(h);
}

int auth_hasher_fd(const struct auth_hasher *h)
{
    return h->efd;
}

ms_err auth_hasher_submit(struct auth_hasher *h, enum auth_job_kind kind, const uint8_t *password,
                          size_t password_len, const char *hash, auth_job_fn done, void *ctx,
                          uint64_t *id)
{
    if (kind == AUTH_JOB_CHECK && strlen(hash) >= HASH_MAX)
        return MS_E_AUTH_FAILED;
    struct job *j = calloc(1, sizeof(*j) + password_len + 1);
    if (!j)
        return MS_E_NOMEM;
    memcpy(j->password, password, password_len);
    j->password_len = password_len;
    j->kind = kind;
    j->done = done;
    j->ctx = ctx;
    if (kind == AUTH_JOB_CHECK)
        strcpy(j->hash, hash);
    pthread_mutex_lock(&h->mu);
    if (h->n_jobs >= h->max_jobs) {
        pthread_mutex_unlock(&h->mu);
        wipe_free(j);
        return MS_E_TOO_MANY_REQUESTS;
    }
    j->id = *id = ++h->next_id;
    h->n_jobs++;
    if (h->queue_tail)
        h->queue_tail->next = j;
    else
        h->queue_head = j;
    h->queue_tail = j;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return MS_OK;
}

void auth_hasher_cancel(struct auth_hasher *h, uint64_t id)
{
    pthread_mutex_lock(&h->mu);
    struct job *lists[] = {h->queue_head, h->finished, h->polling};
    for (size_t i = 0; i < 3; i++)
        for (struct job *j = lists[i]; j; j = j->next)
            if (j->id == id)
                j->cancelled = true;
    if (h->running && h->running->id == id)
        h->running->cancelled = true;
    pthread_mutex_unlock(&h->mu);
}

void auth_hasher_poll(struct auth_hasher *h)
{
    uint64_t n;
    (void)!read(h->efd, &n, sizeof(n));
    pthread_mutex_lock(&h->mu);
    h->polling = h->finished;
    h->finished = NULL;
    for (;;) {
        /* A callback may cancel a job still on the list: take them one at a time. */
        struct job *j = h->polling;
        if (!j)
            break;
        h->polling = j->next;
        h->n_jobs--;
        bool cancelled = j->cancelled;
        pthread_mutex_unlock(&h->mu);
        if (!cancelled)
            j->done(j->ctx, j->err, j->err ? NULL : j->hash);
        wipe_free(j);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
}
