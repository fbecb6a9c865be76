/* store.c - the node's storage engine: a thin wrapper over RocksDB's C API.
 * Owns the DB, its options and every column family handle; blocking calls go via store_submit. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

struct store_cf_s {
  char *name;
  rocksdb_column_family_handle_t *h;
};

struct store_s {
  rocksdb_t *db;
  rocksdb_options_t *opts; /* DB options, reused as the options of every new CF */
  rocksdb_writeoptions_t *wo_sync;
  rocksdb_writeoptions_t *wo_async;
  rocksdb_readoptions_t *ro; /* latest-state reads; ReadOptions are read-only, so shareable */
  int sync_default;
  store_cf_t *def; /* "default", cached so NULL cf needs no lock */
  /* CF handles are individually allocated so pointers handed out stay valid when the array
   * grows; `mu` guards the array because store_cf may run on any worker thread. */
  pthread_mutex_t mu;
  store_cf_t **cfs;
  size_t ncf, capcf;
};

struct store_iter_s {
  rocksdb_iterator_t *it;
  rocksdb_readoptions_t *ro; /* must outlive the iterator (it may point at a snapshot) */
};

typedef struct {
  uv_work_t req;
  store_work_fn work;
  store_done_fn done;
  void *arg;
} submit_t;

/* Batches and snapshots are used as-is; the public types are just opaque names for them. */
static rocksdb_writebatch_t *wb_of(const store_batch_t *b) { return (rocksdb_writebatch_t *)b; }
static const rocksdb_snapshot_t *rsnap_of(const store_snap_t *s) {
  return (const rocksdb_snapshot_t *)s;
}

/* RocksDB error strings are malloc'ed: hand them over or free them. */
static int fail(char **err, char *rerr) {
  if (err)
    *err = rerr;
  else
    free(rerr);
  return STORE_ERR;
}

static int fail_msg(char **err, const char *msg) {
  if (err) *err = strdup(msg);
  return STORE_ERR;
}

static int fail_errno(char **err, const char *what, int e) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s: %s", what, strerror(e));
  return fail_msg(err, buf);
}

static int mkdir_p(const char *dir) {
  char *p = strdup(dir);
  if (!p) return -ENOMEM;
  int rc = 0;
  /* Walk every '/' so missing parents get created too; a leading '/' is skipped. */
  for (char *c = p + 1;; c++) {
    if (*c != '/' && *c != '\0') continue;
    char saved = *c;
    *c = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      rc = -errno;
      break;
    }
    *c = saved;
    if (saved == '\0') break;
  }
  free(p);
  if (rc == 0) {
    struct stat st;
    if (stat(dir, &st) != 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
  }
  return rc;
}

static int parallelism(void) {
  /* Background flush/compaction threads: enough to overlap, not enough to starve the node. */
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 2) n = 2;
  if (n > 4) n = 4;
  return (int)n;
}

static rocksdb_options_t *make_options(const store_opts_t *o) {
  rocksdb_options_t *opts = rocksdb_options_create();
  rocksdb_options_set_create_if_missing(opts, 1);
  rocksdb_options_set_create_missing_column_families(opts, 1);
  rocksdb_options_increase_parallelism(opts, parallelism());
  rocksdb_options_set_max_open_files(opts, 512); /* stay well below the daemon's fd limit */
  rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, 1);
  rocksdb_options_set_bytes_per_sync(opts, 1 << 20);
  /* RocksDB's own LOG file would otherwise grow without bound on a long-lived node. */
  rocksdb_options_set_keep_log_file_num(opts, 4);
  rocksdb_options_set_max_log_file_size(opts, 8 << 20);

  rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
  /* set_filter_policy takes ownership of the policy. */
  rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
  rocksdb_cache_t *cache = NULL;
  if (o->cache_mb > 0) {
    cache = rocksdb_cache_create_lru((size_t)o->cache_mb << 20);
    rocksdb_block_based_options_set_block_cache(t, cache);
  }
  rocksdb_options_set_block_based_table_factory(opts, t);
  /* The table factory copied the table options and holds its own cache reference. */
  rocksdb_block_based_options_destroy(t);
  if (cache) rocksdb_cache_destroy(cache);
  return opts;
}

static store_cf_t *cf_new(const char *name, rocksdb_column_family_handle_t *h) {
  store_cf_t *cf = malloc(sizeof *cf);
  if (!cf) return NULL;
  cf->name = strdup(name);
  if (!cf->name) {
    free(cf);
    return NULL;
  }
  cf->h = h;
  return cf;
}

static void cf_free(store_cf_t *cf) {
  if (!cf) return;
  rocksdb_column_family_handle_destroy(cf->h);
  free(cf->name);
  free(cf);
}

/* Caller holds s->mu (or is the only thread, during open). */
static int cf_add(store_t *s, store_cf_t *cf) {
  if (s->ncf == s->capcf) {
    size_t cap = s->capcf ? s->capcf * 2 : 8;
    store_cf_t **n = realloc(s->cfs, cap * sizeof *n);
    if (!n) return -1;
    s->cfs = n;
    s->capcf = cap;
  }
  s->cfs[s->ncf++] = cf;
  return 0;
}

static store_cf_t *cf_find(store_t *s, const char *name) {
  for (size_t i = 0; i < s->ncf; i++)
    if (strcmp(s->cfs[i]->name, name) == 0) return s->cfs[i];
  return NULL;
}

static rocksdb_column_family_handle_t *cfh(store_t *s, store_cf_t *cf) {
  return cf ? cf->h : s->def->h;
}

static const rocksdb_writeoptions_t *wopts(store_t *s, int sync) {
  if (sync < 0) sync = s->sync_default;
  return sync ? s->wo_sync : s->wo_async;
}

/* Names of the CFs already on disk; a DB that does not exist yet has only "default".
 * On success *names is either a RocksDB list (*listed = 1) or a static one. */
static int existing_cfs(const char *dir, rocksdb_options_t *opts, char ***names, size_t *n,
                        int *listed, char **err) {
  static char *fresh[] = {"default"};
  char *e = NULL;
  size_t len = 0;
  char **list = rocksdb_list_column_families(opts, dir, &len, &e);
  if (!e) {
    *names = list;
    *n = len;
    *listed = 1;
    return 0;
  }
  /* Even on error RocksDB hands back a (zero-length) malloc'ed list. */
  if (list) rocksdb_list_column_families_destroy(list, len);
  /* Listing reads CURRENT; when that is absent the DB is simply new, anything else is real. */
  char path[4096];
  snprintf(path, sizeof path, "%s/CURRENT", dir);
  if (access(path, F_OK) == 0 || errno != ENOENT) return fail(err, e);
  free(e);
  *names = fresh;
  *n = 1;
  *listed = 0;
  return 0;
}

static void store_free(store_t *s) {
  for (size_t i = 0; i < s->ncf; i++) cf_free(s->cfs[i]);
  free(s->cfs);
  if (s->db) rocksdb_close(s->db);
  if (s->opts) rocksdb_options_destroy(s->opts);
  if (s->wo_sync) rocksdb_writeoptions_destroy(s->wo_sync);
  if (s->wo_async) rocksdb_writeoptions_destroy(s->wo_async);
  if (s->ro) rocksdb_readoptions_destroy(s->ro);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static int open_db(store_t *s, const char *dir, char **err) {
  char **names;
  size_t n;
  int listed;
  if (existing_cfs(dir, s->opts, &names, &n, &listed, err) != 0) return STORE_ERR;

  int rc = STORE_OK;
  const rocksdb_options_t **cfopts = malloc(n * sizeof *cfopts);
  rocksdb_column_family_handle_t **hs = calloc(n, sizeof *hs);
  if (!cfopts || !hs) {
    rc = fail_msg(err, "store: out of memory");
    goto out;
  }
  for (size_t i = 0; i < n; i++) cfopts[i] = s->opts;

  char *e = NULL;
  s->db = rocksdb_open_column_families(s->opts, dir, (int)n, (const char *const *)names, cfopts,
                                       hs, &e);
  if (e) {
    s->db = NULL;
    rc = fail(err, e);
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    store_cf_t *cf = cf_new(names[i], hs[i]);
    if (!cf || cf_add(s, cf) != 0) {
      if (cf) cf_free(cf);
      else rocksdb_column_family_handle_destroy(hs[i]);
      /* Handles not yet wrapped must still be released before the DB closes. */
      for (size_t j = i + 1; j < n; j++) rocksdb_column_family_handle_destroy(hs[j]);
      rc = fail_msg(err, "store: out of memory");
      goto out;
    }
  }
  s->def = cf_find(s, "default");
  if (!s->def) rc = fail_msg(err, "store: no default column family");

out:
  free(cfopts);
  free(hs);
  if (listed) rocksdb_list_column_families_destroy(names, n);
  return rc;
}

int store_open(const char *dir, const store_opts_t *opts, store_t **out, char **err) {
  static const store_opts_t defaults = {0, 0};
  if (!dir || !*dir || !out) return fail_msg(err, "store: invalid argument");
  if (!opts) opts = &defaults;
  *out = NULL;

  int r = mkdir_p(dir);
  if (r != 0) return fail_errno(err, dir, -r);

  store_t *s = calloc(1, sizeof *s);
  if (!s) return fail_msg(err, "store: out of memory");
  pthread_mutex_init(&s->mu, NULL);
  s->sync_default = opts->sync_writes ? 1 : 0;
  s->opts = make_options(opts);
  s->wo_sync = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(s->wo_sync, 1);
  s->wo_async = rocksdb_writeoptions_create();
  rocksdb_writeoptions_set_sync(s->wo_async, 0);
  s->ro = rocksdb_readoptions_create();

  if (open_db(s, dir, err) != STORE_OK) {
    store_free(s);
    return STORE_ERR;
  }
  log_info("store", "open", "dir=%s cfs=%zu cache_mb=%d sync=%d", dir, s->ncf, opts->cache_mb,
           s->sync_default);
  *out = s;
  return STORE_OK;
}

void store_close(store_t *s) {
  if (!s) return;
  char *e = NULL;
  /* Unflushed async writes live only in the WAL's OS buffers; make them durable first. */
  if (store_flush(s, &e) != STORE_OK) {
    log_error("store", "close_flush_failed", "err=\"%s\"", e ? e : "?");
    free(e);
  }
  store_free(s);
}

int store_flush(store_t *s, char **err) {
  if (!s) return fail_msg(err, "store: invalid argument");
  /* Copy the handles so a long flush does not block store_cf lookups; handles are only
   * destroyed by store_close, so the copies stay valid. */
  pthread_mutex_lock(&s->mu);
  size_t n = s->ncf;
  rocksdb_column_family_handle_t **hs = malloc(n * sizeof *hs);
  if (hs)
    for (size_t i = 0; i < n; i++) hs[i] = s->cfs[i]->h;
  pthread_mutex_unlock(&s->mu);
  if (!hs) return fail_msg(err, "store: out of memory");

  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  char *e = NULL;
  for (size_t i = 0; i < n && !e; i++) rocksdb_flush_cf(s->db, fo, hs[i], &e);
  rocksdb_flushoptions_destroy(fo);
  free(hs);
  if (!e) rocksdb_flush_wal(s->db, 1, &e);
  return e ? fail(err, e) : STORE_OK;
}

store_cf_t *store_cf(store_t *s, const char *name, char **err) {
  if (!s || !name || !*name) {
    fail_msg(err, "store: invalid argument");
    return NULL;
  }
  pthread_mutex_lock(&s->mu);
  store_cf_t *cf = cf_find(s, name);
  if (!cf) {
    /* Created under the lock so two threads asking for the same new CF do not race. */
    char *e = NULL;
    rocksdb_column_family_handle_t *h = rocksdb_create_column_family(s->db, s->opts, name, &e);
    if (e) {
      fail(err, e);
    } else if (!(cf = cf_new(name, h)) || cf_add(s, cf) != 0) {
      if (cf) cf_free(cf);
      else rocksdb_column_family_handle_destroy(h);
      cf = NULL;
      fail_msg(err, "store: out of memory");
    } else {
      log_info("store", "cf_created", "name=%s", name);
    }
  }
  pthread_mutex_unlock(&s->mu);
  return cf;
}

int store_put(store_t *s, store_cf_t *cf, const void *k, size_t kl, const void *v, size_t vl,
              int sync, char **err) {
  if (!s || (!k && kl) || (!v && vl)) return fail_msg(err, "store: invalid argument");
  char *e = NULL;
  rocksdb_put_cf(s->db, wopts(s, sync), cfh(s, cf), k, kl, v, vl, &e);
  return e ? fail(err, e) : STORE_OK;
}

int store_delete(store_t *s, store_cf_t *cf, const void *k, size_t kl, int sync, char **err) {
  if (!s || (!k && kl)) return fail_msg(err, "store: invalid argument");
  char *e = NULL;
  rocksdb_delete_cf(s->db, wopts(s, sync), cfh(s, cf), k, kl, &e);
  return e ? fail(err, e) : STORE_OK;
}

int store_get(store_t *s, store_cf_t *cf, const store_snap_t *snap, const void *k, size_t kl,
              void **v, size_t *vl, char **err) {
  if (!s || (!k && kl) || !v) return fail_msg(err, "store: invalid argument");
  *v = NULL;
  if (vl) *vl = 0;
  rocksdb_readoptions_t *ro = s->ro;
  if (snap) {
    ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, rsnap_of(snap));
  }
  char *e = NULL;
  /* Pinned get: NULL unambiguously means "not found", even for empty values. */
  rocksdb_pinnableslice_t *ps = rocksdb_get_pinned_cf(s->db, ro, cfh(s, cf), k, kl, &e);
  if (snap) rocksdb_readoptions_destroy(ro);
  if (e) {
    rocksdb_pinnableslice_destroy(ps);
    return fail(err, e);
  }
  if (!ps) return STORE_NOTFOUND;

  size_t n = 0;
  const char *p = rocksdb_pinnableslice_value(ps, &n);
  /* One spare NUL so text values can be used as C strings directly. */
  char *buf = malloc(n + 1);
  if (!buf) {
    rocksdb_pinnableslice_destroy(ps);
    return fail_msg(err, "store: out of memory");
  }
  if (n) memcpy(buf, p, n);
  buf[n] = '\0';
  rocksdb_pinnableslice_destroy(ps);
  *v = buf;
  if (vl) *vl = n;
  return STORE_OK;
}

store_batch_t *store_batch_new(void) { return (store_batch_t *)rocksdb_writebatch_create(); }

void store_batch_put(store_batch_t *b, store_cf_t *cf, const void *k, size_t kl, const void *v,
                     size_t vl) {
  if (!b) return;
  /* A batch knows no store, so a NULL cf means the default CF via the plain call. */
  if (cf)
    rocksdb_writebatch_put_cf(wb_of(b), cf->h, k, kl, v, vl);
  else
    rocksdb_writebatch_put(wb_of(b), k, kl, v, vl);
}

void store_batch_delete(store_batch_t *b, store_cf_t *cf, const void *k, size_t kl) {
  if (!b) return;
  if (cf)
    rocksdb_writebatch_delete_cf(wb_of(b), cf->h, k, kl);
  else
    rocksdb_writebatch_delete(wb_of(b), k, kl);
}

size_t store_batch_count(const store_batch_t *b) {
  return b ? (size_t)rocksdb_writebatch_count(wb_of(b)) : 0;
}

int store_write(store_t *s, store_batch_t *b, int sync, char **err) {
  if (!s || !b) return fail_msg(err, "store: invalid argument");
  char *e = NULL;
  rocksdb_write(s->db, wopts(s, sync), wb_of(b), &e);
  return e ? fail(err, e) : STORE_OK;
}

void store_batch_free(store_batch_t *b) {
  if (b) rocksdb_writebatch_destroy(wb_of(b));
}

const store_snap_t *store_snapshot(store_t *s) {
  return s ? (const store_snap_t *)rocksdb_create_snapshot(s->db) : NULL;
}

void store_snapshot_release(store_t *s, const store_snap_t *snap) {
  if (s && snap) rocksdb_release_snapshot(s->db, rsnap_of(snap));
}

store_iter_t *store_iter_new(store_t *s, store_cf_t *cf, const store_snap_t *snap) {
  if (!s) return NULL;
  store_iter_t *it = malloc(sizeof *it);
  if (!it) return NULL;
  it->ro = rocksdb_readoptions_create();
  if (snap) rocksdb_readoptions_set_snapshot(it->ro, rsnap_of(snap));
  it->it = rocksdb_create_iterator_cf(s->db, it->ro, cfh(s, cf));
  return it;
}

void store_iter_seek(store_iter_t *it, const void *k, size_t kl) {
  rocksdb_iter_seek(it->it, k, kl);
}

void store_iter_seek_first(store_iter_t *it) { rocksdb_iter_seek_to_first(it->it); }

int store_iter_valid(const store_iter_t *it) { return it && rocksdb_iter_valid(it->it); }

void store_iter_next(store_iter_t *it) { rocksdb_iter_next(it->it); }

const void *store_iter_key(const store_iter_t *it, size_t *len) {
  size_t n = 0;
  const char *k = rocksdb_iter_key(it->it, &n);
  if (len) *len = n;
  return k;
}

const void *store_iter_value(const store_iter_t *it, size_t *len) {
  size_t n = 0;
  const char *v = rocksdb_iter_value(it->it, &n);
  if (len) *len = n;
  return v;
}

int store_iter_status(const store_iter_t *it, char **err) {
  if (!it) return fail_msg(err, "store: invalid argument");
  char *e = NULL;
  rocksdb_iter_get_error(it->it, &e);
  return e ? fail(err, e) : 0;
}

void store_iter_free(store_iter_t *it) {
  if (!it) return;
  /* The iterator references the read options, so it goes first. */
  rocksdb_iter_destroy(it->it);
  rocksdb_readoptions_destroy(it->ro);
  free(it);
}

static void submit_work(uv_work_t *req) {
  submit_t *w = req->data;
  if (w->work) w->work(w->arg);
}

static void submit_after(uv_work_t *req, int status) {
  submit_t *w = req->data;
  if (w->done) w->done(w->arg, status == UV_ECANCELED);
  free(w);
}

int store_submit(uv_loop_t *loop, store_work_fn work, store_done_fn done, void *arg) {
  if (!loop) return UV_EINVAL;
  submit_t *w = malloc(sizeof *w);
  if (!w) return UV_ENOMEM;
  w->req.data = w;
  w->work = work;
  w->done = done;
  w->arg = arg;
  int rc = uv_queue_work(loop, &w->req, submit_work, submit_after);
  if (rc != 0) free(w);
  return rc;
}

uint64_t store_disk_bytes(store_t *s) {
  if (!s) return 0;
  uint64_t total = 0;
  /* SST files are the bulk; memtables approximate what the WAL holds until the next flush. */
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->ncf; i++) {
    uint64_t v = 0;
    if (rocksdb_property_int_cf(s->db, s->cfs[i]->h, "rocksdb.total-sst-files-size", &v) == 0)
      total += v;
    if (rocksdb_property_int_cf(s->db, s->cfs[i]->h, "rocksdb.cur-size-all-mem-tables", &v) == 0)
      total += v;
  }
  pthread_mutex_unlock(&s->mu);
  return total;
}
