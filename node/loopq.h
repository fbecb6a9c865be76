/* loopq.h - hand work from any thread (NNG callbacks, workers) to the event-loop thread.
 * A locked FIFO plus one uv_async_t: post from anywhere, functions run on the loop in order. */
#ifndef GUREUM_LOOPQ_H
#define GUREUM_LOOPQ_H

#include <uv.h>

typedef struct loopq_s loopq_t;
typedef void (*loopq_fn)(void *arg);

loopq_t *loopq_new(uv_loop_t *loop);
/* Any thread. Returns 0, or -1 once the queue is closed (the caller keeps ownership of arg). */
int loopq_post(loopq_t *q, loopq_fn fn, void *arg);
/* Loop thread. Runs what is still queued, refuses later posts, closes the handle, frees q. */
void loopq_close(loopq_t *q);

#endif
