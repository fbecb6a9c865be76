/* httpc.h - a small blocking HTTP/1.1 client for the CLI and tests (one request per call).
 * Never used on a node's event loop. */
#ifndef GUREUM_HTTPC_H
#define GUREUM_HTTPC_H

#include <stddef.h>

typedef struct httpc_resp_s {
  int status;
  char *body; /* malloc'ed, NUL-terminated */
  size_t body_len;
  char *content_type; /* malloc'ed or NULL */
} httpc_resp_t;

/* hostport is "HOST:PORT" (IPv4 or name). Returns 0 on a response (any status),
 * -1 on connection/timeout/parse error with a message in err. */
int httpc_request(const char *hostport, const char *method, const char *path,
                  const char *content_type, const void *body, size_t body_len, int timeout_ms,
                  httpc_resp_t *out, char *err, size_t errlen);
void httpc_resp_free(httpc_resp_t *r);

#endif
