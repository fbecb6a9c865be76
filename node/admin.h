/* admin.h - the admin HTTP+JSON API on the admin port: /v1/status, /metrics and the routes
 * other modules register (members, raft, roles...). */
#ifndef GUREUM_ADMIN_H
#define GUREUM_ADMIN_H

#include <jansson.h>

#include "http.h"
#include "node.h"

typedef void (*admin_fn)(node_t *n, http_req_t *req, void *arg);

admin_t *admin_new(node_t *n);
int admin_listen(admin_t *a, const char *ip, int port, char *err, size_t errlen);
/* Route `method` + exact `path` (or a prefix when path ends in '*') to fn. */
void admin_route(admin_t *a, const char *method, const char *path, admin_fn fn, void *arg);
/* Stop accepting and close connections; cb runs once everything is closed, then a is freed. */
void admin_close(admin_t *a, void (*cb)(void *arg), void *arg);

/* Reply helpers: send `body` (reference stolen) as JSON / a JSON error object. */
void admin_reply_json(http_req_t *req, int status, json_t *body);
void admin_reply_error(http_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
