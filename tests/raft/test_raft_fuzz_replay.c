/* test_raft_fuzz_replay.c - replay the raft codec fuzz corpus under the normal test run.
 *
 *   test_raft_fuzz_replay DIR            every file of DIR through LLVMFuzzerTestOneInput, plus
 *                                        every truncation and single-bit flip of each file
 *   test_raft_fuzz_replay --write DIR    (re)generate the seed corpus into DIR
 *
 * The same LLVMFuzzerTestOneInput (tests/fuzz/fuzz_raft_codec.c) runs under libFuzzer when
 * built with -Dfuzz=true and clang.
 */
#include "metastore/raft.h"
#include "metastore/raft_codec.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int write_file(const char *dir, const char *name, const struct buf *b)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static int write_corpus(const char *dir)
{
    int rc = 0;
    struct buf b;
    buf_init(&b);
    struct raft_entry ents[3] = {
        {.term = 2,
         .index = 8,
         .type = RAFT_ENTRY_NORMAL,
         .len = 5,
         .data = (const uint8_t *)"hello"},
        {.term = 2, .index = 9, .type = RAFT_ENTRY_NORMAL},
        {.term = 3,
         .index = 10,
         .type = RAFT_ENTRY_CONF_CHANGE,
         .len = 4,
         .data = (const uint8_t *)"\x01\x00\x04\x00"},
    };
    struct raft_msg msgs[] = {
        {.type = RAFT_MSG_APP,
         .from = 2,
         .to = 1,
         .term = 3,
         .log_term = 2,
         .index = 7,
         .commit = 7,
         .n_entries = 3,
         .entries = ents},
        {.type = RAFT_MSG_APP_RESP,
         .from = 2,
         .to = 1,
         .term = 3,
         .index = 7,
         .reject = true,
         .reject_hint = 5,
         .log_term = 2},
        {.type = RAFT_MSG_VOTE,
         .from = 3,
         .to = 1,
         .term = 4,
         .log_term = 3,
         .index = 10,
         .ctx = RAFT_CTX_TRANSFER},
        {.type = RAFT_MSG_PRE_VOTE_RESP, .from = 3, .to = 1, .term = 4},
        {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 1, .term = 3, .commit = 6, .ctx = 17},
        {.type = RAFT_MSG_SNAP,
         .from = 2,
         .to = 1,
         .term = 3,
         .snap = {.index = 100,
                  .term = 3,
                  .conf = {.n_voters = 3, .voters = {1, 2, 3}, .n_learners = 1, .learners = {4}}}},
        {.type = RAFT_MSG_PROP, .from = 3, .to = 1, .n_entries = 1, .entries = ents},
        {.type = RAFT_MSG_READ_INDEX_RESP, .from = 2, .to = 1, .term = 3, .index = 9, .ctx = 12345},
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        char name[64];
        b.len = 0;
        if (raft_msg_encode(&msgs[i], &b) != MS_OK)
            return 1;
        snprintf(name, sizeof(name), "msg_%s", raft_msg_type_name(msgs[i].type));
        rc |= write_file(dir, name, &b);
    }
    b.len = 0;
    raft_entry_encode(&ents[0], &b);
    rc |= write_file(dir, "entry_normal", &b);
    b.len = 0;
    struct raft_hard_state hs = {.term = 7, .vote = 2, .commit = 123456};
    raft_hard_state_encode(&hs, &b);
    rc |= write_file(dir, "hard_state", &b);
    b.len = 0;
    raft_snapshot_meta_encode(&msgs[5].snap, &b);
    rc |= write_file(dir, "snapshot_meta", &b);
    b.len = 0;
    struct raft_conf_change cc = {
        .type = RAFT_CC_ADD_LEARNER, .node_id = 9, .ctx_len = 2, .ctx = (const uint8_t *)"{}"};
    raft_cc_encode(&cc, &b);
    rc |= write_file(dir, "conf_change", &b);
    buf_fini(&b);
    return rc;
}

static int replay(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    size_t files = 0, inputs = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) {
            perror(path);
            closedir(d);
            return 1;
        }
        uint8_t buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        files++;
        LLVMFuzzerTestOneInput(buf, n);
        inputs++;
        /* every truncation and every single-bit flip */
        for (size_t k = 0; k < n; k++, inputs++)
            LLVMFuzzerTestOneInput(buf, k);
        for (size_t bit = 0; bit < n * 8; bit++, inputs++) {
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            LLVMFuzzerTestOneInput(buf, n);
            buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
    }
    closedir(d);
    printf("replayed %zu corpus files as %zu inputs\n", files, inputs);
    return files ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write"))
        return write_corpus(argv[2]);
    if (argc == 2)
        return replay(argv[1]);
    fprintf(stderr, "usage: test_raft_fuzz_replay DIR | --write DIR\n");
    return 2;
}
