/* registry.c - the roles built into this binary. A role not listed here is metadata only:
 * the node advertises it through gossip, but no service runs for it yet. */
#include "role.h"

extern const role_t storage_role;

const role_t *const role_registry[] = {&storage_role, NULL};
