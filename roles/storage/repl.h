/* repl.h - the replicated object layer: the S3 front's view of storage. Each call coordinates
 * the same operation on the replicas of the object's partition, with quorums; same contract as
 * obj.h (callbacks on the loop thread, streamed writes with back-pressure, bounded memory). */
#ifndef GUREUM_REPL_H
#define GUREUM_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
#include "obj.h"
#include "replica.h"

typedef struct repl_s repl_t;
typedef struct repl_writer_s repl_writer_t;
typedef struct repl_reader_s repl_reader_t;

#define REPL_MAX_TARGETS 16

/* One node of a partition's replica set. */
typedef struct repl_target_s {
  char name[64];
  char addr[80]; /* RPC "IP:PORT" */
  int owner;     /* among the first `copies` owners of the current layout */
  int prev;      /* among the owners before a layout change that is still moving data */
} repl_target_t;

/* Where a partition lives: fills `out` (owners first, then previous owners not among them) and
 * returns the count; 0 means "no layout yet": this node alone. `copies` comes from the storage
 * class. Also used for listings with partition = UINT32_MAX: every storage node once. */
typedef size_t (*repl_place_fn)(void *arg, uint32_t partition, uint32_t copies,
                                 repl_target_t *out, size_t max);
/* A replica missed a write or answered stale data: `node` should sync `partition`. */
typedef void (*repl_hint_fn)(void *arg, const char *node, uint32_t partition);

typedef struct repl_opts_s {
  uint32_t copies;    /* STANDARD */
  uint32_t rr_copies; /* REDUCED_REDUNDANCY */
  repl_place_fn place;
  repl_hint_fn hint;
  void *arg;
} repl_opts_t;

repl_t *repl_new(node_t *n, replica_t *local, const repl_opts_t *opts);
void repl_free(repl_t *r);
/* Quorum of a set of n copies: W = n/2+1 acknowledgements, R = n-W+1 answers. */
uint32_t repl_write_quorum(uint32_t n);
uint32_t repl_read_quorum(uint32_t n);

/* ---- writes (PutObject, UploadPart) ---- */
repl_writer_t *repl_put_begin(repl_t *r, const Gureum__ObjectMeta *meta, int versioned);
repl_writer_t *repl_mpu_part_begin(repl_t *r, const char *bucket, const char *key,
                                   const char *upload_id, uint32_t part_number);
void repl_write(repl_writer_t *w, const void *data, size_t len, obj_done_fn cb, void *arg);
void repl_writer_set_checksum(repl_writer_t *w, const char *algo, const char *value,
                              const char *type);
void repl_writer_set_cond(repl_writer_t *w, const obj_cond_t *cond);
const uint8_t *repl_writer_md5(repl_writer_t *w);
void repl_put_commit(repl_writer_t *w, obj_meta_fn cb, void *arg);
void repl_put_abort(repl_writer_t *w);

/* ---- reads ---- */
repl_reader_t *repl_get_begin(repl_t *r, const char *bucket, const char *key,
                              const char *version_id, obj_meta_fn cb, void *arg);
void repl_reader_range(repl_reader_t *rd, uint64_t off, uint64_t len);
void repl_read(repl_reader_t *rd, obj_data_fn cb, void *arg);
void repl_reader_free(repl_reader_t *rd);
void repl_head(repl_t *r, const char *bucket, const char *key, const char *version_id,
               obj_meta_fn cb, void *arg);

/* ---- the rest of obj.h, replicated ---- */
void repl_set_tags(repl_t *r, const char *bucket, const char *key, const char *version_id,
                   const Gureum__KeyValue *const *tags, size_t n, obj_meta_fn cb, void *arg);
void repl_delete(repl_t *r, const char *bucket, const char *key, const char *version_id,
                 const char *versioning, obj_meta_fn cb, void *arg);
void repl_list(repl_t *r, const char *bucket, const char *prefix, const char *delimiter,
               const char *start_after, uint32_t max, obj_list_fn cb, void *arg);
void repl_list_versions(repl_t *r, const char *bucket, const char *prefix, const char *delimiter,
                        const char *key_marker, const char *version_marker, uint32_t max,
                        obj_list_fn cb, void *arg);
void repl_bucket_is_empty(repl_t *r, const char *bucket, void (*cb)(void *arg, int empty),
                          void *arg);
void repl_mpu_create(repl_t *r, const Gureum__ObjectMeta *meta, obj_upload_fn cb, void *arg);
void repl_mpu_complete(repl_t *r, const char *bucket, const char *key, const char *upload_id,
                       const obj_part_ref_t *parts, size_t n, int versioned,
                       const obj_cond_t *cond, obj_meta_fn cb, void *arg);
void repl_mpu_abort(repl_t *r, const char *bucket, const char *key, const char *upload_id,
                    obj_done_fn cb, void *arg);
void repl_mpu_list_parts(repl_t *r, const char *bucket, const char *key, const char *upload_id,
                         uint32_t part_marker, uint32_t max, obj_parts_fn cb, void *arg);
void repl_mpu_list_uploads(repl_t *r, const char *bucket, const char *prefix,
                           const char *key_marker, const char *upload_marker, uint32_t max,
                           obj_uploads_fn cb, void *arg);

/* Sends one replica-protocol request to a node (this node: without the network). */
int repl_call(repl_t *r, const repl_target_t *t, uint32_t type, const void *payload, size_t len,
              int timeout_ms, rpc_done_fn done, void *arg);

#endif
