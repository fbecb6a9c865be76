/* obj.h - the storage role's object layer: versioned objects and multipart uploads, streamed in
 * checksummed blocks. Callbacks run on the loop thread; disk work runs on the worker pool. */
#ifndef GUREUM_OBJ_H
#define GUREUM_OBJ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proto/storage.pb-c.h"
#include "store.h"

typedef struct obj_s obj_t;
typedef struct obj_writer_s obj_writer_t;
typedef struct obj_reader_s obj_reader_t;

typedef enum {
  OBJ_OK = 0,
  OBJ_ENOENT,       /* NoSuchKey */
  OBJ_ENOVERSION,   /* NoSuchVersion */
  OBJ_EDELETED,     /* the version asked for (or the latest) is a delete marker */
  OBJ_ENOUPLOAD,    /* NoSuchUpload */
  OBJ_EPART,        /* InvalidPart: unknown part or ETag mismatch */
  OBJ_EPARTORDER,   /* InvalidPartOrder */
  OBJ_ETOOSMALL,    /* EntityTooSmall: a part other than the last is under 5 MiB */
  OBJ_ERANGE,       /* InvalidRange */
  OBJ_ECORRUPT,     /* a block failed its checksum: never return bad bytes */
  OBJ_EIO,
  OBJ_ECANCELED,
  OBJ_EPRECOND,     /* PreconditionFailed: a conditional write found another current object */
  OBJ_EUNAVAIL,     /* fewer copies reachable than a quorum: 503, nothing acknowledged */
} obj_status_t;

const char *obj_strerror(obj_status_t s);

/* A conditional write (S3's If-None-Match: * / If-Match on PutObject and
 * CompleteMultipartUpload), checked atomically with the write. NULL fields = no condition. */
typedef struct obj_cond_s {
  const char *if_match;      /* ETag list the current object must match; none = NoSuchKey */
  const char *if_none_match; /* "*": fail if a current (non-deleted) object exists */
} obj_cond_t;
/* 1 if `etag` is in `list` ("*", "x", "\"x\"", W/"x", comma separated). */
int obj_etag_matches(const char *list, const char *etag);

#define OBJ_BLOCK_SIZE (1u << 20)
#define OBJ_MIN_PART_SIZE (5u << 20)

/* ---- replication ----
 * A replication coordinator decides each version's identity and sends the same write to every
 * replica. Replicas store exactly what they are told and merge duplicate, concurrent and
 * out-of-order writes deterministically, last writer wins on ts_us:
 *   - a version id other than "null" already present (matched by id, whatever its ts): if either
 *     side is a tombstone the result is a tombstone (the live one's data freed) at the live
 *     version's ts, or at the tombstones' greatest ts when neither is live (0 = unknown); else
 *     the existing version stays (a duplicate: the newcomer's blocks are freed) and the call
 *     reports OBJ_OK with the existing record;
 *   - "null": the greater ts_us wins, live or tombstone alike (equal ts: a tombstone beats a
 *     live record, else the existing one stays); the null records it beats are removed, their
 *     data freed. A newcomer that loses is dropped (its blocks freed) and the call still reports
 *     OBJ_OK with the newcomer's record. A null tombstone with ts_us 0 takes the ts of the local
 *     null record (and kills it); with none it kills nothing and is not stored;
 *   - conditions (obj_cond_t) are checked, against the latest non-tombstone version, only when
 *     the newcomer is stored as a new record: a duplicate is never refused.
 * Tombstones are invisible to every read (head, get, lists, bucket_is_empty, conditions); their
 * mtime_ms is when this node stored them, for obj_gc_tombstones. */
#define OBJ_PARTITIONS 256
/* The partition of an object: first byte of SHA-256(bucket "\0" key). */
uint32_t obj_partition(const char *bucket, const char *key);

/* A version's identity decided by a replication coordinator. */
typedef struct obj_ident_s { const char *version_id; uint64_t ts_us; } obj_ident_t;

/* `store` is the node's RocksDB; the layer keeps its own column families in it. */
obj_t *obj_new(uv_loop_t *loop, store_t *store, char **err);
void obj_free(obj_t *o);

/* ---- writing (PutObject, UploadPart) ----
 * Start a writer, feed it with obj_write (the callback says when the next piece may come: that
 * is the back-pressure), then commit or abort. Memory stays bounded by one block per writer. */
typedef void (*obj_done_fn)(void *arg, obj_status_t st);
typedef void (*obj_meta_fn)(void *arg, obj_status_t st, const Gureum__ObjectMeta *meta);

/* meta carries bucket, key, content headers, user meta, tags, storage class, owner (and the
 * checksum the client sent, if any: the caller verifies it). versioned: 1 = new version id,
 * 0 = overwrite the "null" version. With meta->ts_us != 0 and a non-empty meta->version_id the
 * version gets exactly that identity instead (versioned is then id != "null") and is merged by
 * the replication rules above; the commit callback reports the merge's result. */
obj_writer_t *obj_put_begin(obj_t *o, const Gureum__ObjectMeta *meta, int versioned);
/* `data` must stay valid until cb runs: what does not fit in the block buffer is copied later.
 * One write at a time per writer. */
void obj_write(obj_writer_t *w, const void *data, size_t len, obj_done_fn cb, void *arg);
/* Makes the object visible atomically; meta passed to cb has size, etag, version_id, mtime.
 * Call it after the last write's callback; w is freed once cb returns. */
void obj_put_commit(obj_writer_t *w, obj_meta_fn cb, void *arg);
void obj_put_abort(obj_writer_t *w); /* frees w and whatever it wrote */
/* The checksum the front verified (S3 name, base64 value, FULL_OBJECT/COMPOSITE/""), stored with
 * the version or part at commit. Call between writes, before obj_put_commit. */
void obj_writer_set_checksum(obj_writer_t *w, const char *algo, const char *value, const char *type);
/* MD5 so far (hex), e.g. to check Content-MD5 before committing. Valid after the last write. */
const uint8_t *obj_writer_md5(obj_writer_t *w);
/* Only commit if the condition holds at commit time (copied). PutObject writers only. */
void obj_writer_set_cond(obj_writer_t *w, const obj_cond_t *cond); /* 16 raw bytes, after all writes completed */

/* ---- reading ----
 * obj_get_begin looks the object up (cb gets its meta, or an error); then obj_read pulls the
 * next piece of [off, off+len) until eof. len = UINT64_MAX means "to the end". */
typedef void (*obj_data_fn)(void *arg, obj_status_t st, const void *data, size_t len, int eof);
obj_reader_t *obj_get_begin(obj_t *o, const char *bucket, const char *key, const char *version_id,
                            obj_meta_fn cb, void *arg);
/* After the meta callback said OBJ_OK: choose the byte range (default: whole object). */
void obj_reader_range(obj_reader_t *r, uint64_t off, uint64_t len);
/* One read at a time; the data passed to cb stays valid until the next obj_read or free. */
void obj_read(obj_reader_t *r, obj_data_fn cb, void *arg);
void obj_reader_free(obj_reader_t *r);

void obj_head(obj_t *o, const char *bucket, const char *key, const char *version_id, obj_meta_fn cb,
              void *arg);

/* Replace tags of one version (PutObjectTagging / DeleteObjectTagging with n = 0). */
void obj_set_tags(obj_t *o, const char *bucket, const char *key, const char *version_id,
                  const Gureum__KeyValue *const *tags, size_t n, obj_meta_fn cb, void *arg);

/* ---- deleting ----
 * version_id NULL: versioning "Enabled" adds a delete marker (meta->delete_marker, its version),
 * "Suspended" replaces the null version with a null delete marker, "" (never enabled) replaces
 * the null version with a null tombstone at a fresh ts (cb gets the live record it replaced, or
 * just the names). With a version_id: that version (marker or object) becomes a tombstone at
 * its ts, data freed (cb gets the record it was, or just the names when it was not there or
 * was a tombstone already; an unknown id other than "null" is still tombstoned, at ts 0, in
 * case the version arrives later). */
void obj_delete(obj_t *o, const char *bucket, const char *key, const char *version_id,
                const char *versioning, obj_meta_fn cb, void *arg);
/* obj_delete with the coordinator's identity for what the delete creates: the delete marker
 * ("Enabled": ident->version_id and ts_us; "Suspended": "null" at ident->ts_us) or the null
 * tombstone (""; at ident->ts_us). With a version_id it tombstones that version; ident may then
 * be NULL, or give the ts to use when the version is unknown here (for "null": the ts of the
 * tombstone, merged last-writer-wins). ident NULL = obj_delete. */
void obj_delete_at(obj_t *o, const char *bucket, const char *key, const char *version_id,
                   const char *versioning, const obj_ident_t *ident, obj_meta_fn cb, void *arg);
/* Inserts a DATALESS record with its own version_id and ts_us by the merge rules: a delete
 * marker (delete_marker = 1, ts_us != 0) or a tombstone (tombstone = 1; other fields but bucket,
 * key, version_id and ts_us are dropped). cb gets the record as stored, or the surviving one.
 * Anything else (no bucket, key or version id, a live object) is OBJ_EIO. */
void obj_apply_record(obj_t *o, const Gureum__ObjectMeta *rec, obj_meta_fn cb, void *arg);
/* Removes the tombstones whose mtime_ms < older_than_ms; cb gets how many went. */
void obj_gc_tombstones(obj_t *o, uint64_t older_than_ms,
                       void (*cb)(void *arg, obj_status_t st, uint64_t removed), void *arg);

/* ---- listing ---- */
typedef struct obj_list_s {
  Gureum__ObjectMeta **items; /* latest non-deleted versions (ListObjects), or all versions */
  size_t n;
  char **prefixes;            /* CommonPrefixes when a delimiter was given */
  size_t nprefixes;
  int truncated;
  char *next_key;             /* resume after this key (marker / continuation token) */
  char *next_version;         /* ListObjectVersions: next version-id-marker */
} obj_list_t;
typedef void (*obj_list_fn)(void *arg, obj_status_t st, const obj_list_t *list);

/* Keys > start_after with the prefix, grouped by delimiter (NULL/"" = none), at most max. */
void obj_list(obj_t *o, const char *bucket, const char *prefix, const char *delimiter,
              const char *start_after, uint32_t max, obj_list_fn cb, void *arg);
/* Every version and delete marker, newest first per key, resuming after (key, version). */
void obj_list_versions(obj_t *o, const char *bucket, const char *prefix, const char *delimiter,
                       const char *key_marker, const char *version_marker, uint32_t max,
                       obj_list_fn cb, void *arg);
/* cb gets empty = 1 if the bucket holds no object, version, marker or upload, 0 if it holds
 * any, -1 on an I/O error. */
void obj_bucket_is_empty(obj_t *o, const char *bucket, void (*cb)(void *arg, int empty), void *arg);

/* ---- multipart ---- */
typedef void (*obj_upload_fn)(void *arg, obj_status_t st, const char *upload_id);
/* A non-empty meta->version_id is used AS THE UPLOAD ID (the coordinator picks upload ids so
 * every replica agrees): it must be OBJ_UID_LEN (32) characters of [0-9A-Za-z], else OBJ_EIO.
 * Creating an upload that exists already changes nothing and succeeds (a retry). Without one,
 * a random id. */
void obj_mpu_create(obj_t *o, const Gureum__ObjectMeta *meta, obj_upload_fn cb, void *arg);
/* A part writer: obj_write as usual, then commit; the meta passed to cb has size and etag. */
obj_writer_t *obj_mpu_part_begin(obj_t *o, const char *bucket, const char *key,
                                 const char *upload_id, uint32_t part_number);
typedef struct obj_part_ref_s {
  uint32_t part_number;
  const char *etag; /* with or without quotes */
} obj_part_ref_t;
/* Checks order, ETags and sizes; the object appears atomically with the multipart ETag.
 * ident non-NULL: the version gets that identity and is merged by the replication rules
 * (versioned is then id != "null"); completing again once the upload is gone reports the
 * version already stored with that identity (a retry) rather than OBJ_ENOUPLOAD. */
void obj_mpu_complete(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                      const obj_part_ref_t *parts, size_t n, int versioned,
                      const obj_cond_t *cond, const obj_ident_t *ident, obj_meta_fn cb,
                      void *arg);
void obj_mpu_abort(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                   obj_done_fn cb, void *arg);
typedef void (*obj_parts_fn)(void *arg, obj_status_t st, Gureum__UploadPart **parts, size_t n,
                             int truncated);
void obj_mpu_list_parts(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                        uint32_t part_marker, uint32_t max, obj_parts_fn cb, void *arg);
typedef void (*obj_uploads_fn)(void *arg, obj_status_t st, Gureum__MultipartUpload **ups,
                               size_t n, int truncated);
void obj_mpu_list_uploads(obj_t *o, const char *bucket, const char *prefix,
                          const char *key_marker, const char *upload_marker, uint32_t max,
                          obj_uploads_fn cb, void *arg);

/* ---- repair: anti-entropy, rebalancing, scrub ----
 * Each call scans the whole of obj_meta: a per-partition index would avoid that, at the cost of
 * a second record per version; anti-entropy runs rarely enough for the scan. */
typedef struct obj_digests_s {
  uint8_t digest[OBJ_PARTITIONS][16]; /* XOR over the partition's records of the first 16 bytes of SHA-256(canonical record) */
  uint64_t records[OBJ_PARTITIONS];   /* version records incl. markers and tombstones */
  uint64_t objects[OBJ_PARTITIONS];   /* live, non-marker versions */
  uint64_t bytes[OBJ_PARTITIONS];     /* their sizes */
} obj_digests_t;
/* The canonical record leaves out everything local (data ids, mtime, tags), so replicas with the
 * same logical state agree whatever the order writes came in. ts_us is in decimal, the marker
 * flag "0" or "1", fields separated by one NUL byte, nothing after the last:
 *   live or marker:        bucket, key, version_id, ts_us, etag, delete_marker
 *   tombstone (not null):  bucket, key, version_id, "T"   (replicas may disagree on its ts)
 *   null tombstone:        bucket, key, "null", ts_us, "T" */
void obj_digests(obj_t *o, void (*cb)(void *arg, obj_status_t st, const obj_digests_t *d),
                 void *arg);
/* Every version record of one partition (markers and tombstones too), metadata only, sorted by
 * bucket, key, newest first. The array and records are freed after cb returns. */
void obj_partition_records(obj_t *o, uint32_t partition,
                           void (*cb)(void *arg, obj_status_t st, Gureum__ObjectMeta **recs,
                                      size_t n),
                           void *arg);
/* The tombstones of bucket/key newer than newer_than_us (with version_id: that version's),
 * metadata only: a replica sends them with a read so that a copy which missed the delete does
 * not win. The array and records are freed after cb returns. */
void obj_tombstones(obj_t *o, const char *bucket, const char *key, const char *version_id,
                    uint64_t newer_than_us,
                    void (*cb)(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n),
                    void *arg);
/* Deletes every version record and block of a partition (it moved to other nodes), and the
 * multipart uploads in progress on its keys with their parts. */
void obj_partition_drop(obj_t *o, uint32_t partition, obj_done_fn cb, void *arg);

typedef struct obj_bad_block_s {
  char *bucket, *key, *version_id;
  uint64_t offset;
  uint32_t len;
} obj_bad_block_t;
/* Verifies every block of up to max_versions live versions after (after_bucket, after_key,
 * after_vid) — all "" to start. cb gets the bad blocks (missing, short or checksum mismatch; offset
 * is the object offset of the block, len its expected length), the cursor to resume from, and
 * done=1 when the scan reached the end. A cursor with an empty after_vid starts at that key's
 * first version; a cursor whose version is gone meanwhile restarts at its key. One call also
 * stops after a bounded number of records (done = 0) so long runs of tombstones stay cheap. */
void obj_scrub(obj_t *o, const char *after_bucket, const char *after_key, const char *after_vid,
               uint32_t max_versions,
               void (*cb)(void *arg, obj_status_t st, const obj_bad_block_t *bad, size_t nbad,
                          const char *next_bucket, const char *next_key, const char *next_vid,
                          int done),
               void *arg);
/* Rewrites the block at object offset `offset` (must be a block start inside one extent,
 * multipart included) of that version with `data` (len must equal the block's length), new CRC.
 * data is copied before the call returns. A wrong offset or length is OBJ_ERANGE. */
void obj_block_repair(obj_t *o, const char *bucket, const char *key, const char *version_id,
                      uint64_t offset, const void *data, size_t len, obj_done_fn cb, void *arg);
/* Test hook (only reachable when the node runs with debug hooks enabled): flips one byte of the
 * block at `offset` of that version on disk, keeping the stored CRC, so reads see corruption. */
void obj_debug_corrupt(obj_t *o, const char *bucket, const char *key, const char *version_id,
                       uint64_t offset, obj_done_fn cb, void *arg);

#endif
