/* s3_list.c - listing operations of the S3 API: ListObjects (v1 and v2), ListObjectVersions and
 * ListMultipartUploads, with prefixes, delimiters and pagination. */
#include <stdlib.h>
#include <string.h>

#include "s3.h"

typedef struct list_req_s {
  s3_ctx_t *c;
  int v2, fetch_owner, url_encode;
  char *prefix, *delimiter, *marker, *start_after, *token, *max_s;
  uint32_t max;
  char *key_marker, *version_marker, *upload_marker;
} list_req_t;

static void list_req_free(list_req_t *l) {
  free(l->prefix);
  free(l->delimiter);
  free(l->marker);
  free(l->start_after);
  free(l->token);
  free(l->max_s);
  free(l->key_marker);
  free(l->version_marker);
  free(l->upload_marker);
  free(l);
}

/* encoding-type=url: keys and prefixes are percent-encoded in the reply (boto3 asks for it). */
static void elem_key(s3_xml_t *x, const list_req_t *l, const char *tag, const char *v) {
  if (!l->url_encode) {
    s3_xml_elem(x, tag, v);
    return;
  }
  size_t n = strlen(v);
  char *e = malloc(n * 3 + 1), *o = e;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
        strchr("-_.~/", *p))
      *o++ = (char)*p;
    else
      o += sprintf(o, "%%%02X", *p);
  }
  *o = 0;
  s3_xml_elem(x, tag, e);
  free(e);
}

static int parse_max(s3_ctx_t *c, const char *name, uint32_t *out) {
  char *v = s3_param(c, name);
  *out = 1000;
  if (!v) return 0;
  char *end;
  long n = strtol(v, &end, 10);
  int bad = !*v || *end || n < 0;
  free(v);
  if (bad) {
    s3_error(c, 400, "InvalidArgument", "%s must be a non-negative integer", name);
    return -1;
  }
  *out = n > 1000 ? 1000 : (uint32_t)n;
  return 0;
}

static void owner_xml(s3_xml_t *x, const char *owner) {
  s3_xml_open(x, "Owner");
  s3_xml_elem(x, "ID", owner);
  s3_xml_elem(x, "DisplayName", owner);
  s3_xml_close(x, "Owner");
}

static void object_xml(s3_xml_t *x, const list_req_t *l, const Gureum__ObjectMeta *m, int with_owner) {
  elem_key(x, l, "Key", m->key);
  s3_xml_elem_time(x, "LastModified", m->mtime_ms);
  s3_xml_elemf(x, "ETag", "\"%s\"", m->etag);
  s3_xml_elem_u64(x, "Size", m->size);
  s3_xml_elem(x, "StorageClass", m->storage_class[0] ? m->storage_class : "STANDARD");
  if (m->checksum_algorithm[0]) s3_xml_elem(x, "ChecksumAlgorithm", m->checksum_algorithm);
  if (with_owner) owner_xml(x, m->owner);
}

static void on_list(void *arg, obj_status_t st, const obj_list_t *list) {
  list_req_t *l = arg;
  s3_ctx_t *c = l->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
    list_req_free(l);
    return;
  }
  s3_xml_t x;
  s3_xml_begin(&x, "ListBucketResult");
  s3_xml_elem(&x, "Name", c->bucket);
  elem_key(&x, l, "Prefix", l->prefix ? l->prefix : "");
  if (l->v2) {
    if (l->token) s3_xml_elem(&x, "ContinuationToken", l->token);
    if (l->start_after) elem_key(&x, l, "StartAfter", l->start_after);
    s3_xml_elem_u64(&x, "KeyCount", list->n + list->nprefixes);
  } else {
    elem_key(&x, l, "Marker", l->marker ? l->marker : "");
    if (list->truncated && l->delimiter && list->next_key) elem_key(&x, l, "NextMarker", list->next_key);
  }
  s3_xml_elem_u64(&x, "MaxKeys", l->max);
  if (l->delimiter) elem_key(&x, l, "Delimiter", l->delimiter);
  if (l->url_encode) s3_xml_elem(&x, "EncodingType", "url");
  s3_xml_elem(&x, "IsTruncated", list->truncated ? "true" : "false");
  if (l->v2 && list->truncated && list->next_key) {
    /* The token is the key to resume after; opaque to clients. */
    size_t n = strlen(list->next_key);
    char *t = malloc(n * 2 + 3);
    t[0] = 'k';
    for (size_t i = 0; i < n; i++) sprintf(t + 1 + 2 * i, "%02x", (unsigned char)list->next_key[i]);
    s3_xml_elem(&x, "NextContinuationToken", t);
    free(t);
  }
  for (size_t i = 0; i < list->n; i++) {
    s3_xml_open(&x, "Contents");
    object_xml(&x, l, list->items[i], !l->v2 || l->fetch_owner);
    s3_xml_close(&x, "Contents");
  }
  for (size_t i = 0; i < list->nprefixes; i++) {
    s3_xml_open(&x, "CommonPrefixes");
    elem_key(&x, l, "Prefix", list->prefixes[i]);
    s3_xml_close(&x, "CommonPrefixes");
  }
  s3_xml_close(&x, "ListBucketResult");
  s3_reply_xml(c, 200, &x);
  list_req_free(l);
}

/* Decode a continuation token made above; NULL if it is not one of ours. */
static char *token_decode(const char *t) {
  size_t n = strlen(t);
  if (n < 1 || t[0] != 'k' || (n - 1) % 2) return NULL;
  char *k = malloc((n - 1) / 2 + 1);
  for (size_t i = 0; i < (n - 1) / 2; i++) {
    unsigned v;
    if (sscanf(t + 1 + 2 * i, "%2x", &v) != 1) {
      free(k);
      return NULL;
    }
    k[i] = (char)v;
  }
  k[(n - 1) / 2] = 0;
  return k;
}

static list_req_t *list_req_new(s3_ctx_t *c) {
  list_req_t *l = calloc(1, sizeof *l);
  l->c = c;
  l->prefix = s3_param(c, "prefix");
  l->delimiter = s3_param(c, "delimiter");
  if (l->delimiter && !*l->delimiter) {
    free(l->delimiter);
    l->delimiter = NULL;
  }
  char *enc = s3_param(c, "encoding-type");
  l->url_encode = enc && strcmp(enc, "url") == 0;
  free(enc);
  return l;
}

void s3_list_objects(s3_ctx_t *c, int v2) {
  list_req_t *l = list_req_new(c);
  l->v2 = v2;
  if (parse_max(c, "max-keys", &l->max) != 0) {
    list_req_free(l);
    return;
  }
  char *after = NULL;
  if (v2) {
    char *fo = s3_param(c, "fetch-owner");
    l->fetch_owner = fo && strcmp(fo, "true") == 0;
    free(fo);
    l->start_after = s3_param(c, "start-after");
    l->token = s3_param(c, "continuation-token");
    if (l->token && !(after = token_decode(l->token))) {
      s3_error(c, 400, "InvalidArgument", "The continuation token provided is incorrect");
      list_req_free(l);
      return;
    }
    if (!after && l->start_after) after = strdup(l->start_after);
  } else {
    l->marker = s3_param(c, "marker");
    if (l->marker) after = strdup(l->marker);
  }
  if (l->max == 0) {
    obj_list_t empty = {0};
    on_list(l, OBJ_OK, &empty);
    free(after);
    return;
  }
  repl_list(c->s3->repl, c->bucket, l->prefix ? l->prefix : "", l->delimiter, after ? after : "",
           l->max, on_list, l);
  free(after);
}

static void on_versions(void *arg, obj_status_t st, const obj_list_t *list) {
  list_req_t *l = arg;
  s3_ctx_t *c = l->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
    list_req_free(l);
    return;
  }
  s3_xml_t x;
  s3_xml_begin(&x, "ListVersionsResult");
  s3_xml_elem(&x, "Name", c->bucket);
  elem_key(&x, l, "Prefix", l->prefix ? l->prefix : "");
  elem_key(&x, l, "KeyMarker", l->key_marker ? l->key_marker : "");
  s3_xml_elem(&x, "VersionIdMarker", l->version_marker ? l->version_marker : "");
  if (list->truncated) {
    if (list->next_key) elem_key(&x, l, "NextKeyMarker", list->next_key);
    if (list->next_version) s3_xml_elem(&x, "NextVersionIdMarker", list->next_version);
  }
  s3_xml_elem_u64(&x, "MaxKeys", l->max);
  if (l->delimiter) elem_key(&x, l, "Delimiter", l->delimiter);
  if (l->url_encode) s3_xml_elem(&x, "EncodingType", "url");
  s3_xml_elem(&x, "IsTruncated", list->truncated ? "true" : "false");
  for (size_t i = 0; i < list->n; i++) {
    const Gureum__ObjectMeta *m = list->items[i];
    const char *tag = m->delete_marker ? "DeleteMarker" : "Version";
    s3_xml_open(&x, tag);
    elem_key(&x, l, "Key", m->key);
    s3_xml_elem(&x, "VersionId", m->version_id);
    s3_xml_elem(&x, "IsLatest", m->is_latest ? "true" : "false");
    s3_xml_elem_time(&x, "LastModified", m->mtime_ms);
    if (!m->delete_marker) {
      s3_xml_elemf(&x, "ETag", "\"%s\"", m->etag);
      s3_xml_elem_u64(&x, "Size", m->size);
      s3_xml_elem(&x, "StorageClass", m->storage_class[0] ? m->storage_class : "STANDARD");
    }
    owner_xml(&x, m->owner);
    s3_xml_close(&x, tag);
  }
  for (size_t i = 0; i < list->nprefixes; i++) {
    s3_xml_open(&x, "CommonPrefixes");
    elem_key(&x, l, "Prefix", list->prefixes[i]);
    s3_xml_close(&x, "CommonPrefixes");
  }
  s3_xml_close(&x, "ListVersionsResult");
  s3_reply_xml(c, 200, &x);
  list_req_free(l);
}

void s3_list_versions(s3_ctx_t *c) {
  list_req_t *l = list_req_new(c);
  if (parse_max(c, "max-keys", &l->max) != 0) {
    list_req_free(l);
    return;
  }
  l->key_marker = s3_param(c, "key-marker");
  l->version_marker = s3_param(c, "version-id-marker");
  repl_list_versions(c->s3->repl, c->bucket, l->prefix ? l->prefix : "", l->delimiter,
                    l->key_marker ? l->key_marker : "", l->version_marker ? l->version_marker : "",
                    l->max ? l->max : 1000, on_versions, l);
}

static void on_uploads(void *arg, obj_status_t st, Gureum__MultipartUpload **ups, size_t n,
                       int truncated) {
  list_req_t *l = arg;
  s3_ctx_t *c = l->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
    list_req_free(l);
    return;
  }
  s3_xml_t x;
  s3_xml_begin(&x, "ListMultipartUploadsResult");
  s3_xml_elem(&x, "Bucket", c->bucket);
  elem_key(&x, l, "KeyMarker", l->key_marker ? l->key_marker : "");
  s3_xml_elem(&x, "UploadIdMarker", l->upload_marker ? l->upload_marker : "");
  if (truncated && n) {
    elem_key(&x, l, "NextKeyMarker", ups[n - 1]->key);
    s3_xml_elem(&x, "NextUploadIdMarker", ups[n - 1]->upload_id);
  }
  elem_key(&x, l, "Prefix", l->prefix ? l->prefix : "");
  s3_xml_elem_u64(&x, "MaxUploads", l->max);
  s3_xml_elem(&x, "IsTruncated", truncated ? "true" : "false");
  for (size_t i = 0; i < n; i++) {
    s3_xml_open(&x, "Upload");
    elem_key(&x, l, "Key", ups[i]->key);
    s3_xml_elem(&x, "UploadId", ups[i]->upload_id);
    const char *owner = ups[i]->meta ? ups[i]->meta->owner : "";
    s3_xml_open(&x, "Initiator");
    s3_xml_elem(&x, "ID", owner);
    s3_xml_elem(&x, "DisplayName", owner);
    s3_xml_close(&x, "Initiator");
    owner_xml(&x, owner);
    s3_xml_elem(&x, "StorageClass", ups[i]->meta && ups[i]->meta->storage_class[0] ? ups[i]->meta->storage_class : "STANDARD");
    s3_xml_elem_time(&x, "Initiated", ups[i]->initiated_ms);
    s3_xml_close(&x, "Upload");
  }
  s3_xml_close(&x, "ListMultipartUploadsResult");
  s3_reply_xml(c, 200, &x);
  list_req_free(l);
}

void s3_list_uploads(s3_ctx_t *c) {
  list_req_t *l = list_req_new(c);
  if (parse_max(c, "max-uploads", &l->max) != 0) {
    list_req_free(l);
    return;
  }
  l->key_marker = s3_param(c, "key-marker");
  l->upload_marker = s3_param(c, "upload-id-marker");
  repl_mpu_list_uploads(c->s3->repl, c->bucket, l->prefix ? l->prefix : "", l->key_marker ? l->key_marker : "",
                       l->upload_marker ? l->upload_marker : "", l->max ? l->max : 1000, on_uploads, l);
}
