/* metrics.c - counters and gauges rendered in the Prometheus text format.
 * Metrics live in registration order; samples of one name are grouped under one HELP/TYPE. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_s {
  char *name;
  char *labels;
  char *help;
  int is_gauge;
  _Atomic int64_t value;
  struct metric_s *next;
};

struct metrics_s {
  pthread_mutex_t mu;
  metric_t *head, *tail;
};

metrics_t *metrics_new(void) {
  metrics_t *m = calloc(1, sizeof *m);
  if (m) pthread_mutex_init(&m->mu, NULL);
  return m;
}

void metrics_free(metrics_t *m) {
  if (!m) return;
  for (metric_t *x = m->head, *n; x; x = n) {
    n = x->next;
    free(x->name);
    free(x->labels);
    free(x->help);
    free(x);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static int same(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static metric_t *metrics_register(metrics_t *m, const char *name, const char *labels,
                                  const char *help, int is_gauge) {
  if (labels && !*labels) labels = NULL;
  pthread_mutex_lock(&m->mu);
  metric_t *x;
  for (x = m->head; x; x = x->next)
    if (strcmp(x->name, name) == 0 && same(x->labels, labels)) break;
  if (!x && (x = calloc(1, sizeof *x))) {
    x->name = strdup(name);
    x->labels = labels ? strdup(labels) : NULL;
    x->help = strdup(help ? help : "");
    x->is_gauge = is_gauge;
    if (m->tail) m->tail->next = x;
    else m->head = x;
    m->tail = x;
  }
  pthread_mutex_unlock(&m->mu);
  return x;
}

metric_t *metrics_counter(metrics_t *m, const char *name, const char *labels, const char *help) {
  return metrics_register(m, name, labels, help, 0);
}

metric_t *metrics_gauge(metrics_t *m, const char *name, const char *labels, const char *help) {
  return metrics_register(m, name, labels, help, 1);
}

void metric_inc(metric_t *x) { atomic_fetch_add(&x->value, 1); }
void metric_add(metric_t *x, int64_t v) { atomic_fetch_add(&x->value, v); }
void metric_set(metric_t *x, int64_t v) { atomic_store(&x->value, v); }
int64_t metric_value(const metric_t *x) { return atomic_load(&((metric_t *)x)->value); }

typedef struct {
  char *buf;
  size_t len, cap;
} sbuf_t;

static void sbuf_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbuf_printf(sbuf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->len + n < b->cap) {
      b->len += n;
      return;
    }
    size_t cap = (b->cap + n + 1) * 2;
    char *nb = realloc(b->buf, cap);
    if (!nb) return;
    b->buf = nb;
    b->cap = cap;
  }
}

char *metrics_render(metrics_t *m, size_t *len) {
  sbuf_t b = {malloc(4096), 0, 4096};
  if (!b.buf) return NULL;
  b.buf[0] = 0;
  pthread_mutex_lock(&m->mu);
  for (metric_t *x = m->head; x; x = x->next) {
    /* Only the first metric of a name prints HELP/TYPE; later ones with other labels follow it. */
    int first = 1;
    for (metric_t *y = m->head; y != x; y = y->next)
      if (strcmp(y->name, x->name) == 0) first = 0;
    if (!first) continue;
    sbuf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name,
                x->is_gauge ? "gauge" : "counter");
    for (metric_t *y = x; y; y = y->next) {
      if (strcmp(y->name, x->name) != 0) continue;
      if (y->labels)
        sbuf_printf(&b, "%s{%s} %lld\n", y->name, y->labels, (long long)metric_value(y));
      else
        sbuf_printf(&b, "%s %lld\n", y->name, (long long)metric_value(y));
    }
  }
  pthread_mutex_unlock(&m->mu);
  if (len) *len = b.len;
  return b.buf;
}
