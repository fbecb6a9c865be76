/* replica.c - the replica side of the storage role: each MSG_REPL_* request becomes one call on
 * this node's object layer; streamed writes live in sessions named by their coordinator. */
#include "replica.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "obj_engine.h"
#include "proto/envelope.pb-c.h"
#include "proto/replica.pb-c.h"

#define REPLICA_SESSION_IDLE_MS 60000 /* a coordinator gone this long: its writes are aborted */
#define REPLICA_READ_MAX (4u << 20)

typedef struct replica_session_s replica_session_t;

struct replica_req_s {
  replica_t *r;
  rpc_req_t *rpc;   /* remote request, or NULL */
  rpc_done_fn done; /* local request */
  void *arg;
  uint8_t *copy; /* local request: our copy of the payload */
  size_t len;
  uint32_t type;
  replica_req_t *next; /* local queue */
  /* per-operation state */
  void *msg;                  /* the unpacked request, freed with the request */
  void (*msg_free)(void *msg);
  replica_session_t *session; /* PUT_DATA / PUT_END */
  obj_reader_t *reader;       /* READ */
  Gureum__ObjectMeta *head;   /* HEAD: the version found, while its tombstones are looked up */
  obj_status_t head_st;
  uint8_t *buf;
  size_t fill, want;
};

struct replica_session_s {
  uint64_t id;
  obj_writer_t *w;
  uint64_t offset;
  uint64_t last_ms;
  int busy;
  replica_session_t *next;
};

typedef struct {
  replica_hook_fn fn;
  void *arg;
} replica_hook_t;

struct replica_s {
  node_t *node;
  obj_t *obj;
  replica_session_t *sessions;
  replica_req_t *queue, **queue_tail;
  uv_idle_t *idle;
  uv_timer_t *reaper;
  replica_hook_t hooks[2]; /* SYNC, STATS */
  int live;                /* requests not yet answered */
  int closing;
};

static void replica_maybe_free(replica_t *r);

/* ---- answering ---- */

void replica_answer(replica_req_t *q, uint32_t rpc_status, const char *err, const void *payload,
                    size_t len) {
  replica_t *r = q->r;
  if (q->rpc)
    rpc_reply(q->rpc, rpc_status, err, payload, len);
  else
    q->done(q->arg, rpc_status == GUREUM__RPC_STATUS__RPC_STATUS_OK ? RPC_OK : RPC_EREMOTE, err,
            payload, len);
  if (q->msg && q->msg_free) q->msg_free(q->msg);
  if (q->reader) obj_reader_free(q->reader);
  if (q->head) gureum__object_meta__free_unpacked(q->head, NULL);
  free(q->buf);
  free(q->copy);
  free(q);
  r->live--;
  replica_maybe_free(r);
}

/* Packs any reply message and answers with it. */
static void answer_msg(replica_req_t *q, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "out of memory", NULL, 0);
    return;
  }
  protobuf_c_message_pack(m, buf);
  replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, buf, n);
  free(buf);
}

/* A ReplReply: the object layer's status and, when there is one, the version's meta. */
static void answer_meta(replica_req_t *q, obj_status_t st, const Gureum__ObjectMeta *m) {
  Gureum__ReplReply rep = GUREUM__REPL_REPLY__INIT;
  rep.status = (uint32_t)st;
  rep.meta = (Gureum__ObjectMeta *)m;
  answer_msg(q, (const ProtobufCMessage *)&rep);
}

static void answer_status(replica_req_t *q, obj_status_t st) { answer_meta(q, st, NULL); }

static void answer_bad(replica_req_t *q) {
  replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "payload did not decode", NULL, 0);
}

static void on_meta(void *arg, obj_status_t st, const Gureum__ObjectMeta *m) {
  answer_meta(arg, st, m);
}

static void on_done(void *arg, obj_status_t st) { answer_status(arg, st); }

static void free_repl_put_begin(void *m) { gureum__repl_put_begin__free_unpacked(m, NULL); }
static void free_repl_put_data(void *m) { gureum__repl_put_data__free_unpacked(m, NULL); }
static void free_repl_put_end(void *m) { gureum__repl_put_end__free_unpacked(m, NULL); }
static void free_repl_key(void *m) { gureum__repl_key__free_unpacked(m, NULL); }
static void free_repl_read(void *m) { gureum__repl_read__free_unpacked(m, NULL); }
static void free_repl_delete(void *m) { gureum__repl_delete__free_unpacked(m, NULL); }
static void free_repl_tags(void *m) { gureum__repl_tags__free_unpacked(m, NULL); }
static void free_repl_list(void *m) { gureum__repl_list__free_unpacked(m, NULL); }
static void free_repl_mpu(void *m) { gureum__repl_mpu__free_unpacked(m, NULL); }
static void free_repl_partition(void *m) { gureum__repl_partition__free_unpacked(m, NULL); }
static void free_object_meta(void *m) { gureum__object_meta__free_unpacked(m, NULL); }

/* Decodes with `unpack`, keeps the message with the request (freed by `fr`), or answers
 * BAD_REQUEST. */
static void *take(replica_req_t *q, void *m, void (*fr)(void *)) {
  if (!m) {
    answer_bad(q);
    return NULL;
  }
  q->msg = m;
  q->msg_free = fr;
  return m;
}

static const char *nz(const char *s) { return s && *s ? s : NULL; }

/* ---- streamed writes ---- */

static uint64_t now_ms(const replica_t *r) { return uv_now((uv_loop_t *)&r->node->loop); }

static replica_session_t *session_find(replica_t *r, uint64_t id) {
  for (replica_session_t *s = r->sessions; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

static void session_remove(replica_t *r, replica_session_t *s) {
  for (replica_session_t **p = &r->sessions; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      break;
    }
  free(s);
}


static void put_data_done(void *arg, obj_status_t st);

static void put_begin(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplPutBegin *m = take(q, gureum__repl_put_begin__unpack(NULL, n, p), free_repl_put_begin);
  if (!m) return;
  if (!m->meta || session_find(r, m->session)) {
    answer_bad(q);
    return;
  }
  obj_writer_t *w;
  if (m->upload_id && *m->upload_id) {
    w = obj_mpu_part_begin(r->obj, m->meta->bucket, m->meta->key, m->upload_id, m->part_number);
  } else {
    w = obj_put_begin(r->obj, m->meta, m->versioned);
    obj_cond_t c = {nz(m->if_match), nz(m->if_none_match)};
    if (w && (c.if_match || c.if_none_match)) obj_writer_set_cond(w, &c);
  }
  if (!w) {
    answer_status(q, OBJ_EIO);
    return;
  }
  replica_session_t *s = calloc(1, sizeof *s);
  if (!s) {
    obj_put_abort(w);
    answer_status(q, OBJ_EIO);
    return;
  }
  s->id = m->session;
  s->w = w;
  s->last_ms = now_ms(r);
  s->next = r->sessions;
  r->sessions = s;
  if (m->data.len) { /* the first piece came with the session */
    s->busy = 1;
    s->offset = m->data.len;
    q->session = s;
    obj_write(w, m->data.data, m->data.len, put_data_done, q);
    return;
  }
  answer_status(q, OBJ_OK);
}

static void put_data_done(void *arg, obj_status_t st) {
  replica_req_t *q = arg;
  replica_session_t *s = q->session;
  s->busy = 0;
  s->last_ms = now_ms(q->r);
  if (q->r->closing) { /* replica_free left this session to us */
    obj_put_abort(s->w);
    free(s);
  }
  answer_status(q, st);
}

static void put_data(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplPutData *m = take(q, gureum__repl_put_data__unpack(NULL, n, p), free_repl_put_data);
  if (!m) return;
  replica_session_t *s = session_find(r, m->session);
  if (!s || s->busy || m->offset != s->offset) {
    /* unknown (reaped, or this node restarted), or out of order: the coordinator drops us */
    answer_status(q, OBJ_ECANCELED);
    return;
  }
  s->busy = 1;
  s->offset += m->data.len;
  q->session = s;
  obj_write(s->w, m->data.data, m->data.len, put_data_done, q);
}

static void put_end(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplPutEnd *m = take(q, gureum__repl_put_end__unpack(NULL, n, p), free_repl_put_end);
  if (!m) return;
  replica_session_t *s = session_find(r, m->session);
  if (!s || s->busy) {
    answer_status(q, OBJ_ECANCELED);
    return;
  }
  obj_writer_t *w = s->w;
  session_remove(r, s);
  if (!m->commit) {
    obj_put_abort(w);
    answer_status(q, OBJ_OK);
    return;
  }
  if (m->checksum_algorithm && *m->checksum_algorithm)
    obj_writer_set_checksum(w, m->checksum_algorithm, m->checksum_value, m->checksum_type);
  obj_put_commit(w, on_meta, q);
}

/* Coordinators that vanished mid-write leave sessions behind: abort them after a while. */
static void reap_sessions(uv_timer_t *t) {
  replica_t *r = t->data;
  uint64_t now = now_ms(r);
  for (replica_session_t **p = &r->sessions; *p;) {
    replica_session_t *s = *p;
    if (!s->busy && now - s->last_ms > REPLICA_SESSION_IDLE_MS) {
      *p = s->next;
      log_warn("replica", "session_reaped", "session=%llx", (unsigned long long)s->id);
      obj_put_abort(s->w);
      free(s);
    } else {
      p = &s->next;
    }
  }
}

/* ---- reads ---- */

/* HEAD answers the version and the deletes newer than it: a coordinator must not take a copy
 * that missed a delete for the newest version. */
static void head_tombs(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n) {
  replica_req_t *q = arg;
  Gureum__ReplReply rep = GUREUM__REPL_REPLY__INIT;
  rep.status = (uint32_t)q->head_st;
  rep.meta = q->head;
  if (st == OBJ_OK) {
    rep.tombstones = recs;
    rep.n_tombstones = n;
  }
  answer_msg(q, (const ProtobufCMessage *)&rep);
}

static void head_found(void *arg, obj_status_t st, const Gureum__ObjectMeta *meta) {
  replica_req_t *q = arg;
  Gureum__ReplKey *m = q->msg;
  q->head_st = st;
  if (meta && !(q->head = obj_meta_dup(meta))) {
    answer_status(q, OBJ_EIO);
    return;
  }
  if (st != OBJ_OK && st != OBJ_EDELETED && st != OBJ_ENOENT && st != OBJ_ENOVERSION) {
    answer_meta(q, st, q->head);
    return;
  }
  obj_tombstones(q->r->obj, m->bucket, m->key, nz(m->version_id), q->head ? q->head->ts_us : 0,
                 head_tombs, q);
}

static void head(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplKey *m = take(q, gureum__repl_key__unpack(NULL, n, p), free_repl_key);
  if (m) obj_head(r->obj, m->bucket, m->key, nz(m->version_id), head_found, q);
}

static void answer_data(replica_req_t *q, obj_status_t st) {
  Gureum__ReplReply rep = GUREUM__REPL_REPLY__INIT;
  rep.status = (uint32_t)st;
  if (st == OBJ_OK) {
    rep.data.data = q->buf;
    rep.data.len = q->fill;
  }
  answer_msg(q, (const ProtobufCMessage *)&rep);
}

static void read_data(void *arg, obj_status_t st, const void *data, size_t len, int eof) {
  replica_req_t *q = arg;
  if (st != OBJ_OK) {
    answer_data(q, st);
    return;
  }
  if (len > q->want - q->fill) len = q->want - q->fill;
  memcpy(q->buf + q->fill, data, len);
  q->fill += len;
  if (eof || q->fill == q->want)
    answer_data(q, OBJ_OK);
  else
    obj_read(q->reader, read_data, q);
}

static void read_meta(void *arg, obj_status_t st, const Gureum__ObjectMeta *meta) {
  replica_req_t *q = arg;
  Gureum__ReplRead *m = q->msg;
  if (st != OBJ_OK) {
    answer_data(q, st);
    return;
  }
  if (m->offset >= meta->size) {
    answer_data(q, m->offset == meta->size ? OBJ_OK : OBJ_ERANGE);
    return;
  }
  q->want = m->length;
  if (q->want > meta->size - m->offset) q->want = meta->size - m->offset;
  q->buf = malloc(q->want);
  if (!q->buf) {
    answer_data(q, OBJ_EIO);
    return;
  }
  obj_reader_range(q->reader, m->offset, q->want);
  obj_read(q->reader, read_data, q);
}

static void read_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplRead *m = take(q, gureum__repl_read__unpack(NULL, n, p), free_repl_read);
  if (!m) return;
  if (m->length == 0 || m->length > REPLICA_READ_MAX || !*m->version_id) {
    answer_bad(q);
    return;
  }
  q->reader = obj_get_begin(r->obj, m->bucket, m->key, m->version_id, read_meta, q);
  if (!q->reader) answer_data(q, OBJ_EIO);
}

/* ---- single operations ---- */

static void delete_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplDelete *m = take(q, gureum__repl_delete__unpack(NULL, n, p), free_repl_delete);
  if (!m) return;
  obj_ident_t id = {m->new_version_id, m->ts_us};
  obj_delete_at(r->obj, m->bucket, m->key, nz(m->version_id), m->versioning,
                m->ts_us ? &id : NULL, on_meta, q);
}

static void tags_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplTags *m = take(q, gureum__repl_tags__unpack(NULL, n, p), free_repl_tags);
  if (m)
    obj_set_tags(r->obj, m->bucket, m->key, nz(m->version_id),
                 (const Gureum__KeyValue *const *)m->tags, m->n_tags, on_meta, q);
}

static void apply_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ObjectMeta *m = take(q, gureum__object_meta__unpack(NULL, n, p), free_object_meta);
  if (m) obj_apply_record(r->obj, m, on_meta, q);
}

static void list_done(void *arg, obj_status_t st, const obj_list_t *l) {
  replica_req_t *q = arg;
  Gureum__ReplListReply rep = GUREUM__REPL_LIST_REPLY__INIT;
  rep.status = (uint32_t)st;
  if (st == OBJ_OK) {
    rep.items = l->items;
    rep.n_items = l->n;
    rep.prefixes = l->prefixes;
    rep.n_prefixes = l->nprefixes;
    rep.truncated = l->truncated;
    rep.next_key = l->next_key ? l->next_key : (char *)"";
    rep.next_version = l->next_version ? l->next_version : (char *)"";
  }
  answer_msg(q, (const ProtobufCMessage *)&rep);
}

static void list_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplList *m = take(q, gureum__repl_list__unpack(NULL, n, p), free_repl_list);
  if (!m) return;
  if (m->versions)
    obj_list_versions(r->obj, m->bucket, m->prefix, nz(m->delimiter), nz(m->start_after),
                      nz(m->version_marker), m->max, list_done, q);
  else
    obj_list(r->obj, m->bucket, m->prefix, nz(m->delimiter), nz(m->start_after), m->max,
             list_done, q);
}

static void empty_done(void *arg, int empty) {
  replica_req_t *q = arg;
  Gureum__ReplReply rep = GUREUM__REPL_REPLY__INIT;
  rep.status = empty < 0 ? OBJ_EIO : OBJ_OK;
  rep.empty = empty == 1;
  uint8_t buf[16];
  size_t n = gureum__repl_reply__pack(&rep, buf);
  replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, buf, n);
}

static void empty_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplKey *m = take(q, gureum__repl_key__unpack(NULL, n, p), free_repl_key);
  if (m) obj_bucket_is_empty(r->obj, m->bucket, empty_done, q);
}

/* ---- multipart ---- */

static void mpu_created(void *arg, obj_status_t st, const char *upload_id) {
  replica_req_t *q = arg;
  Gureum__ObjectMeta m = GUREUM__OBJECT_META__INIT;
  m.version_id = (char *)(upload_id ? upload_id : "");
  answer_meta(q, st, &m);
}

static void mpu_create(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplMpu *m = take(q, gureum__repl_mpu__unpack(NULL, n, p), free_repl_mpu);
  if (!m) return;
  if (!m->meta) {
    answer_bad(q);
    return;
  }
  obj_mpu_create(r->obj, m->meta, mpu_created, q);
}

static void mpu_complete(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplMpu *m = take(q, gureum__repl_mpu__unpack(NULL, n, p), free_repl_mpu);
  if (!m) return;
  obj_part_ref_t *refs = calloc(m->n_parts + 1, sizeof *refs);
  if (!refs) {
    answer_status(q, OBJ_EIO);
    return;
  }
  for (size_t i = 0; i < m->n_parts; i++) {
    refs[i].part_number = m->parts[i]->part_number;
    refs[i].etag = m->parts[i]->etag;
  }
  obj_cond_t c = {nz(m->if_match), nz(m->if_none_match)};
  obj_ident_t id = {m->version_id, m->ts_us};
  obj_mpu_complete(r->obj, m->bucket, m->key, m->upload_id, refs, m->n_parts, m->versioned, &c,
                   m->ts_us ? &id : NULL, on_meta, q);
  free(refs); /* the object layer copied them */
}

static void mpu_abort(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplMpu *m = take(q, gureum__repl_mpu__unpack(NULL, n, p), free_repl_mpu);
  if (m) obj_mpu_abort(r->obj, m->bucket, m->key, m->upload_id, on_done, q);
}

static void answer_mpu_list(replica_req_t *q, Gureum__ReplMpuListReply *rep) {
  answer_msg(q, (const ProtobufCMessage *)rep);
}

static void parts_done(void *arg, obj_status_t st, Gureum__UploadPart **parts, size_t n,
                       int truncated) {
  Gureum__ReplMpuListReply rep = GUREUM__REPL_MPU_LIST_REPLY__INIT;
  rep.status = (uint32_t)st;
  rep.parts = parts;
  rep.n_parts = st == OBJ_OK ? n : 0;
  rep.truncated = truncated;
  answer_mpu_list(arg, &rep);
}

static void uploads_done(void *arg, obj_status_t st, Gureum__MultipartUpload **ups, size_t n,
                         int truncated) {
  Gureum__ReplMpuListReply rep = GUREUM__REPL_MPU_LIST_REPLY__INIT;
  rep.status = (uint32_t)st;
  rep.uploads = ups;
  rep.n_uploads = st == OBJ_OK ? n : 0;
  rep.truncated = truncated;
  answer_mpu_list(arg, &rep);
}

static void mpu_parts(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplMpu *m = take(q, gureum__repl_mpu__unpack(NULL, n, p), free_repl_mpu);
  if (m) obj_mpu_list_parts(r->obj, m->bucket, m->key, m->upload_id, m->marker, m->max, parts_done, q);
}

static void mpu_uploads(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplMpu *m = take(q, gureum__repl_mpu__unpack(NULL, n, p), free_repl_mpu);
  if (m)
    obj_mpu_list_uploads(r->obj, m->bucket, m->prefix, nz(m->key_marker), nz(m->upload_marker),
                         m->max, uploads_done, q);
}

/* ---- repair ---- */

static void digests_done(void *arg, obj_status_t st, const obj_digests_t *d) {
  replica_req_t *q = arg;
  Gureum__ReplDigestsReply rep = GUREUM__REPL_DIGESTS_REPLY__INIT;
  rep.status = (uint32_t)st;
  if (st == OBJ_OK) {
    rep.digests.data = (uint8_t *)d->digest;
    rep.digests.len = sizeof d->digest;
    rep.records = (uint64_t *)d->records;
    rep.n_records = OBJ_PARTITIONS;
    rep.objects = (uint64_t *)d->objects;
    rep.n_objects = OBJ_PARTITIONS;
    rep.bytes = (uint64_t *)d->bytes;
    rep.n_bytes = OBJ_PARTITIONS;
  }
  answer_msg(q, (const ProtobufCMessage *)&rep);
}

static void digests_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  (void)p, (void)n;
  obj_digests(r->obj, digests_done, q);
}

static void records_done(void *arg, obj_status_t st, Gureum__ObjectMeta **recs, size_t n) {
  replica_req_t *q = arg;
  Gureum__ReplRecords rep = GUREUM__REPL_RECORDS__INIT;
  rep.status = (uint32_t)st;
  rep.records = recs;
  rep.n_records = st == OBJ_OK ? n : 0;
  answer_msg(q, (const ProtobufCMessage *)&rep);
}

static void records_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  Gureum__ReplPartition *m = take(q, gureum__repl_partition__unpack(NULL, n, p), free_repl_partition);
  if (!m) return;
  if (m->partition >= OBJ_PARTITIONS) {
    answer_bad(q);
    return;
  }
  obj_partition_records(r->obj, m->partition, records_done, q);
}

static void hook_op(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  replica_hook_t *h = &r->hooks[q->type == GUREUM__MSG_TYPE__MSG_REPL_SYNC ? 0 : 1];
  if (!h->fn) {
    replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_NO_HANDLER, "not served here", NULL, 0);
    return;
  }
  h->fn(q, p, n, h->arg);
}

/* ---- dispatch ---- */

typedef void (*replica_op_fn)(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n);

static const struct {
  uint32_t type;
  replica_op_fn fn;
} replica_ops[] = {
    {GUREUM__MSG_TYPE__MSG_REPL_PUT_BEGIN, put_begin},
    {GUREUM__MSG_TYPE__MSG_REPL_PUT_DATA, put_data},
    {GUREUM__MSG_TYPE__MSG_REPL_PUT_END, put_end},
    {GUREUM__MSG_TYPE__MSG_REPL_HEAD, head},
    {GUREUM__MSG_TYPE__MSG_REPL_READ, read_op},
    {GUREUM__MSG_TYPE__MSG_REPL_DELETE, delete_op},
    {GUREUM__MSG_TYPE__MSG_REPL_TAGS, tags_op},
    {GUREUM__MSG_TYPE__MSG_REPL_LIST, list_op},
    {GUREUM__MSG_TYPE__MSG_REPL_BUCKET_EMPTY, empty_op},
    {GUREUM__MSG_TYPE__MSG_REPL_MPU_CREATE, mpu_create},
    {GUREUM__MSG_TYPE__MSG_REPL_MPU_COMPLETE, mpu_complete},
    {GUREUM__MSG_TYPE__MSG_REPL_MPU_ABORT, mpu_abort},
    {GUREUM__MSG_TYPE__MSG_REPL_MPU_PARTS, mpu_parts},
    {GUREUM__MSG_TYPE__MSG_REPL_MPU_UPLOADS, mpu_uploads},
    {GUREUM__MSG_TYPE__MSG_REPL_DIGESTS, digests_op},
    {GUREUM__MSG_TYPE__MSG_REPL_RECORDS, records_op},
    {GUREUM__MSG_TYPE__MSG_REPL_APPLY, apply_op},
    {GUREUM__MSG_TYPE__MSG_REPL_SYNC, hook_op},
    {GUREUM__MSG_TYPE__MSG_REPL_STATS, hook_op},
};
#define REPLICA_NOPS (sizeof replica_ops / sizeof *replica_ops)

static void dispatch(replica_t *r, replica_req_t *q, const uint8_t *p, size_t n) {
  r->live++;
  if (r->closing) {
    replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_SHUTTING_DOWN, "storage is stopping", NULL, 0);
    return;
  }
  for (size_t i = 0; i < REPLICA_NOPS; i++)
    if (replica_ops[i].type == q->type) {
      replica_ops[i].fn(r, q, p, n);
      return;
    }
  replica_answer(q, GUREUM__RPC_STATUS__RPC_STATUS_NO_HANDLER, "unknown replica operation", NULL, 0);
}

static void on_rpc(rpc_req_t *req, void *arg) {
  replica_t *r = arg;
  replica_req_t *q = calloc(1, sizeof *q);
  if (!q) {
    rpc_reply(req, GUREUM__RPC_STATUS__RPC_STATUS_BUSY, "out of memory", NULL, 0);
    return;
  }
  q->r = r;
  q->rpc = req;
  q->type = rpc_req_type(req);
  size_t n;
  const uint8_t *p = rpc_req_payload(req, &n);
  dispatch(r, q, p, n);
}

/* Once the storage role stopped, requests still find an answer (the handlers stay registered
 * on the node's RPC): "not here". */
static void on_rpc_stopped(rpc_req_t *req, void *arg) {
  (void)arg;
  rpc_reply(req, GUREUM__RPC_STATUS__RPC_STATUS_NO_HANDLER, "storage is not running here", NULL, 0);
}

static void on_idle(uv_idle_t *h) {
  replica_t *r = h->data;
  replica_req_t *q = r->queue;
  r->queue = NULL;
  r->queue_tail = &r->queue;
  uv_idle_stop(h);
  while (q) {
    replica_req_t *next = q->next;
    q->next = NULL;
    r->live--; /* dispatch counts it again */
    dispatch(r, q, q->copy, q->len);
    q = next;
  }
}

void replica_call_local(replica_t *r, uint32_t type, const void *payload, size_t len,
                        rpc_done_fn done, void *arg) {
  replica_req_t *q = calloc(1, sizeof *q);
  uint8_t *copy = malloc(len ? len : 1);
  if (!q || !copy) abort(); /* a few bytes; there is no sane way on without them */
  memcpy(copy, payload, len);
  q->r = r;
  q->done = done;
  q->arg = arg;
  q->copy = copy;
  q->len = len;
  q->type = type;
  r->live++;
  *r->queue_tail = q;
  r->queue_tail = &q->next;
  uv_idle_start(r->idle, on_idle);
}

void replica_set_hook(replica_t *r, uint32_t type, replica_hook_fn fn, void *arg) {
  replica_hook_t *h = &r->hooks[type == GUREUM__MSG_TYPE__MSG_REPL_SYNC ? 0 : 1];
  h->fn = fn;
  h->arg = arg;
}

replica_t *replica_new(node_t *n, obj_t *obj) {
  replica_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->node = n;
  r->obj = obj;
  r->queue_tail = &r->queue;
  r->idle = malloc(sizeof *r->idle);
  r->reaper = malloc(sizeof *r->reaper);
  if (!r->idle || !r->reaper) abort();
  uv_idle_init(&n->loop, r->idle);
  r->idle->data = r;
  uv_timer_init(&n->loop, r->reaper);
  r->reaper->data = r;
  uv_timer_start(r->reaper, reap_sessions, 10000, 10000);
  for (size_t i = 0; i < REPLICA_NOPS; i++) rpc_handle(n->rpc, replica_ops[i].type, on_rpc, r);
  return r;
}

static void handle_closed(uv_handle_t *h) { free(h); }

static void replica_maybe_free(replica_t *r) {
  if (!r->closing || r->live > 0 || r->queue) return;
  uv_close((uv_handle_t *)r->idle, handle_closed);
  uv_close((uv_handle_t *)r->reaper, handle_closed);
  free(r);
}

void replica_free(replica_t *r) {
  if (!r) return;
  for (size_t i = 0; i < REPLICA_NOPS; i++)
    rpc_handle(r->node->rpc, replica_ops[i].type, on_rpc_stopped, NULL);
  r->closing = 1;
  while (r->sessions) {
    replica_session_t *s = r->sessions;
    r->sessions = s->next;
    if (s->busy) continue; /* its write completion aborts and frees it */
    obj_put_abort(s->w);
    free(s);
  }
  replica_maybe_free(r);
}
