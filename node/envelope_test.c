/* envelope_test.c - unit tests of the cluster frame: round trip, and every way a frame is
 * refused (wrong secret, tampering, truncation, bad magic/version, replay window, size). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "envelope.h"

static uint8_t *seal(const char *secret, uint64_t sent_ms, size_t *len) {
  envelope_key_t k;
  envelope_key_derive(&k, secret);
  Gureum__Envelope e = GUREUM__ENVELOPE__INIT;
  e.version = ENVELOPE_VERSION;
  e.type = GUREUM__MSG_TYPE__MSG_PING;
  e.request_id = 42;
  e.sender = "node1";
  e.sender_addr = "127.0.0.1:7071";
  e.sent_ms = sent_ms;
  e.payload.data = (uint8_t *)"hello";
  e.payload.len = 5;
  *len = envelope_frame_size(&e);
  uint8_t *buf = malloc(*len);
  assert_int_equal(envelope_pack(&k, &e, buf), *len);
  return buf;
}

static int open_frame(const char *secret, const uint8_t *f, size_t len, uint64_t now,
                      Gureum__Envelope **out) {
  envelope_key_t k;
  envelope_key_derive(&k, secret);
  return envelope_unpack(&k, f, len, 1 << 20, now, 300000, out);
}

static void test_round_trip(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now, &len);
  Gureum__Envelope *e;
  assert_int_equal(open_frame("s3cret-secret", f, len, now, &e), ENVELOPE_OK);
  assert_int_equal(e->type, GUREUM__MSG_TYPE__MSG_PING);
  assert_int_equal(e->request_id, 42);
  assert_string_equal(e->sender, "node1");
  assert_string_equal(e->sender_addr, "127.0.0.1:7071");
  assert_int_equal(e->payload.len, 5);
  assert_memory_equal(e->payload.data, "hello", 5);
  gureum__envelope__free_unpacked(e, NULL);
  free(f);
}

static void test_wrong_secret(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now, &len);
  Gureum__Envelope *e = (void *)1;
  assert_int_equal(open_frame("other-secret", f, len, now, &e), ENVELOPE_EMAC);
  assert_null(e);
  free(f);
}

/* Flipping any single byte anywhere in the frame must be caught. */
static void test_every_byte_tampered(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now, &len);
  for (size_t i = 0; i < len; i++) {
    f[i] ^= 0x01;
    Gureum__Envelope *e;
    int rv = open_frame("s3cret-secret", f, len, now, &e);
    assert_true(rv == ENVELOPE_EMAC || rv == ENVELOPE_EMAGIC || rv == ENVELOPE_EVERSION);
    f[i] ^= 0x01;
  }
  free(f);
}

static void test_truncated(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now, &len);
  Gureum__Envelope *e;
  for (size_t n = 0; n < ENVELOPE_HEADER_LEN + ENVELOPE_MAC_LEN; n++)
    assert_int_equal(open_frame("s3cret-secret", f, n, now, &e), ENVELOPE_ESHORT);
  for (size_t n = ENVELOPE_HEADER_LEN + ENVELOPE_MAC_LEN; n < len; n++)
    assert_int_equal(open_frame("s3cret-secret", f, n, now, &e), ENVELOPE_EMAC);
  free(f);
}

static void test_bad_magic_and_version(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now, &len);
  Gureum__Envelope *e;
  memcpy(f, "HTTP", 4);
  assert_int_equal(open_frame("s3cret-secret", f, len, now, &e), ENVELOPE_EMAGIC);
  memcpy(f, ENVELOPE_MAGIC, 4);
  f[4] = 9;
  assert_int_equal(open_frame("s3cret-secret", f, len, now, &e), ENVELOPE_EVERSION);
  free(f);
}

/* A correctly signed but malformed protobuf body is refused, not crashed on; so is an
 * authentic envelope of an unknown version. */
static void test_signed_garbage(void **state) {
  (void)state;
  envelope_key_t k;
  envelope_key_derive(&k, "s3cret-secret");
  uint8_t f[ENVELOPE_HEADER_LEN + 6 + ENVELOPE_MAC_LEN];
  memcpy(f, ENVELOPE_MAGIC, 4);
  f[4] = ENVELOPE_FRAME_VERSION;
  f[5] = f[6] = f[7] = 0;
  memcpy(f + ENVELOPE_HEADER_LEN, "\xff\xff\xff\xff\xff\xff", 6);
  unsigned int ml = ENVELOPE_MAC_LEN;
  HMAC(EVP_sha256(), k.k, sizeof k.k, f, ENVELOPE_HEADER_LEN + 6, f + ENVELOPE_HEADER_LEN + 6, &ml);
  Gureum__Envelope *out;
  assert_int_equal(envelope_unpack(&k, f, sizeof f, 0, 0, 0, &out), ENVELOPE_EDECODE);

  Gureum__Envelope e0 = GUREUM__ENVELOPE__INIT; /* version 0 */
  size_t l0 = envelope_frame_size(&e0);
  uint8_t *h = malloc(l0);
  envelope_pack(&k, &e0, h);
  assert_int_equal(envelope_unpack(&k, h, l0, 0, 0, 0, &out), ENVELOPE_EVERSION);
  free(h);
}

static void test_replay_window(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now - 600000, &len); /* ten minutes old */
  Gureum__Envelope *e;
  assert_int_equal(open_frame("s3cret-secret", f, len, now, &e), ENVELOPE_ESTALE);
  free(f);
  f = seal("s3cret-secret", now + 600000, &len); /* from the future */
  assert_int_equal(open_frame("s3cret-secret", f, len, now, &e), ENVELOPE_ESTALE);
  free(f);
}

static void test_too_big(void **state) {
  (void)state;
  size_t len;
  uint64_t now = envelope_now_ms();
  uint8_t *f = seal("s3cret-secret", now, &len);
  envelope_key_t k;
  envelope_key_derive(&k, "s3cret-secret");
  Gureum__Envelope *e;
  assert_int_equal(envelope_unpack(&k, f, len, len - 1, now, 0, &e), ENVELOPE_ETOOBIG);
  free(f);
}

static void test_strerror(void **state) {
  (void)state;
  assert_non_null(strstr(envelope_strerror(ENVELOPE_EMAC), "secret"));
  assert_string_equal(envelope_reason(ENVELOPE_EMAC), "auth");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_wrong_secret),
      cmocka_unit_test(test_every_byte_tampered), cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_bad_magic_and_version), cmocka_unit_test(test_signed_garbage),
      cmocka_unit_test(test_replay_window), cmocka_unit_test(test_too_big),
      cmocka_unit_test(test_strerror),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
