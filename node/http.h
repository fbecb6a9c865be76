/* http.h - HTTP/1.1 server on libuv, parsed by http-parser: keep-alive and pipelining,
 * responses in request order, request bodies buffered whole or streamed with back-pressure.
 * Shared by the admin API and every role that speaks HTTP. */
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
  char *body; /* whole body (NUL-terminated for convenience), bounded by max_body;
               * "" for a streamed request (see http_server_on_headers) */
  size_t body_len;
  int keep_alive;
  char peer[64]; /* client IP */
  void *user;    /* free for the handler */
} http_req_t;

/* Called on the loop thread once a request is complete (a streamed one: once its headers
 * are, see below). The handler must eventually answer with http_respond() (or the http_res_*
 * calls), possibly later, from the loop thread. */
typedef void (*http_handler_fn)(http_req_t *req, void *arg);

typedef struct http_opts_s {
  size_t max_body;       /* bigger bodies get 413; default 1 MiB (buffered bodies only) */
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

/* ---- streamed request bodies ----------------------------------------------------------
 *
 * By default a request reaches the handler once its whole body is buffered (max_body). A
 * server may instead pick per request, once its headers are in, to stream the body: the
 * handler then runs at once with an empty body and pulls the body through
 * http_req_read_body(), pausing delivery while it is busy so a slow disk or upstream pushes
 * back on the client through TCP. Memory stays at one 64 KiB read buffer per connection
 * however large the upload; max_body does not apply (the handler enforces its own limit).
 *
 * Answering before the whole body was read is fine (e.g. 403 after an auth check): when at
 * most 256 KiB of a Content-Length body is left (and no 100-continue is outstanding) the
 * server reads and drops it and keeps the connection for the next request; otherwise (more
 * left, a chunked body, or a client still waiting for 100 Continue and so perhaps never
 * sending the body) the response says "Connection: close" and the connection is closed
 * after it. Pipelined requests behind a streamed one are parsed only once it is answered. */

#define HTTP_BODY_BUFFER 0 /* buffer the body up to max_body, then call the handler */
#define HTTP_BODY_STREAM 1 /* call the handler now; it reads the body with http_req_read_body */
#define HTTP_BODY_ABORTED (-1) /* `last` value: the body will never complete */

/* Called on the loop thread when a request's headers are complete (method, url, path,
 * query, headers and peer are filled in; body is empty). Returns HTTP_BODY_BUFFER or
 * HTTP_BODY_STREAM. It only decides: it must not answer or keep the request. */
typedef int (*http_headers_fn)(http_req_t *req, void *arg);
void http_server_on_headers(http_server_t *s, http_headers_fn fn, void *arg);

/* Body delivery. `data` is only valid during the call. Calls end with one that has last = 1
 * (len may be 0; a request without a body gets just that one call), or last =
 * HTTP_BODY_ABORTED (len 0) if the body cannot complete: the client went away or sent
 * broken chunked framing, the idle timeout hit, or the server is closing (reported like any
 * other call: after read_body, and not while paused). The handler should then release what
 * it holds and answer anyway; that answer is discarded. The
 * callback may pause, resume and answer the request; after it is answered no more calls
 * come. */
typedef void (*http_body_fn)(http_req_t *req, const char *data, size_t len, int last,
                             void *arg);
/* Start (or continue, also resuming after http_req_pause_body) delivering the body to fn.
 * Delivery is never synchronous: calls come from the loop after this returns. On a streamed
 * request carrying "Expect: 100-continue" the first read_body sends "100 Continue" (unless a
 * response has begun), so a handler that rejects without reading never invites the body. Works on buffered requests too: the
 * whole body then comes in a single call with last = 1. */
void http_req_read_body(http_req_t *req, http_body_fn fn, void *arg);
/* Stop delivery until http_req_resume_body(); typically called from the body callback while
 * that piece is written out asynchronously. No call comes while paused, and the socket is
 * not read further once one read buffer is waiting, so the kernel pushes back on the client. */
void http_req_pause_body(http_req_t *req);
void http_req_resume_body(http_req_t *req);
/* The declared body length: *known = 1 with the Content-Length (0 when there is no body),
 * or *known = 0 for a chunked body of unknown length. For a buffered request, the length
 * read. `known` may be NULL. */
size_t http_req_content_length(const http_req_t *req, int *known);
/* Bytes read from this request's connection but not yet parsed or delivered: what the
 * server holds in memory for it (at most one 64 KiB read buffer). For tests and stats. */
size_t http_req_buffered(const http_req_t *req);

/* ---- request helpers and responses -------------------------------------------------- */

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
/* Call cb once the bytes queued on this connection fall below a low-water mark (at once if they
 * already are, or if the connection closed): lets a producer stream a large body with bounded
 * memory. One waiter per connection. */
void http_res_wait_drain(http_req_t *r, void (*cb)(void *arg), void *arg);

const char *http_status_text(int status);

#endif
