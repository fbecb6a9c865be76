/* gossip.h - cluster membership: SWIM failure detection with the Lifeguard refinements, over the
 * cluster RPC. Knows every member's state, incarnation and metadata (roles, zone, ports). */
#ifndef GUREUM_GOSSIP_H
#define GUREUM_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "node.h"

typedef enum { MEMBER_STATE_ALIVE, MEMBER_STATE_SUSPECT, MEMBER_STATE_DEAD, MEMBER_STATE_LEFT } member_state_t;

typedef struct member_s {
  char name[64];
  char id[33];
  char addr[80]; /* RPC "IP:PORT" */
  uint32_t incarnation;
  member_state_t state;
  uint64_t since_ms; /* wall clock of the last state change, as seen by this node */
  char roles[CONFIG_MAX_ROLES][16];
  int nroles;
  char zone[64];
  char version[32];
  uint64_t start_ms;
  int admin_port, raft_port;
  int is_self;
} member_t;

typedef enum {
  GOSSIP_EV_JOIN,    /* a member became known alive (new, or back from dead/left) */
  GOSSIP_EV_UPDATE,  /* an alive member changed its metadata (roles, ports...) */
  GOSSIP_EV_SUSPECT,
  GOSSIP_EV_ALIVE,   /* a suspect member refuted */
  GOSSIP_EV_DEAD,
  GOSSIP_EV_LEFT,
} gossip_event_t;

typedef struct gossip_s gossip_t;
typedef void (*gossip_event_fn)(gossip_event_t ev, const member_t *m, void *arg);

gossip_t *gossip_new(node_t *n);
/* Register RPC handlers and admin routes, start probing, and join through cfg.seeds. */
int gossip_start(gossip_t *g);
/* Events run on the loop thread, after the member table changed. */
void gossip_subscribe(gossip_t *g, gossip_event_fn fn, void *arg);
/* Every known member including ourselves; valid until the table next changes. */
const member_t *gossip_member(gossip_t *g, size_t i);
size_t gossip_count(gossip_t *g);
const char *gossip_state_name(member_state_t s);
/* Our metadata changed (roles): bump our incarnation and tell everyone. */
void gossip_announce(gossip_t *g);
/* Graceful leave: tell the cluster we are `left`, wait briefly for it to spread, then cb. */
void gossip_leave(gossip_t *g, void (*cb)(void *arg), void *arg);
void gossip_free(gossip_t *g);

#endif
