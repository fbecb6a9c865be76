/* s3_bucket.c - bucket operations of the S3 API: create, head, delete, location, versioning,
 * website, CORS and canned ACLs. Bucket records live in the control plane (bucket/NAME). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "s3.h"

/* A bucket write in flight: the new record, and what to answer when it commits. */
typedef struct bucket_op_s {
  s3_ctx_t *c;
  Gureum__BucketConfig cfg;
  char name[64], owner[128], versioning[16], acl[32], region[32];
  char *website_xml, *cors_xml;
  int kind; /* BOP_* */
} bucket_op_t;

enum { BOP_CREATE, BOP_UPDATE, BOP_DELETE };

static bucket_op_t *bucket_op_new(s3_ctx_t *c, const Gureum__BucketConfig *from, int kind) {
  bucket_op_t *op = calloc(1, sizeof *op);
  op->c = c;
  op->kind = kind;
  gureum__bucket_config__init(&op->cfg);
  if (from) {
    snprintf(op->name, sizeof op->name, "%s", from->name);
    snprintf(op->owner, sizeof op->owner, "%s", from->owner);
    snprintf(op->versioning, sizeof op->versioning, "%s", from->versioning);
    snprintf(op->acl, sizeof op->acl, "%s", from->acl);
    snprintf(op->region, sizeof op->region, "%s", from->region);
    op->website_xml = strdup(from->website_xml);
    op->cors_xml = strdup(from->cors_xml);
    op->cfg.created_ms = from->created_ms;
  } else {
    op->website_xml = strdup("");
    op->cors_xml = strdup("");
  }
  return op;
}

static void bucket_op_free(bucket_op_t *op) {
  free(op->website_xml);
  free(op->cors_xml);
  free(op);
}

static void bucket_op_fill(bucket_op_t *op) {
  op->cfg.name = op->name;
  op->cfg.owner = op->owner;
  op->cfg.versioning = op->versioning;
  op->cfg.acl = op->acl;
  op->cfg.region = op->region;
  op->cfg.website_xml = op->website_xml;
  op->cfg.cors_xml = op->cors_xml;
}

static void bucket_op_done(void *arg, const Gureum__StateResponse *r) {
  bucket_op_t *op = arg;
  s3_ctx_t *c = op->c;
  if (r->code == GUREUM__STATE_RESPONSE__CODE__OK) {
    if (op->kind == BOP_CREATE) {
      char loc[100];
      snprintf(loc, sizeof loc, "/%s", op->name);
      const char *h[] = {"Location", loc, NULL};
      s3_reply_empty(c, 200, h);
    } else {
      s3_reply_empty(c, op->kind == BOP_DELETE ? 204 : 200, NULL);
    }
  } else if (r->code == GUREUM__STATE_RESPONSE__CODE__CONFLICT && op->kind == BOP_CREATE) {
    const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, op->name, NULL);
    if (b && c->akid && strcmp(b->owner, c->akid) == 0)
      s3_error(c, 409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.");
    else
      s3_error(c, 409, "BucketAlreadyExists", "The requested bucket name is not available.");
  } else if (r->code == GUREUM__STATE_RESPONSE__CODE__CONFLICT) {
    s3_error(c, 409, "OperationAborted", "A conflicting conditional operation is in progress on this bucket; try again.");
  } else if (r->code == GUREUM__STATE_RESPONSE__CODE__NOT_FOUND) {
    s3_error(c, 404, "NoSuchBucket", "The specified bucket does not exist");
  } else {
    s3_error(c, 503, "ServiceUnavailable", "control plane: %s", r->error ? r->error : "unavailable");
  }
  bucket_op_free(op);
}

static void bucket_update(s3_ctx_t *c, bucket_op_t *op, uint64_t rev) {
  bucket_op_fill(op);
  s3_meta_put_bucket(c->s3->meta, &op->cfg, (int64_t)rev, bucket_op_done, op);
}

static const char *canned_acl(s3_ctx_t *c) {
  const char *a = s3_header(c, "x-amz-acl");
  if (!a || !*a) return "private";
  if (strcmp(a, "private") == 0 || strcmp(a, "public-read") == 0 || strcmp(a, "public-read-write") == 0 ||
      strcmp(a, "authenticated-read") == 0 || strcmp(a, "bucket-owner-full-control") == 0)
    return a;
  return NULL;
}

static void create_bucket(s3_ctx_t *c) {
  if (!c->akid) {
    s3_error(c, 403, "AccessDenied", "Anonymous users cannot create buckets.");
    return;
  }
  const Gureum__AccessKey *k = s3_meta_key(c->s3->meta, c->akid);
  if (!k || !k->can_create_buckets) {
    s3_error(c, 403, "AccessDenied", "Access key %s may not create buckets.", c->akid);
    return;
  }
  if (!s3_bucket_name_valid(c->bucket)) {
    s3_error(c, 400, "InvalidBucketName", "The specified bucket is not valid.");
    return;
  }
  const char *acl = canned_acl(c);
  if (!acl) {
    s3_error(c, 400, "InvalidArgument", "unsupported x-amz-acl");
    return;
  }
  if (c->req->body_len) {
    xmlDocPtr d = s3_xml_parse(c->req->body, c->req->body_len);
    if (!d) {
      s3_error(c, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
      return;
    }
    xmlFreeDoc(d);
  }
  const Gureum__BucketConfig *b = s3_meta_bucket(c->s3->meta, c->bucket, NULL);
  if (b) {
    if (strcmp(b->owner, c->akid) == 0)
      s3_error(c, 409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.");
    else
      s3_error(c, 409, "BucketAlreadyExists", "The requested bucket name is not available.");
    return;
  }
  bucket_op_t *op = bucket_op_new(c, NULL, BOP_CREATE);
  snprintf(op->name, sizeof op->name, "%s", c->bucket);
  snprintf(op->owner, sizeof op->owner, "%s", c->akid);
  snprintf(op->acl, sizeof op->acl, "%s", acl);
  snprintf(op->region, sizeof op->region, "%s", c->s3->node->cfg.s3_region);
  op->cfg.created_ms = s3_now_ms();
  bucket_op_fill(op);
  s3_meta_put_bucket(c->s3->meta, &op->cfg, 0, bucket_op_done, op);
}

typedef struct {
  s3_ctx_t *c;
  uint64_t rev;
} empty_check_t;

static void delete_if_empty(void *arg, int empty) {
  empty_check_t *e = arg;
  s3_ctx_t *c = e->c;
  if (!empty) {
    s3_error(c, 409, "BucketNotEmpty", "The bucket you tried to delete is not empty");
  } else {
    bucket_op_t *op = bucket_op_new(c, NULL, BOP_DELETE);
    snprintf(op->name, sizeof op->name, "%s", c->bucket);
    s3_meta_delete_bucket(c->s3->meta, c->bucket, (int64_t)e->rev, bucket_op_done, op);
  }
  free(e);
}

static void get_versioning(s3_ctx_t *c, const Gureum__BucketConfig *b) {
  s3_xml_t x;
  s3_xml_begin(&x, "VersioningConfiguration");
  if (b->versioning[0]) s3_xml_elem(&x, "Status", b->versioning);
  s3_xml_close(&x, "VersioningConfiguration");
  s3_reply_xml(c, 200, &x);
}

static void put_versioning(s3_ctx_t *c, const Gureum__BucketConfig *b, uint64_t rev) {
  xmlDocPtr d = s3_xml_parse(c->req->body, c->req->body_len);
  char *status = d ? s3_xml_child_text(xmlDocGetRootElement(d), "Status") : NULL;
  if (d) xmlFreeDoc(d);
  if (!status || (strcmp(status, "Enabled") != 0 && strcmp(status, "Suspended") != 0)) {
    free(status);
    s3_error(c, 400, "MalformedXML", "VersioningConfiguration needs Status Enabled or Suspended.");
    return;
  }
  bucket_op_t *op = bucket_op_new(c, b, BOP_UPDATE);
  snprintf(op->versioning, sizeof op->versioning, "%s", status);
  free(status);
  bucket_update(c, op, rev);
}

static void get_stored_xml(s3_ctx_t *c, const char *xml, const char *code, const char *what) {
  if (!xml || !*xml) {
    s3_error(c, 404, code, "The specified bucket does not have a %s configuration", what);
    return;
  }
  http_respond(c->req, 200, "application/xml", xml, strlen(xml), NULL);
  c->req = NULL;
  s3_ctx_free(c);
}

/* Website: IndexDocument/Suffix or RedirectAllRequestsTo/HostName must be present. */
static int website_valid(xmlDocPtr d) {
  xmlNodePtr root = xmlDocGetRootElement(d);
  if (!root || strcmp((const char *)root->name, "WebsiteConfiguration") != 0) return 0;
  xmlNodePtr idx = s3_xml_child(root, "IndexDocument");
  char *suffix = idx ? s3_xml_child_text(idx, "Suffix") : NULL;
  int ok = suffix && *suffix && !strchr(suffix, '/');
  free(suffix);
  xmlNodePtr redir = s3_xml_child(root, "RedirectAllRequestsTo");
  char *host = redir ? s3_xml_child_text(redir, "HostName") : NULL;
  ok = ok || (host && *host);
  free(host);
  return ok;
}

static int cors_valid(xmlDocPtr d) {
  xmlNodePtr root = xmlDocGetRootElement(d);
  if (!root || strcmp((const char *)root->name, "CORSConfiguration") != 0) return 0;
  xmlNodePtr rule = s3_xml_child(root, "CORSRule");
  if (!rule) return 0;
  for (; rule; rule = s3_xml_next(rule, "CORSRule"))
    if (!s3_xml_child(rule, "AllowedMethod") || !s3_xml_child(rule, "AllowedOrigin")) return 0;
  return 1;
}

static void put_xml_config(s3_ctx_t *c, const Gureum__BucketConfig *b, uint64_t rev, int website) {
  xmlDocPtr d = s3_xml_parse(c->req->body, c->req->body_len);
  int ok = d && (website ? website_valid(d) : cors_valid(d));
  if (d) xmlFreeDoc(d);
  if (!ok) {
    s3_error(c, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.");
    return;
  }
  bucket_op_t *op = bucket_op_new(c, b, BOP_UPDATE);
  char **slot = website ? &op->website_xml : &op->cors_xml;
  free(*slot);
  *slot = strndup(c->req->body, c->req->body_len);
  bucket_update(c, op, rev);
}

static void delete_xml_config(s3_ctx_t *c, const Gureum__BucketConfig *b, uint64_t rev, int website) {
  bucket_op_t *op = bucket_op_new(c, b, BOP_UPDATE);
  char **slot = website ? &op->website_xml : &op->cors_xml;
  free(*slot);
  *slot = strdup("");
  op->kind = BOP_DELETE;
  bucket_update(c, op, rev);
}

static void get_acl(s3_ctx_t *c, const Gureum__BucketConfig *b) {
  s3_xml_t x;
  s3_xml_begin(&x, "AccessControlPolicy");
  s3_xml_open(&x, "Owner");
  s3_xml_elem(&x, "ID", b->owner);
  s3_xml_elem(&x, "DisplayName", b->owner);
  s3_xml_close(&x, "Owner");
  s3_xml_open(&x, "AccessControlList");
  s3_xml_raw(&x, "<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\">");
  s3_xml_elem(&x, "ID", b->owner);
  s3_xml_elem(&x, "DisplayName", b->owner);
  s3_xml_raw(&x, "</Grantee><Permission>FULL_CONTROL</Permission></Grant>");
  if (strncmp(b->acl, "public-read", 11) == 0)
    s3_xml_raw(&x, "<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\">"
                   "<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission></Grant>");
  if (strcmp(b->acl, "public-read-write") == 0)
    s3_xml_raw(&x, "<Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"Group\">"
                   "<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>WRITE</Permission></Grant>");
  s3_xml_close(&x, "AccessControlList");
  s3_xml_close(&x, "AccessControlPolicy");
  s3_reply_xml(c, 200, &x);
}

static void put_acl(s3_ctx_t *c, const Gureum__BucketConfig *b, uint64_t rev) {
  const char *acl = canned_acl(c);
  if (!acl || (!s3_header(c, "x-amz-acl") && c->req->body_len)) {
    s3_error(c, 501, "NotImplemented", "Only canned ACLs (x-amz-acl) are supported");
    return;
  }
  bucket_op_t *op = bucket_op_new(c, b, BOP_UPDATE);
  snprintf(op->acl, sizeof op->acl, "%s", acl);
  bucket_update(c, op, rev);
}

void s3_bucket_op(s3_ctx_t *c) {
  const char *m = c->req->method;
  uint64_t rev = 0;
  if (strcmp(m, "PUT") == 0 && !s3_has_subresource(c->req)) {
    create_bucket(c);
    return;
  }
  if (strcmp(m, "OPTIONS") == 0) {
    s3_cors_preflight(c);
    return;
  }
  int write = strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0;
  int config = s3_has_param(c, "versioning") || s3_has_param(c, "website") || s3_has_param(c, "cors") ||
               s3_has_param(c, "acl") || s3_has_param(c, "policy") || s3_has_param(c, "lifecycle") ||
               (strcmp(m, "DELETE") == 0 && !s3_has_param(c, "delete"));
  s3_perm_t need = config ? S3_PERM_OWNER : write ? S3_PERM_WRITE : S3_PERM_READ;
  const Gureum__BucketConfig *b = s3_bucket_for(c, need, &rev);
  if (!b) return;
  if (strcmp(m, "HEAD") == 0) {
    const char *h[] = {"x-amz-bucket-region", b->region, NULL};
    s3_reply_empty(c, 200, h);
  } else if (strcmp(m, "GET") == 0) {
    if (s3_has_param(c, "location")) {
      s3_xml_t x;
      memset(&x, 0, sizeof x);
      s3_xml_raw(&x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"" S3_XMLNS "\">");
      if (strcmp(b->region, "us-east-1") != 0) s3_xml_raw(&x, b->region);
      s3_xml_raw(&x, "</LocationConstraint>");
      s3_reply_xml(c, 200, &x);
    } else if (s3_has_param(c, "versioning")) get_versioning(c, b);
    else if (s3_has_param(c, "website")) get_stored_xml(c, b->website_xml, "NoSuchWebsiteConfiguration", "website");
    else if (s3_has_param(c, "cors")) get_stored_xml(c, b->cors_xml, "NoSuchCORSConfiguration", "CORS");
    else if (s3_has_param(c, "acl")) get_acl(c, b);
    else if (s3_has_param(c, "uploads")) s3_list_uploads(c);
    else if (s3_has_param(c, "versions")) s3_list_versions(c);
    else if (s3_has_param(c, "policy")) s3_error(c, 404, "NoSuchBucketPolicy", "The bucket policy does not exist");
    else if (s3_has_param(c, "lifecycle")) s3_error(c, 404, "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist");
    else if (s3_has_param(c, "tagging")) s3_error(c, 404, "NoSuchTagSet", "The TagSet does not exist");
    else {
      char *lt = s3_param(c, "list-type");
      int v2 = lt && strcmp(lt, "2") == 0;
      free(lt);
      s3_list_objects(c, v2);
    }
  } else if (strcmp(m, "PUT") == 0) {
    if (s3_has_param(c, "versioning")) put_versioning(c, b, rev);
    else if (s3_has_param(c, "website")) put_xml_config(c, b, rev, 1);
    else if (s3_has_param(c, "cors")) put_xml_config(c, b, rev, 0);
    else if (s3_has_param(c, "acl")) put_acl(c, b, rev);
    else s3_error(c, 501, "NotImplemented", "This bucket configuration is not implemented");
  } else if (strcmp(m, "DELETE") == 0) {
    if (s3_has_param(c, "website")) delete_xml_config(c, b, rev, 1);
    else if (s3_has_param(c, "cors")) delete_xml_config(c, b, rev, 0);
    else if (s3_has_param(c, "policy") || s3_has_param(c, "lifecycle") || s3_has_param(c, "tagging"))
      s3_reply_empty(c, 204, NULL);
    else if (s3_has_subresource(c->req)) /* never let an unknown sub-resource delete the bucket */
      s3_error(c, 501, "NotImplemented", "This bucket configuration is not implemented");
    else {
      empty_check_t *e = malloc(sizeof *e);
      e->c = c;
      e->rev = rev;
      repl_bucket_is_empty(c->s3->repl, c->bucket, delete_if_empty, e);
    }
  } else if (strcmp(m, "POST") == 0 && s3_has_param(c, "delete")) {
    s3_delete_objects(c);
  } else {
    s3_error(c, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.");
  }
}

void s3_list_buckets(s3_ctx_t *c) {
  if (!c->akid) {
    s3_error(c, 403, "AccessDenied", "Anonymous users cannot list buckets.");
    return;
  }
  s3_xml_t x;
  s3_xml_begin(&x, "ListAllMyBucketsResult");
  s3_xml_open(&x, "Owner");
  s3_xml_elem(&x, "ID", c->akid);
  s3_xml_elem(&x, "DisplayName", c->akid);
  s3_xml_close(&x, "Owner");
  s3_xml_open(&x, "Buckets");
  for (size_t i = 0; i < s3_meta_nbuckets(c->s3->meta); i++) {
    const Gureum__BucketConfig *b = s3_meta_bucket_at(c->s3->meta, i);
    /* Buckets the key owns or was granted; other people's public buckets are not "mine". */
    if (s3_meta_perm(c->s3->meta, c->akid, b) <= s3_meta_perm(c->s3->meta, NULL, b) &&
        strcmp(b->owner, c->akid) != 0)
      continue;
    s3_xml_open(&x, "Bucket");
    s3_xml_elem(&x, "Name", b->name);
    s3_xml_elem_time(&x, "CreationDate", b->created_ms);
    s3_xml_close(&x, "Bucket");
  }
  s3_xml_close(&x, "Buckets");
  s3_xml_close(&x, "ListAllMyBucketsResult");
  s3_reply_xml(c, 200, &x);
}
