/* layout.c - computes and reads the storage layout: the owners of each partition, spread over
 * zones, balanced to floor/ceil slots per node, moving as few slots as possible. No I/O. */
#include "layout.h"

#include <stdlib.h>
#include <string.h>

#define LAYOUT_NONE UINT32_MAX

/* The assignment being built. Nodes are indexed in name order, which is also their order in
 * the result, so the same members always give the same layout. */
typedef struct {
  size_t n, nzones;
  uint32_t copies;    /* owners per partition: min(replicas, n) */
  uint32_t diversity; /* distinct zones each partition should span: min(copies, nzones) */
  const layout_member_t **node;
  uint32_t *zone;     /* zone index of each node */
  uint32_t *zsize;    /* nodes per zone */
  uint32_t *hash;     /* of each node's name: spreads ties without favouring early names */
  int64_t *count;     /* owner slots each node holds */
  int64_t *target;    /* owner slots each node should hold */
  uint32_t *pmap;     /* prev layout's node index -> ours, or LAYOUT_NONE if it left */
  uint32_t own[LAYOUT_PARTITIONS][LAYOUT_MAX_REPLICAS];
  uint32_t nown[LAYOUT_PARTITIONS];
  uint8_t touched[LAYOUT_PARTITIONS]; /* owners already differ from prev's: move there first */
} layout_work_t;

/* ---- small helpers ---- */

static uint32_t layout_hash_str(const char *s) { /* FNV-1a: stable across runs and machines */
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static uint32_t layout_mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

/* Rendezvous-style preference of node i for partition p: each node favours its own pseudo-random
 * set of partitions, so who gets what does not depend on the order partitions are visited in. */
static uint32_t layout_pref(const layout_work_t *w, uint32_t p, size_t i) {
  return layout_mix(w->hash[i] ^ layout_mix(p + 0x9e3779b9u));
}

static const char *layout_str(const char *s) { return s ? s : ""; }

static int layout_member_cmp(const void *a, const void *b) {
  const layout_member_t *x = *(const layout_member_t *const *)a, *y = *(const layout_member_t *const *)b;
  int c = strcmp(x->name, y->name);
  if (!c) c = strcmp(layout_str(x->zone), layout_str(y->zone));
  if (!c) c = strcmp(layout_str(x->addr), layout_str(y->addr));
  return c;
}

static int layout_str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static uint32_t layout_node_index(const layout_work_t *w, const char *name) {
  size_t lo = 0, hi = w->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(w->node[mid]->name, name);
    if (!c) return (uint32_t)mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return LAYOUT_NONE;
}

static int layout_has(const uint32_t *a, size_t n, uint32_t v) {
  for (size_t i = 0; i < n; i++)
    if (a[i] == v) return 1;
  return 0;
}

static int layout_in(const layout_work_t *w, uint32_t p, uint32_t node) {
  return layout_has(w->own[p], w->nown[p], node);
}

/* Distinct zones among p's owners, with the owner at position `skip` replaced by `add`
 * (skip = LAYOUT_NONE: as they are). */
static uint32_t layout_zones_with(const layout_work_t *w, uint32_t p, uint32_t skip, uint32_t add) {
  uint32_t z[LAYOUT_MAX_REPLICAS + 1], nz = 0;
  for (uint32_t j = 0; j <= w->nown[p]; j++) {
    uint32_t node = j < w->nown[p] ? (j == skip ? add : w->own[p][j]) : LAYOUT_NONE;
    if (node == LAYOUT_NONE) continue;
    if (!layout_has(z, nz, w->zone[node])) z[nz++] = w->zone[node];
  }
  return nz;
}

static uint32_t layout_zones(const layout_work_t *w, uint32_t p) {
  return layout_zones_with(w, p, LAYOUT_NONE, LAYOUT_NONE);
}

static int layout_zone_in(const layout_work_t *w, uint32_t p, uint32_t zone) {
  for (uint32_t j = 0; j < w->nown[p]; j++)
    if (w->zone[w->own[p][j]] == zone) return 1;
  return 0;
}

static void layout_add(layout_work_t *w, uint32_t p, uint32_t node) {
  w->own[p][w->nown[p]++] = node;
  w->count[node]++;
}

/* Replace the owner at position j by node: the survivors keep their order, the newcomer goes
 * last, so the preferred owners of a partition change as little as possible. */
static void layout_replace(layout_work_t *w, uint32_t p, uint32_t j, uint32_t node) {
  w->count[w->own[p][j]]--;
  memmove(&w->own[p][j], &w->own[p][j + 1], (w->nown[p] - j - 1) * sizeof w->own[p][0]);
  w->nown[p]--;
  layout_add(w, p, node);
  w->touched[p] = 1;
}

/* ---- targets: how many slots each node should own ---- */

/* Zone totals first: proportional to the zone's nodes, but each partition spans `diversity`
 * zones, which bounds a zone's total from below (fewer zones than copies: every zone is in every
 * partition) and from above (at most one slot per partition, or room left for the other zones).
 * Water-filling finds the proportional share within those bounds. */
static void layout_zone_targets(const layout_work_t *w, int64_t *tz) {
  const int64_t slots = (int64_t)LAYOUT_PARTITIONS * w->copies;
  int spread = w->nzones >= w->copies; /* every owner of a partition in its own zone */
  int64_t *lo = calloc(w->nzones, sizeof *lo), *hi = calloc(w->nzones, sizeof *hi);
  double *want = calloc(w->nzones, sizeof *want);
  for (size_t k = 0; k < w->nzones; k++) {
    int64_t per = spread ? 1 : (int64_t)w->copies - (int64_t)w->nzones + 1;
    if (per > w->zsize[k]) per = w->zsize[k];
    lo[k] = spread ? 0 : LAYOUT_PARTITIONS;
    hi[k] = per * LAYOUT_PARTITIONS;
  }
  double a = 0, b = LAYOUT_PARTITIONS; /* slots per node */
  for (int it = 0; it < 64; it++) {
    double mid = (a + b) / 2, sum = 0;
    for (size_t k = 0; k < w->nzones; k++) {
      double v = mid * w->zsize[k];
      sum += v < lo[k] ? lo[k] : v > hi[k] ? hi[k] : v;
    }
    if (sum <= slots) a = mid;
    else b = mid;
  }
  int64_t sum = 0;
  for (size_t k = 0; k < w->nzones; k++) {
    double v = a * w->zsize[k];
    want[k] = v < lo[k] ? lo[k] : v > hi[k] ? hi[k] : v;
    tz[k] = (int64_t)want[k];
    sum += tz[k];
  }
  /* Hand out the rounding remainder, largest fraction first (then the zone holding more now,
   * which moves less), never beyond a zone's bound. */
  int64_t *held = calloc(w->nzones, sizeof *held);
  for (size_t i = 0; i < w->n; i++) held[w->zone[i]] += w->count[i];
  while (sum < slots) {
    size_t best = w->nzones;
    double bestf = -1;
    for (size_t k = 0; k < w->nzones; k++) {
      if (tz[k] >= hi[k]) continue;
      double f = want[k] - (double)tz[k];
      if (f > bestf + 1e-9 || (f > bestf - 1e-9 && held[k] > held[best])) best = k, bestf = f;
    }
    if (best == w->nzones) break; /* cannot happen: the bounds always admit `slots` */
    tz[best]++;
    want[best] = (double)tz[best]; /* one unit each before anyone gets a second */
    sum++;
  }
  free(held);
  free(lo);
  free(hi);
  free(want);
}

/* Within a zone, every node gets floor or ceil of the zone's share; the ceil goes to the nodes
 * holding the most already, so reaching the targets moves the least. */
static void layout_targets(layout_work_t *w) {
  int64_t *tz = calloc(w->nzones, sizeof *tz);
  layout_zone_targets(w, tz);
  size_t *order = malloc(w->n * sizeof *order);
  for (size_t k = 0; k < w->nzones; k++) {
    size_t m = 0;
    for (size_t i = 0; i < w->n; i++)
      if (w->zone[i] == k) order[m++] = i;
    /* Insertion sort by count descending; ties keep name order. */
    for (size_t i = 1; i < m; i++) {
      size_t x = order[i], j = i;
      while (j > 0 && w->count[order[j - 1]] < w->count[x]) order[j] = order[j - 1], j--;
      order[j] = x;
    }
    for (size_t i = 0; i < m; i++)
      w->target[order[i]] = tz[k] / (int64_t)m + ((int64_t)i < tz[k] % (int64_t)m);
  }
  free(order);
  free(tz);
}

/* ---- assignment ---- */

/* The best node to add to p: one from a zone p lacks while p spans too few zones, then the
 * node furthest below its target, then the node's own preference for p. */
static uint32_t layout_pick(const layout_work_t *w, uint32_t p) {
  int need_zone = layout_zones(w, p) < w->diversity;
  uint32_t best = LAYOUT_NONE;
  for (uint32_t i = 0; i < w->n; i++) {
    if (layout_in(w, p, i) || (need_zone && layout_zone_in(w, p, w->zone[i]))) continue;
    if (best == LAYOUT_NONE) {
      best = i;
      continue;
    }
    int64_t di = w->target[i] - w->count[i], db = w->target[best] - w->count[best];
    if (di > db || (di == db && layout_pref(w, p, i) < layout_pref(w, p, best))) best = i;
  }
  return best;
}

static void layout_fill(layout_work_t *w) {
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++)
    while (w->nown[p] < w->copies) {
      uint32_t i = layout_pick(w, p);
      if (i == LAYOUT_NONE) break; /* cannot happen: copies <= n */
      layout_add(w, p, i);
      w->touched[p] = 1;
    }
}

/* Partitions kept from prev may span too few zones (a zone appeared, a node changed zone):
 * replace an owner whose zone is doubled by a node from a missing zone. */
static void layout_spread_zones(layout_work_t *w) {
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++)
    while (layout_zones(w, p) < w->diversity) {
      uint32_t victim = LAYOUT_NONE;
      for (uint32_t j = 0; j < w->nown[p]; j++) {
        uint32_t u = w->own[p][j], twins = 0;
        for (uint32_t k = 0; k < w->nown[p]; k++) twins += w->zone[w->own[p][k]] == w->zone[u];
        if (twins < 2) continue;
        /* The most overloaded; among equals the least preferred (last) owner. */
        if (victim == LAYOUT_NONE ||
            w->count[u] - w->target[u] >= w->count[w->own[p][victim]] - w->target[w->own[p][victim]])
          victim = j;
      }
      uint32_t add = layout_pick(w, p);
      if (victim == LAYOUT_NONE || add == LAYOUT_NONE) break;
      layout_replace(w, p, victim, add);
    }
}

/* The partition where moving u's slot to v costs least, or LAYOUT_NONE: v must not own it yet
 * and the partition must span as many zones after as before. Preferred: partitions already
 * changing (so untouched ones stay untouched), then those where u is a later owner (the first
 * owners also hold reduced-redundancy copies), then v's own preference. */
static uint32_t layout_move_slot(const layout_work_t *w, uint32_t u, uint32_t v, uint32_t *pos) {
  uint64_t best_key = UINT64_MAX;
  uint32_t best = LAYOUT_NONE;
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    uint32_t j = 0;
    while (j < w->nown[p] && w->own[p][j] != u) j++;
    if (j == w->nown[p] || layout_in(w, p, v)) continue;
    if (layout_zones_with(w, p, j, v) < layout_zones(w, p)) continue;
    uint64_t key = (uint64_t)!w->touched[p] << 40 | (uint64_t)(w->copies - 1 - j) << 32 |
                   layout_pref(w, p, v);
    if (key < best_key) best_key = key, best = p, *pos = j;
  }
  return best;
}

/* One step towards the targets: move a slot straight from a node above its target to one below;
 * if zones forbid every such move, along the shortest chain u -> x -> ... -> v (each link a
 * legal move). Returns 0 when balanced or stuck. */
static int layout_rebalance_step(layout_work_t *w) {
  int any_over = 0;
  for (uint32_t u = 0; u < w->n; u++) {
    if (w->count[u] <= w->target[u]) continue;
    any_over = 1;
    for (uint32_t v = 0; v < w->n; v++) {
      if (w->count[v] >= w->target[v]) continue;
      uint32_t j, p = layout_move_slot(w, u, v, &j);
      if (p == LAYOUT_NONE) continue;
      layout_replace(w, p, j, v);
      return 1;
    }
  }
  if (!any_over) return 0;

  uint32_t *from = malloc(w->n * sizeof *from), *via = malloc(w->n * sizeof *via);
  uint32_t *queue = malloc(w->n * sizeof *queue), head = 0, tail = 0, found = LAYOUT_NONE;
  for (uint32_t i = 0; i < w->n; i++) {
    from[i] = LAYOUT_NONE;
    if (w->count[i] > w->target[i]) from[i] = i, queue[tail++] = i;
  }
  while (head < tail && found == LAYOUT_NONE) {
    uint32_t u = queue[head++];
    for (uint32_t v = 0; v < w->n && found == LAYOUT_NONE; v++) {
      uint32_t j;
      if (from[v] != LAYOUT_NONE) continue;
      uint32_t p = layout_move_slot(w, u, v, &j);
      if (p == LAYOUT_NONE) continue;
      from[v] = u, via[v] = p, queue[tail++] = v;
      if (w->count[v] < w->target[v]) found = v;
    }
  }
  int moved = 0;
  /* Apply from the end of the chain back, re-checking each link: two links may share a
   * partition, and an earlier move can invalidate a later one. */
  for (uint32_t v = found; v != LAYOUT_NONE && from[v] != v; v = from[v]) {
    uint32_t u = from[v], p = via[v], j = 0;
    while (j < w->nown[p] && w->own[p][j] != u) j++;
    if (j == w->nown[p] || layout_in(w, p, v) || layout_zones_with(w, p, j, v) < layout_zones(w, p))
      break;
    layout_replace(w, p, j, v);
    moved = 1;
  }
  free(from);
  free(via);
  free(queue);
  return moved;
}

static void layout_rebalance(layout_work_t *w) {
  /* Each step brings the total distance to the targets down by at least one; the bound only
   * guards against a bug turning this into an endless loop. */
  for (size_t guard = 4 * LAYOUT_PARTITIONS * (size_t)w->copies + w->n; guard > 0; guard--)
    if (!layout_rebalance_step(w)) break;
}

/* ---- building the result ---- */

/* prev for partition p of the new layout: the nodes that held the data before the change,
 * as long as some new owner still has to pull it. */
static size_t layout_prev_of(const layout_work_t *w, const Gureum__Layout *prev, uint32_t p,
                             uint32_t *out) {
  if (!prev || p >= prev->n_partitions || !prev->partitions[p]) return 0;
  const Gureum__LayoutPartition *pp = prev->partitions[p];
  uint32_t old[LAYOUT_MAX_REPLICAS * 4];
  size_t nold = 0, nout = 0;
  int departed = 0;
  for (size_t j = 0; j < pp->n_owners; j++) {
    uint32_t x = pp->owners[j] < prev->n_nodes ? w->pmap[pp->owners[j]] : LAYOUT_NONE;
    if (x == LAYOUT_NONE) departed = 1;
    else if (!layout_has(old, nold, x) && nold < sizeof old / sizeof old[0]) old[nold++] = x;
  }
  int changed = departed || nold != w->nown[p];
  for (uint32_t j = 0; j < w->nown[p]; j++) changed |= !layout_has(old, nold, w->own[p][j]);
  if (pp->n_prev) {
    /* An earlier move is unfinished: its sources are still the ones holding the data. */
    for (size_t j = 0; j < pp->n_prev; j++) {
      uint32_t x = pp->prev[j] < prev->n_nodes ? w->pmap[pp->prev[j]] : LAYOUT_NONE;
      if (x != LAYOUT_NONE && !layout_has(out, nout, x) && nout < w->n) out[nout++] = x;
    }
    if (!nout) changed = 1; /* they all left: fall back to the old owners */
  }
  if (!nout && changed) {
    memcpy(out, old, nold * sizeof *old);
    nout = nold;
  }
  /* Nothing to pull if every owner already held the data. */
  for (uint32_t j = 0; j < w->nown[p]; j++)
    if (!layout_has(out, nout, w->own[p][j])) return nout;
  return 0;
}

static Gureum__Layout *layout_build(layout_work_t *w, const Gureum__Layout *prev, uint32_t replicas) {
  Gureum__Layout l = GUREUM__LAYOUT__INIT;
  Gureum__LayoutNode *nodes = calloc(w->n, sizeof *nodes), **pnodes = calloc(w->n, sizeof *pnodes);
  Gureum__LayoutPartition parts[LAYOUT_PARTITIONS], *pparts[LAYOUT_PARTITIONS];
  uint32_t *prevs = calloc((size_t)LAYOUT_PARTITIONS * (w->n + LAYOUT_MAX_REPLICAS * 4), sizeof *prevs);
  Gureum__Layout *out = NULL;
  if (!nodes || !pnodes || !prevs) goto done;
  l.version = prev ? prev->version + 1 : 1;
  l.replicas = replicas;
  l.updated_ms = prev ? prev->updated_ms : 0;
  for (size_t i = 0; i < w->n; i++) {
    gureum__layout_node__init(&nodes[i]);
    /* Packing only reads these; the result is unpacked into storage of its own. */
    nodes[i].name = (char *)w->node[i]->name;
    nodes[i].zone = (char *)layout_str(w->node[i]->zone);
    nodes[i].addr = (char *)layout_str(w->node[i]->addr);
    pnodes[i] = &nodes[i];
  }
  l.nodes = pnodes;
  l.n_nodes = w->n;
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    uint32_t *pv = prevs + (size_t)p * (w->n + LAYOUT_MAX_REPLICAS * 4);
    gureum__layout_partition__init(&parts[p]);
    parts[p].owners = w->own[p];
    parts[p].n_owners = w->nown[p];
    parts[p].n_prev = layout_prev_of(w, prev, p, pv);
    parts[p].prev = pv;
    pparts[p] = &parts[p];
  }
  l.partitions = pparts;
  l.n_partitions = LAYOUT_PARTITIONS;
  size_t len;
  uint8_t *buf = layout_pack(&l, &len);
  if (buf) out = gureum__layout__unpack(NULL, len, buf);
  free(buf);
done:
  free(nodes);
  free(pnodes);
  free(prevs);
  return out;
}

static void layout_work_free(layout_work_t *w) {
  free(w->node);
  free(w->zone);
  free(w->zsize);
  free(w->hash);
  free(w->count);
  free(w->target);
  free(w->pmap);
  free(w);
}

/* Members sorted by name, duplicates and nameless entries dropped; zones indexed. */
static int layout_work_init(layout_work_t *w, const layout_member_t *nodes, size_t n, uint32_t replicas) {
  const char **zs = NULL;
  w->node = malloc(n * sizeof *w->node);
  if (!w->node) return -1;
  for (size_t i = 0; i < n; i++)
    if (nodes[i].name && nodes[i].name[0]) w->node[w->n++] = &nodes[i];
  qsort(w->node, w->n, sizeof *w->node, layout_member_cmp);
  size_t m = 0;
  for (size_t i = 0; i < w->n; i++)
    if (!m || strcmp(w->node[m - 1]->name, w->node[i]->name) != 0) w->node[m++] = w->node[i];
  w->n = m;
  if (!w->n) return -1;
  w->copies = replicas < w->n ? replicas : (uint32_t)w->n;
  w->zone = calloc(w->n, sizeof *w->zone);
  w->zsize = calloc(w->n, sizeof *w->zsize);
  w->hash = calloc(w->n, sizeof *w->hash);
  w->count = calloc(w->n, sizeof *w->count);
  w->target = calloc(w->n, sizeof *w->target);
  zs = malloc(w->n * sizeof *zs);
  if (!w->zone || !w->zsize || !w->hash || !w->count || !w->target || !zs) {
    free(zs);
    return -1;
  }
  for (size_t i = 0; i < w->n; i++) zs[i] = layout_str(w->node[i]->zone);
  qsort(zs, w->n, sizeof *zs, layout_str_cmp);
  for (size_t i = 0; i < w->n; i++)
    if (!w->nzones || strcmp(zs[w->nzones - 1], zs[i]) != 0) zs[w->nzones++] = zs[i];
  for (size_t i = 0; i < w->n; i++) {
    const char *z = layout_str(w->node[i]->zone);
    const char **hit = bsearch(&z, zs, w->nzones, sizeof *zs, layout_str_cmp);
    w->zone[i] = (uint32_t)(hit - zs);
    w->zsize[w->zone[i]]++;
    w->hash[i] = layout_hash_str(w->node[i]->name);
  }
  free(zs);
  w->diversity = w->copies < w->nzones ? w->copies : (uint32_t)w->nzones;
  return 0;
}

/* Start from prev's owners that are still members, in their order, at most `copies`. */
static int layout_keep_prev(layout_work_t *w, const Gureum__Layout *prev) {
  if (!prev) return 0;
  w->pmap = malloc((prev->n_nodes ? prev->n_nodes : 1) * sizeof *w->pmap);
  if (!w->pmap) return -1;
  for (size_t i = 0; i < prev->n_nodes; i++)
    w->pmap[i] = prev->nodes[i] && prev->nodes[i]->name ? layout_node_index(w, prev->nodes[i]->name)
                                                        : LAYOUT_NONE;
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS && p < prev->n_partitions; p++) {
    const Gureum__LayoutPartition *pp = prev->partitions[p];
    if (!pp) continue;
    for (size_t j = 0; j < pp->n_owners; j++) {
      uint32_t x = pp->owners[j] < prev->n_nodes ? w->pmap[pp->owners[j]] : LAYOUT_NONE;
      if (x == LAYOUT_NONE || layout_in(w, p, x) || w->nown[p] >= w->copies) w->touched[p] = 1;
      else layout_add(w, p, x);
    }
  }
  return 0;
}

Gureum__Layout *layout_compute(const Gureum__Layout *prev, const layout_member_t *nodes, size_t n,
                               uint32_t replicas) {
  if (!nodes || n == 0) return NULL;
  if (replicas < 1) replicas = 1;
  if (replicas > LAYOUT_MAX_REPLICAS) replicas = LAYOUT_MAX_REPLICAS;
  layout_work_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  Gureum__Layout *out = NULL;
  if (layout_work_init(w, nodes, n, replicas) == 0 && layout_keep_prev(w, prev) == 0) {
    layout_targets(w);
    layout_fill(w);
    layout_spread_zones(w);
    layout_rebalance(w);
    out = layout_build(w, prev, replicas);
  }
  layout_work_free(w);
  return out;
}

/* ---- reading ---- */

static const Gureum__LayoutPartition *layout_part(const Gureum__Layout *l, uint32_t p) {
  return l && p < l->n_partitions ? l->partitions[p] : NULL;
}

static int layout_list(const Gureum__Layout *l, const uint32_t *idx, size_t n, uint32_t copies,
                       const Gureum__LayoutNode **out, size_t max) {
  size_t k = 0;
  for (size_t j = 0; j < n && j < copies && k < max; j++)
    if (idx[j] < l->n_nodes) out[k++] = l->nodes[idx[j]];
  return (int)k;
}

int layout_owners(const Gureum__Layout *l, uint32_t partition, uint32_t copies,
                  const Gureum__LayoutNode **out, size_t max) {
  const Gureum__LayoutPartition *pp = layout_part(l, partition);
  return pp ? layout_list(l, pp->owners, pp->n_owners, copies, out, max) : 0;
}

int layout_prev(const Gureum__Layout *l, uint32_t partition, uint32_t copies,
                const Gureum__LayoutNode **out, size_t max) {
  const Gureum__LayoutPartition *pp = layout_part(l, partition);
  return pp ? layout_list(l, pp->prev, pp->n_prev, copies, out, max) : 0;
}

static uint32_t layout_index_of(const Gureum__Layout *l, const char *name) {
  for (size_t i = 0; l && name && i < l->n_nodes; i++)
    if (l->nodes[i]->name && strcmp(l->nodes[i]->name, name) == 0) return (uint32_t)i;
  return LAYOUT_NONE;
}

const Gureum__LayoutNode *layout_node(const Gureum__Layout *l, const char *name) {
  uint32_t i = layout_index_of(l, name);
  return i == LAYOUT_NONE ? NULL : l->nodes[i];
}

uint32_t layout_partitions_of(const Gureum__Layout *l, const char *name,
                              uint8_t bitmap[LAYOUT_BITMAP_BYTES]) {
  uint32_t i = layout_index_of(l, name), n = 0;
  if (bitmap) memset(bitmap, 0, LAYOUT_BITMAP_BYTES);
  for (uint32_t p = 0; i != LAYOUT_NONE && p < LAYOUT_PARTITIONS; p++) {
    const Gureum__LayoutPartition *pp = layout_part(l, p);
    if (!pp || !layout_has(pp->owners, pp->n_owners, i)) continue;
    if (bitmap) bitmap[p / 8] |= (uint8_t)(1u << (p % 8));
    n++;
  }
  return n;
}

int layout_settled(const Gureum__Layout *l) {
  for (uint32_t p = 0; l && p < l->n_partitions; p++)
    if (l->partitions[p]->n_prev) return 0;
  return 1;
}

uint32_t layout_moved_slots(const Gureum__Layout *a, const Gureum__Layout *b) {
  uint32_t moved = 0;
  for (uint32_t p = 0; b && p < b->n_partitions; p++) {
    const Gureum__LayoutPartition *pb = b->partitions[p], *pa = layout_part(a, p);
    for (size_t j = 0; j < pb->n_owners; j++) {
      const char *name = pb->owners[j] < b->n_nodes ? b->nodes[pb->owners[j]]->name : NULL;
      int had = 0;
      for (size_t k = 0; name && pa && k < pa->n_owners && !had; k++)
        had = pa->owners[k] < a->n_nodes && strcmp(a->nodes[pa->owners[k]]->name, name) == 0;
      moved += !had;
    }
  }
  return moved;
}

static int layout_reported(const Gureum__LayoutSynced *const *reports, size_t n, const char *node,
                           uint64_t version, uint32_t p) {
  for (size_t i = 0; i < n; i++) {
    const Gureum__LayoutSynced *r = reports[i];
    if (r && r->node && strcmp(r->node, node) == 0 && r->version == version &&
        r->partitions.len > p / 8 && (r->partitions.data[p / 8] >> (p % 8) & 1))
      return 1;
  }
  return 0;
}

Gureum__Layout *layout_mark_synced(const Gureum__Layout *l, const Gureum__LayoutSynced *const *reports,
                                   size_t n) {
  uint8_t clear[LAYOUT_PARTITIONS] = {0};
  int any = 0;
  for (uint32_t p = 0; l && p < l->n_partitions && p < LAYOUT_PARTITIONS; p++) {
    const Gureum__LayoutPartition *pp = l->partitions[p];
    if (!pp->n_prev) continue;
    int all = 1;
    for (size_t j = 0; j < pp->n_owners && all; j++) {
      uint32_t o = pp->owners[j];
      if (layout_has(pp->prev, pp->n_prev, o)) continue; /* held the data already */
      all = o < l->n_nodes && layout_reported(reports, n, l->nodes[o]->name, l->version, p);
    }
    clear[p] = (uint8_t)all;
    any |= all;
  }
  if (!any) return NULL;
  size_t len;
  uint8_t *buf = layout_pack(l, &len);
  Gureum__Layout *out = buf ? gureum__layout__unpack(NULL, len, buf) : NULL;
  free(buf);
  /* The array stays allocated (free_unpacked frees it); only its length goes to zero. */
  for (uint32_t p = 0; out && p < LAYOUT_PARTITIONS && p < out->n_partitions; p++)
    if (clear[p]) out->partitions[p]->n_prev = 0;
  return out;
}

/* ---- wire form ---- */

uint8_t *layout_pack(const Gureum__Layout *l, size_t *len) {
  *len = gureum__layout__get_packed_size(l);
  uint8_t *buf = malloc(*len ? *len : 1);
  if (buf) gureum__layout__pack(l, buf);
  return buf;
}

Gureum__Layout *layout_unpack(const uint8_t *buf, size_t len) {
  Gureum__Layout *l = gureum__layout__unpack(NULL, len, buf);
  if (!l) return NULL;
  int ok = l->n_partitions == LAYOUT_PARTITIONS && l->n_nodes > 0;
  for (size_t i = 0; ok && i < l->n_nodes; i++) ok = l->nodes[i]->name && l->nodes[i]->name[0];
  for (size_t p = 0; ok && p < l->n_partitions; p++) {
    const Gureum__LayoutPartition *pp = l->partitions[p];
    for (size_t j = 0; ok && j < pp->n_owners; j++) ok = pp->owners[j] < l->n_nodes;
    for (size_t j = 0; ok && j < pp->n_prev; j++) ok = pp->prev[j] < l->n_nodes;
  }
  if (!ok) {
    gureum__layout__free_unpacked(l, NULL);
    return NULL;
  }
  return l;
}

void layout_free(Gureum__Layout *l) {
  if (l) gureum__layout__free_unpacked(l, NULL);
}
