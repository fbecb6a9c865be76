/* s3_multipart.c - multipart uploads of the S3 API: create, upload part (streamed) and part
 * copy, complete (order, ETags and sizes checked by the object layer), abort and list parts. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "s3.h"
#include "s3_checksum.h"

#define S3_MAX_PARTS 10000

typedef struct mpu_create_s {
  s3_ctx_t *c;
  Gureum__ObjectMeta meta;
} mpu_create_t;

static void created(void *arg, obj_status_t st, const char *upload_id) {
  mpu_create_t *m = arg;
  s3_ctx_t *c = m->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
  } else {
    s3_xml_t x;
    s3_xml_begin(&x, "InitiateMultipartUploadResult");
    s3_xml_elem(&x, "Bucket", c->bucket);
    s3_xml_elem(&x, "Key", c->key);
    s3_xml_elem(&x, "UploadId", upload_id);
    s3_xml_close(&x, "InitiateMultipartUploadResult");
    s3_reply_xml(c, 200, &x);
  }
  s3_meta_headers_free(&m->meta);
  free(m);
}

void s3_mpu_create(s3_ctx_t *c) {
  mpu_create_t *m = calloc(1, sizeof *m);
  m->c = c;
  if (s3_meta_from_headers(c, &m->meta) != 0) {
    s3_meta_headers_free(&m->meta);
    free(m);
    return;
  }
  const char *algo = s3_header(c, "x-amz-checksum-algorithm");
  if (algo && s3_checksum_algo_parse(algo) != S3_CK_NONE) {
    free(m->meta.checksum_algorithm);
    m->meta.checksum_algorithm = strdup(s3_checksum_algo_name(s3_checksum_algo_parse(algo)));
  }
  repl_mpu_create(c->s3->repl, &m->meta, created, m);
}

/* ---- UploadPart ---- */

static void part_copied(s3_ctx_t *c, const Gureum__ObjectMeta *m) {
  s3_xml_t x;
  s3_xml_begin(&x, "CopyPartResult");
  s3_xml_elem_time(&x, "LastModified", m->mtime_ms ? m->mtime_ms : s3_now_ms());
  s3_xml_elemf(&x, "ETag", "\"%s\"", m->etag);
  s3_xml_close(&x, "CopyPartResult");
  s3_reply_xml(c, 200, &x);
}

void s3_mpu_part(s3_ctx_t *c) {
  char *pn = s3_param(c, "partNumber"), *id = s3_param(c, "uploadId");
  char *end = NULL;
  long part = pn ? strtol(pn, &end, 10) : 0;
  if (!pn || !id || *end || part < 1 || part > S3_MAX_PARTS) {
    s3_error(c, 400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
    free(pn), free(id);
    return;
  }
  if (s3_header(c, "x-amz-copy-source")) {
    const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
    s3_copy(c, b, id, (uint32_t)part, part_copied);
    free(pn), free(id);
    return;
  }
  s3_upload_t *u = s3_upload_new(c);
  if (u) s3_upload_start(u, repl_mpu_part_begin(c->s3->repl, c->bucket, c->key, id, (uint32_t)part), "");
  free(pn), free(id);
}

/* ---- Complete ---- */

typedef struct complete_s {
  s3_ctx_t *c;
  obj_part_ref_t refs[S3_MAX_PARTS];
  char *etags[S3_MAX_PARTS];
  size_t n;
  char *upload_id;
} complete_t;

static void complete_free(complete_t *k) {
  for (size_t i = 0; i < k->n; i++) free(k->etags[i]);
  free(k->upload_id);
  free(k);
}

static void completed(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  complete_t *k = arg;
  s3_ctx_t *c = k->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
  } else {
    s3_xml_t x;
    s3_xml_begin(&x, "CompleteMultipartUploadResult");
    char loc[600];
    snprintf(loc, sizeof loc, "/%s/%s", c->bucket, c->key);
    s3_xml_elem(&x, "Location", loc);
    s3_xml_elem(&x, "Bucket", c->bucket);
    s3_xml_elem(&x, "Key", c->key);
    s3_xml_elemf(&x, "ETag", "\"%s\"", m->etag);
    if (m->checksum_algorithm[0] && m->checksum_value[0]) {
      char tag[40];
      snprintf(tag, sizeof tag, "Checksum%s", m->checksum_algorithm);
      s3_xml_elem(&x, tag, m->checksum_value);
    }
    s3_xml_close(&x, "CompleteMultipartUploadResult");
    if (m->version_id[0] && strcmp(m->version_id, "null") != 0)
      snprintf(c->reply_version, sizeof c->reply_version, "%s", m->version_id);
    s3_reply_xml(c, 200, &x);
  }
  complete_free(k);
}

void s3_mpu_complete(s3_ctx_t *c) {
  xmlDocPtr d = s3_xml_parse(c->req->body, c->req->body_len);
  xmlNodePtr root = d ? xmlDocGetRootElement(d) : NULL;
  if (!root || strcmp((const char *)root->name, "CompleteMultipartUpload") != 0) {
    if (d) xmlFreeDoc(d);
    s3_error(c, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
    return;
  }
  complete_t *k = calloc(1, sizeof *k);
  k->c = c;
  int bad = 0;
  for (xmlNodePtr p = s3_xml_child(root, "Part"); p && !bad; p = s3_xml_next(p, "Part")) {
    if (k->n == S3_MAX_PARTS) {
      bad = 1;
      break;
    }
    char *num = s3_xml_child_text(p, "PartNumber");
    k->etags[k->n] = s3_xml_child_text(p, "ETag");
    long v = num ? strtol(num, NULL, 10) : 0;
    free(num);
    if (v < 1 || !k->etags[k->n]) bad = 1;
    k->refs[k->n].part_number = (uint32_t)v;
    k->refs[k->n].etag = k->etags[k->n] ? k->etags[k->n] : "";
    k->n++;
  }
  xmlFreeDoc(d);
  if (bad || k->n == 0) {
    s3_error(c, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
    complete_free(k);
    return;
  }
  obj_cond_t cond;
  if (s3_write_condition(c, &cond) != 0) {
    complete_free(k);
    return;
  }
  k->upload_id = s3_param(c, "uploadId");
  const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
  repl_mpu_complete(c->s3->repl, c->bucket, c->key, k->upload_id, k->refs, k->n,
                   b && strcmp(b->versioning, "Enabled") == 0, &cond, completed, k);
}

static void aborted(void *arg, obj_status_t st) {
  s3_ctx_t *c = arg;
  if (st != OBJ_OK) s3_obj_error(c, st);
  else s3_reply_empty(c, 204, NULL);
}

void s3_mpu_abort(s3_ctx_t *c) {
  char *id = s3_param(c, "uploadId");
  repl_mpu_abort(c->s3->repl, c->bucket, c->key, id ? id : "", aborted, c);
  free(id);
}

typedef struct {
  s3_ctx_t *c;
  uint32_t marker, max;
  char *upload_id;
} parts_req_t;

static void parts_listed(void *arg, obj_status_t st, Gureum__UploadPart **parts, size_t n, int truncated) {
  parts_req_t *r = arg;
  s3_ctx_t *c = r->c;
  if (st != OBJ_OK) {
    s3_obj_error(c, st);
  } else {
    s3_xml_t x;
    s3_xml_begin(&x, "ListPartsResult");
    s3_xml_elem(&x, "Bucket", c->bucket);
    s3_xml_elem(&x, "Key", c->key);
    s3_xml_elem(&x, "UploadId", r->upload_id);
    s3_xml_elemf(&x, "PartNumberMarker", "%u", r->marker);
    if (truncated && n) s3_xml_elemf(&x, "NextPartNumberMarker", "%u", parts[n - 1]->part_number);
    s3_xml_elemf(&x, "MaxParts", "%u", r->max);
    s3_xml_elem(&x, "IsTruncated", truncated ? "true" : "false");
    s3_xml_elem(&x, "StorageClass", "STANDARD");
    for (size_t i = 0; i < n; i++) {
      s3_xml_open(&x, "Part");
      s3_xml_elemf(&x, "PartNumber", "%u", parts[i]->part_number);
      s3_xml_elem_time(&x, "LastModified", parts[i]->mtime_ms);
      s3_xml_elemf(&x, "ETag", "\"%s\"", parts[i]->etag);
      s3_xml_elem_u64(&x, "Size", parts[i]->size);
      s3_xml_close(&x, "Part");
    }
    s3_xml_close(&x, "ListPartsResult");
    s3_reply_xml(c, 200, &x);
  }
  free(r->upload_id);
  free(r);
}

void s3_mpu_list_parts(s3_ctx_t *c) {
  parts_req_t *r = calloc(1, sizeof *r);
  r->c = c;
  r->upload_id = s3_param(c, "uploadId");
  char *m = s3_param(c, "part-number-marker"), *mx = s3_param(c, "max-parts");
  r->marker = m ? (uint32_t)strtoul(m, NULL, 10) : 0;
  r->max = mx ? (uint32_t)strtoul(mx, NULL, 10) : 1000;
  if (!r->max || r->max > 1000) r->max = 1000;
  free(m), free(mx);
  repl_mpu_list_parts(c->s3->repl, c->bucket, c->key, r->upload_id ? r->upload_id : "", r->marker, r->max,
                     parts_listed, r);
}
