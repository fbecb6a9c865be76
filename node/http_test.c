/* http_test.c - tests for the HTTP server (http.c) and blocking client (httpc.c): a real libuv
 * loop on a thread serves 127.0.0.1 on an ephemeral port while each test acts as the client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "httpc.h"
#include "log.h"

#define MAX_BODY 4096
#define MAX_HEADER 2048
#define IDLE_MS 400

/* ---- fixture: server on its own loop thread ------------------------------------------ */

typedef struct fx_s {
  uv_loop_t loop;
  uv_async_t stop;
  http_server_t *srv;
  pthread_t th;
  int running;
  int port;
  char hostport[64];
  /* loop thread only */
  http_req_t *held[16];
  int nheld;
  int server_closed;
  int loop_close_rc;
  /* read by the test thread while the loop runs */
  atomic_int held_seen;
  atomic_int late_answered;
} fx_t;

typedef struct delay_s {
  uv_timer_t timer;
  http_req_t *req;
  fx_t *fx;
  int late; /* count in fx->late_answered */
  char body[64];
} delay_t;

static void delay_closed(uv_handle_t *h) { free(h->data); }

static void delay_fire(uv_timer_t *t) {
  delay_t *d = t->data;
  http_respond(d->req, 200, "text/plain", d->body, strlen(d->body), NULL);
  if (d->late) atomic_fetch_add(&d->fx->late_answered, 1);
  uv_close((uv_handle_t *)&d->timer, delay_closed);
}

/* Answer `r` with `body` after `ms`, from a timer: the asynchronous handler case. */
static void respond_later(fx_t *f, http_req_t *r, int ms, const char *body, int late) {
  delay_t *d = calloc(1, sizeof *d);
  d->req = r;
  d->fx = f;
  d->late = late;
  snprintf(d->body, sizeof d->body, "%s", body);
  uv_timer_init(&f->loop, &d->timer);
  d->timer.data = d;
  uv_timer_start(&d->timer, delay_fire, (uint64_t)ms, 0);
}

static void respond_text(http_req_t *r, int status, const char *s) {
  http_respond(r, status, "text/plain", s, strlen(s), NULL);
}

static void handler(http_req_t *r, void *arg) {
  fx_t *f = arg;
  const char *p = r->path;
  if (strcmp(p, "/json") == 0) {
    static const char js[] = "{\"ok\":true}";
    http_respond(r, 200, "application/json", js, sizeof js - 1, NULL);
  } else if (strcmp(p, "/echo") == 0) {
    const char *ct = http_req_header(r, "content-type");
    const char *extra[] = {"X-Method", r->method, "X-Body-Len", "ignored", NULL};
    http_respond(r, 200, ct ? ct : "application/octet-stream", r->body, r->body_len, extra);
  } else if (strcmp(p, "/fast") == 0 || strcmp(p, "/slow") == 0) {
    char *id = http_req_query_param(r, "id");
    char *ms = http_req_query_param(r, "ms");
    if (p[1] == 's')
      respond_later(f, r, ms ? atoi(ms) : 100, id ? id : "slow", 0);
    else
      respond_text(r, 200, id ? id : "fast");
    free(id);
    free(ms);
  } else if (strcmp(p, "/late") == 0) {
    respond_later(f, r, 50, "late", 1);
  } else if (strcmp(p, "/never") == 0) {
    f->held[f->nheld++] = r; /* answered in on_server_closed */
    atomic_fetch_add(&f->held_seen, 1);
  } else if (strcmp(p, "/stream") == 0) {
    http_res_start(r, 200, -1);
    http_res_header(r, "Content-Type", "text/plain");
    http_res_header(r, "X-Stream", "yes");
    http_res_write(r, "hello, ", 7);
    http_res_write(r, "chunked ", 8);
    http_res_write(r, "world", 5);
    http_res_end(r);
  } else if (strcmp(p, "/stream-cl") == 0) {
    http_res_start(r, 200, 11);
    http_res_write(r, "hello", 5);
    http_res_write(r, " world", 6);
    http_res_end(r);
  } else if (strcmp(p, "/query") == 0) {
    const char *names[] = {"a", "b", "c", "d", "e"};
    char out[512];
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
      char *v = http_req_query_param(r, names[i]);
      n += (size_t)snprintf(out + n, sizeof out - n, "%s%s=[%s]", i ? " " : "", names[i],
                            v ? v : "-");
      free(v);
    }
    respond_text(r, 200, out);
  } else if (strncmp(p, "/files/", 7) == 0) {
    char out[512];
    snprintf(out, sizeof out, "path=%s query=%s", r->path, r->query);
    respond_text(r, 200, out);
  } else if (strcmp(p, "/header") == 0) {
    const char *v = http_req_header(r, "x-test");
    char out[512];
    snprintf(out, sizeof out, "x-test=%s peer=%s", v ? v : "-", r->peer);
    respond_text(r, 200, out);
  } else if (strcmp(p, "/bye") == 0) {
    r->keep_alive = 0; /* the handler may ask for the connection to close */
    respond_text(r, 200, "bye");
  } else if (strcmp(p, "/nocontent") == 0) {
    http_respond(r, 204, NULL, NULL, 0, NULL);
  } else {
    respond_text(r, 404, "not found");
  }
}

static const http_opts_t test_opts = {
    .max_body = MAX_BODY,
    .max_header = MAX_HEADER,
    .idle_timeout_ms = IDLE_MS,
    .server_name = "gureum-test",
};

static void on_server_closed(void *arg) {
  fx_t *f = arg;
  f->server_closed = 1;
  /* Their connections are gone by now: answering must be a harmless no-op. */
  for (int i = 0; i < f->nheld; i++) respond_text(f->held[i], 200, "too late");
  f->nheld = 0;
}

static void on_stop(uv_async_t *a) {
  fx_t *f = a->data;
  http_server_close(f->srv, on_server_closed, f);
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg) {
  fx_t *f = arg;
  uv_run(&f->loop, UV_RUN_DEFAULT);
  f->loop_close_rc = uv_loop_close(&f->loop);
  return NULL;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  if (!f || uv_loop_init(&f->loop) != 0) return -1;
  uv_async_init(&f->loop, &f->stop, on_stop);
  f->stop.data = f;
  f->srv = http_server_new(&f->loop, &test_opts, handler, f);
  if (http_server_listen(f->srv, "127.0.0.1", 0) != 0) return -1;
  f->port = http_server_port(f->srv);
  if (f->port <= 0) return -1;
  snprintf(f->hostport, sizeof f->hostport, "127.0.0.1:%d", f->port);
  if (pthread_create(&f->th, NULL, loop_main, f) != 0) return -1;
  f->running = 1;
  *state = f;
  return 0;
}

/* Close the server from its own loop and wait until every handle is gone. */
static void fx_stop(fx_t *f) {
  if (!f->running) return;
  f->running = 0;
  uv_async_send(&f->stop);
  pthread_join(f->th, NULL);
}

static int teardown(void **state) {
  fx_t *f = *state;
  fx_stop(f);
  int ok = f->server_closed && f->loop_close_rc == 0;
  free(f);
  return ok ? 0 : -1;
}

/* ---- raw socket client --------------------------------------------------------------- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void raw_send(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    assert_true(n > 0);
    p += n;
    len -= (size_t)n;
  }
}

static void raw_sends(int fd, const char *s) { raw_send(fd, s, strlen(s)); }

/* Read until EOF (or error/timeout); returns the byte count, buf NUL-terminated. */
static size_t raw_read_all(int fd, char *buf, size_t cap) {
  size_t len = 0;
  while (len + 1 < cap) {
    ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  return len;
}

/* Read exactly len bytes. */
static void raw_read_exact(int fd, char *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = recv(fd, buf + got, len - got, 0);
    assert_true(n > 0);
    got += (size_t)n;
  }
  buf[got] = '\0';
}

/* 1 if the server closed the connection (EOF or reset) within the receive timeout. */
static int raw_closed(int fd) {
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

typedef struct raw_resp_s {
  int status;
  char body[8192];
  size_t body_len;
  char connection[32];
  char te[32];
  char ctype[64];
  char extra[64]; /* X-Stream or X-Method */
} raw_resp_t;

typedef struct raw_reader_s {
  raw_resp_t *resp;
  int max, n;
  int head;
  char field[64];
  size_t flen;
  int in_value;
  char *target;
  size_t target_cap;
} raw_reader_t;

static int rr_field(http_parser *p, const char *at, size_t len) {
  raw_reader_t *rr = p->data;
  if (rr->in_value) rr->flen = 0;
  rr->in_value = 0;
  for (size_t i = 0; i < len && rr->flen + 1 < sizeof rr->field; i++) rr->field[rr->flen++] = at[i];
  rr->field[rr->flen] = '\0';
  return 0;
}

static int rr_value(http_parser *p, const char *at, size_t len) {
  raw_reader_t *rr = p->data;
  raw_resp_t *r = &rr->resp[rr->n];
  if (!rr->in_value) {
    rr->target = NULL;
    if (strcasecmp(rr->field, "connection") == 0) rr->target = r->connection;
    if (strcasecmp(rr->field, "transfer-encoding") == 0) rr->target = r->te;
    if (strcasecmp(rr->field, "content-type") == 0) rr->target = r->ctype;
    if (strcasecmp(rr->field, "x-stream") == 0 || strcasecmp(rr->field, "x-method") == 0)
      rr->target = r->extra;
    rr->target_cap = rr->target == r->ctype ? sizeof r->ctype
                     : rr->target == r->extra ? sizeof r->extra
                                              : sizeof r->connection;
  }
  rr->in_value = 1;
  if (rr->target) {
    size_t have = strlen(rr->target), room = rr->target_cap - 1 - have;
    if (len > room) len = room;
    memcpy(rr->target + have, at, len);
    rr->target[have + len] = '\0';
  }
  return 0;
}

static int rr_headers_done(http_parser *p) {
  raw_reader_t *rr = p->data;
  rr->resp[rr->n].status = p->status_code;
  return rr->head ? 1 : 0;
}

static int rr_body(http_parser *p, const char *at, size_t len) {
  raw_reader_t *rr = p->data;
  raw_resp_t *r = &rr->resp[rr->n];
  if (r->body_len + len >= sizeof r->body) return -1;
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  r->body[r->body_len] = '\0';
  return 0;
}

static int rr_done(http_parser *p) {
  raw_reader_t *rr = p->data;
  rr->n++;
  rr->in_value = 0;
  rr->flen = 0;
  if (rr->n == rr->max) http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings rr_settings = {
    .on_header_field = rr_field,
    .on_header_value = rr_value,
    .on_headers_complete = rr_headers_done,
    .on_body = rr_body,
    .on_message_complete = rr_done,
};

/* Parse up to max responses from fd (one byte at a time after the first, so nothing past the
 * last wanted response is consumed). Returns how many completed. */
static int raw_read_responses(int fd, raw_resp_t *resp, int max, int head) {
  http_parser p;
  raw_reader_t rr = {.resp = resp, .max = max, .head = head};
  memset(resp, 0, sizeof *resp * (size_t)max);
  http_parser_init(&p, HTTP_RESPONSE);
  p.data = &rr;
  while (rr.n < max) {
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n < 0) break;
    http_parser_execute(&p, &rr_settings, &c, (size_t)n);
    if (n == 0 || (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_PAUSED)) break;
  }
  return rr.n;
}

/* ---- tests: client API --------------------------------------------------------------- */

static void test_get_json(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"ok\":true}");
  assert_int_equal(r.body_len, 11);
  assert_non_null(r.content_type);
  assert_string_equal(r.content_type, "application/json");
  httpc_resp_free(&r);

  rc = httpc_request(f->hostport, "GET", "/nope", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 404);
  httpc_resp_free(&r);
}

static void test_post_echo(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  const char body[] = "hello world\n\x01\x02 binary-ish";
  int rc = httpc_request(f->hostport, "POST", "/echo", "text/x-test", body, sizeof body - 1,
                         3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, sizeof body - 1);
  assert_memory_equal(r.body, body, sizeof body - 1);
  assert_string_equal(r.content_type, "text/x-test");
  httpc_resp_free(&r);

  /* Exactly max_body is still accepted. */
  char *big = malloc(MAX_BODY);
  memset(big, 'x', MAX_BODY);
  rc = httpc_request(f->hostport, "PUT", "/echo", NULL, big, MAX_BODY, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, MAX_BODY);
  assert_memory_equal(r.body, big, MAX_BODY);
  httpc_resp_free(&r);
  free(big);
}

static void test_chunked_stream(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/stream", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello, chunked world");
  assert_string_equal(r.content_type, "text/plain");
  httpc_resp_free(&r);

  /* On the wire it really is chunked, and the connection stays usable afterwards. */
  int fd = raw_connect(f->port);
  raw_resp_t resp[2];
  raw_sends(fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 2);
  assert_string_equal(resp[0].te, "chunked");
  assert_string_equal(resp[0].extra, "yes");
  assert_string_equal(resp[0].body, "hello, chunked world");
  assert_string_equal(resp[1].body, "{\"ok\":true}");
  close(fd);

  /* Streaming with a declared length. */
  rc = httpc_request(f->hostport, "GET", "/stream-cl", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_string_equal(r.body, "hello world");
  httpc_resp_free(&r);
}

static void test_http10_close_delimited(void **state) {
  fx_t *f = *state;
  /* HTTP/1.0 cannot do chunked: the streamed body ends with the connection, which httpc-style
   * parsing must accept too. */
  int fd = raw_connect(f->port);
  char buf[4096];
  raw_sends(fd, "GET /stream HTTP/1.0\r\n\r\n");
  raw_read_all(fd, buf, sizeof buf);
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_null(strstr(buf, "Transfer-Encoding"));
  assert_non_null(strstr(buf, "Connection: close\r\n"));
  char *body = strstr(buf, "\r\n\r\n");
  assert_non_null(body);
  assert_string_equal(body + 4, "hello, chunked world");
}

static void test_query_params(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/query?a=hello%20world&b=x+y%2Bz&c=&d&z=1", NULL,
                         NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "a=[hello world] b=[x y+z] c=[] d=[] e=[-]");
  httpc_resp_free(&r);
}

static void test_query_param_unit(void **state) {
  (void)state;
  http_req_t r;
  memset(&r, 0, sizeof r);
  r.query = "k=v%3D1&empty=&plus=a+b&bad=%zz&sp%20ace=1&k=second&trail=%4";
  char *v;
  assert_non_null(v = http_req_query_param(&r, "k"));
  assert_string_equal(v, "v=1"); /* first occurrence wins */
  free(v);
  assert_non_null(v = http_req_query_param(&r, "empty"));
  assert_string_equal(v, "");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "plus"));
  assert_string_equal(v, "a b");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "bad"));
  assert_string_equal(v, "%zz");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "sp ace"));
  assert_string_equal(v, "1");
  free(v);
  assert_non_null(v = http_req_query_param(&r, "trail"));
  assert_string_equal(v, "%4");
  free(v);
  assert_null(http_req_query_param(&r, "missing"));
  assert_null(http_req_query_param(&r, "k=v"));
  r.query = "";
  assert_null(http_req_query_param(&r, "k"));
}

static void test_status_text(void **state) {
  (void)state;
  assert_string_equal(http_status_text(200), "OK");
  assert_string_equal(http_status_text(206), "Partial Content");
  assert_string_equal(http_status_text(304), "Not Modified");
  assert_string_equal(http_status_text(404), "Not Found");
  assert_string_equal(http_status_text(413), "Payload Too Large");
  assert_string_equal(http_status_text(416), "Range Not Satisfiable");
  assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
  assert_string_equal(http_status_text(503), "Service Unavailable");
  assert_non_null(http_status_text(599));
}

static void test_percent_path(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256];
  int rc = httpc_request(f->hostport, "GET", "/files/a%20b/%C3%A9+c?x=%20y", NULL, NULL, 0, 3000,
                         &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 200);
  /* '+' is literal in a path; the query stays raw. */
  assert_string_equal(r.body, "path=/files/a b/\xC3\xA9+c query=x=%20y");
  httpc_resp_free(&r);

  /* Absolute-form targets (as sent to proxies) yield the same path; "*" is left alone. */
  int fd = raw_connect(f->port);
  raw_resp_t resp[2];
  raw_sends(fd, "GET http://example.com:8080/files/x%2Fy?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 2);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "path=/files/x/y query=q=1");
  assert_int_equal(resp[1].status, 404);
  close(fd);

  /* A malformed escape or an encoded NUL in the path is rejected. */
  rc = httpc_request(f->hostport, "GET", "/files/a%zzb", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 400);
  httpc_resp_free(&r);
  rc = httpc_request(f->hostport, "GET", "/files/a%00b", NULL, NULL, 0, 3000, &r, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(r.status, 400);
  httpc_resp_free(&r);
}

static void test_client_timeout(void **state) {
  fx_t *f = *state;
  httpc_resp_t r;
  char err[256] = "";
  long long t0 = now_ms();
  int rc = httpc_request(f->hostport, "GET", "/never", NULL, NULL, 0, 200, &r, err, sizeof err);
  long long dt = now_ms() - t0;
  assert_int_equal(rc, -1);
  assert_non_null(strstr(err, "timeout"));
  assert_true(dt >= 150 && dt < 2000);
  assert_null(r.body);
  assert_null(r.content_type);
}

static void test_client_connect_error(void **state) {
  (void)state;
  /* Grab a free port, release it, and expect the connection to be refused. */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(s, (struct sockaddr *)&a, &al), 0);
  close(s);
  char hp[64], err[256] = "";
  snprintf(hp, sizeof hp, "127.0.0.1:%d", ntohs(a.sin_port));
  httpc_resp_t r;
  assert_int_equal(httpc_request(hp, "GET", "/", NULL, NULL, 0, 1000, &r, err, sizeof err), -1);
  assert_true(strlen(err) > 0);
  assert_int_equal(httpc_request("", "GET", "/", NULL, NULL, 0, 1000, &r, err, sizeof err), -1);
  assert_non_null(strstr(err, "bad address"));
}

/* ---- tests: connection handling ------------------------------------------------------ */

static void test_keep_alive(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].connection, "keep-alive");
  assert_string_equal(resp[0].body, "{\"ok\":true}");
  /* Same socket, second request. */
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "abc");
  assert_string_equal(resp[0].extra, "POST");
  close(fd);

  /* HTTP/1.0 keeps the connection only when asked to. */
  fd = raw_connect(f->port);
  for (int i = 0; i < 2; i++) {
    raw_sends(fd, "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
    assert_int_equal(resp[0].status, 200);
    assert_string_equal(resp[0].connection, "keep-alive");
  }
  close(fd);
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /json HTTP/1.0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_connection_close(void **state) {
  fx_t *f = *state;
  raw_resp_t resp[2];
  /* Connection: close is honoured, and a request pipelined behind it is never answered. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 2, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].connection, "close");
  close(fd);

  /* A handler can ask for the close too. */
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /bye HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "bye");
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_pipelining(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[3];
  /* The first answer comes 100 ms later from a timer, the second at once: order must hold. */
  raw_sends(fd, "GET /slow?ms=100&id=first HTTP/1.1\r\nHost: t\r\n\r\n"
                "GET /fast?id=second HTTP/1.1\r\nHost: t\r\n\r\n"
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthird");
  assert_int_equal(raw_read_responses(fd, resp, 3, 0), 3);
  assert_string_equal(resp[0].body, "first");
  assert_string_equal(resp[1].body, "second");
  assert_string_equal(resp[2].body, "third");
  close(fd);
}

static void test_pipelining_many(void **state) {
  fx_t *f = *state;
  enum { N = 40 };
  char req[N * 80];
  size_t n = 0;
  for (int i = 0; i < N; i++) {
    if (i % 4 == 0)
      n += (size_t)snprintf(req + n, sizeof req - n,
                            "GET /slow?ms=%d&id=%d HTTP/1.1\r\nHost: t\r\n\r\n", 20 - i / 4, i);
    else
      n += (size_t)snprintf(req + n, sizeof req - n, "GET /fast?id=%d HTTP/1.1\r\nHost: t\r\n\r\n",
                            i);
  }
  int fd = raw_connect(f->port);
  raw_send(fd, req, n);
  raw_resp_t *resp = calloc(N, sizeof *resp);
  assert_int_equal(raw_read_responses(fd, resp, N, 0), N);
  for (int i = 0; i < N; i++) {
    char want[16];
    snprintf(want, sizeof want, "%d", i);
    assert_int_equal(resp[i].status, 200);
    assert_string_equal(resp[i].body, want);
  }
  free(resp);
  close(fd);
}

static void test_body_too_large(void **state) {
  fx_t *f = *state;
  size_t big = 10000;
  char *body = malloc(big);
  memset(body, 'b', big);
  /* Declared length over the limit. */
  int fd = raw_connect(f->port);
  char head[256];
  snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", big);
  raw_sends(fd, head);
  raw_send(fd, body, big);
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 413);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* The same through httpc. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "PUT", "/echo", NULL, body, big, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 413);
  httpc_resp_free(&r);

  /* Chunked body that grows past the limit. */
  fd = raw_connect(f->port);
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 5; i++) {
    raw_sends(fd, "3e8\r\n"); /* 1000 bytes */
    raw_send(fd, body, 1000);
    raw_sends(fd, "\r\n");
  }
  raw_sends(fd, "0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 413);
  assert_true(raw_closed(fd));
  close(fd);
  free(body);
}

static void test_chunked_request_body(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n");
  sleep_ms(20); /* second chunk in a later read */
  raw_sends(fd, "7\r\n, world\r\n0\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "hello, world");
  close(fd);
}

static void test_header_too_large(void **state) {
  fx_t *f = *state;
  char req[MAX_HEADER * 2 + 128];
  char val[MAX_HEADER + 100];
  memset(val, 'h', sizeof val - 1);
  val[sizeof val - 1] = '\0';
  snprintf(req, sizeof req, "GET /json HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", val);
  int fd = raw_connect(f->port);
  raw_sends(fd, req);
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 431);
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_garbage(void **state) {
  fx_t *f = *state;
  raw_resp_t resp[1];
  /* A TLS ClientHello is a classic thing to receive on a plain-HTTP port. */
  static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
  int fd = raw_connect(f->port);
  raw_send(fd, tls, sizeof tls - 1);
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 400);
  assert_string_equal(resp[0].connection, "close");
  assert_true(raw_closed(fd));
  close(fd);

  /* A good request followed by a broken one: the first is still answered. */
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n");
  raw_resp_t two[2];
  assert_int_equal(raw_read_responses(fd, two, 2, 0), 2);
  assert_int_equal(two[0].status, 200);
  assert_int_equal(two[1].status, 400);
  assert_true(raw_closed(fd));
  close(fd);
}

static void test_head_no_body(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  char buf[2048];
  raw_sends(fd, "HEAD /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  size_t n = raw_read_all(fd, buf, sizeof buf);
  close(fd);
  assert_true(n > 0);
  assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(buf, "Content-Length: 11\r\n"));
  assert_non_null(strstr(buf, "Content-Type: application/json\r\n"));
  assert_non_null(strstr(buf, "Date: "));
  assert_non_null(strstr(buf, "Server: gureum-test\r\n"));
  /* Nothing after the blank line. */
  char *end = strstr(buf, "\r\n\r\n");
  assert_non_null(end);
  assert_int_equal((size_t)(end + 4 - buf), n);

  /* Through httpc, and a HEAD followed by a GET on one connection stays in sync. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "HEAD", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  httpc_resp_free(&r);
  fd = raw_connect(f->port);
  raw_sends(fd, "HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n");
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 1), 1);
  assert_int_equal(resp[0].status, 200);
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_string_equal(resp[0].body, "{\"ok\":true}");
  close(fd);
}

static void test_no_content(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  char buf[1024];
  raw_sends(fd, "DELETE /nocontent HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  raw_read_all(fd, buf, sizeof buf);
  close(fd);
  assert_non_null(strstr(buf, "HTTP/1.1 204 No Content\r\n"));
  assert_null(strstr(buf, "Content-Length"));
  assert_null(strstr(buf, "Transfer-Encoding"));
}

static void test_split_headers(void **state) {
  fx_t *f = *state;
  /* One byte per segment: every parser callback arrives in pieces. */
  static const char req[] = "GET /header HTTP/1.1\r\nHost: t\r\nX-Test: split value\r\n\r\n";
  int fd = raw_connect(f->port);
  for (size_t i = 0; i < sizeof req - 1; i++) {
    raw_send(fd, req + i, 1);
    sleep_ms(1);
  }
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "x-test=split value peer=127.0.0.1");
  close(fd);
}

static void test_expect_continue(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  char buf[64];
  raw_sends(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                "Expect: 100-continue\r\n\r\n");
  raw_read_exact(fd, buf, sizeof cont - 1);
  assert_string_equal(buf, cont);
  raw_sends(fd, "hello");
  raw_resp_t resp[1];
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  assert_int_equal(resp[0].status, 200);
  assert_string_equal(resp[0].body, "hello");
  close(fd);
}

static void test_idle_timeout(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_resp_t resp[1];
  raw_sends(fd, "GET /json HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_int_equal(raw_read_responses(fd, resp, 1, 0), 1);
  long long t0 = now_ms();
  assert_true(raw_closed(fd)); /* idle keep-alive connection is closed by the server */
  long long dt = now_ms() - t0;
  assert_true(dt >= IDLE_MS - 100 && dt < 2500);
  close(fd);
}

static void test_client_closes_while_pending(void **state) {
  fx_t *f = *state;
  /* Client goes away (FIN, then RST) while the handler is still working on its request. */
  int fd = raw_connect(f->port);
  raw_sends(fd, "GET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  close(fd);
  fd = raw_connect(f->port);
  raw_sends(fd, "GET /late HTTP/1.1\r\nHost: t\r\n\r\nGET /late HTTP/1.1\r\nHost: t\r\n\r\n");
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
  long long t0 = now_ms();
  while (atomic_load(&f->late_answered) < 2 && now_ms() - t0 < 3000) sleep_ms(5);
  assert_true(atomic_load(&f->late_answered) >= 2);
  sleep_ms(50);
  /* The server is still healthy. */
  httpc_resp_t r;
  char err[256];
  assert_int_equal(
      httpc_request(f->hostport, "GET", "/json", NULL, NULL, 0, 3000, &r, err, sizeof err), 0);
  assert_int_equal(r.status, 200);
  httpc_resp_free(&r);
}

static void test_server_close_while_pending(void **state) {
  fx_t *f = *state;
  int fd = raw_connect(f->port);
  raw_sends(fd, "GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
  long long t0 = now_ms();
  while (atomic_load(&f->held_seen) < 1 && now_ms() - t0 < 3000) sleep_ms(5);
  assert_int_equal(atomic_load(&f->held_seen), 1);
  /* Close the server with the request still held; it is answered after its connection is
   * gone (in on_server_closed), which must be a quiet no-op. */
  fx_stop(f);
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  assert_true(n <= 0); /* closed with no response */
  close(fd);
  assert_true(f->server_closed);
}

int main(void) {
  /* libuv reports EPIPE on writes to vanished clients; the signal would kill the test. */
  signal(SIGPIPE, SIG_IGN);
  if (getenv("HTTP_TEST_DEBUG")) log_set_level(LOG_DEBUG);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_get_json),
      T(test_post_echo),
      T(test_chunked_stream),
      T(test_http10_close_delimited),
      T(test_query_params),
      cmocka_unit_test(test_query_param_unit),
      cmocka_unit_test(test_status_text),
      T(test_percent_path),
      T(test_client_timeout),
      cmocka_unit_test(test_client_connect_error),
      T(test_keep_alive),
      T(test_connection_close),
      T(test_pipelining),
      T(test_pipelining_many),
      T(test_body_too_large),
      T(test_chunked_request_body),
      T(test_header_too_large),
      T(test_garbage),
      T(test_head_no_body),
      T(test_no_content),
      T(test_split_headers),
      T(test_expect_continue),
      T(test_idle_timeout),
      T(test_client_closes_while_pending),
      T(test_server_close_while_pending),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
