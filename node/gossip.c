/* gossip.c - SWIM membership with the Lifeguard refinements, over the authenticated cluster RPC.
 * Probes (direct, then indirect), suspicion with confirmations, incarnations and refutation, local
 * health awareness, piggybacked dissemination, push-pull sync, graceful leave and reaping. */
#include "gossip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "admin.h"
#include "log.h"
#include "proto/envelope.pb-c.h"
#include "proto/gossip.pb-c.h"

#define GOSSIP_MAX_PIGGYBACK 16   /* updates per message */
#define GOSSIP_PIGGYBACK_BYTES 4096
#define GOSSIP_MAX_CONFIRM 16
#define GOSSIP_JOIN_BACKOFF_MAX_MS 30000
#define GOSSIP_LEAVE_WAIT_MS 1000

typedef struct gmember_s {
  member_t m;
  /* Suspicion (Lifeguard): the deadline starts at max and shrinks with confirmations. */
  uint64_t suspect_start;      /* uv_now at suspicion */
  uint64_t suspect_deadline;   /* uv_now when it becomes dead */
  uint64_t suspect_min, suspect_max;
  int suspect_k;
  char confirmers[GOSSIP_MAX_CONFIRM][64]; /* [0] is the accuser, the rest confirm */
  int nconfirmers;
  uint64_t changed_mono;       /* uv_now of the last state change (reaping, gossip to the dead) */
} gmember_t;

typedef struct gbcast_s {
  char name[64];    /* the member this update is about: a newer one replaces it */
  uint8_t *buf;     /* packed Gureum__Member */
  size_t len;
  int transmits;
} gbcast_t;

typedef struct gsub_s {
  gossip_event_fn fn;
  void *arg;
} gsub_t;

typedef struct gprobe_s {
  int active;
  uint64_t seq;
  char target[64];
  int expected, acks, nacks, pending;
} gprobe_t;

struct gossip_s {
  node_t *node;
  uv_loop_t *loop;
  const config_t *cfg;
  gmember_t *members; /* members[0] is always ourselves */
  size_t nmembers, cap;
  gbcast_t *bcasts;
  size_t nbcasts, bcap;
  gsub_t *subs;
  size_t nsubs;
  size_t *order; /* probe order: indexes into members, reshuffled each round */
  size_t norder, next_probe;
  gprobe_t probe;
  uint64_t seq;
  int awareness; /* Lifeguard local health score, 0 = healthy */
  int joined;
  int join_backoff_ms;
  int leaving;
  int leave_pending;
  void (*leave_cb)(void *);
  void *leave_arg;
  uv_timer_t probe_timer, gossip_timer, pushpull_timer, join_timer, leave_timer;
  int started;
  int closing_handles;
  metric_t *m_probes, *m_probe_fail, *m_suspects, *m_refutes, *m_deaths, *m_health;
  metric_t *m_state[4];
};

static const char *state_names[] = {"alive", "suspect", "dead", "left"};

const char *gossip_state_name(member_state_t s) { return state_names[s]; }

static uint64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static gmember_t *self_of(gossip_t *g) { return &g->members[0]; }

static gmember_t *find(gossip_t *g, const char *name) {
  for (size_t i = 0; i < g->nmembers; i++)
    if (strcmp(g->members[i].m.name, name) == 0) return &g->members[i];
  return NULL;
}

size_t gossip_count(gossip_t *g) { return g->nmembers; }
const member_t *gossip_member(gossip_t *g, size_t i) { return i < g->nmembers ? &g->members[i].m : NULL; }

void gossip_subscribe(gossip_t *g, gossip_event_fn fn, void *arg) {
  gsub_t *s = realloc(g->subs, (g->nsubs + 1) * sizeof *s);
  if (!s) abort();
  g->subs = s;
  s[g->nsubs++] = (gsub_t){fn, arg};
}

static void emit(gossip_t *g, gossip_event_t ev, const gmember_t *m) {
  static const char *ev_names[] = {"member_join", "member_update", "member_suspect",
                                   "member_alive", "member_dead", "member_left"};
  log_info("gossip", ev_names[ev], "member=%s addr=%s incarnation=%u", m->m.name, m->m.addr,
           m->m.incarnation);
  member_t copy = m->m; /* subscribers may cause the table to change */
  for (size_t i = 0; i < g->nsubs; i++) g->subs[i].fn(ev, &copy, g->subs[i].arg);
}

/* Members that count towards n: alive or suspect. */
static size_t live_count(gossip_t *g) {
  size_t n = 0;
  for (size_t i = 0; i < g->nmembers; i++)
    n += g->members[i].m.state == MEMBER_STATE_ALIVE || g->members[i].m.state == MEMBER_STATE_SUSPECT;
  return n;
}

static void update_gauges(gossip_t *g) {
  int64_t c[4] = {0};
  for (size_t i = 0; i < g->nmembers; i++) c[g->members[i].m.state]++;
  for (int s = 0; s < 4; s++) metric_set(g->m_state[s], c[s]);
  metric_set(g->m_health, g->awareness);
}

static void set_state(gossip_t *g, gmember_t *m, member_state_t s) {
  if (m->m.state != s) {
    m->m.state = s;
    m->m.since_ms = wall_ms();
    m->changed_mono = uv_now(g->loop);
  }
  update_gauges(g);
}

/* ---- message building ---- */

typedef struct {
  Gureum__Member msg;
  Gureum__MemberMeta meta;
  char *roles[CONFIG_MAX_ROLES];
} gmsg_t;

/* Point a stack message at a member's fields (no allocation). */
static void fill_member(gmsg_t *o, const gmember_t *m, member_state_t state, const char *from,
                        int with_meta) {
  gureum__member__init(&o->msg);
  o->msg.name = (char *)m->m.name;
  o->msg.addr = (char *)m->m.addr;
  o->msg.incarnation = m->m.incarnation;
  o->msg.state = (Gureum__MemberStateCode)state;
  o->msg.from = (char *)(from ? from : "");
  if (!with_meta) return;
  gureum__member_meta__init(&o->meta);
  o->meta.id = (char *)m->m.id;
  for (int i = 0; i < m->m.nroles; i++) o->roles[i] = (char *)m->m.roles[i];
  o->meta.roles = o->roles;
  o->meta.n_roles = m->m.nroles;
  o->meta.zone = (char *)m->m.zone;
  o->meta.version = (char *)m->m.version;
  o->meta.start_ms = m->m.start_ms;
  o->meta.admin_port = m->m.admin_port;
  o->meta.raft_port = m->m.raft_port;
  o->msg.meta = &o->meta;
}

static int retransmit_limit(gossip_t *g) {
  return g->cfg->gossip_retransmit_mult * (int)ceil(log10((double)g->nmembers + 1));
}

/* Queue an update for dissemination; it replaces any queued update about the same member. */
static void broadcast(gossip_t *g, const gmember_t *m, member_state_t state, const char *from) {
  gmsg_t o;
  fill_member(&o, m, state, from, state == MEMBER_STATE_ALIVE);
  size_t len = gureum__member__get_packed_size(&o.msg);
  uint8_t *buf = malloc(len);
  if (!buf) return;
  gureum__member__pack(&o.msg, buf);
  for (size_t i = 0; i < g->nbcasts; i++)
    if (strcmp(g->bcasts[i].name, m->m.name) == 0) {
      free(g->bcasts[i].buf);
      g->bcasts[i] = g->bcasts[--g->nbcasts];
      break;
    }
  if (g->nbcasts == g->bcap) {
    size_t cap = g->bcap ? g->bcap * 2 : 16;
    gbcast_t *b = realloc(g->bcasts, cap * sizeof *b);
    if (!b) {
      free(buf);
      return;
    }
    g->bcasts = b;
    g->bcap = cap;
  }
  gbcast_t *b = &g->bcasts[g->nbcasts++];
  snprintf(b->name, sizeof b->name, "%s", m->m.name);
  b->buf = buf;
  b->len = len;
  b->transmits = 0;
}

/* Pick the least-sent queued updates for one outgoing message (unpacked; free with
 * free_piggyback). Updates sent often enough leave the queue. */
static Gureum__Member **take_piggyback(gossip_t *g, size_t *n) {
  *n = 0;
  if (g->nbcasts == 0) return NULL;
  Gureum__Member **out = calloc(GOSSIP_MAX_PIGGYBACK, sizeof *out);
  if (!out) return NULL;
  int limit = retransmit_limit(g);
  size_t bytes = 0;
  while (*n < GOSSIP_MAX_PIGGYBACK && bytes < GOSSIP_PIGGYBACK_BYTES) {
    gbcast_t *best = NULL;
    for (size_t i = 0; i < g->nbcasts; i++) {
      gbcast_t *b = &g->bcasts[i];
      int taken = 0;
      for (size_t j = 0; j < *n; j++) taken |= strcmp(out[j]->name, b->name) == 0;
      if (!taken && (!best || b->transmits < best->transmits)) best = b;
    }
    if (!best) break;
    Gureum__Member *u = gureum__member__unpack(NULL, best->len, best->buf);
    if (!u) break;
    out[(*n)++] = u;
    bytes += best->len;
    best->transmits++;
  }
  for (size_t i = 0; i < g->nbcasts;) {
    if (g->bcasts[i].transmits >= limit) {
      free(g->bcasts[i].buf);
      g->bcasts[i] = g->bcasts[--g->nbcasts];
    } else {
      i++;
    }
  }
  return out;
}

static void free_piggyback(Gureum__Member **u, size_t n) {
  for (size_t i = 0; i < n; i++) gureum__member__free_unpacked(u[i], NULL);
  free(u);
}

/* ---- applying updates (memberlist's rules) ---- */

static void copy_meta(gmember_t *m, const Gureum__Member *u) {
  if (u->addr && *u->addr) snprintf(m->m.addr, sizeof m->m.addr, "%s", u->addr);
  if (!u->meta) return;
  const Gureum__MemberMeta *mt = u->meta;
  snprintf(m->m.id, sizeof m->m.id, "%s", mt->id ? mt->id : "");
  m->m.nroles = 0;
  for (size_t i = 0; i < mt->n_roles && i < CONFIG_MAX_ROLES; i++)
    snprintf(m->m.roles[m->m.nroles++], sizeof m->m.roles[0], "%s", mt->roles[i]);
  snprintf(m->m.zone, sizeof m->m.zone, "%s", mt->zone ? mt->zone : "");
  snprintf(m->m.version, sizeof m->m.version, "%s", mt->version ? mt->version : "");
  m->m.start_ms = mt->start_ms;
  m->m.admin_port = (int)mt->admin_port;
  m->m.raft_port = (int)mt->raft_port;
}

static int meta_differs(const gmember_t *m, const Gureum__Member *u) {
  if (!u->meta) return 0;
  gmember_t tmp = *m;
  copy_meta(&tmp, u);
  return memcmp(&tmp.m, &m->m, sizeof tmp.m) != 0;
}

static gmember_t *add_member(gossip_t *g, const char *name) {
  if (g->nmembers == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    gmember_t *a = realloc(g->members, cap * sizeof *a);
    if (!a) return NULL;
    g->members = a;
    g->cap = cap;
  }
  gmember_t *m = &g->members[g->nmembers++];
  memset(m, 0, sizeof *m);
  snprintf(m->m.name, sizeof m->m.name, "%s", name);
  m->m.state = MEMBER_STATE_DEAD; /* until the alive is applied */
  return m;
}

static void refute_push(gossip_t *g);

/* We are accused (suspect/dead) or someone holds a newer incarnation of us: out-bid it. */
static void refute(gossip_t *g, uint32_t accused_inc) {
  gmember_t *self = self_of(g);
  if (g->leaving) return;
  if (accused_inc >= self->m.incarnation) self->m.incarnation = accused_inc + 1;
  else self->m.incarnation++;
  if (g->awareness < g->cfg->gossip_awareness_max - 1) g->awareness++;
  metric_inc(g->m_refutes);
  log_info("gossip", "refute", "incarnation=%u", self->m.incarnation);
  broadcast(g, self, MEMBER_STATE_ALIVE, NULL);
  /* Also tell a few members at once: a refutation that loses the race with the suspicion timer
   * becomes a false death, and after a pause the piggyback budget may already be spent on
   * answers to requests whose senders gave up. */
  refute_push(g);
}

static void apply_alive(gossip_t *g, const Gureum__Member *u) {
  if (strcmp(u->name, self_of(g)->m.name) == 0) {
    /* Our own past (a previous run of this node) must not outrank us. */
    if (u->incarnation > self_of(g)->m.incarnation) refute(g, u->incarnation);
    return;
  }
  gmember_t *m = find(g, u->name);
  int is_new = !m;
  if (is_new) {
    if (!u->meta) return; /* an alive without metadata cannot introduce a member */
    if (!(m = add_member(g, u->name))) return;
  } else if (u->incarnation <= m->m.incarnation) {
    return;
  }
  member_state_t was = is_new ? MEMBER_STATE_DEAD : m->m.state;
  int changed = !is_new && meta_differs(m, u);
  m->m.incarnation = u->incarnation;
  copy_meta(m, u);
  m->nconfirmers = 0;
  set_state(g, m, MEMBER_STATE_ALIVE);
  broadcast(g, m, MEMBER_STATE_ALIVE, NULL);
  if (is_new || was == MEMBER_STATE_DEAD || was == MEMBER_STATE_LEFT) emit(g, GOSSIP_EV_JOIN, m);
  else if (was == MEMBER_STATE_SUSPECT) emit(g, GOSSIP_EV_ALIVE, m);
  if (changed && was != MEMBER_STATE_DEAD && was != MEMBER_STATE_LEFT) emit(g, GOSSIP_EV_UPDATE, m);
}

/* Lifeguard: the timeout after c independent confirmations out of k expected. */
static void suspicion_recompute(gossip_t *g, gmember_t *m) {
  uint64_t timeout = m->suspect_max;
  if (m->suspect_k < 1) {
    timeout = m->suspect_min;
  } else {
    int c = m->nconfirmers - 1;
    double frac = log((double)c + 1) / log((double)m->suspect_k + 1);
    double t = (double)m->suspect_max - frac * (double)(m->suspect_max - m->suspect_min);
    timeout = t < (double)m->suspect_min ? m->suspect_min : (uint64_t)t;
  }
  m->suspect_deadline = m->suspect_start + timeout;
  (void)g;
}

static void start_suspicion(gossip_t *g, gmember_t *m, const char *from) {
  size_t n = live_count(g);
  const config_t *c = g->cfg;
  double scale = n > 10 ? log10((double)n) : 1.0;
  m->suspect_min = (uint64_t)(c->gossip_suspicion_mult * scale * c->gossip_probe_interval_ms);
  m->suspect_max = m->suspect_min * (uint64_t)c->gossip_suspicion_max_mult;
  m->suspect_k = c->gossip_suspicion_mult - 2;
  if ((int)n - 2 < m->suspect_k) m->suspect_k = 0;
  m->suspect_start = uv_now(g->loop);
  snprintf(m->confirmers[0], sizeof m->confirmers[0], "%s", from);
  m->nconfirmers = 1; /* the accuser itself does not count as a confirmation */
  suspicion_recompute(g, m);
}

static void confirm_suspicion(gossip_t *g, gmember_t *m, const char *from) {
  for (int i = 0; i < m->nconfirmers; i++)
    if (strcmp(m->confirmers[i], from) == 0) return;
  if (m->nconfirmers >= GOSSIP_MAX_CONFIRM || m->nconfirmers - 1 >= m->suspect_k) return;
  snprintf(m->confirmers[m->nconfirmers++], sizeof m->confirmers[0], "%s", from);
  suspicion_recompute(g, m);
  /* Spread the new, independent accusation: the others count it too (memberlist does this). */
  broadcast(g, m, MEMBER_STATE_SUSPECT, from);
}

static void apply_suspect(gossip_t *g, const Gureum__Member *u) {
  gmember_t *m = find(g, u->name);
  if (!m || u->incarnation < m->m.incarnation) return;
  if (m == self_of(g)) {
    refute(g, u->incarnation);
    return;
  }
  if (m->m.state == MEMBER_STATE_DEAD || m->m.state == MEMBER_STATE_LEFT) return;
  const char *from = u->from ? u->from : "";
  if (m->m.state == MEMBER_STATE_SUSPECT) {
    if (u->incarnation == m->m.incarnation) confirm_suspicion(g, m, from);
    return;
  }
  m->m.incarnation = u->incarnation;
  set_state(g, m, MEMBER_STATE_SUSPECT);
  start_suspicion(g, m, from);
  metric_inc(g->m_suspects);
  broadcast(g, m, MEMBER_STATE_SUSPECT, from);
  emit(g, GOSSIP_EV_SUSPECT, m);
}

static void apply_dead(gossip_t *g, const Gureum__Member *u, member_state_t state) {
  gmember_t *m = find(g, u->name);
  if (!m || u->incarnation < m->m.incarnation) return;
  if (m == self_of(g)) {
    if (!g->leaving) refute(g, u->incarnation);
    return;
  }
  /* dead -> left is allowed (a graceful leave is the better truth); nothing else repeats. */
  if (m->m.state == MEMBER_STATE_LEFT || (m->m.state == MEMBER_STATE_DEAD && state == MEMBER_STATE_DEAD))
    return;
  m->m.incarnation = u->incarnation;
  set_state(g, m, state);
  if (state == MEMBER_STATE_DEAD) metric_inc(g->m_deaths);
  broadcast(g, m, state, u->from);
  emit(g, state == MEMBER_STATE_LEFT ? GOSSIP_EV_LEFT : GOSSIP_EV_DEAD, m);
}

static void apply_update(gossip_t *g, const Gureum__Member *u, int from_sync) {
  if (!u->name || !*u->name) return;
  switch (u->state) {
  case GUREUM__MEMBER_STATE_CODE__MEMBER_ALIVE: apply_alive(g, u); break;
  case GUREUM__MEMBER_STATE_CODE__MEMBER_SUSPECT: apply_suspect(g, u); break;
  case GUREUM__MEMBER_STATE_CODE__MEMBER_DEAD:
    /* A death learnt by full sync may be stale: suspect instead, so the node can refute. */
    if (from_sync) {
      Gureum__Member s = *u;
      s.state = GUREUM__MEMBER_STATE_CODE__MEMBER_SUSPECT;
      apply_suspect(g, &s);
    } else {
      apply_dead(g, u, MEMBER_STATE_DEAD);
    }
    break;
  case GUREUM__MEMBER_STATE_CODE__MEMBER_LEFT: apply_dead(g, u, MEMBER_STATE_LEFT); break;
  default: break;
  }
}

static void apply_all(gossip_t *g, Gureum__Member **u, size_t n, int from_sync) {
  for (size_t i = 0; i < n; i++) apply_update(g, u[i], from_sync);
}

/* ---- sending ---- */

typedef void (*gsend_done_fn)(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len);

typedef struct gcall_s {
  gossip_t *g;
  gsend_done_fn done;
  void *ctx;
} gcall_t;

static void gcall_done(void *arg, int status, const char *errmsg, const uint8_t *p, size_t len) {
  gcall_t *c = arg;
  (void)errmsg;
  if (c->done) c->done(c->g, c->ctx, status, p, len);
  free(c);
}

static int gsend(gossip_t *g, const char *addr, uint32_t type, const uint8_t *buf, size_t len,
                 int timeout_ms, gsend_done_fn done, void *ctx) {
  gcall_t *c = malloc(sizeof *c);
  if (!c) return -1;
  *c = (gcall_t){g, done, ctx};
  int rv = rpc_call(g->node->rpc, addr, type, buf, len, timeout_ms, gcall_done, c);
  if (rv != 0) free(c);
  return rv;
}

/* Reply payloads that carry piggybacked updates (Ack). */
static void apply_ack(gossip_t *g, const uint8_t *p, size_t len) {
  Gureum__Ack *a = gureum__ack__unpack(NULL, len, p);
  if (!a) return;
  apply_all(g, a->updates, a->n_updates, 0);
  gureum__ack__free_unpacked(a, NULL);
}

/* ---- probing ---- */

static int probe_timeout(gossip_t *g) { return g->cfg->gossip_probe_timeout_ms * (g->awareness + 1); }

static void health_adjust(gossip_t *g, int delta) {
  g->awareness += delta;
  if (g->awareness < 0) g->awareness = 0;
  if (g->awareness > g->cfg->gossip_awareness_max - 1) g->awareness = g->cfg->gossip_awareness_max - 1;
  metric_set(g->m_health, g->awareness);
}

static void probe_finish(gossip_t *g, int ok) {
  gprobe_t *p = &g->probe;
  gmember_t *t = find(g, p->target);
  p->active = 0;
  if (ok) {
    health_adjust(g, -1);
    return;
  }
  metric_inc(g->m_probe_fail);
  /* Lifeguard: missing nacks mean *we* may be the slow one. */
  health_adjust(g, p->expected ? p->expected - p->nacks : 1);
  if (!t || g->leaving || (t->m.state != MEMBER_STATE_ALIVE && t->m.state != MEMBER_STATE_SUSPECT))
    return;
  log_debug("gossip", "probe_failed", "member=%s indirect=%d nacks=%d", t->m.name, p->expected, p->nacks);
  Gureum__Member u = GUREUM__MEMBER__INIT;
  u.name = t->m.name;
  u.incarnation = t->m.incarnation;
  u.state = GUREUM__MEMBER_STATE_CODE__MEMBER_SUSPECT;
  u.from = self_of(g)->m.name;
  apply_suspect(g, &u);
}

static void indirect_done(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  uint64_t seq = (uint64_t)(uintptr_t)ctx;
  if (!g->probe.active || g->probe.seq != seq) return;
  g->probe.pending--;
  if (status == RPC_OK) {
    Gureum__ProbeReqResult *r = gureum__probe_req_result__unpack(NULL, len, p);
    if (r) {
      apply_all(g, r->updates, r->n_updates, 0);
      if (r->ack) g->probe.acks++;
      else g->probe.nacks++;
      gureum__probe_req_result__free_unpacked(r, NULL);
    }
  }
  if (g->probe.acks > 0) probe_finish(g, 1);
  else if (g->probe.pending == 0) probe_finish(g, 0);
}

static void probe_indirect(gossip_t *g) {
  gprobe_t *pr = &g->probe;
  gmember_t *t = find(g, pr->target);
  if (!t) {
    pr->active = 0;
    return;
  }
  /* k random alive helpers other than us and the target. */
  size_t cand[64], nc = 0;
  for (size_t i = 1; i < g->nmembers && nc < 64; i++)
    if (g->members[i].m.state == MEMBER_STATE_ALIVE && &g->members[i] != t) cand[nc++] = i;
  int k = g->cfg->gossip_indirect_checks;
  pr->expected = pr->pending = 0;
  Gureum__ProbeReq req = GUREUM__PROBE_REQ__INIT;
  req.seq = pr->seq;
  req.target = t->m.name;
  req.target_addr = t->m.addr;
  req.timeout_ms = (uint32_t)probe_timeout(g);
  for (int i = 0; i < k && nc > 0; i++) {
    size_t j = (size_t)rand() % nc;
    gmember_t *h = &g->members[cand[j]];
    cand[j] = cand[--nc];
    size_t npb;
    Gureum__Member **pb = take_piggyback(g, &npb);
    req.updates = pb;
    req.n_updates = npb;
    size_t len = gureum__probe_req__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    if (buf) {
      gureum__probe_req__pack(&req, buf);
      if (gsend(g, h->m.addr, GUREUM__MSG_TYPE__MSG_GOSSIP_PROBE_REQ, buf, len,
                probe_timeout(g) * 2 + 50, indirect_done, (void *)(uintptr_t)pr->seq) == 0) {
        pr->expected++;
        pr->pending++;
      }
      free(buf);
    }
    free_piggyback(pb, npb);
  }
  if (pr->pending == 0) probe_finish(g, 0);
}

static void direct_done(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  uint64_t seq = (uint64_t)(uintptr_t)ctx;
  if (!g->probe.active || g->probe.seq != seq) return;
  if (status == RPC_OK) {
    apply_ack(g, p, len);
    probe_finish(g, 1);
    return;
  }
  if (status == RPC_ECLOSED) {
    g->probe.active = 0;
    return;
  }
  probe_indirect(g);
}

/* Encode a Probe (with piggyback, and the suspicion itself if the target is suspect, so it
 * can refute at once - Lifeguard's "buddy system"). */
static uint8_t *probe_encode(gossip_t *g, gmember_t *t, uint64_t seq, size_t *len) {
  Gureum__Probe pr = GUREUM__PROBE__INIT;
  pr.seq = seq;
  pr.target = t->m.name;
  size_t npb, nall;
  Gureum__Member **pb = take_piggyback(g, &npb);
  Gureum__Member *all[GOSSIP_MAX_PIGGYBACK + 1];
  for (nall = 0; nall < npb; nall++) all[nall] = pb[nall];
  gmsg_t sus;
  if (t->m.state == MEMBER_STATE_SUSPECT) {
    fill_member(&sus, t, MEMBER_STATE_SUSPECT, self_of(g)->m.name, 0);
    all[nall++] = &sus.msg;
  }
  pr.updates = all;
  pr.n_updates = nall;
  *len = gureum__probe__get_packed_size(&pr);
  uint8_t *buf = malloc(*len);
  if (buf) gureum__probe__pack(&pr, buf);
  free_piggyback(pb, npb);
  return buf;
}

static void reshuffle(gossip_t *g) {
  free(g->order);
  g->order = malloc((g->nmembers + 1) * sizeof *g->order);
  g->norder = 0;
  if (!g->order) return;
  for (size_t i = 1; i < g->nmembers; i++) g->order[g->norder++] = i;
  for (size_t i = g->norder; i > 1; i--) {
    size_t j = (size_t)rand() % i;
    size_t t = g->order[i - 1];
    g->order[i - 1] = g->order[j];
    g->order[j] = t;
  }
  g->next_probe = 0;
}

static void reap(gossip_t *g) {
  uint64_t now = uv_now(g->loop), keep = (uint64_t)g->cfg->gossip_reap_s * 1000;
  for (size_t i = 1; i < g->nmembers;) {
    gmember_t *m = &g->members[i];
    if ((m->m.state == MEMBER_STATE_DEAD || m->m.state == MEMBER_STATE_LEFT) &&
        now - m->changed_mono > keep) {
      log_info("gossip", "member_reaped", "member=%s", m->m.name);
      g->members[i] = g->members[--g->nmembers];
    } else {
      i++;
    }
  }
  update_gauges(g);
}

static void probe_tick(uv_timer_t *t) {
  gossip_t *g = t->data;
  /* Lifeguard: an unhealthy node probes less often instead of accusing others. */
  uv_timer_set_repeat(t, (uint64_t)g->cfg->gossip_probe_interval_ms * (g->awareness + 1));
  if (g->probe.active || g->leaving) return;
  for (size_t tries = 0; tries < g->nmembers + 1; tries++) {
    if (g->next_probe >= g->norder) {
      reap(g);
      reshuffle(g);
      if (g->norder == 0) return;
    }
    size_t idx = g->order[g->next_probe++];
    if (idx >= g->nmembers) continue;
    gmember_t *m = &g->members[idx];
    if (m->m.state != MEMBER_STATE_ALIVE && m->m.state != MEMBER_STATE_SUSPECT) continue;
    gprobe_t *p = &g->probe;
    memset(p, 0, sizeof *p);
    p->active = 1;
    p->seq = ++g->seq;
    snprintf(p->target, sizeof p->target, "%s", m->m.name);
    size_t len;
    uint8_t *buf = probe_encode(g, m, p->seq, &len);
    metric_inc(g->m_probes);
    if (!buf || gsend(g, m->m.addr, GUREUM__MSG_TYPE__MSG_GOSSIP_PROBE, buf, len, probe_timeout(g),
                      direct_done, (void *)(uintptr_t)p->seq) != 0)
      probe_indirect(g);
    free(buf);
    return;
  }
}

/* ---- gossip, suspicion deadlines, push-pull ---- */

static void gossip_reply(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  (void)ctx;
  if (status == RPC_OK && len) apply_ack(g, p, len);
}

static void send_gossip_to(gossip_t *g, gmember_t *m, gsend_done_fn done, void *ctx) {
  size_t npb;
  Gureum__Member **pb = take_piggyback(g, &npb);
  if (npb == 0 && (!done || done == gossip_reply)) {
    free(pb);
    return;
  }
  Gureum__Gossip msg = GUREUM__GOSSIP__INIT;
  msg.updates = pb;
  msg.n_updates = npb;
  size_t len = gureum__gossip__get_packed_size(&msg);
  uint8_t *buf = malloc(len);
  if (buf) {
    gureum__gossip__pack(&msg, buf);
    if (gsend(g, m->m.addr, GUREUM__MSG_TYPE__MSG_GOSSIP_GOSSIP, buf, len,
              g->cfg->gossip_probe_timeout_ms * 2, done, ctx) != 0 && done)
      done(g, ctx, RPC_ECLOSED, NULL, 0);
  }
  free(buf);
  free_piggyback(pb, npb);
}

static void refute_push(gossip_t *g) {
  gmsg_t o;
  fill_member(&o, self_of(g), MEMBER_STATE_ALIVE, NULL, 1);
  Gureum__Member *one[1] = {&o.msg};
  Gureum__Gossip msg = GUREUM__GOSSIP__INIT;
  msg.updates = one;
  msg.n_updates = 1;
  size_t len = gureum__gossip__get_packed_size(&msg);
  uint8_t *buf = malloc(len);
  if (!buf) return;
  gureum__gossip__pack(&msg, buf);
  size_t cand[256], nc = 0;
  for (size_t i = 1; i < g->nmembers && nc < 256; i++)
    if (g->members[i].m.state == MEMBER_STATE_ALIVE || g->members[i].m.state == MEMBER_STATE_SUSPECT)
      cand[nc++] = i;
  for (int k = 0; k < 2 * g->cfg->gossip_nodes && nc > 0; k++) {
    size_t j = (size_t)rand() % nc;
    gsend(g, g->members[cand[j]].m.addr, GUREUM__MSG_TYPE__MSG_GOSSIP_GOSSIP, buf, len,
          g->cfg->gossip_probe_timeout_ms * 2, gossip_reply, NULL);
    cand[j] = cand[--nc];
  }
  free(buf);
}

static void check_suspicions(gossip_t *g) {
  uint64_t now = uv_now(g->loop);
  for (size_t i = 1; i < g->nmembers; i++) {
    gmember_t *m = &g->members[i];
    if (m->m.state != MEMBER_STATE_SUSPECT || now < m->suspect_deadline) continue;
    log_info("gossip", "suspicion_expired", "member=%s confirmations=%d after_ms=%llu", m->m.name,
             m->nconfirmers - 1, (unsigned long long)(now - m->suspect_start));
    Gureum__Member u = GUREUM__MEMBER__INIT;
    u.name = m->m.name;
    u.incarnation = m->m.incarnation;
    u.state = GUREUM__MEMBER_STATE_CODE__MEMBER_DEAD;
    u.from = self_of(g)->m.name;
    apply_dead(g, &u, MEMBER_STATE_DEAD);
  }
}

static void gossip_tick(uv_timer_t *t) {
  gossip_t *g = t->data;
  check_suspicions(g);
  if (g->nbcasts == 0) return;
  /* Fan out to random members: alive, suspect, or recently dead (so they can refute). */
  uint64_t now = uv_now(g->loop), dead_window = (uint64_t)g->cfg->gossip_dead_gossip_s * 1000;
  size_t cand[256], nc = 0;
  for (size_t i = 1; i < g->nmembers && nc < 256; i++) {
    gmember_t *m = &g->members[i];
    if (m->m.state == MEMBER_STATE_ALIVE || m->m.state == MEMBER_STATE_SUSPECT ||
        (m->m.state == MEMBER_STATE_DEAD && now - m->changed_mono < dead_window))
      cand[nc++] = i;
  }
  for (int k = 0; k < g->cfg->gossip_nodes && nc > 0 && g->nbcasts > 0; k++) {
    size_t j = (size_t)rand() % nc;
    send_gossip_to(g, &g->members[cand[j]], gossip_reply, NULL);
    cand[j] = cand[--nc];
  }
}

static uint8_t *pushpull_encode(gossip_t *g, int join, size_t *len) {
  Gureum__PushPull pp = GUREUM__PUSH_PULL__INIT;
  pp.join = join;
  gmsg_t *rows = calloc(g->nmembers, sizeof *rows);
  Gureum__Member **ptrs = calloc(g->nmembers, sizeof *ptrs);
  uint8_t *buf = NULL;
  if (rows && ptrs) {
    for (size_t i = 0; i < g->nmembers; i++) {
      fill_member(&rows[i], &g->members[i], g->members[i].m.state, self_of(g)->m.name, 1);
      ptrs[i] = &rows[i].msg;
    }
    pp.members = ptrs;
    pp.n_members = g->nmembers;
    *len = gureum__push_pull__get_packed_size(&pp);
    if ((buf = malloc(*len))) gureum__push_pull__pack(&pp, buf);
  }
  free(rows);
  free(ptrs);
  return buf;
}

static void merge_pushpull(gossip_t *g, const uint8_t *p, size_t len) {
  Gureum__PushPull *pp = gureum__push_pull__unpack(NULL, len, p);
  if (!pp) return;
  apply_all(g, pp->members, pp->n_members, 1);
  gureum__push_pull__free_unpacked(pp, NULL);
}

static void pushpull_done(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  (void)ctx;
  if (status == RPC_OK) merge_pushpull(g, p, len);
}

static void pushpull_with(gossip_t *g, const char *addr, int join, gsend_done_fn done, void *ctx) {
  size_t len;
  uint8_t *buf = pushpull_encode(g, join, &len);
  if (!buf || gsend(g, addr, GUREUM__MSG_TYPE__MSG_GOSSIP_PUSHPULL, buf, len,
                    g->cfg->rpc_timeout_ms, done, ctx) != 0) {
    if (done) done(g, ctx, RPC_ECLOSED, NULL, 0);
  }
  free(buf);
}

static gmember_t *random_member(gossip_t *g, member_state_t state) {
  size_t cand[256], nc = 0;
  for (size_t i = 1; i < g->nmembers && nc < 256; i++)
    if (g->members[i].m.state == state) cand[nc++] = i;
  return nc ? &g->members[cand[(size_t)rand() % nc]] : NULL;
}

static void pushpull_tick(uv_timer_t *t) {
  gossip_t *g = t->data;
  /* memberlist scales the interval with log2(n) beyond 32 members. */
  size_t n = live_count(g);
  uint64_t iv = (uint64_t)g->cfg->gossip_pushpull_interval_ms;
  if (n > 32) iv *= (uint64_t)(ceil(log2((double)n) - log2(32.0)) + 1);
  uv_timer_set_repeat(t, iv);
  if (g->leaving) return;
  gmember_t *m = random_member(g, MEMBER_STATE_ALIVE);
  if (m) pushpull_with(g, m->m.addr, 0, pushpull_done, NULL);
  /* Reconnect: also sync with one dead member, so healed partitions merge again. */
  if ((m = random_member(g, MEMBER_STATE_DEAD))) pushpull_with(g, m->m.addr, 0, pushpull_done, NULL);
}

/* ---- join ---- */

static void join_attempt(gossip_t *g);
static void join_timer_cb(uv_timer_t *t) { join_attempt(t->data); }

typedef struct {
  int pending, ok;
} gjoin_t;

static void join_done(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  gjoin_t *j = ctx;
  if (status == RPC_OK) {
    merge_pushpull(g, p, len);
    j->ok++;
  }
  if (--j->pending > 0) return;
  int ok = j->ok;
  free(j);
  if (g->leaving || status == RPC_ECLOSED) return;
  if (ok) {
    g->joined = 1;
    log_info("gossip", "joined", "members=%zu", g->nmembers);
    return;
  }
  log_warn("gossip", "join_retry", "seeds=%d retry_in_ms=%d hint=\"are the seeds up and using the same cluster secret?\"",
           g->cfg->nseeds, g->join_backoff_ms);
  uv_timer_start(&g->join_timer, join_timer_cb, (uint64_t)g->join_backoff_ms, 0);
  g->join_backoff_ms = g->join_backoff_ms * 2 > GOSSIP_JOIN_BACKOFF_MAX_MS ? GOSSIP_JOIN_BACKOFF_MAX_MS
                                                                          : g->join_backoff_ms * 2;
}

static void join_attempt(gossip_t *g) {
  if (g->joined || g->leaving) return;
  gjoin_t *j = calloc(1, sizeof *j);
  if (!j) return;
  int targets = 0;
  for (int i = 0; i < g->cfg->nseeds; i++)
    if (strcmp(g->cfg->seeds[i], self_of(g)->m.addr) != 0) targets++;
  if (targets == 0) {
    free(j);
    g->joined = 1;
    return;
  }
  j->pending = targets;
  for (int i = 0; i < g->cfg->nseeds; i++)
    if (strcmp(g->cfg->seeds[i], self_of(g)->m.addr) != 0)
      pushpull_with(g, g->cfg->seeds[i], 1, join_done, j);
}

/* ---- RPC handlers ---- */

/* Does a message accuse us (suspect/dead at any incarnation)? */
static int accuses_self(gossip_t *g, Gureum__Member **u, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (u[i]->name && strcmp(u[i]->name, self_of(g)->m.name) == 0 &&
        (u[i]->state == GUREUM__MEMBER_STATE_CODE__MEMBER_SUSPECT ||
         u[i]->state == GUREUM__MEMBER_STATE_CODE__MEMBER_DEAD))
      return 1;
  return 0;
}

/* The reply carries queued updates and, when the sender still suspects us, our current `alive`
 * directly: a node back from a pause may have spent its refutation's retransmits answering
 * requests whose senders had already given up. */
static void reply_ack(gossip_t *g, rpc_req_t *q, uint64_t seq, int with_self) {
  Gureum__Ack a = GUREUM__ACK__INIT;
  a.seq = seq;
  size_t npb;
  Gureum__Member **pb = take_piggyback(g, &npb);
  Gureum__Member *all[GOSSIP_MAX_PIGGYBACK + 1];
  size_t nall;
  for (nall = 0; nall < npb; nall++) all[nall] = pb[nall];
  gmsg_t me;
  if (with_self && !g->leaving) {
    fill_member(&me, self_of(g), MEMBER_STATE_ALIVE, NULL, 1);
    all[nall++] = &me.msg;
  }
  a.updates = all;
  a.n_updates = nall;
  size_t len = gureum__ack__get_packed_size(&a);
  uint8_t *buf = malloc(len);
  if (buf) gureum__ack__pack(&a, buf);
  rpc_reply(q, buf ? GUREUM__RPC_STATUS__RPC_STATUS_OK : GUREUM__RPC_STATUS__RPC_STATUS_FAILED, NULL,
            buf, buf ? len : 0);
  free(buf);
  free_piggyback(pb, npb);
}

static void on_probe(rpc_req_t *q, void *arg) {
  gossip_t *g = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  Gureum__Probe *pr = gureum__probe__unpack(NULL, len, p);
  if (!pr) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "malformed Probe", NULL, 0);
    return;
  }
  apply_all(g, pr->updates, pr->n_updates, 0);
  int accused = accuses_self(g, pr->updates, pr->n_updates);
  uint64_t seq = pr->seq;
  int wrong = pr->target && *pr->target && strcmp(pr->target, self_of(g)->m.name) != 0;
  gureum__probe__free_unpacked(pr, NULL);
  /* A different node now answers at that address: the probed member is not here. */
  if (wrong) rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "wrong probe target", NULL, 0);
  else reply_ack(g, q, seq, accused);
}

typedef struct {
  rpc_req_t *q;
} gpreq_t;

static void probe_req_done(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  gpreq_t *r = ctx;
  if (status == RPC_OK) apply_ack(g, p, len);
  if (status == RPC_ECLOSED) {
    rpc_reply(r->q, GUREUM__RPC_STATUS__RPC_STATUS_SHUTTING_DOWN, NULL, NULL, 0);
    free(r);
    return;
  }
  Gureum__ProbeReqResult res = GUREUM__PROBE_REQ_RESULT__INIT;
  res.ack = status == RPC_OK;
  size_t npb;
  Gureum__Member **pb = take_piggyback(g, &npb);
  res.updates = pb;
  res.n_updates = npb;
  size_t n = gureum__probe_req_result__get_packed_size(&res);
  uint8_t *buf = malloc(n);
  if (buf) gureum__probe_req_result__pack(&res, buf);
  rpc_reply(r->q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, buf, buf ? n : 0);
  free(buf);
  free_piggyback(pb, npb);
  free(r);
}

static void on_probe_req(rpc_req_t *q, void *arg) {
  gossip_t *g = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  Gureum__ProbeReq *pr = gureum__probe_req__unpack(NULL, len, p);
  if (!pr || !pr->target_addr) {
    if (pr) gureum__probe_req__free_unpacked(pr, NULL);
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "malformed ProbeReq", NULL, 0);
    return;
  }
  apply_all(g, pr->updates, pr->n_updates, 0);
  gpreq_t *r = malloc(sizeof *r);
  Gureum__Probe probe = GUREUM__PROBE__INIT;
  probe.seq = pr->seq;
  probe.target = pr->target;
  size_t n = gureum__probe__get_packed_size(&probe);
  uint8_t *buf = malloc(n);
  int timeout = pr->timeout_ms > 0 && pr->timeout_ms < 60000 ? (int)pr->timeout_ms : 500;
  if (r && buf) {
    gureum__probe__pack(&probe, buf);
    r->q = q;
    if (gsend(g, pr->target_addr, GUREUM__MSG_TYPE__MSG_GOSSIP_PROBE, buf, n, timeout, probe_req_done, r) != 0)
      probe_req_done(g, r, RPC_ETIMEDOUT, NULL, 0);
  } else {
    free(r);
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_FAILED, "out of memory", NULL, 0);
  }
  free(buf);
  gureum__probe_req__free_unpacked(pr, NULL);
}

static void on_pushpull(rpc_req_t *q, void *arg) {
  gossip_t *g = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  Gureum__PushPull *pp = gureum__push_pull__unpack(NULL, len, p);
  if (!pp) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "malformed PushPull", NULL, 0);
    return;
  }
  if (pp->join) log_info("gossip", "join_request", "from=%s", rpc_req_sender(q));
  apply_all(g, pp->members, pp->n_members, 1);
  gureum__push_pull__free_unpacked(pp, NULL);
  size_t n;
  uint8_t *buf = pushpull_encode(g, 0, &n);
  rpc_reply(q, buf ? GUREUM__RPC_STATUS__RPC_STATUS_OK : GUREUM__RPC_STATUS__RPC_STATUS_FAILED, NULL,
            buf, buf ? n : 0);
  free(buf);
}

static void on_gossip(rpc_req_t *q, void *arg) {
  gossip_t *g = arg;
  size_t len;
  const uint8_t *p = rpc_req_payload(q, &len);
  Gureum__Gossip *m = gureum__gossip__unpack(NULL, len, p);
  if (!m) {
    rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_BAD_REQUEST, "malformed Gossip", NULL, 0);
    return;
  }
  apply_all(g, m->updates, m->n_updates, 0);
  int accused = accuses_self(g, m->updates, m->n_updates);
  gureum__gossip__free_unpacked(m, NULL);
  if (accused) {
    reply_ack(g, q, 0, 1);
    return;
  }
  Gureum__Ack a = GUREUM__ACK__INIT;
  uint8_t buf[16];
  size_t n = gureum__ack__pack(&a, buf);
  rpc_reply(q, GUREUM__RPC_STATUS__RPC_STATUS_OK, NULL, buf, n);
}

/* ---- admin API ---- */

static json_t *member_json(const member_t *m) {
  json_t *roles = json_array();
  for (int i = 0; i < m->nroles; i++) json_array_append_new(roles, json_string(m->roles[i]));
  char since[96];
  time_t secs = (time_t)(m->since_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(since, sizeof since, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(m->since_ms % 1000));
  return json_pack("{s:s,s:s,s:o,s:s,s:I,s:s,s:I,s:s,s:s,s:s,s:i,s:i,s:b}", "name", m->name,
                   "address", m->addr, "roles", roles, "state", state_names[m->state],
                   "incarnation", (json_int_t)m->incarnation, "since", since, "since_ms",
                   (json_int_t)m->since_ms, "id", m->id, "zone", m->zone, "version", m->version,
                   "admin_port", m->admin_port, "raft_port", m->raft_port, "self", m->is_self);
}

static void admin_members(node_t *n, http_req_t *req, void *arg) {
  gossip_t *g = arg;
  (void)n;
  json_t *a = json_array();
  for (size_t i = 0; i < g->nmembers; i++) json_array_append_new(a, member_json(&g->members[i].m));
  admin_reply_json(req, 200, a);
}

/* ---- our own entry ---- */

static void load_self(gossip_t *g) {
  gmember_t *s = self_of(g);
  const config_t *c = g->cfg;
  snprintf(s->m.addr, sizeof s->m.addr, "%s", g->node->rpc_addr);
  snprintf(s->m.id, sizeof s->m.id, "%s", g->node->id);
  s->m.nroles = c->nroles;
  for (int i = 0; i < c->nroles; i++) snprintf(s->m.roles[i], sizeof s->m.roles[i], "%s", c->roles[i]);
  snprintf(s->m.zone, sizeof s->m.zone, "%s", c->zone);
  snprintf(s->m.version, sizeof s->m.version, "%s", GUREUM_VERSION);
  s->m.start_ms = g->node->started_ms;
  s->m.admin_port = c->admin_port;
  s->m.raft_port = c->raft_port;
  s->m.is_self = 1;
}

void gossip_announce(gossip_t *g) {
  gmember_t *s = self_of(g);
  load_self(g);
  s->m.incarnation++;
  broadcast(g, s, MEMBER_STATE_ALIVE, NULL);
  emit(g, GOSSIP_EV_UPDATE, s);
}

gossip_t *gossip_new(node_t *n) {
  gossip_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->node = n;
  g->loop = &n->loop;
  g->cfg = &n->cfg;
  g->join_backoff_ms = 1000;
  gmember_t *s = add_member(g, n->cfg.name);
  load_self(g);
  s->m.state = MEMBER_STATE_ALIVE;
  s->m.since_ms = wall_ms();
  metrics_t *mx = n->metrics;
  g->m_probes = metrics_counter(mx, "gureum_gossip_probes_total", NULL, "Direct probes sent");
  g->m_probe_fail = metrics_counter(mx, "gureum_gossip_probe_failures_total", NULL,
                                    "Probes unanswered directly and indirectly");
  g->m_suspects = metrics_counter(mx, "gureum_gossip_suspicions_total", NULL, "Members suspected");
  g->m_refutes = metrics_counter(mx, "gureum_gossip_refutations_total", NULL, "Times this node refuted a suspicion of itself");
  g->m_deaths = metrics_counter(mx, "gureum_gossip_deaths_total", NULL, "Members declared dead");
  g->m_health = metrics_gauge(mx, "gureum_gossip_health_score", NULL,
                              "Lifeguard local health (0 = healthy; probes slow down as it grows)");
  for (int i = 0; i < 4; i++) {
    char lbl[32];
    snprintf(lbl, sizeof lbl, "state=\"%s\"", state_names[i]);
    g->m_state[i] = metrics_gauge(mx, "gureum_gossip_members", lbl, "Known members by state");
  }
  update_gauges(g);
  return g;
}

int gossip_start(gossip_t *g) {
  node_t *n = g->node;
  srand((unsigned)(uv_hrtime() ^ (uintptr_t)g));
  rpc_handle(n->rpc, GUREUM__MSG_TYPE__MSG_GOSSIP_PROBE, on_probe, g);
  rpc_handle(n->rpc, GUREUM__MSG_TYPE__MSG_GOSSIP_PROBE_REQ, on_probe_req, g);
  rpc_handle(n->rpc, GUREUM__MSG_TYPE__MSG_GOSSIP_PUSHPULL, on_pushpull, g);
  rpc_handle(n->rpc, GUREUM__MSG_TYPE__MSG_GOSSIP_GOSSIP, on_gossip, g);
  admin_route(n->admin, "GET", "/v1/members", admin_members, g);
  uv_timer_t *timers[] = {&g->probe_timer, &g->gossip_timer, &g->pushpull_timer, &g->join_timer,
                          &g->leave_timer};
  for (size_t i = 0; i < 5; i++) {
    uv_timer_init(g->loop, timers[i]);
    timers[i]->data = g;
  }
  g->started = 1;
  const config_t *c = g->cfg;
  /* A random phase keeps nodes started together from probing in lock-step. */
  uv_timer_start(&g->probe_timer, probe_tick, (uint64_t)(rand() % c->gossip_probe_interval_ms) + 1,
                 c->gossip_probe_interval_ms);
  uv_timer_start(&g->gossip_timer, gossip_tick, c->gossip_interval_ms, c->gossip_interval_ms);
  uv_timer_start(&g->pushpull_timer, pushpull_tick, c->gossip_pushpull_interval_ms,
                 c->gossip_pushpull_interval_ms);
  uv_timer_start(&g->join_timer, join_timer_cb, 0, 0);
  return 0;
}

/* ---- leave and teardown ---- */

static void leave_finish(gossip_t *g) {
  if (!g->leave_cb) return;
  void (*cb)(void *) = g->leave_cb;
  g->leave_cb = NULL;
  uv_timer_stop(&g->leave_timer);
  log_info("gossip", "left", "incarnation=%u", self_of(g)->m.incarnation);
  cb(g->leave_arg);
}

static void leave_sent(gossip_t *g, void *ctx, int status, const uint8_t *p, size_t len) {
  (void)ctx, (void)status, (void)p, (void)len;
  if (--g->leave_pending == 0) leave_finish(g);
}

static void leave_timeout(uv_timer_t *t) { leave_finish(t->data); }

void gossip_leave(gossip_t *g, void (*cb)(void *arg), void *arg) {
  gmember_t *s = self_of(g);
  g->leaving = 1;
  g->leave_cb = cb;
  g->leave_arg = arg;
  uv_timer_stop(&g->probe_timer);
  uv_timer_stop(&g->pushpull_timer);
  uv_timer_stop(&g->join_timer);
  s->m.incarnation++;
  set_state(g, s, MEMBER_STATE_LEFT);
  broadcast(g, s, MEMBER_STATE_LEFT, s->m.name);
  /* Tell every live member directly rather than trusting the epidemic to finish in time. */
  gmsg_t o;
  fill_member(&o, s, MEMBER_STATE_LEFT, s->m.name, 0);
  Gureum__Member *one[1] = {&o.msg};
  Gureum__Gossip msg = GUREUM__GOSSIP__INIT;
  msg.updates = one;
  msg.n_updates = 1;
  size_t len = gureum__gossip__get_packed_size(&msg);
  uint8_t *buf = malloc(len);
  if (buf) gureum__gossip__pack(&msg, buf);
  g->leave_pending = 1;
  for (size_t i = 1; buf && i < g->nmembers; i++) {
    gmember_t *m = &g->members[i];
    if (m->m.state != MEMBER_STATE_ALIVE && m->m.state != MEMBER_STATE_SUSPECT) continue;
    if (gsend(g, m->m.addr, GUREUM__MSG_TYPE__MSG_GOSSIP_GOSSIP, buf, len, GOSSIP_LEAVE_WAIT_MS,
              leave_sent, NULL) == 0)
      g->leave_pending++;
  }
  free(buf);
  uv_timer_start(&g->leave_timer, leave_timeout, GOSSIP_LEAVE_WAIT_MS + 200, 0);
  leave_sent(g, NULL, 0, NULL, 0); /* drop our own hold */
}

static void gossip_handle_closed(uv_handle_t *h) {
  gossip_t *g = h->data;
  if (--g->closing_handles > 0) return;
  for (size_t i = 0; i < g->nbcasts; i++) free(g->bcasts[i].buf);
  free(g->bcasts);
  free(g->members);
  free(g->subs);
  free(g->order);
  free(g);
}

/* Call after rpc_close: no RPC callback can reach g any more. */
void gossip_free(gossip_t *g) {
  if (!g) return;
  uv_timer_t *timers[] = {&g->probe_timer, &g->gossip_timer, &g->pushpull_timer, &g->join_timer,
                          &g->leave_timer};
  if (!g->started) {
    g->closing_handles = 1;
    g->probe_timer.data = g;
    gossip_handle_closed((uv_handle_t *)&g->probe_timer);
    return;
  }
  g->closing_handles = 5;
  for (size_t i = 0; i < 5; i++) uv_close((uv_handle_t *)timers[i], gossip_handle_closed);
}
