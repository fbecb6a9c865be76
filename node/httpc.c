/* httpc.c - small blocking HTTP/1.1 client for the CLI and tests: one request per connection,
 * poll() enforces one deadline for the whole exchange, http-parser reads the response. */
#include "httpc.h"

#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct resp_state_s {
  httpc_resp_t *out;
  size_t body_cap;
  int is_head;
  int done;
  int oom;
  int in_value;  /* last header callback was a value */
  int want_value; /* current header is Content-Type */
  char field[32]; /* enough to recognise Content-Type; longer names are just truncated */
  size_t field_len;
  size_t ctype_len;
} resp_state_t;

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before the deadline for poll(): -1 (forever) without one. */
static int time_left(long long deadline) {
  if (deadline < 0) return -1;
  long long left = deadline - now_ms();
  return left > 0 ? (int)left : 0;
}

/* Wait for `events` on fd. Returns 1 when ready, 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = events};
    int rc = poll(&pfd, 1, time_left(deadline));
    if (rc > 0) return 1;
    if (rc == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

/* "host:port", "[v6]:port" or "host" (port 80). */
static int split_hostport(const char *hp, char *host, size_t hostlen, char *port, size_t portlen) {
  const char *h = hp, *colon;
  size_t n;
  if (*hp == '[') {
    const char *close = strchr(hp, ']');
    if (!close) return -1;
    h = hp + 1;
    n = (size_t)(close - h);
    colon = close[1] == ':' ? close + 1 : NULL;
    if (close[1] && !colon) return -1;
  } else {
    colon = strrchr(hp, ':');
    n = colon ? (size_t)(colon - hp) : strlen(hp);
  }
  if (n == 0 || n >= hostlen) return -1;
  memcpy(host, h, n);
  host[n] = '\0';
  snprintf(port, portlen, "%s", colon && colon[1] ? colon + 1 : "80");
  return 0;
}

/* Connect to the first address that answers before the deadline. */
static int dial(const char *hostport, long long deadline, char *err, size_t errlen) {
  char host[256], port[32];
  if (split_hostport(hostport, host, sizeof host, port, sizeof port) != 0) {
    seterr(err, errlen, "bad address '%s'", hostport);
    return -1;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    seterr(err, errlen, "resolve %s: %s", host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  seterr(err, errlen, "connect %s: no address", hostport);
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      seterr(err, errlen, "socket: %s", strerror(errno));
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      int w = wait_fd(fd, POLLOUT, deadline);
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) break;
      if (w == 0)
        seterr(err, errlen, "connect %s: timeout", hostport);
      else
        seterr(err, errlen, "connect %s: %s", hostport, strerror(soerr ? soerr : errno));
    } else {
      seterr(err, errlen, "connect %s: %s", hostport, strerror(errno));
    }
    close(fd);
    fd = -1;
    if (time_left(deadline) == 0) break;
  }
  freeaddrinfo(res);
  return fd;
}

static int send_all(int fd, const char *p, size_t len, int more, long long deadline, char *err,
                    size_t errlen) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    if (n > 0) {
      p += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = wait_fd(fd, POLLOUT, deadline);
      if (w == 1) continue;
      if (w == 0)
        seterr(err, errlen, "timeout sending request");
      else
        seterr(err, errlen, "poll: %s", strerror(errno));
      return -1;
    }
    seterr(err, errlen, "send: %s", strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- response parsing ---------------------------------------------------------------- */

static int on_header_field(http_parser *p, const char *at, size_t n) {
  resp_state_t *st = p->data;
  if (st->in_value) st->field_len = 0;
  st->in_value = 0;
  size_t room = sizeof st->field - 1 - st->field_len;
  if (n > room) n = room;
  memcpy(st->field + st->field_len, at, n);
  st->field_len += n;
  st->field[st->field_len] = '\0';
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  resp_state_t *st = p->data;
  httpc_resp_t *out = st->out;
  if (!st->in_value) {
    /* First piece of this value: decide whether it is the one we keep. */
    st->want_value = strcasecmp(st->field, "Content-Type") == 0;
    if (st->want_value) {
      free(out->content_type);
      out->content_type = NULL;
      st->ctype_len = 0;
    }
  }
  st->in_value = 1;
  if (!st->want_value) return 0;
  char *ct = realloc(out->content_type, st->ctype_len + n + 1);
  if (!ct) {
    st->oom = 1;
    return -1;
  }
  memcpy(ct + st->ctype_len, at, n);
  st->ctype_len += n;
  ct[st->ctype_len] = '\0';
  out->content_type = ct;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  resp_state_t *st = p->data;
  st->out->status = p->status_code;
  /* A HEAD response announces a length but carries no body. */
  return st->is_head ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  resp_state_t *st = p->data;
  httpc_resp_t *out = st->out;
  if (out->body_len + n + 1 > st->body_cap) {
    size_t cap = st->body_cap ? st->body_cap : 4096;
    while (cap < out->body_len + n + 1) cap *= 2;
    char *b = realloc(out->body, cap);
    if (!b) {
      st->oom = 1;
      return -1;
    }
    out->body = b;
    st->body_cap = cap;
  }
  memcpy(out->body + out->body_len, at, n);
  out->body_len += n;
  out->body[out->body_len] = '\0';
  return 0;
}

static int on_message_complete(http_parser *p) {
  resp_state_t *st = p->data;
  /* 1xx responses are interim; the real one follows on the same connection. */
  if (p->status_code >= 100 && p->status_code < 200) {
    free(st->out->content_type);
    st->out->content_type = NULL;
    st->out->body_len = 0;
    return 0;
  }
  st->done = 1;
  http_parser_pause(p, 1); /* ignore anything after the response */
  return 0;
}

static const http_parser_settings resp_settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static int read_response(int fd, resp_state_t *st, long long deadline, char *err, size_t errlen) {
  http_parser parser;
  char buf[16384];
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = st;
  while (!st->done) {
    int w = wait_fd(fd, POLLIN, deadline);
    if (w == 0) {
      seterr(err, errlen, "timeout waiting for response");
      return -1;
    }
    if (w < 0) {
      seterr(err, errlen, "poll: %s", strerror(errno));
      return -1;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      seterr(err, errlen, "recv: %s", strerror(errno));
      return -1;
    }
    /* n == 0 tells the parser about EOF, which completes a close-delimited body. */
    size_t used = http_parser_execute(&parser, &resp_settings, buf, (size_t)n);
    if (st->done) break;
    enum http_errno e = HTTP_PARSER_ERRNO(&parser);
    if (st->oom) {
      seterr(err, errlen, "out of memory");
      return -1;
    }
    if (e != HPE_OK || used != (size_t)n) {
      seterr(err, errlen, "bad response: %s", http_errno_description(e));
      return -1;
    }
    if (n == 0) {
      seterr(err, errlen, "connection closed before the response was complete");
      return -1;
    }
  }
  return 0;
}

/* ---- API ----------------------------------------------------------------------------- */

int httpc_request(const char *hostport, const char *method, const char *path,
                  const char *content_type, const void *body, size_t body_len, int timeout_ms,
                  httpc_resp_t *out, char *err, size_t errlen) {
  long long deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
  memset(out, 0, sizeof *out);
  if (err && errlen) err[0] = '\0';
  if (!method) method = "GET";
  if (!path || !*path) path = "/";
  if (!body) body_len = 0;

  int fd = dial(hostport, deadline, err, errlen);
  if (fd < 0) return -1;

  /* Methods that usually carry a body always state its length, even when it is 0, because
   * servers may otherwise answer 411. */
  int need_length = body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "PATCH") == 0;
  char head[4096];
  int hn = snprintf(head, sizeof head,
                    "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gureum\r\nAccept: */*\r\n"
                    "Connection: close\r\n",
                    method, path, hostport);
  if (hn > 0 && content_type && (size_t)hn < sizeof head)
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "Content-Type: %s\r\n", content_type);
  if (hn > 0 && need_length && (size_t)hn < sizeof head)
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "Content-Length: %zu\r\n", body_len);
  if (hn > 0 && (size_t)hn < sizeof head)
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
  if (hn <= 0 || (size_t)hn >= sizeof head) {
    seterr(err, errlen, "request head too long");
    close(fd);
    return -1;
  }

  resp_state_t st = {.out = out, .is_head = strcmp(method, "HEAD") == 0};
  int rc = send_all(fd, head, (size_t)hn, body_len > 0, deadline, err, errlen);
  if (rc == 0 && body_len > 0) rc = send_all(fd, body, body_len, 0, deadline, err, errlen);
  if (rc == 0) rc = read_response(fd, &st, deadline, err, errlen);
  close(fd);
  if (rc != 0) {
    httpc_resp_free(out);
    return -1;
  }
  if (!out->body) {
    out->body = calloc(1, 1);
    if (!out->body) {
      seterr(err, errlen, "out of memory");
      httpc_resp_free(out);
      return -1;
    }
  }
  return 0;
}

void httpc_resp_free(httpc_resp_t *r) {
  if (!r) return;
  free(r->body);
  free(r->content_type);
  memset(r, 0, sizeof *r);
}
