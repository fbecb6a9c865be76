/* obj_engine.h - the object layer's blocking half: RocksDB keys and records for versions,
 * checksummed blocks and multipart uploads. Everything here blocks: call it on the worker pool. */
#ifndef GUREUM_OBJ_ENGINE_H
#define GUREUM_OBJ_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "obj.h"

#define OBJ_ID_LEN 16   /* data id: random bytes naming the blocks of one extent */
#define OBJ_UID_LEN 32  /* version and upload ids: random base62 characters */
#define OBJ_LIST_MAX 1000

/* Column families (tests look inside them too).
 *   obj_meta: bucket \0 key \0 be64(~ts_us) version_id -> ObjectMeta (newest version first;
 *             ts_us in the record equals the key's; tombstones stay until obj_gc_tombstones)
 *   obj_data: data_id be64(block index)                 -> be32(crc32c) block bytes
 *   obj_mpu:  'U' bucket \0 key \0 upload_id            -> MultipartUpload
 *             'P' upload_id be32(part number)           -> UploadPart */
#define OBJ_CF_META "obj_meta"
#define OBJ_CF_DATA "obj_data"
#define OBJ_CF_MPU "obj_mpu"
#define OBJ_BLOCK_KEY_LEN (OBJ_ID_LEN + 8)

typedef struct obj_engine_s obj_engine_t;

obj_engine_t *obj_engine_new(store_t *store, char **err);
void obj_engine_free(obj_engine_t *e);
const store_snap_t *obj_engine_snapshot(obj_engine_t *e);
void obj_engine_snapshot_release(obj_engine_t *e, const store_snap_t *snap);

uint32_t obj_crc32c(uint32_t crc, const void *buf, size_t len);
void obj_random_bytes(void *buf, size_t len);
void obj_random_uid(char out[OBJ_UID_LEN + 1]);
void obj_hex(char *out, const uint8_t *in, size_t n); /* writes 2n chars and a NUL */

/* An object's data as (data id, size) extents: one for a plain object, one per part for a
 * multipart one (ids concatenated in data_id, sizes in part_sizes), none for a delete marker.
 * Returns -1 when the record does not add up. */
int obj_meta_extents(const Gureum__ObjectMeta *m, const uint8_t **ids, const uint64_t **sizes,
                     size_t *n);
/* Deep copy via pack/unpack: the copy owns everything and frees with free_unpacked. */
Gureum__ObjectMeta *obj_meta_dup(const Gureum__ObjectMeta *m);

/* ---- blocks ---- */
void obj_block_key(uint8_t out[OBJ_BLOCK_KEY_LEN], const uint8_t *id, uint64_t idx);
/* `val` holds 4 spare bytes (the checksum goes there) and then `len` data bytes. */
obj_status_t obj_engine_block_put(obj_engine_t *e, const uint8_t *id, uint64_t idx, uint8_t *val,
                                  size_t len);
/* Reads block `idx`, which must be `len` bytes and match its checksum; the data is at *val + 4
 * (free *val with free()). A missing, short or mismatched block is OBJ_ECORRUPT. */
obj_status_t obj_engine_block_get(obj_engine_t *e, const store_snap_t *snap, const uint8_t *id,
                                  uint64_t idx, size_t len, uint8_t **val);
obj_status_t obj_engine_blocks_delete(obj_engine_t *e, const uint8_t *id, uint64_t nblocks);

/* ---- versions ---- */
/* vid NULL = the latest non-tombstone version. Sets is_latest; a delete marker gives
 * OBJ_EDELETED with *out set; a tombstoned vid is OBJ_ENOVERSION. */
/* The tombstones of bucket/key newer than `newer_than` (all of vid's when vid is given), newest
 * first: what a replica tells a coordinator so a copy that missed a delete cannot win a read.
 * Free each with free_unpacked and the array with free(). */
obj_status_t obj_engine_tombstones(obj_engine_t *e, const char *bucket, const char *key,
                                   const char *vid, uint64_t newer_than,
                                   Gureum__ObjectMeta ***out, size_t *n);
obj_status_t obj_engine_head(obj_engine_t *e, const store_snap_t *snap, const char *bucket,
                             const char *key, const char *vid, Gureum__ObjectMeta **out);
/* Inserts `m` (data already on disk) as the newest version: a new version id when versioned,
 * else "null", replacing and freeing any previous "null" version. Also makes delete markers.
 * m->ts_us != 0 with a version id: that identity, merged by obj.h's replication rules (the
 * blocks of a newcomer that loses are freed here). */
obj_status_t obj_engine_put(obj_engine_t *e, const Gureum__ObjectMeta *m, int versioned,
                            const obj_cond_t *cond, Gureum__ObjectMeta **out);
obj_status_t obj_engine_delete(obj_engine_t *e, const char *bucket, const char *key,
                               const char *vid, const char *versioning, const obj_ident_t *ident,
                               Gureum__ObjectMeta **out);
/* obj_apply_record: a delete marker or tombstone with its own identity. */
obj_status_t obj_engine_apply(obj_engine_t *e, const Gureum__ObjectMeta *rec,
                              Gureum__ObjectMeta **out);
obj_status_t obj_engine_gc_tombstones(obj_engine_t *e, uint64_t older_than_ms,
                                      uint64_t *removed);
obj_status_t obj_engine_set_tags(obj_engine_t *e, const char *bucket, const char *key,
                                 const char *vid, Gureum__KeyValue **tags, size_t n,
                                 Gureum__ObjectMeta **out);
obj_status_t obj_engine_list(obj_engine_t *e, const char *bucket, const char *prefix,
                             const char *delim, const char *start_after, uint32_t max,
                             obj_list_t *out);
obj_status_t obj_engine_list_versions(obj_engine_t *e, const char *bucket, const char *prefix,
                                      const char *delim, const char *key_marker,
                                      const char *version_marker, uint32_t max, obj_list_t *out);
void obj_list_clear(obj_list_t *l);
int obj_engine_bucket_is_empty(obj_engine_t *e, const char *bucket); /* 1, 0, or -1 on error */

/* ---- multipart ---- */
/* m->version_id non-empty: the upload id to use (see obj_mpu_create). */
obj_status_t obj_engine_mpu_create(obj_engine_t *e, const Gureum__ObjectMeta *m,
                                   char upload_id[OBJ_UID_LEN + 1]);
/* Records a part whose blocks are written, freeing the part it replaces. On OBJ_ENOUPLOAD the
 * part's own blocks are still the caller's to free. */
obj_status_t obj_engine_mpu_put_part(obj_engine_t *e, const char *bucket, const char *key,
                                     const char *upload_id, const Gureum__UploadPart *p);
obj_status_t obj_engine_mpu_complete(obj_engine_t *e, const char *bucket, const char *key,
                                     const char *upload_id, const obj_part_ref_t *parts, size_t n,
                                     int versioned, const obj_cond_t *cond,
                                     const obj_ident_t *ident, Gureum__ObjectMeta **out);
obj_status_t obj_engine_mpu_abort(obj_engine_t *e, const char *bucket, const char *key,
                                  const char *upload_id);
obj_status_t obj_engine_mpu_list_parts(obj_engine_t *e, const char *bucket, const char *key,
                                       const char *upload_id, uint32_t marker, uint32_t max,
                                       Gureum__UploadPart ***out, size_t *n, int *truncated);
obj_status_t obj_engine_mpu_list_uploads(obj_engine_t *e, const char *bucket, const char *prefix,
                                         const char *key_marker, const char *upload_marker,
                                         uint32_t max, Gureum__MultipartUpload ***out, size_t *n,
                                         int *truncated);

/* ---- repair ---- */
obj_status_t obj_engine_digests(obj_engine_t *e, obj_digests_t *d);
/* *recs (n of them) belongs to the caller: obj_records_free. */
obj_status_t obj_engine_partition_records(obj_engine_t *e, uint32_t partition,
                                          Gureum__ObjectMeta ***recs, size_t *n);
void obj_records_free(Gureum__ObjectMeta **recs, size_t n);
obj_status_t obj_engine_partition_drop(obj_engine_t *e, uint32_t partition);

/* What one obj_scrub step found, and where the next one starts; obj_scrub_clear frees it. */
typedef struct obj_scrub_s {
  obj_bad_block_t *bad;
  size_t nbad, cap;
  char *next_bucket, *next_key, *next_vid;
  int done;
} obj_scrub_t;
obj_status_t obj_engine_scrub(obj_engine_t *e, const char *after_bucket, const char *after_key,
                              const char *after_vid, uint32_t max_versions, obj_scrub_t *out);
void obj_scrub_clear(obj_scrub_t *s);
/* `val` holds 4 spare bytes and then `len` data bytes, as for obj_engine_block_put. */
obj_status_t obj_engine_block_repair(obj_engine_t *e, const char *bucket, const char *key,
                                     const char *vid, uint64_t offset, uint8_t *val, size_t len);
obj_status_t obj_engine_debug_corrupt(obj_engine_t *e, const char *bucket, const char *key,
                                      const char *vid, uint64_t offset);

#endif
