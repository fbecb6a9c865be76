/* registry.c - the roles built into this binary. A role not listed here is metadata only:
 * the node advertises it through gossip, but no service runs for it yet. */
#include "role.h"

const role_t *const role_registry[] = {NULL};
