/* layout_mgr.c - the storage layout's driver: mirrors `storage/layout` and the sync reports
 * through watches; on the Raft leader, recomputes the layout from gossip and clears moves. */
#include "layout_mgr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "gossip.h"
#include "log.h"

#define LAYOUT_KEY "storage/layout"
#define LAYOUT_SYNCED_PREFIX "storage/synced/"
/* The leader polls the member table instead of subscribing to gossip: gossip has no
 * unsubscribe, and this role can stop and start again at run time. Polling a few dozen
 * members five times a second costs nothing. */
#define LAYOUT_TICK_MS 200
#define LAYOUT_MIN_INTERVAL_MS 1000 /* recomputations at most this often; prev clearing too */

typedef struct {
  layout_change_fn fn;
  void *arg;
} layout_sub_t;

/* A storage node the layout should hold, as the leader sees it now. */
typedef struct {
  char name[64], zone[64], addr[80];
} layout_want_t;

struct layout_mgr_s {
  node_t *node;
  Gureum__Layout *cur;
  uint64_t cur_rev;     /* revision of storage/layout: the `expect` of our writes (0 = absent) */
  uint64_t max_version; /* highest version seen, so that a deleted layout does not restart at 1 */
  int watch_layout, watch_synced;
  Gureum__LayoutSynced **reports; /* storage/synced/<node>, one per node */
  size_t nreports;
  layout_sub_t *subs;
  size_t nsubs;
  uv_timer_t tick;
  int leading;
  uint64_t leading_since; /* uv_now when this node became leader */
  /* uv_now of the last recomputation and of the last prev clearing (0 = never). Separate, so
   * that clearing finished moves never delays reacting to a node that left. */
  uint64_t last_compute, last_clear;
  int writes;             /* in flight: the manager is freed only once they have answered */
  int closing, timer_open;
};

typedef struct {
  layout_mgr_t *m;
  Gureum__Layout *l; /* what we wrote, for the log line */
  uint32_t moved;
  int cleared;       /* partitions whose prev this write clears (0: a recomputation) */
  uint64_t started;
} layout_write_t;

static uint64_t layout_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int layout_moving(const Gureum__Layout *l) {
  int n = 0;
  for (size_t p = 0; l && p < l->n_partitions; p++) n += l->partitions[p]->n_prev > 0;
  return n;
}

static void layout_mgr_maybe_free(layout_mgr_t *m) {
  if (!m->closing || m->timer_open || m->writes) return;
  layout_free(m->cur);
  for (size_t i = 0; i < m->nreports; i++) gureum__layout_synced__free_unpacked(m->reports[i], NULL);
  free(m->reports);
  free(m->subs);
  free(m);
}

/* ---- the mirror ---- */

static void layout_notify(layout_mgr_t *m) {
  /* By index: a callback may register another one. */
  for (size_t i = 0; i < m->nsubs; i++) m->subs[i].fn(m->cur, m->subs[i].arg);
}

static void layout_on_change(const state_change_t *c, int resync, void *arg) {
  layout_mgr_t *m = arg;
  (void)resync;
  if (strcmp(c->key, LAYOUT_KEY) != 0) return; /* the watch is a prefix */
  if (c->deleted) {
    layout_free(m->cur);
    m->cur = NULL;
    m->cur_rev = 0;
    log_warn("layout", "deleted", "revision=%llu", (unsigned long long)c->revision);
    layout_notify(m);
    return;
  }
  /* The revision counts even if the value is unreadable: the leader then overwrites it. */
  m->cur_rev = c->revision;
  Gureum__Layout *l = layout_unpack(c->value, c->len);
  if (!l) {
    log_warn("layout", "bad_layout", "revision=%llu bytes=%zu", (unsigned long long)c->revision, c->len);
    return;
  }
  layout_free(m->cur);
  m->cur = l;
  if (l->version > m->max_version) m->max_version = l->version;
  log_debug("layout", "mirrored", "version=%llu revision=%llu moving=%d", (unsigned long long)l->version,
            (unsigned long long)c->revision, layout_moving(l));
  layout_notify(m);
}

static void layout_on_synced(const state_change_t *c, int resync, void *arg) {
  layout_mgr_t *m = arg;
  (void)resync;
  const char *node = c->key + strlen(LAYOUT_SYNCED_PREFIX);
  for (size_t i = 0; i < m->nreports; i++)
    if (strcmp(m->reports[i]->node, node) == 0) {
      gureum__layout_synced__free_unpacked(m->reports[i], NULL);
      m->reports[i] = m->reports[--m->nreports];
      break;
    }
  if (c->deleted) return;
  Gureum__LayoutSynced *r = gureum__layout_synced__unpack(NULL, c->len, c->value);
  /* The key names the node; a report claiming another name is ignored. */
  if (!r || !r->node || strcmp(r->node, node) != 0) {
    log_warn("layout", "bad_sync_report", "key=%s", c->key);
    if (r) gureum__layout_synced__free_unpacked(r, NULL);
    return;
  }
  Gureum__LayoutSynced **a = realloc(m->reports, (m->nreports + 1) * sizeof *a);
  if (!a) {
    gureum__layout_synced__free_unpacked(r, NULL);
    return;
  }
  m->reports = a;
  m->reports[m->nreports++] = r;
}

/* ---- the leader's duty ---- */

static int layout_has_storage(const member_t *mb) {
  for (int i = 0; i < mb->nroles; i++)
    if (strcmp(mb->roles[i], "storage") == 0) return 1;
  return 0;
}

static int layout_want_cmp(const void *a, const void *b) {
  return strcmp(((const layout_want_t *)a)->name, ((const layout_want_t *)b)->name);
}

/* The storage nodes the layout should hold: alive or suspect; dead for less than
 * storage.dead_timeout_s (a node that comes back in time moves nothing); not those that left or
 * dropped the role. A layout node this leader has never heard of (it just took over, gossip
 * is still filling in) counts as dead since we took over. Sorted by name. */
static size_t layout_wanted(layout_mgr_t *m, layout_want_t **out) {
  gossip_t *g = m->node->gossip;
  size_t ng = g ? gossip_count(g) : 0, nc = m->cur ? m->cur->n_nodes : 0, n = 0;
  layout_want_t *w = calloc(ng + nc + 1, sizeof *w);
  if (!w) return *out = NULL, 0;
  uint64_t wall = layout_wall_ms(), timeout = (uint64_t)m->node->cfg.storage_dead_timeout_s * 1000;
  for (size_t i = 0; i < ng; i++) {
    const member_t *mb = gossip_member(g, i);
    if (!layout_has_storage(mb)) continue;
    int keep = mb->state == MEMBER_STATE_ALIVE || mb->state == MEMBER_STATE_SUSPECT;
    if (mb->state == MEMBER_STATE_DEAD) keep = mb->since_ms > wall || wall - mb->since_ms < timeout;
    if (!keep) continue;
    snprintf(w[n].name, sizeof w[n].name, "%s", mb->name);
    snprintf(w[n].zone, sizeof w[n].zone, "%s", mb->zone);
    snprintf(w[n].addr, sizeof w[n].addr, "%s", mb->addr);
    n++;
  }
  int grace = uv_now(&m->node->loop) - m->leading_since < timeout;
  for (size_t i = 0; grace && i < nc; i++) {
    const Gureum__LayoutNode *ln = m->cur->nodes[i];
    int known = 0;
    for (size_t k = 0; k < ng && !known; k++) known = strcmp(gossip_member(g, k)->name, ln->name) == 0;
    if (known) continue;
    snprintf(w[n].name, sizeof w[n].name, "%s", ln->name);
    snprintf(w[n].zone, sizeof w[n].zone, "%s", ln->zone);
    snprintf(w[n].addr, sizeof w[n].addr, "%s", ln->addr);
    n++;
  }
  qsort(w, n, sizeof *w, layout_want_cmp);
  *out = w;
  return n;
}

static int layout_differs(layout_mgr_t *m, const layout_want_t *w, size_t n) {
  const Gureum__Layout *l = m->cur;
  if (!l) return n > 0;
  if (l->replicas != (uint32_t)m->node->cfg.storage_replicas || l->n_nodes != n) return 1;
  for (size_t i = 0; i < n; i++) {
    const Gureum__LayoutNode *ln = layout_node(l, w[i].name);
    if (!ln || strcmp(ln->zone, w[i].zone) != 0 || strcmp(ln->addr, w[i].addr) != 0) return 1;
  }
  return 0;
}

static void layout_names(const Gureum__Layout *l, char *out, size_t len) {
  size_t k = 0;
  out[0] = 0;
  for (size_t i = 0; l && i < l->n_nodes && k + 1 < len; i++) {
    int w = snprintf(out + k, len - k, "%s%s", i ? "," : "", l->nodes[i]->name);
    if (w < 0) break;
    k += (size_t)w;
  }
}

static void layout_written(void *arg, const Gureum__StateResponse *r) {
  layout_write_t *wr = arg;
  layout_mgr_t *m = wr->m;
  m->writes--;
  uint64_t took = uv_now(&m->node->loop) - wr->started;
  if (r->code == GUREUM__STATE_RESPONSE__CODE__OK && !wr->cleared) {
    char names[512];
    layout_names(wr->l, names, sizeof names);
    log_info("layout", "changed", "version=%llu revision=%llu nodes=%s replicas=%u moved_slots=%u moving=%d took_ms=%llu",
             (unsigned long long)wr->l->version, (unsigned long long)r->revision, names, wr->l->replicas,
             wr->moved, layout_moving(wr->l), (unsigned long long)took);
  } else if (r->code == GUREUM__STATE_RESPONSE__CODE__OK) {
    log_info("layout", "moves_finished", "version=%llu revision=%llu partitions=%d still_moving=%d",
             (unsigned long long)wr->l->version, (unsigned long long)r->revision, wr->cleared,
             layout_moving(wr->l));
  } else if (r->code == GUREUM__STATE_RESPONSE__CODE__CONFLICT) {
    /* Someone wrote first (an earlier leader): retry from that layout once it is mirrored. */
    log_info("layout", "conflict", "expected_revision=%llu current_revision=%llu",
             (unsigned long long)m->cur_rev, (unsigned long long)r->current_revision);
  } else {
    log_warn("layout", "write_failed", "code=%d error=\"%s\"", (int)r->code, r->error ? r->error : "");
  }
  layout_free(wr->l);
  free(wr);
  layout_mgr_maybe_free(m);
}

/* Compare-and-set on the revision we mirrored, so two leaders (an old one that has not heard
 * yet) can never overwrite each other's layout blindly. */
static void layout_write(layout_mgr_t *m, Gureum__Layout *l, uint32_t moved, int cleared) {
  layout_write_t *wr = calloc(1, sizeof *wr);
  size_t len;
  uint8_t *buf = wr ? layout_pack(l, &len) : NULL;
  if (!buf) {
    free(wr);
    layout_free(l);
    return;
  }
  *wr = (layout_write_t){m, l, moved, cleared, uv_now(&m->node->loop)};
  m->writes++;
  if (cleared) m->last_clear = wr->started;
  else m->last_compute = wr->started;
  control_put(m->node->control, LAYOUT_KEY, buf, len, (int64_t)m->cur_rev, layout_written, wr);
  free(buf);
}

static int layout_due(layout_mgr_t *m, uint64_t last) {
  return !last || uv_now(&m->node->loop) - last >= LAYOUT_MIN_INTERVAL_MS;
}

static void layout_maintain(layout_mgr_t *m) {
  layout_want_t *w;
  size_t n = layout_wanted(m, &w);
  if (n && layout_differs(m, w, n)) {
    if (!layout_due(m, m->last_compute)) {
      free(w);
      return; /* the next tick after the interval picks the change up */
    }
    layout_member_t *mem = calloc(n, sizeof *mem);
    for (size_t i = 0; mem && i < n; i++) mem[i] = (layout_member_t){w[i].name, w[i].zone, w[i].addr};
    Gureum__Layout *l = mem ? layout_compute(m->cur, mem, n, (uint32_t)m->node->cfg.storage_replicas) : NULL;
    free(mem);
    if (l) {
      if (l->version <= m->max_version) l->version = m->max_version + 1;
      l->updated_ms = layout_wall_ms();
      layout_write(m, l, layout_moved_slots(m->cur, l), 0);
    }
  } else if (m->cur && !layout_settled(m->cur) && layout_due(m, m->last_clear)) {
    /* The version stays: clearing prev changes no owner, and sync reports name the version
     * they were made for, so the ones not yet counted stay valid. */
    Gureum__Layout *l = layout_mark_synced(m->cur, (const Gureum__LayoutSynced *const *)m->reports,
                                           m->nreports);
    if (l) {
      l->updated_ms = layout_wall_ms();
      layout_write(m, l, 0, layout_moving(m->cur) - layout_moving(l));
    }
  }
  free(w);
}

/* The Raft leader keeps the layout. A leader without the storage role has no layout manager,
 * so then the alive storage node with the lowest name stands in (its writes are
 * compare-and-set like the leader's, so a brief overlap is harmless). */
static int layout_should_lead(layout_mgr_t *m) {
  if (control_is_leader(m->node->control)) return 1;
  const char *leader = control_leader_name(m->node->control);
  gossip_t *g = m->node->gossip;
  if (!leader || !g) return 0;
  for (size_t i = 0; i < gossip_count(g); i++) {
    const member_t *mb = gossip_member(g, i);
    if (strcmp(mb->name, leader) == 0 && layout_has_storage(mb)) return 0;
    if (mb->state == MEMBER_STATE_ALIVE && layout_has_storage(mb) && strcmp(mb->name, m->node->cfg.name) < 0)
      return 0;
  }
  return 1;
}

static void layout_tick(uv_timer_t *t) {
  layout_mgr_t *m = t->data;
  uint64_t now = uv_now(&m->node->loop);
  int leading = layout_should_lead(m);
  if (leading && !m->leading) {
    m->leading_since = now;
    log_info("layout", "leading", "version=%llu as=%s", (unsigned long long)(m->cur ? m->cur->version : 0),
             control_is_leader(m->node->control) ? "raft_leader" : "stand_in");
  }
  m->leading = leading;
  if (!leading || m->closing || m->writes) return;
  layout_maintain(m);
}

/* ---- public ---- */

layout_mgr_t *layout_mgr_new(node_t *n) {
  layout_mgr_t *m = calloc(1, sizeof *m);
  if (!m) return NULL;
  m->node = n;
  uv_timer_init(&n->loop, &m->tick);
  m->tick.data = m;
  m->timer_open = 1;
  uv_timer_start(&m->tick, layout_tick, LAYOUT_TICK_MS, LAYOUT_TICK_MS);
  /* From revision 0: the watch first replays what this node holds, then follows changes. */
  m->watch_layout = control_watch(n->control, LAYOUT_KEY, 0, layout_on_change, m);
  m->watch_synced = control_watch(n->control, LAYOUT_SYNCED_PREFIX, 0, layout_on_synced, m);
  log_info("layout", "started", "version=%llu replicas=%d dead_timeout_s=%d",
           (unsigned long long)(m->cur ? m->cur->version : 0), n->cfg.storage_replicas,
           n->cfg.storage_dead_timeout_s);
  return m;
}

static void layout_timer_closed(uv_handle_t *h) {
  layout_mgr_t *m = h->data;
  m->timer_open = 0;
  layout_mgr_maybe_free(m);
}

void layout_mgr_free(layout_mgr_t *m) {
  if (!m) return;
  m->closing = 1;
  m->nsubs = 0;
  control_unwatch(m->node->control, m->watch_layout);
  control_unwatch(m->node->control, m->watch_synced);
  uv_timer_stop(&m->tick);
  uv_close((uv_handle_t *)&m->tick, layout_timer_closed);
}

const Gureum__Layout *layout_mgr_current(layout_mgr_t *m) { return m ? m->cur : NULL; }

void layout_mgr_on_change(layout_mgr_t *m, layout_change_fn fn, void *arg) {
  layout_sub_t *s = realloc(m->subs, (m->nsubs + 1) * sizeof *s);
  if (!s) return;
  m->subs = s;
  s[m->nsubs++] = (layout_sub_t){fn, arg};
}

uint32_t layout_mgr_copies(layout_mgr_t *m, int reduced_redundancy) {
  if (!m || !m->cur || !m->cur->n_partitions) return 0;
  uint32_t copies = m->cur->replicas;
  if (reduced_redundancy && (uint32_t)m->node->cfg.storage_rr_replicas < copies)
    copies = (uint32_t)m->node->cfg.storage_rr_replicas;
  uint32_t owners = (uint32_t)m->cur->partitions[0]->n_owners;
  return copies < owners ? copies : owners;
}

static void layout_ignore(void *arg, const Gureum__StateResponse *r) {
  (void)arg;
  (void)r;
}

void layout_mgr_report_synced(layout_mgr_t *m, uint64_t version,
                              const uint8_t bitmap[LAYOUT_BITMAP_BYTES], control_done_fn cb,
                              void *arg) {
  Gureum__LayoutSynced r = GUREUM__LAYOUT_SYNCED__INIT;
  char key[128];
  uint8_t buf[256];
  r.version = version;
  r.node = m->node->cfg.name;
  r.partitions.data = (uint8_t *)bitmap;
  r.partitions.len = LAYOUT_BITMAP_BYTES;
  size_t len = gureum__layout_synced__pack(&r, buf); /* name <= 63 chars: always fits */
  snprintf(key, sizeof key, "%s%s", LAYOUT_SYNCED_PREFIX, m->node->cfg.name);
  control_put(m->node->control, key, buf, len, CONTROL_ANY_REVISION, cb ? cb : layout_ignore, arg);
}

static json_t *layout_names_json(const Gureum__Layout *l, const uint32_t *idx, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(l->nodes[idx[i]]->name));
  return a;
}

void layout_mgr_admin(layout_mgr_t *m, http_req_t *req) {
  const Gureum__Layout *l = m ? m->cur : NULL;
  if (!m) {
    admin_reply_error(req, 503, "NoLayoutManager", "the storage layout is not tracked on this node");
    return;
  }
  if (!l) {
    admin_reply_error(req, 404, "NoLayout",
                      "no storage layout yet: the Raft leader writes one once it knows storage nodes");
    return;
  }
  char *full = http_req_query_param(req, "full");
  int want_parts = full && (!*full || strcmp(full, "1") == 0 || strcmp(full, "true") == 0);
  free(full);
  json_t *nodes = json_array(), *parts = want_parts ? json_array() : NULL;
  for (size_t i = 0; i < l->n_nodes; i++) {
    const Gureum__LayoutNode *ln = l->nodes[i];
    json_int_t owned = 0, first = 0, pulling = 0;
    for (size_t p = 0; p < l->n_partitions; p++) {
      const Gureum__LayoutPartition *pp = l->partitions[p];
      int in = 0, was = 0;
      for (size_t j = 0; j < pp->n_owners; j++) in |= pp->owners[j] == i;
      for (size_t j = 0; j < pp->n_prev; j++) was |= pp->prev[j] == i;
      owned += in;
      first += pp->n_owners && pp->owners[0] == i;
      pulling += in && pp->n_prev && !was;
    }
    json_array_append_new(nodes, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "name", ln->name, "zone", ln->zone,
                                           "addr", ln->addr, "partitions", owned, "first", first,
                                           "pulling", pulling));
  }
  for (size_t p = 0; parts && p < l->n_partitions; p++) {
    const Gureum__LayoutPartition *pp = l->partitions[p];
    json_array_append_new(parts, json_pack("{s:o,s:o}", "owners", layout_names_json(l, pp->owners, pp->n_owners),
                                           "prev", layout_names_json(l, pp->prev, pp->n_prev)));
  }
  json_t *o = json_pack("{s:I,s:I,s:I,s:I,s:b,s:i,s:b,s:o}", "version", (json_int_t)l->version,
                        "replicas", (json_int_t)l->replicas, "updated_ms", (json_int_t)l->updated_ms,
                        "revision", (json_int_t)m->cur_rev, "settled", layout_settled(l),
                        "moving", layout_moving(l), "maintainer", m->leading, "nodes", nodes);
  if (parts) json_object_set_new(o, "partitions", parts);
  admin_reply_json(req, 200, o);
}
