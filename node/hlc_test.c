/* hlc_test.c - the hybrid logical clock: monotonic, close to the wall clock, and always past
 * what it observed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "hlc.h"

static void test_monotonic(void **state) {
  (void)state;
  hlc_t h = {0};
  uint64_t prev = hlc_now(&h);
  for (int i = 0; i < 100000; i++) {
    uint64_t t = hlc_now(&h);
    assert_true(t > prev);
    prev = t;
  }
  struct timespec w;
  clock_gettime(CLOCK_REALTIME, &w);
  uint64_t wall = (uint64_t)w.tv_sec * 1000000u + (uint64_t)w.tv_nsec / 1000u;
  /* 100k timestamps in a tight loop may run ahead of the wall clock, but not by seconds. */
  assert_true(prev < wall + 1000000u);
}

static void test_observe(void **state) {
  (void)state;
  hlc_t h = {0};
  uint64_t t = hlc_now(&h);
  uint64_t future = t + 3600u * 1000000u; /* a peer whose clock is an hour ahead */
  hlc_observe(&h, future);
  assert_true(hlc_now(&h) > future);
  hlc_observe(&h, 5); /* the past changes nothing */
  assert_true(hlc_now(&h) > future + 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_monotonic),
      cmocka_unit_test(test_observe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
