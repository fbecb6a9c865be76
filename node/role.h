/* role.h - the interface every role (storage, edge, balancer, dns, pipeline) implements, so a
 * node can start and stop it at run time; the table of roles lives in roles/registry.c. */
#ifndef GUREUM_ROLE_H
#define GUREUM_ROLE_H

#include <jansson.h>
#include <stddef.h>

#include "node.h"

typedef struct role_s {
  const char *name;
  /* Start serving on this node; returns the role's state, or NULL with a message in err. */
  void *(*start)(node_t *n, char *err, size_t errlen);
  /* Stop accepting, finish or cancel in-flight work, free state, then call cb. */
  void (*stop)(void *state, void (*cb)(void *arg), void *arg);
  /* Add the role's endpoints (name -> URL) to the node's status. */
  void (*endpoints)(void *state, json_t *eps);
} role_t;

/* Every role built into this binary, NULL-terminated (roles/registry.c). */
extern const role_t *const role_registry[];

/* Start or stop role services so that exactly cfg.roles run (node.c). */
void node_sync_roles(node_t *n);
/* Stop every running role, then cb (shutdown). */
void node_stop_roles(node_t *n, void (*cb)(void *arg), void *arg);

#endif
