/* s3_meta.h - buckets and access keys of the storage role: records in the control plane's
 * replicated state (bucket/NAME, key/AKID), mirrored locally through watches for fast lookups. */
#ifndef GUREUM_S3_META_H
#define GUREUM_S3_META_H

#include <jansson.h>
#include <stdint.h>

#include "control.h"
#include "proto/storage.pb-c.h"

typedef struct s3_meta_s s3_meta_t;

typedef enum { S3_PERM_NONE = 0, S3_PERM_READ = 1, S3_PERM_WRITE = 2, S3_PERM_OWNER = 3 } s3_perm_t;

s3_meta_t *s3_meta_new(control_t *control);
void s3_meta_free(s3_meta_t *m);

/* Local mirror lookups (NULL if unknown). Valid until the next change is applied. */
const Gureum__BucketConfig *s3_meta_bucket(s3_meta_t *m, const char *name, uint64_t *revision);
const Gureum__AccessKey *s3_meta_key(s3_meta_t *m, const char *akid);
/* All buckets, for ListBuckets. */
size_t s3_meta_nbuckets(s3_meta_t *m);
const Gureum__BucketConfig *s3_meta_bucket_at(s3_meta_t *m, size_t i);

/* Append every key (without its secret) to a JSON array. */
void s3_meta_keys_json(s3_meta_t *m, json_t *arr);

/* What `akid` (NULL = anonymous) may do on bucket `b`. */
s3_perm_t s3_meta_perm(s3_meta_t *m, const char *akid, const Gureum__BucketConfig *b);

/* Writes through the control plane. expect: the revision read (compare-and-set), or 0 for
 * "must not exist". cb gets the control plane's response. */
void s3_meta_put_bucket(s3_meta_t *m, const Gureum__BucketConfig *b, int64_t expect,
                        control_done_fn cb, void *arg);
void s3_meta_delete_bucket(s3_meta_t *m, const char *name, int64_t expect, control_done_fn cb,
                           void *arg);
void s3_meta_put_key(s3_meta_t *m, const Gureum__AccessKey *k, int64_t expect, control_done_fn cb,
                     void *arg);
uint64_t s3_meta_key_revision(s3_meta_t *m, const char *akid);

/* S3 bucket naming rules: 3-63 chars, lowercase letters, digits, '-' and '.', starting and ending
 * with a letter or digit, no "..", not an IP address. */
int s3_bucket_name_valid(const char *name);

#endif
