/* layout_test.c - unit tests for layout.c: copies, balance, zones, minimal movement on joins and
 * departures, prev bookkeeping, determinism, sync reports, and a randomised churn run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layout.h"

#define MAXN 64

/* Members "n1".."nN", zone given per node (NULL = all "a"). */
typedef struct {
  char name[MAXN][24], zone[MAXN][16], addr[MAXN][40];
  layout_member_t m[MAXN];
  size_t n;
} members_t;

static void members_set(members_t *s, size_t n, const char *const *zones) {
  memset(s, 0, sizeof *s);
  s->n = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(s->name[i], sizeof s->name[i], "n%u", (unsigned)(i + 1));
    snprintf(s->zone[i], sizeof s->zone[i], "%s", zones ? zones[i] : "a");
    snprintf(s->addr[i], sizeof s->addr[i], "127.0.0.%u:7071", (unsigned)(i + 1));
    s->m[i] = (layout_member_t){s->name[i], s->zone[i], s->addr[i]};
  }
}

/* Drop member `name` (keeps the others' order). */
static void members_drop(members_t *s, const char *name) {
  size_t j = 0;
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->m[i].name, name) != 0) s->m[j++] = s->m[i];
  s->n = j;
}

static const char *name_of(const Gureum__Layout *l, uint32_t idx) { return l->nodes[idx]->name; }

static int part_has(const Gureum__Layout *l, uint32_t p, const char *name) {
  const Gureum__LayoutPartition *pp = l->partitions[p];
  for (size_t j = 0; j < pp->n_owners; j++)
    if (strcmp(name_of(l, pp->owners[j]), name) == 0) return 1;
  return 0;
}

static int prev_has(const Gureum__Layout *l, uint32_t p, const char *name) {
  const Gureum__LayoutPartition *pp = l->partitions[p];
  for (size_t j = 0; j < pp->n_prev; j++)
    if (strcmp(name_of(l, pp->prev[j]), name) == 0) return 1;
  return 0;
}

/* Same owner set (order ignored) in partition p of a and b. */
static int same_set(const Gureum__Layout *a, const Gureum__Layout *b, uint32_t p) {
  if (a->partitions[p]->n_owners != b->partitions[p]->n_owners) return 0;
  for (size_t j = 0; j < a->partitions[p]->n_owners; j++)
    if (!part_has(b, p, name_of(a, a->partitions[p]->owners[j]))) return 0;
  return 1;
}

static uint32_t zones_in(const Gureum__Layout *l, uint32_t p) {
  const char *seen[LAYOUT_MAX_REPLICAS];
  uint32_t n = 0;
  const Gureum__LayoutPartition *pp = l->partitions[p];
  for (size_t j = 0; j < pp->n_owners; j++) {
    const char *z = l->nodes[pp->owners[j]]->zone;
    int dup = 0;
    for (uint32_t k = 0; k < n; k++) dup |= strcmp(seen[k], z) == 0;
    if (!dup) seen[n++] = z;
  }
  return n;
}

/* Every partition has `copies` distinct owners; returns the node's slot count via layout_partitions_of. */
static void check_shape(const Gureum__Layout *l, uint32_t copies) {
  assert_non_null(l);
  assert_int_equal(l->n_partitions, LAYOUT_PARTITIONS);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    const Gureum__LayoutPartition *pp = l->partitions[p];
    assert_int_equal(pp->n_owners, copies);
    for (size_t j = 0; j < pp->n_owners; j++)
      for (size_t k = j + 1; k < pp->n_owners; k++) assert_int_not_equal(pp->owners[j], pp->owners[k]);
  }
}

static uint32_t slots(const Gureum__Layout *l, const char *name) {
  uint8_t bm[LAYOUT_BITMAP_BYTES];
  return layout_partitions_of(l, name, bm);
}

static void check_balanced(const Gureum__Layout *l, uint32_t copies) {
  uint32_t total = LAYOUT_PARTITIONS * copies, n = (uint32_t)l->n_nodes;
  for (size_t i = 0; i < l->n_nodes; i++) {
    uint32_t s = slots(l, l->nodes[i]->name);
    if (s < total / n || s > (total + n - 1) / n)
      fail_msg("%s owns %u slots, want %u..%u", l->nodes[i]->name, s, total / n, (total + n - 1) / n);
  }
}

static int moving(const Gureum__Layout *l) {
  int n = 0;
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) n += l->partitions[p]->n_prev > 0;
  return n;
}

/* ---- tests ---- */

static void test_no_nodes(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 1, NULL);
  assert_null(layout_compute(NULL, s.m, 0, 3));
  assert_null(layout_compute(NULL, NULL, 3, 3));
}

static void test_one_node(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 1, NULL);
  Gureum__Layout *l = layout_compute(NULL, s.m, 1, 3);
  check_shape(l, 1);
  assert_int_equal(l->version, 1);
  assert_int_equal(l->replicas, 3);
  assert_int_equal(l->n_nodes, 1);
  assert_string_equal(l->nodes[0]->addr, "127.0.0.1:7071");
  assert_int_equal(slots(l, "n1"), 256);
  assert_true(layout_settled(l));
  const Gureum__LayoutNode *out[4];
  assert_int_equal(layout_owners(l, 17, 3, out, 4), 1);
  assert_string_equal(out[0]->name, "n1");
  assert_int_equal(layout_prev(l, 17, 3, out, 4), 0);
  assert_int_equal(layout_owners(l, 256, 3, out, 4), 0);
  layout_free(l);
}

static void test_three_nodes_rf3(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 3, NULL);
  Gureum__Layout *l = layout_compute(NULL, s.m, 3, 3);
  check_shape(l, 3);
  for (size_t i = 0; i < 3; i++) assert_int_equal(slots(l, s.name[i]), 256);
  /* With two copies (reduced redundancy), the first owners should still be spread out. */
  uint32_t first[3] = {0};
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) first[l->partitions[p]->owners[0]]++;
  for (int i = 0; i < 3; i++) assert_true(first[i] >= 60);
  layout_free(l);
}

static void test_two_nodes_rf3_caps_copies(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 2, NULL);
  Gureum__Layout *l = layout_compute(NULL, s.m, 2, 3);
  check_shape(l, 2);
  assert_int_equal(l->replicas, 3);
  const Gureum__LayoutNode *out[4];
  assert_int_equal(layout_owners(l, 0, 3, out, 4), 2);
  assert_int_equal(layout_owners(l, 0, 1, out, 4), 1);
  assert_int_equal(layout_owners(l, 0, 3, out, 1), 1);
  layout_free(l);
  /* Out-of-range replica counts are clamped, not rejected. */
  members_set(&s, 9, NULL);
  l = layout_compute(NULL, s.m, 9, 99);
  check_shape(l, LAYOUT_MAX_REPLICAS);
  layout_free(l);
  l = layout_compute(NULL, s.m, 9, 0);
  check_shape(l, 1);
  layout_free(l);
}

static void test_four_nodes_rf3(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 4, NULL);
  Gureum__Layout *l = layout_compute(NULL, s.m, 4, 3);
  check_shape(l, 3);
  for (size_t i = 0; i < 4; i++) {
    uint32_t n = slots(l, s.name[i]);
    assert_true(n >= 191 && n <= 193);
  }
  layout_free(l);
}

static void test_balance_many_sizes(void **state) {
  (void)state;
  members_t s;
  for (size_t n = 1; n <= 20; n++)
    for (uint32_t r = 1; r <= 5; r++) {
      members_set(&s, n, NULL);
      Gureum__Layout *l = layout_compute(NULL, s.m, n, r);
      check_shape(l, r < n ? r : (uint32_t)n);
      check_balanced(l, r < n ? r : (uint32_t)n);
      layout_free(l);
    }
}

static void test_add_fourth_node(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 4, NULL);
  Gureum__Layout *l3 = layout_compute(NULL, s.m, 3, 3);
  Gureum__Layout *l4 = layout_compute(l3, s.m, 4, 3);
  check_shape(l4, 3);
  check_balanced(l4, 3);
  assert_int_equal(l4->version, 2);
  uint32_t moved = layout_moved_slots(l3, l4);
  assert_true(moved >= 191 && moved <= 200);
  assert_int_equal(moved, slots(l4, "n4"));
  int changed = 0;
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    const Gureum__LayoutPartition *pp = l4->partitions[p];
    if (same_set(l3, l4, p)) {
      assert_int_equal(pp->n_prev, 0);
      /* Untouched partitions keep their preference order too. */
      for (size_t j = 0; j < pp->n_owners; j++)
        assert_string_equal(name_of(l4, pp->owners[j]), name_of(l3, l3->partitions[p]->owners[j]));
      continue;
    }
    changed++;
    /* prev is the old owner set; the newcomer is last, survivors keep their order. */
    assert_int_equal(pp->n_prev, 3);
    for (size_t j = 0; j < 3; j++) assert_true(prev_has(l4, p, name_of(l3, l3->partitions[p]->owners[j])));
    assert_string_equal(name_of(l4, pp->owners[2]), "n4");
    const char *a = name_of(l4, pp->owners[0]), *b = name_of(l4, pp->owners[1]);
    int ia = -1, ib = -1;
    for (int j = 0; j < 3; j++) {
      if (strcmp(name_of(l3, l3->partitions[p]->owners[j]), a) == 0) ia = j;
      if (strcmp(name_of(l3, l3->partitions[p]->owners[j]), b) == 0) ib = j;
    }
    assert_true(ia >= 0 && ib > ia);
  }
  assert_int_equal(changed, moving(l4));
  assert_int_equal(changed, (int)moved);
  const Gureum__LayoutNode *out[4];
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++)
    if (l4->partitions[p]->n_prev) {
      assert_int_equal(layout_prev(l4, p, 2, out, 4), 2);
      assert_string_equal(out[0]->name, name_of(l3, l3->partitions[p]->owners[0]));
      break;
    }
  layout_free(l3);
  layout_free(l4);
}

static void test_add_many_nodes_moves_little(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 12, NULL);
  for (size_t n = 3; n < 12; n++) {
    Gureum__Layout *a = layout_compute(NULL, s.m, n, 3);
    Gureum__Layout *b = layout_compute(a, s.m, n + 1, 3);
    check_balanced(b, 3);
    /* The only slots that move are the newcomer's. */
    assert_int_equal(layout_moved_slots(a, b), slots(b, s.name[n]));
    layout_free(a);
    layout_free(b);
  }
}

static void check_removal(size_t n, uint32_t r, const char *victim) {
  members_t s;
  members_set(&s, n, NULL);
  Gureum__Layout *a = layout_compute(NULL, s.m, n, r);
  members_drop(&s, victim);
  Gureum__Layout *b = layout_compute(a, s.m, s.n, r);
  uint32_t copies = r < s.n ? r : (uint32_t)s.n;
  check_shape(b, copies);
  check_balanced(b, copies);
  assert_null(layout_node(b, victim));
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    const Gureum__LayoutPartition *pa = a->partitions[p], *pb = b->partitions[p];
    if (!part_has(a, p, victim)) {
      /* Only partitions the departed node owned are touched. */
      assert_int_equal(pb->n_owners, pa->n_owners);
      for (size_t j = 0; j < pa->n_owners; j++)
        assert_string_equal(name_of(b, pb->owners[j]), name_of(a, pa->owners[j]));
      assert_int_equal(pb->n_prev, 0);
      continue;
    }
    /* Survivors keep their order; prev is the survivors of the old set. */
    size_t k = 0;
    for (size_t j = 0; j < pa->n_owners; j++) {
      const char *o = name_of(a, pa->owners[j]);
      if (strcmp(o, victim) == 0) continue;
      assert_string_equal(name_of(b, pb->owners[k++]), o);
      if (copies == r) assert_true(prev_has(b, p, o));
    }
    if (copies == r) assert_int_equal(pb->n_prev, pa->n_owners - 1);
    else assert_int_equal(pb->n_prev, 0); /* every owner already had the data */
  }
  layout_free(a);
  layout_free(b);
}

static void test_remove_node(void **state) {
  (void)state;
  check_removal(4, 3, "n2");
  check_removal(5, 3, "n1");
  check_removal(5, 3, "n5");
  check_removal(7, 2, "n3");
  check_removal(10, 3, "n7");
  check_removal(3, 3, "n3"); /* below the replica count: copies shrink, nothing to pull */
}

static void test_two_zones(void **state) {
  (void)state;
  static const char *const z31[] = {"a", "a", "a", "b"};
  static const char *const z22[] = {"a", "b", "a", "b"};
  members_t s;
  members_set(&s, 4, z31);
  Gureum__Layout *l = layout_compute(NULL, s.m, 4, 3);
  check_shape(l, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) assert_int_equal(zones_in(l, p), 2);
  assert_int_equal(slots(l, "n4"), 256); /* the lone zone-b node is in every partition */
  for (int i = 0; i < 3; i++) assert_true(slots(l, s.name[i]) >= 170 && slots(l, s.name[i]) <= 171);
  layout_free(l);
  members_set(&s, 4, z22);
  l = layout_compute(NULL, s.m, 4, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) assert_int_equal(zones_in(l, p), 2);
  check_balanced(l, 3);
  layout_free(l);
}

static void test_zone_joins_later(void **state) {
  (void)state;
  /* Three nodes in zone a, then a fourth in zone b: it must enter every partition. */
  static const char *const z[] = {"a", "a", "a", "b"};
  members_t s;
  members_set(&s, 4, z);
  Gureum__Layout *a = layout_compute(NULL, s.m, 3, 3);
  Gureum__Layout *b = layout_compute(a, s.m, 4, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    assert_int_equal(zones_in(b, p), 2);
    assert_true(prev_has(b, p, "n1") && prev_has(b, p, "n2") && prev_has(b, p, "n3"));
  }
  assert_int_equal(layout_moved_slots(a, b), 256);
  layout_free(a);
  layout_free(b);
}

static void test_three_zones_two_nodes(void **state) {
  (void)state;
  static const char *const z[] = {"a", "a", "b", "b", "c", "c"};
  members_t s;
  members_set(&s, 6, z);
  Gureum__Layout *l = layout_compute(NULL, s.m, 6, 3);
  check_shape(l, 3);
  check_balanced(l, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) assert_int_equal(zones_in(l, p), 3);
  /* Losing a node keeps three zones everywhere: its zone twin takes over. */
  members_drop(&s, "n3");
  Gureum__Layout *m = layout_compute(l, s.m, s.n, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) assert_int_equal(zones_in(m, p), 3);
  assert_int_equal(slots(m, "n4"), 256);
  assert_int_equal(layout_moved_slots(l, m), 128);
  layout_free(l);
  layout_free(m);
}

static void test_determinism(void **state) {
  (void)state;
  static const char *const z[] = {"a", "b", "c", "a", "b", "c", "a", "b"};
  members_t s, t;
  members_set(&s, 8, z);
  Gureum__Layout *base = layout_compute(NULL, s.m, 6, 3);
  Gureum__Layout *l1 = layout_compute(base, s.m, 8, 3);
  size_t len1, len2;
  uint8_t *p1 = layout_pack(l1, &len1);
  srand(7);
  for (int round = 0; round < 20; round++) {
    t = s;
    for (size_t i = t.n - 1; i > 0; i--) {
      size_t j = (size_t)rand() % (i + 1);
      layout_member_t x = t.m[i];
      t.m[i] = t.m[j];
      t.m[j] = x;
    }
    /* A duplicate entry changes nothing either. */
    t.m[t.n] = t.m[0];
    Gureum__Layout *l2 = layout_compute(base, t.m, t.n + 1, 3);
    uint8_t *p2 = layout_pack(l2, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(p1, p2, len1);
    free(p2);
    layout_free(l2);
  }
  free(p1);
  layout_free(base);
  layout_free(l1);
}

static Gureum__LayoutSynced *report(const char *node, uint64_t version, const Gureum__Layout *l) {
  Gureum__LayoutSynced *r = calloc(1, sizeof *r);
  gureum__layout_synced__init(r);
  r->node = strdup(node);
  r->version = version;
  r->partitions.data = malloc(LAYOUT_BITMAP_BYTES);
  r->partitions.len = LAYOUT_BITMAP_BYTES;
  layout_partitions_of(l, node, r->partitions.data);
  return r;
}

/* Newcomers of partition p: owners not in prev. */
static int newcomer(const Gureum__Layout *l, uint32_t p, const char *name) {
  return part_has(l, p, name) && !prev_has(l, p, name);
}

static void test_mark_synced(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 5, NULL);
  Gureum__Layout *l3 = layout_compute(NULL, s.m, 3, 3);
  Gureum__Layout *l4 = layout_compute(l3, s.m, 4, 3); /* n4 joins */
  Gureum__Layout *l5 = layout_compute(l4, s.m, 5, 3); /* n5 joins before n4 synced */
  assert_false(layout_settled(l5));
  int only4 = 0, only5 = 0, both = 0;
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    int a = newcomer(l5, p, "n4"), b = newcomer(l5, p, "n5");
    only4 += a && !b, only5 += b && !a, both += a && b;
  }
  assert_true(only4 > 0 && only5 > 0); /* the cases below all occur */

  /* Nothing reported, or reports for another version: nothing changes. */
  assert_null(layout_mark_synced(l5, NULL, 0));
  Gureum__LayoutSynced *old4 = report("n4", l5->version - 1, l5), *old5 = report("n5", l5->version - 1, l5);
  const Gureum__LayoutSynced *stale[] = {old4, old5};
  assert_null(layout_mark_synced(l5, stale, 2));

  /* Only n4 reported: partitions whose only newcomer is n4 settle, those with n5 do not. */
  Gureum__LayoutSynced *r4 = report("n4", l5->version, l5), *r5 = report("n5", l5->version, l5);
  const Gureum__LayoutSynced *just4[] = {r4};
  Gureum__Layout *m = layout_mark_synced(l5, just4, 1);
  assert_non_null(m);
  assert_int_equal(m->version, l5->version);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++)
    assert_int_equal(m->partitions[p]->n_prev > 0, l5->partitions[p]->n_prev > 0 && newcomer(l5, p, "n5"));
  assert_int_equal(moving(m), only5 + both);
  /* A report missing one partition keeps that one moving. */
  uint32_t held = 0;
  while (!(newcomer(l5, held, "n5") && l5->partitions[held]->n_prev)) held++;
  r5->partitions.data[held / 8] &= (uint8_t)~(1u << (held % 8));
  const Gureum__LayoutSynced *two[] = {r4, r5};
  Gureum__Layout *m2 = layout_mark_synced(m, two, 2);
  assert_non_null(m2);
  assert_int_equal(moving(m2), 1);
  assert_true(m2->partitions[held]->n_prev > 0);
  assert_null(layout_mark_synced(m2, two, 2)); /* nothing more to clear */
  r5->partitions.data[held / 8] |= (uint8_t)(1u << (held % 8));
  Gureum__Layout *m3 = layout_mark_synced(m2, two, 2);
  assert_true(layout_settled(m3));
  /* The owners never change, only prev. */
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) assert_true(same_set(l5, m3, p));

  gureum__layout_synced__free_unpacked(old4, NULL);
  gureum__layout_synced__free_unpacked(old5, NULL);
  gureum__layout_synced__free_unpacked(r4, NULL);
  gureum__layout_synced__free_unpacked(r5, NULL);
  layout_free(l3);
  layout_free(l4);
  layout_free(l5);
  layout_free(m);
  layout_free(m2);
  layout_free(m3);
}

static void test_unfinished_move_keeps_older_prev(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 5, NULL);
  Gureum__Layout *a = layout_compute(NULL, s.m, 3, 3);
  Gureum__Layout *b = layout_compute(a, s.m, 4, 3); /* n4 joins, nothing synced yet */
  Gureum__Layout *c = layout_compute(b, s.m, 5, 3); /* then n5 */
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    const Gureum__LayoutPartition *pc = c->partitions[p];
    if (b->partitions[p]->n_prev) {
      /* Still pulling from the original owners, whatever changed since. */
      assert_int_equal(pc->n_prev, 3);
      for (int j = 0; j < 3; j++) assert_true(prev_has(c, p, name_of(a, a->partitions[p]->owners[j])));
    } else if (!same_set(b, c, p)) {
      assert_int_equal(pc->n_prev, 3);
      for (int j = 0; j < 3; j++) assert_true(prev_has(c, p, name_of(b, b->partitions[p]->owners[j])));
    } else {
      assert_int_equal(pc->n_prev, 0);
    }
  }
  /* n4 leaves before it synced: partitions it was moving into keep the original prev. */
  members_drop(&s, "n4");
  Gureum__Layout *d = layout_compute(c, s.m, s.n, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++)
    if (c->partitions[p]->n_prev) {
      for (size_t j = 0; j < c->partitions[p]->n_prev; j++)
        assert_true(prev_has(d, p, name_of(c, c->partitions[p]->prev[j])) ||
                    d->partitions[p]->n_prev == 0);
    }
  assert_int_equal(d->version, 4);
  layout_free(a);
  layout_free(b);
  layout_free(c);
  layout_free(d);
}

static void test_prev_falls_back_when_sources_leave(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 4, NULL);
  Gureum__Layout *a = layout_compute(NULL, s.m, 1, 1); /* n1 holds everything */
  Gureum__Layout *b = layout_compute(a, s.m, 2, 1);    /* n2 takes half, prev = {n1} */
  members_drop(&s, "n1");
  Gureum__Layout *c = layout_compute(b, s.m, 1, 1); /* n1 gone: n2 everywhere */
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) {
    assert_true(part_has(c, p, "n2"));
    /* Partitions n2 was pulling from n1 have no source left; the others n2 held anyway. */
    assert_int_equal(c->partitions[p]->n_prev, 0);
  }
  layout_free(a);
  layout_free(b);
  layout_free(c);
}

static void test_zone_and_addr_changes(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 4, NULL);
  Gureum__Layout *a = layout_compute(NULL, s.m, 4, 3);
  snprintf(s.addr[1], sizeof s.addr[1], "10.9.9.9:7071");
  Gureum__Layout *b = layout_compute(a, s.m, 4, 3);
  assert_int_equal(layout_moved_slots(a, b), 0);
  assert_true(layout_settled(b));
  assert_string_equal(layout_node(b, "n2")->addr, "10.9.9.9:7071");
  assert_int_equal(b->version, 2);
  snprintf(s.zone[3], sizeof s.zone[3], "b"); /* n4 moves to a zone of its own */
  Gureum__Layout *c = layout_compute(b, s.m, 4, 3);
  for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++) assert_int_equal(zones_in(c, p), 2);
  assert_int_equal(layout_moved_slots(b, c), 256 - slots(b, "n4"));
  layout_free(a);
  layout_free(b);
  layout_free(c);
}

static void test_pack_unpack(void **state) {
  (void)state;
  members_t s;
  members_set(&s, 3, NULL);
  Gureum__Layout *l = layout_compute(NULL, s.m, 3, 2);
  size_t len;
  uint8_t *buf = layout_pack(l, &len);
  Gureum__Layout *u = layout_unpack(buf, len);
  assert_non_null(u);
  assert_int_equal(u->version, 1);
  assert_int_equal(layout_moved_slots(l, u), 0);
  /* An owner index beyond the node list is rejected. */
  u->partitions[5]->owners[0] = 9;
  size_t blen;
  uint8_t *bad = layout_pack(u, &blen);
  assert_null(layout_unpack(bad, blen));
  assert_null(layout_unpack((const uint8_t *)"\xff\xff", 2));
  free(buf);
  free(bad);
  layout_free(l);
  layout_free(u);
}

/* Random joins, departures and zone changes: after every step the layout is well formed,
 * spans as many zones as possible, is balanced when zones allow it, and moves at most the
 * slots that had to move plus what balance needs. */
static void test_random_churn(void **state) {
  (void)state;
  static const char *const zn[] = {"a", "b", "c"};
  members_t all;
  members_set(&all, MAXN, NULL);
  int in[MAXN] = {0};
  srand(42);
  for (int run = 0; run < 4; run++) {
    Gureum__Layout *l = NULL;
    uint32_t r = (uint32_t)(run % 3) + 2;
    memset(in, 0, sizeof in);
    for (int step = 0; step < 40; step++) {
      int i = rand() % 16;
      in[i] = !in[i];
      if (run >= 2) snprintf(all.zone[i], sizeof all.zone[i], "%s", zn[rand() % 3]);
      layout_member_t cur[MAXN];
      size_t n = 0;
      for (int k = 0; k < 16; k++)
        if (in[k]) cur[n++] = all.m[k];
      if (!n) continue;
      Gureum__Layout *next = layout_compute(l, cur, n, r);
      uint32_t copies = r < n ? r : (uint32_t)n;
      check_shape(next, copies);
      uint32_t zones = 0;
      for (size_t k = 0; k < n; k++) {
        int dup = 0;
        for (size_t q = 0; q < k; q++) dup |= strcmp(cur[q].zone, cur[k].zone) == 0;
        zones += !dup;
      }
      for (uint32_t p = 0; p < LAYOUT_PARTITIONS; p++)
        assert_int_equal(zones_in(next, p), copies < zones ? copies : zones);
      if (run < 2) check_balanced(next, copies);
      if (l) assert_int_equal(next->version, l->version + 1);
      layout_free(l);
      l = next;
    }
    layout_free(l);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_nodes),
      cmocka_unit_test(test_one_node),
      cmocka_unit_test(test_three_nodes_rf3),
      cmocka_unit_test(test_two_nodes_rf3_caps_copies),
      cmocka_unit_test(test_four_nodes_rf3),
      cmocka_unit_test(test_balance_many_sizes),
      cmocka_unit_test(test_add_fourth_node),
      cmocka_unit_test(test_add_many_nodes_moves_little),
      cmocka_unit_test(test_remove_node),
      cmocka_unit_test(test_two_zones),
      cmocka_unit_test(test_zone_joins_later),
      cmocka_unit_test(test_three_zones_two_nodes),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_mark_synced),
      cmocka_unit_test(test_unfinished_move_keeps_older_prev),
      cmocka_unit_test(test_prev_falls_back_when_sources_leave),
      cmocka_unit_test(test_zone_and_addr_changes),
      cmocka_unit_test(test_pack_unpack),
      cmocka_unit_test(test_random_churn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
