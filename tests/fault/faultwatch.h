/* faultwatch.h - the fault campaign's watches over the JSON gateway (POST /v3/watch): open one,
 * read its stream for a while and record every response into a wc_watch (watchcheck.h); and
 * gather the truth, every change of the keyspace in order, with a watch from a revision. Keys
 * are decoded to bytes; values stay in their base64 text (only compared for equality). Every
 * wait is bounded. */
#ifndef METASTORE_FAULTWATCH_H
#define METASTORE_FAULTWATCH_H

#include "watchcheck.h"

#include <stdint.h>

/* Watch [key, range_end) (NUL-terminated; range_end NULL: the key alone) on 127.0.0.1:port
 * from start (0: from now), with progress notifications, for ms milliseconds, and record it
 * into w (initialised here: on success the caller frees it). A watch from now is recorded as
 * from the revision after its creation's header. *seen gets the highest header revision
 * received. 0 when the watch was created, else -1 and w holds nothing. */
int fw_record(int port, const char *key, const char *range_end, int64_t start, int ms,
              struct wc_watch *w, int64_t *seen);

/* Every event from revision from through revision to, on all keys, read from port within
 * timeout_ms, into t (initialised here; the caller frees it). 0 when complete; -1 otherwise
 * (*compacted gets the compaction revision when that is why, else 0). */
int fw_truth(int port, int64_t from, int64_t to, int timeout_ms, struct wc_truth *t,
             int64_t *compacted);

#endif
