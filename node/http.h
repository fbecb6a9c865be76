/* http.h - HTTP/1.1 server on libuv, parsed by http-parser: keep-alive and pipelining,
 * responses in request order. Shared by the admin API and every role that speaks HTTP. */
#ifndef GUREUM_HTTP_H
#define GUREUM_HTTP_H

#include <stddef.h>
#include <uv.h>

typedef struct http_server_s http_server_t;
typedef struct http_conn_s http_conn_t;

typedef struct http_header_s {
  char *name; /* as received */
  char *value;
} http_header_t;

typedef struct http_req_s {
  http_conn_t *conn;
  const char *method; /* "GET", "PUT", ... */
  char *url;          /* raw request target, e.g. "/v1/status?x=1" */
  char *path;         /* percent-decoded path part */
  char *query;        /* raw query string without '?', "" if none */
  http_header_t *headers;
  size_t nheaders;
  char *body; /* whole body (NUL-terminated for convenience), bounded by max_body */
  size_t body_len;
  int keep_alive;
  char peer[64]; /* client IP */
  void *user;    /* free for the handler */
} http_req_t;

/* Called on the loop thread once a request is complete. The handler must eventually answer
 * with http_respond() (or the http_res_* calls), possibly later, from the loop thread. */
typedef void (*http_handler_fn)(http_req_t *req, void *arg);

typedef struct http_opts_s {
  size_t max_body;       /* bigger bodies get 413; default 1 MiB */
  size_t max_header;     /* header bytes; bigger gets 431; default 64 KiB */
  int idle_timeout_ms;   /* idle keep-alive connections close after this; default 60000 */
  const char *server_name; /* Server: header value; default "gureum" */
} http_opts_t;

http_server_t *http_server_new(uv_loop_t *loop, const http_opts_t *opts, http_handler_fn h,
                               void *arg);
/* Returns 0 or a negative libuv error. */
int http_server_listen(http_server_t *s, const char *ip, int port);
/* The bound port (useful after listening on port 0), or -1. */
int http_server_port(http_server_t *s);
/* Stop accepting, close every connection (cancelling what is pending), then call cb and
 * free the server. Requests still held by handlers stay valid; answering them is a no-op. */
void http_server_close(http_server_t *s, void (*cb)(void *arg), void *arg);

const char *http_req_header(const http_req_t *r, const char *name); /* case-insensitive */
/* Decoded value of query parameter `name`, malloc'ed, or NULL if absent. */
char *http_req_query_param(const http_req_t *r, const char *name);

/* One-shot response: status, optional extra headers (NULL-terminated name/value pairs),
 * content type and body. Completes and frees the request. */
void http_respond(http_req_t *r, int status, const char *content_type, const void *body,
                  size_t len, const char *const *extra_headers);

/* Streaming response: start, add headers, then write body pieces and end.
 * content_length < 0 means chunked transfer encoding. */
void http_res_start(http_req_t *r, int status, long long content_length);
void http_res_header(http_req_t *r, const char *name, const char *value);
void http_res_write(http_req_t *r, const void *data, size_t len);
void http_res_end(http_req_t *r); /* completes and frees the request */

const char *http_status_text(int status);

#endif
