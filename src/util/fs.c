/* fs.c - mkdir -p, directory fsync, fsync through Linux AIO, files removed in steps.
 *
 * In a -Dfault_points build with METASTORE_SLOW_FSYNC_MS set, an asynchronous sync runs on a
 * thread of its own instead (sleep, then the sync, then the eventfd), so that its completion
 * comes that much later while the caller's loop goes on, as it does with AIO. */
#define _GNU_SOURCE /* syscall */
#include "metastore/faultpt.h"
#include "metastore/fs.h"

#include "metastore/grow.h"
#include "metastore/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#ifdef MS_FAULT_POINTS
#include <pthread.h>
#include <stdatomic.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int fs_mkdirs(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

ms_err fs_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return MS_E_IO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? MS_OK : MS_E_IO;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

size_t fs_remove_leftovers(const char *dir, const char *prefix, const char *const *suffixes)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t removed = 0, pl = strlen(prefix);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        bool match = false;
        for (size_t i = 0; suffixes[i] && !match; i++)
            match = nl > pl + strlen(suffixes[i]) && strncmp(de->d_name, prefix, pl) == 0 &&
                    ends_with(de->d_name, nl, suffixes[i]);
        if (!match)
            continue;
        char path[4300];
        snprintf(path, sizeof(path), "%.4200s/%.64s", dir, de->d_name);
        removed += unlink(path) == 0;
    }
    closedir(d);
    return removed;
}

struct fs_async_sync {
    aio_context_t ctx;
    int efd;
    struct iocb cb;
    bool in_flight;
#ifdef MS_FAULT_POINTS
    /* A delayed sync in flight on its own thread (METASTORE_SLOW_FSYNC_MS), not through AIO. */
    bool slow;
    pthread_t thread;
    int slow_fd;
    bool slow_data_only;
    uint64_t slow_ms;
    int slow_res;          /* 0 or -errno, written by the thread before done */
    atomic_bool slow_done; /* the thread wrote slow_res and is about to signal */
#endif
};

#ifdef MS_FAULT_POINTS
static void *slow_sync_main(void *arg)
{
    struct fs_async_sync *a = arg;
    faultpt_sleep_ms(a->slow_ms);
    int rc = a->slow_data_only ? fdatasync(a->slow_fd) : fsync(a->slow_fd);
    a->slow_res = rc == 0 ? 0 : -errno;
    atomic_store(&a->slow_done, true);
    uint64_t one = 1;
    (void)!write(a->efd, &one, sizeof(one));
    return NULL;
}

/* Start the sync on a thread that sleeps first: 0, or -1 with errno (then sync in place). */
static int slow_start(struct fs_async_sync *a, int fd, bool data_only, uint64_t ms)
{
    a->slow_fd = fd;
    a->slow_data_only = data_only;
    a->slow_ms = ms;
    a->slow_res = 0;
    atomic_store(&a->slow_done, false);
    int rc = pthread_create(&a->thread, NULL, slow_sync_main, a);
    if (rc) {
        errno = rc;
        return -1;
    }
    a->slow = true;
    a->in_flight = true;
    return 0;
}

static bool slow_reap(struct fs_async_sync *a, bool wait, int *res)
{
    if (!wait && !atomic_load(&a->slow_done))
        return false;
    pthread_join(a->thread, NULL);
    a->slow = false;
    a->in_flight = false;
    *res = a->slow_res;
    return true;
}
#endif

struct fs_async_sync *fs_async_sync_create(void)
{
    struct fs_async_sync *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (a->efd < 0 || syscall(SYS_io_setup, 1L, &a->ctx) != 0) {
        int err = errno;
        if (a->efd >= 0)
            close(a->efd);
        free(a);
        errno = err;
        return NULL;
    }
    return a;
}

void fs_async_sync_destroy(struct fs_async_sync *a)
{
    if (!a)
        return;
    int res;
    if (a->in_flight)
        fs_async_sync_reap(a, true, &res);
    syscall(SYS_io_destroy, a->ctx);
    close(a->efd);
    free(a);
}

int fs_async_sync_fd(const struct fs_async_sync *a)
{
    return a->efd;
}

int fs_async_sync_start(struct fs_async_sync *a, int fd, bool data_only)
{
    if (a->in_flight) {
        errno = EBUSY;
        return -1;
    }
#ifdef MS_FAULT_POINTS
    uint64_t ms = faultpt_slow_fsync_ms();
    if (ms)
        return slow_start(a, fd, data_only, ms);
#endif
    struct iocb *list[1] = {&a->cb};
    memset(&a->cb, 0, sizeof(a->cb));
    a->cb.aio_lio_opcode = data_only ? IOCB_CMD_FDSYNC : IOCB_CMD_FSYNC;
    a->cb.aio_fildes = (uint32_t)fd;
    a->cb.aio_flags = IOCB_FLAG_RESFD;
    a->cb.aio_resfd = (uint32_t)a->efd;
    long n;
    do
        n = syscall(SYS_io_submit, a->ctx, 1L, list);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        return -1;
    a->in_flight = true;
    return 0;
}

bool fs_async_sync_busy(const struct fs_async_sync *a)
{
    return a->in_flight;
}

bool fs_async_sync_reap(struct fs_async_sync *a, bool wait, int *res)
{
    if (!a->in_flight)
        return false;
#ifdef MS_FAULT_POINTS
    if (a->slow)
        return slow_reap(a, wait, res);
#endif
    struct io_event ev;
    struct timespec zero = {0, 0};
    long n;
    do
        n = syscall(SYS_io_getevents, a->ctx, wait ? 1L : 0L, 1L, &ev, wait ? NULL : &zero);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return false;
    a->in_flight = false;
    *res = n < 0 ? -errno : (int)ev.res;
    return true;
}

void fs_async_sync_clear(struct fs_async_sync *a)
{
    uint64_t cnt;
    (void)!read(a->efd, &cnt, sizeof(cnt)); /* EAGAIN: no signal yet */
}

struct fs_trash {
    char *dir;
    char **paths; /* oldest first */
    size_t n;
    size_t cap;
    int fd; /* the first, while it is being shrunk */
    uint64_t size;
    bool unsynced; /* added since the directory's last sync */
};

struct fs_trash *fs_trash_create(const char *dir)
{
    struct fs_trash *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->fd = -1;
    if (!(t->dir = strdup(dir))) {
        free(t);
        return NULL;
    }
    return t;
}

void fs_trash_destroy(struct fs_trash *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    for (size_t i = 0; i < t->n; i++)
        free(t->paths[i]);
    free(t->paths);
    free(t->dir);
    free(t);
}

bool fs_trash_add(struct fs_trash *t, const char *path)
{
    char **v = ms_grow(t->paths, &t->cap, t->n + 1, sizeof(*v), 8);
    if (!v)
        return false;
    t->paths = v; /* the array may have moved even if the copy below fails */
    char *p = strdup(path);
    if (!p)
        return false;
    t->paths[t->n++] = p;
    t->unsynced = true;
    return true;
}

bool fs_trash_step(struct fs_trash *t, uint64_t bytes)
{
    if (!t->n)
        return false;
    if (t->unsynced) {
        if (fs_sync_dir(t->dir) == MS_OK)
            t->unsynced = false;
        else
            log_warn("cannot sync %s (a removal waits for it): %s", t->dir, strerror(errno));
        return true; /* this step was the sync (or its attempt) */
    }
    if (t->fd < 0) {
        struct stat st;
        t->fd = open(t->paths[0], O_WRONLY | O_CLOEXEC);
        t->size = t->fd >= 0 && fstat(t->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    }
    if (t->fd >= 0 && t->size > bytes && ftruncate(t->fd, (off_t)(t->size - bytes)) == 0) {
        t->size -= bytes;
        return true;
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    unlink(t->paths[0]); /* gone already (ENOENT) is as good */
    free(t->paths[0]);
    memmove(t->paths, t->paths + 1, (t->n - 1) * sizeof(*t->paths));
    t->n--;
    return t->n > 0;
}
