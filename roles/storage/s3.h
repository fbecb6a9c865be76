/* s3.h - internals shared by the S3 front's files (s3.c routing and auth, s3_bucket.c,
 * s3_object.c, s3_list.c, s3_multipart.c, s3_web.c). Not a public API. */
#ifndef GUREUM_S3_H
#define GUREUM_S3_H

#include <openssl/evp.h>
#include <stdint.h>

#include "http.h"
#include "node.h"
#include "obj.h"
#include "repl.h"
#include "s3_meta.h"
#include "s3_xml.h"

typedef struct s3_s {
  node_t *node;
  repl_t *repl;
  s3_meta_t *meta;
  http_server_t *api, *web;
  uint64_t next_request_id;
  int closing, close_pending;
  int live; /* requests in flight: the front is freed only when they are done */
  void (*close_cb)(void *);
  void *close_arg;
  metric_t *m_requests, *m_errors, *m_bytes_in, *m_bytes_out;
} s3_t;

/* One S3 request in flight. */
typedef struct s3_ctx_s s3_ctx_t;
typedef void (*s3_body_fn)(s3_ctx_t *c, const char *data, size_t len, int last);

struct s3_ctx_s {
  s3_t *s3;
  http_req_t *req;
  int website;         /* came in on the website port */
  char request_id[24];
  char *bucket;        /* decoded; NULL for service-level requests */
  char *key;           /* decoded; NULL for bucket-level requests */
  char *resource;      /* "/bucket/key" for error bodies */
  const char *akid;    /* authenticated access key id, or NULL for anonymous */
  char akid_buf[136];
  /* streaming body */
  int streaming;
  void *body_state;    /* the operation's */
  s3_body_fn on_body;
  void *auth_stream;   /* aws-chunked decoder, when the payload is chunked */
  char *pending;       /* undecoded input kept while the operation paused */
  size_t pending_len;
  int paused, http_done;
  int busy;            /* inside a body callback: an answer defers freeing to its end */
  int payload_unsigned;
  char payload_sha256[65]; /* declared hex SHA-256 of the payload, or "" */
  EVP_MD_CTX *sha;
  int answered;
  int ranged;             /* a partial GET: no whole-object checksum headers */
  char reply_version[64]; /* x-amz-version-id to add to an XML reply */
  void *trailers;         /* name/value pairs from an aws-chunked trailer */
};

/* ---- s3.c ---- */
/* Listen on the S3 and website ports; NULL with err on failure. */
s3_t *s3_start(node_t *n, repl_t *repl, s3_meta_t *meta, char *err, size_t errlen);
/* Stop accepting and close connections; cb once closed (s3 freed). */
void s3_stop(s3_t *s3, void (*cb)(void *arg), void *arg);

void s3_error(s3_ctx_t *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with extra response headers (NULL-terminated name/value pairs). */
void s3_error_h(s3_ctx_t *c, int status, const char *code, const char *const *headers,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A trailer of the aws-chunked body (after the body completed), or NULL. */
const char *s3_trailer(s3_ctx_t *c, const char *name);
/* Send an XML document (x is freed). */
void s3_reply_xml(s3_ctx_t *c, int status, s3_xml_t *x);
/* Empty reply with optional extra headers (NULL-terminated name/value pairs). */
void s3_reply_empty(s3_ctx_t *c, int status, const char *const *headers);
void s3_ctx_free(s3_ctx_t *c);
/* Query parameter present (with or without a value)? */
int s3_has_param(s3_ctx_t *c, const char *name);
char *s3_param(s3_ctx_t *c, const char *name); /* malloc'ed or NULL */
const char *s3_header(s3_ctx_t *c, const char *name);
/* Bucket lookup with the permission check; answers the error itself and returns NULL. */
const Gureum__BucketConfig *s3_bucket_for(s3_ctx_t *c, s3_perm_t need, uint64_t *rev);
/* Read the streamed body through payload verification; calls fn with plain data. */
void s3_read_body(s3_ctx_t *c, s3_body_fn fn);
void s3_pause_body(s3_ctx_t *c);
void s3_resume_body(s3_ctx_t *c);
/* Map an object-layer status to the S3 error and answer. */
void s3_obj_error(s3_ctx_t *c, obj_status_t st);
uint64_t s3_now_ms(void);

/* Any bucket/object sub-resource in the query (?versioning, ?encryption, ...)? */
int s3_has_subresource(http_req_t *req);

/* ---- handlers ---- */
void s3_list_buckets(s3_ctx_t *c);
void s3_bucket_op(s3_ctx_t *c);   /* everything with a bucket and no key */
void s3_object_op(s3_ctx_t *c);   /* everything with a key */
void s3_list_objects(s3_ctx_t *c, int v2);
void s3_list_versions(s3_ctx_t *c);
void s3_list_uploads(s3_ctx_t *c);
void s3_delete_objects(s3_ctx_t *c);
void s3_mpu_create(s3_ctx_t *c);
void s3_mpu_part(s3_ctx_t *c);
void s3_mpu_complete(s3_ctx_t *c);
void s3_mpu_abort(s3_ctx_t *c);
void s3_mpu_list_parts(s3_ctx_t *c);
/* CORS: answer a preflight, or add Access-Control-* headers for the request's origin. */
void s3_cors_preflight(s3_ctx_t *c);
int s3_cors_headers(s3_ctx_t *c, const char **hdrs, size_t max);
void s3_website_request(s3_ctx_t *c);

/* Copy x-amz-copy-source into the request's key (CopyObject), or into a part (UploadPartCopy:
 * upload_id and part_number set, done answers). */
typedef void (*s3_copy_done_fn)(s3_ctx_t *c, const Gureum__ObjectMeta *part);
void s3_copy(s3_ctx_t *c, const Gureum__BucketConfig *dst, const char *upload_id,
             uint32_t part_number, s3_copy_done_fn done);

/* A streamed upload (PutObject, UploadPart): Content-Length, Content-MD5 and the promised
 * x-amz-checksum-* are verified before the writer commits; the reply carries the ETag.
 * s3_upload_new answers the error itself and returns NULL on bad checksum headers. */
typedef struct s3_upload_s s3_upload_t;
s3_upload_t *s3_upload_new(s3_ctx_t *c);
/* If-Match / If-None-Match of a write (PutObject, CompleteMultipartUpload); pointers into the
 * request's headers. Answers NotImplemented itself and returns -1 for anything but "*". */
int s3_write_condition(s3_ctx_t *c, obj_cond_t *cond);
void s3_upload_start(s3_upload_t *u, repl_writer_t *w, const char *checksum_type);

/* Fill ObjectMeta content fields from request headers (Content-Type, x-amz-meta-*, ...). */
int s3_meta_from_headers(s3_ctx_t *c, Gureum__ObjectMeta *m);
/* Free what s3_meta_from_headers allocated. */
void s3_meta_headers_free(Gureum__ObjectMeta *m);
/* Response headers for an object (NULL-terminated pairs in hdrs, strings in pool). */
size_t s3_object_headers(s3_ctx_t *c, const Gureum__ObjectMeta *m, const char **hdrs, size_t max,
                         char *pool, size_t poolsz);

#endif
