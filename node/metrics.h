/* metrics.h - counters and gauges rendered in the Prometheus text format for GET /metrics.
 * Registration takes a lock; updating a value is one atomic operation, safe from any thread. */
#ifndef GUREUM_METRICS_H
#define GUREUM_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics_s metrics_t;
typedef struct metric_s metric_t;

metrics_t *metrics_new(void);
void metrics_free(metrics_t *m);

/* `labels` is the text between braces, e.g. "reason=\"auth\"", or NULL. Registering the same
 * name and labels twice returns the same metric. */
metric_t *metrics_counter(metrics_t *m, const char *name, const char *labels, const char *help);
metric_t *metrics_gauge(metrics_t *m, const char *name, const char *labels, const char *help);

void metric_inc(metric_t *x);
void metric_add(metric_t *x, int64_t v);
void metric_set(metric_t *x, int64_t v);
int64_t metric_value(const metric_t *x);

/* Prometheus exposition text; malloc'ed, caller frees. */
char *metrics_render(metrics_t *m, size_t *len);

#endif
