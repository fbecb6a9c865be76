/* store.h - the node's storage engine: a thin RocksDB wrapper shared by every role.
 * Column families, atomic batches, iterators, snapshots, sync or async writes; blocking calls
 * must run off the event loop: use store_submit() to run them on the worker pool. */
#ifndef GUREUM_STORE_H
#define GUREUM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct store_s store_t;
typedef struct store_cf_s store_cf_t;       /* a column family handle, owned by the store */
typedef struct store_batch_s store_batch_t; /* an atomic write batch */
typedef struct store_iter_s store_iter_t;
typedef struct store_snap_s store_snap_t;

typedef struct store_opts_s {
  int cache_mb;    /* block cache size; 0 = RocksDB default */
  int sync_writes; /* default durability for store_put/delete/write when sync < 0 */
} store_opts_t;

/* Errors are returned as negative values; *err (if non-NULL) receives a malloc'ed message
 * the caller frees with free(). */
#define STORE_OK 0
#define STORE_NOTFOUND 1
#define STORE_ERR (-1)

/* Open (creating if needed) the database at `dir`, with every column family already on disk. */
int store_open(const char *dir, const store_opts_t *opts, store_t **out, char **err);
/* Flush memtables and WAL to disk, then close. Safe on NULL. */
void store_close(store_t *s);
int store_flush(store_t *s, char **err);

/* Get (creating if missing) the column family `name`. "default" always exists. */
store_cf_t *store_cf(store_t *s, const char *name, char **err);

/* sync: 1 = fsync WAL before returning, 0 = no, -1 = the store's default. */
int store_put(store_t *s, store_cf_t *cf, const void *k, size_t kl, const void *v, size_t vl,
              int sync, char **err);
int store_delete(store_t *s, store_cf_t *cf, const void *k, size_t kl, int sync, char **err);
/* Returns STORE_OK with a malloc'ed *v (free with free()), STORE_NOTFOUND, or STORE_ERR.
 * `snap` may be NULL for the latest state. */
int store_get(store_t *s, store_cf_t *cf, const store_snap_t *snap, const void *k, size_t kl,
              void **v, size_t *vl, char **err);

store_batch_t *store_batch_new(void);
void store_batch_put(store_batch_t *b, store_cf_t *cf, const void *k, size_t kl, const void *v,
                     size_t vl);
void store_batch_delete(store_batch_t *b, store_cf_t *cf, const void *k, size_t kl);
size_t store_batch_count(const store_batch_t *b);
int store_write(store_t *s, store_batch_t *b, int sync, char **err);
void store_batch_free(store_batch_t *b);

const store_snap_t *store_snapshot(store_t *s);
void store_snapshot_release(store_t *s, const store_snap_t *snap);

/* Iterate a column family in key order; `snap` may be NULL. */
store_iter_t *store_iter_new(store_t *s, store_cf_t *cf, const store_snap_t *snap);
void store_iter_seek(store_iter_t *it, const void *k, size_t kl); /* first key >= k */
void store_iter_seek_first(store_iter_t *it);
int store_iter_valid(const store_iter_t *it);
void store_iter_next(store_iter_t *it);
const void *store_iter_key(const store_iter_t *it, size_t *len);
const void *store_iter_value(const store_iter_t *it, size_t *len);
/* Returns 0, or STORE_ERR with *err set when iteration stopped on an I/O error. */
int store_iter_status(const store_iter_t *it, char **err);
void store_iter_free(store_iter_t *it);

/* Run work(arg) on the libuv worker pool, then done(arg) on the loop thread. */
typedef void (*store_work_fn)(void *arg);
typedef void (*store_done_fn)(void *arg, int cancelled);
int store_submit(uv_loop_t *loop, store_work_fn work, store_done_fn done, void *arg);

/* Approximate bytes on disk (for metrics). */
uint64_t store_disk_bytes(store_t *s);

#endif
