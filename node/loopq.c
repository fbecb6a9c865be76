/* loopq.c - hand work from any thread to the event-loop thread.
 * uv_async_send coalesces wake-ups, so the callback drains the whole queue each time. */
#include "loopq.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct loopq_item_s {
  loopq_fn fn;
  void *arg;
  struct loopq_item_s *next;
} loopq_item_t;

struct loopq_s {
  uv_async_t async;
  pthread_mutex_t mu;
  loopq_item_t *head, *tail;
  int closed;
};

static void loopq_drain(loopq_t *q) {
  for (;;) {
    pthread_mutex_lock(&q->mu);
    loopq_item_t *items = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    if (!items) return;
    while (items) {
      loopq_item_t *next = items->next;
      items->fn(items->arg);
      free(items);
      items = next;
    }
  }
}

static void loopq_on_async(uv_async_t *h) { loopq_drain(h->data); }

loopq_t *loopq_new(uv_loop_t *loop) {
  loopq_t *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  pthread_mutex_init(&q->mu, NULL);
  if (uv_async_init(loop, &q->async, loopq_on_async) != 0) {
    pthread_mutex_destroy(&q->mu);
    free(q);
    return NULL;
  }
  q->async.data = q;
  return q;
}

int loopq_post(loopq_t *q, loopq_fn fn, void *arg) {
  loopq_item_t *it = malloc(sizeof *it);
  if (!it) return -1;
  it->fn = fn;
  it->arg = arg;
  it->next = NULL;
  pthread_mutex_lock(&q->mu);
  if (q->closed) {
    pthread_mutex_unlock(&q->mu);
    free(it);
    return -1;
  }
  if (q->tail) q->tail->next = it;
  else q->head = it;
  q->tail = it;
  /* Sent under the lock so loopq_close cannot free the handle between append and send. */
  uv_async_send(&q->async);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

static void loopq_on_close(uv_handle_t *h) {
  loopq_t *q = h->data;
  pthread_mutex_destroy(&q->mu);
  free(q);
}

void loopq_close(loopq_t *q) {
  if (!q) return;
  loopq_drain(q);
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  pthread_mutex_unlock(&q->mu);
  loopq_drain(q); /* anything posted between the two drains */
  uv_close((uv_handle_t *)&q->async, loopq_on_close);
}
