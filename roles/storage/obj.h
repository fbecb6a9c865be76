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
 * 0 = overwrite the "null" version. */
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
 * "Suspended" replaces the null version with a null delete marker, "" (never enabled) removes
 * the object. With a version_id: removes that version (marker or object). */
void obj_delete(obj_t *o, const char *bucket, const char *key, const char *version_id,
                const char *versioning, obj_meta_fn cb, void *arg);

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
void obj_mpu_create(obj_t *o, const Gureum__ObjectMeta *meta, obj_upload_fn cb, void *arg);
/* A part writer: obj_write as usual, then commit; the meta passed to cb has size and etag. */
obj_writer_t *obj_mpu_part_begin(obj_t *o, const char *bucket, const char *key,
                                 const char *upload_id, uint32_t part_number);
typedef struct obj_part_ref_s {
  uint32_t part_number;
  const char *etag; /* with or without quotes */
} obj_part_ref_t;
/* Checks order, ETags and sizes; the object appears atomically with the multipart ETag. */
void obj_mpu_complete(obj_t *o, const char *bucket, const char *key, const char *upload_id,
                      const obj_part_ref_t *parts, size_t n, int versioned,
                      const obj_cond_t *cond, obj_meta_fn cb, void *arg);
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

#endif
