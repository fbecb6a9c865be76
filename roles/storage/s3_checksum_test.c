/* s3_checksum_test.c - known-answer tests of the S3 checksums (values from Python's zlib and
 * hashlib, a bitwise Python CRC-32C/CRC-64/NVME, and awscrt), incremental use, CRC combine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3_checksum.h"

/* bytes(range(256)) * 4 + b"xyz": crosses every slice-by-8 boundary and byte value. */
static uint8_t big[1027];

static int setup(void **state) {
  (void)state;
  for (size_t i = 0; i < 1024; i++) big[i] = (uint8_t)i;
  memcpy(big + 1024, "xyz", 3);
  return 0;
}

typedef struct {
  const void *data;
  size_t len;
  uint32_t crc32, crc32c;
  uint64_t crc64;
  const char *b64[5]; /* CRC32, CRC32C, CRC64NVME, SHA1, SHA256 as x-amz-checksum-* */
  const char *md5_hex, *md5_b64;
} kat_t;

static const kat_t *kats(size_t *n) {
  static kat_t k[5] = {
      {"", 0, 0, 0, 0,
       {"AAAAAA==", "AAAAAA==", "AAAAAAAAAAA=", "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
       "d41d8cd98f00b204e9800998ecf8427e", "1B2M2Y8AsgTpgAmY7PhCfg=="},
      /* "123456789" is the catalogue check string: CRC-32C 0xE3069283, CRC-64/NVME
       * 0xAE8B14860A799888 are the published check values. */
      {"123456789", 9, 0xcbf43926, 0xe3069283, 0xae8b14860a799888ull,
       {"y/Q5Jg==", "4waSgw==", "rosUhgp5mIg=", "98O8HYCOBHMq32eZZczDTKeuNEE=",
        "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="},
       "25f9e794323b453885f5181f1b624d0b", "JfnnlDI7RTiF9RgfG2JNCw=="},
      {"Hello world", 11, 0x8bd69e52, 0x72b51f78, 0x38e259d03f312adbull,
       {"i9aeUg==", "crUfeA==", "OOJZ0D8xKts=", "e1AsOh9IyGCa4hLN+2Od7jlnP14=",
        "ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="},
       "3e25960a79dbc69b674cd4ec67a72c62", "PiWWCnnbxptnTNTsZ6csYg=="},
      {"The quick brown fox jumps over the lazy dog", 43, 0x414fa339, 0x22620404,
       0xd76c54054954c143ull,
       {"QU+jOQ==", "ImIEBA==", "12xUBUlUwUM=", "L9ThxnotKPzthJ7hu3bnORuT6xI=",
        "16j7swfXgJRpypq8sAguT41WUeRtPNt2LQLQvzfJ5ZI="},
       "9e107d9d372bb6826bd81d3542a419d6", "nhB9nTcrtoJr2B01QqQZ1g=="},
      {big, sizeof big, 0x1c505903, 0x1b222f45, 0xb38c643a4876f0a7ull,
       {"HFBZAw==", "GyIvRQ==", "s4xkOkh28Kc=", "WXhKaPXMYXJrGVKTLPDyWLC+CuQ=",
        "MrN3OQ4HLDfP65uzJ9iCVhaBmnawrTdJ4W/iLlOvvfw="},
       "e2301d76c2219cb28dfe5f06cb60d53d", "4jAddsIhnLKN/l8Gy2DVPQ=="},
  };
  *n = sizeof k / sizeof k[0];
  return k;
}

static const s3_checksum_algo_t all[5] = {S3_CK_CRC32, S3_CK_CRC32C, S3_CK_CRC64NVME, S3_CK_SHA1,
                                          S3_CK_SHA256};

static void test_raw_crcs(void **state) {
  (void)state;
  size_t n;
  const kat_t *k = kats(&n);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(s3_crc32(0, k[i].data, k[i].len), k[i].crc32);
    assert_int_equal(s3_crc32c(0, k[i].data, k[i].len), k[i].crc32c);
    assert_true(s3_crc64nvme(0, k[i].data, k[i].len) == k[i].crc64);
  }
}

static void test_header_values(void **state) {
  (void)state;
  size_t n;
  const kat_t *k = kats(&n);
  for (size_t i = 0; i < n; i++) {
    for (int a = 0; a < 5; a++) {
      s3_checksum_t ck;
      char out[S3_CHECKSUM_B64_MAX];
      assert_int_equal(s3_checksum_init(&ck, all[a]), 0);
      s3_checksum_update(&ck, k[i].data, k[i].len);
      assert_int_equal(s3_checksum_final(&ck, out), strlen(k[i].b64[a]));
      assert_string_equal(out, k[i].b64[a]);
      assert_true(s3_checksum_valid(all[a], out));
    }
  }
}

/* Any split of the input gives the same digest: the front feeds bodies in arbitrary pieces. */
static void test_incremental(void **state) {
  (void)state;
  size_t n;
  const kat_t *k = kats(&n);
  const kat_t *b = &k[4];
  srand(7);
  for (int round = 0; round < 50; round++) {
    for (int a = 0; a < 5; a++) {
      s3_checksum_t ck;
      char out[S3_CHECKSUM_B64_MAX];
      assert_int_equal(s3_checksum_init(&ck, all[a]), 0);
      for (size_t off = 0; off < sizeof big;) {
        size_t step = (size_t)(rand() % 23);
        if (step > sizeof big - off) step = sizeof big - off;
        s3_checksum_update(&ck, big + off, step);
        off += step;
      }
      s3_checksum_final(&ck, out);
      assert_string_equal(out, b->b64[a]);
    }
  }
}

/* The AWS trailing-checksum example: 66560 bytes of 'a' have CRC32C "sOO8/Q==". */
static void test_aws_doc_crc32c(void **state) {
  (void)state;
  char *a = malloc(66560), out[S3_CHECKSUM_B64_MAX];
  memset(a, 'a', 66560);
  s3_checksum_t ck;
  s3_checksum_init(&ck, s3_checksum_algo_parse("CRC32C"));
  s3_checksum_update(&ck, a, 65536);
  s3_checksum_update(&ck, a + 65536, 1024);
  s3_checksum_final(&ck, out);
  assert_string_equal(out, "sOO8/Q==");
  free(a);
}

static void test_names(void **state) {
  (void)state;
  assert_int_equal(s3_checksum_algo_parse("CRC32"), S3_CK_CRC32);
  assert_int_equal(s3_checksum_algo_parse("crc32c"), S3_CK_CRC32C);
  assert_int_equal(s3_checksum_algo_parse("Crc64Nvme"), S3_CK_CRC64NVME);
  assert_int_equal(s3_checksum_algo_parse("sha1"), S3_CK_SHA1);
  assert_int_equal(s3_checksum_algo_parse("SHA256"), S3_CK_SHA256);
  assert_int_equal(s3_checksum_algo_parse("x-amz-checksum-crc32c"), S3_CK_CRC32C);
  assert_int_equal(s3_checksum_algo_parse("MD5"), S3_CK_NONE);
  assert_int_equal(s3_checksum_algo_parse("CRC"), S3_CK_NONE);
  assert_int_equal(s3_checksum_algo_parse(""), S3_CK_NONE);
  assert_int_equal(s3_checksum_algo_parse(NULL), S3_CK_NONE);
  assert_string_equal(s3_checksum_header(S3_CK_CRC64NVME), "x-amz-checksum-crc64nvme");
  assert_string_equal(s3_checksum_header(S3_CK_SHA256), "x-amz-checksum-sha256");
  assert_null(s3_checksum_header(S3_CK_MD5));
  assert_null(s3_checksum_header(S3_CK_NONE));
  assert_string_equal(s3_checksum_algo_name(S3_CK_CRC32C), "CRC32C");
  assert_int_equal(s3_checksum_digest_len(S3_CK_CRC64NVME), 8);
  assert_int_equal(s3_checksum_digest_len(S3_CK_SHA1), 20);
  assert_int_equal(s3_checksum_digest_len(S3_CK_MD5), 16);
  s3_checksum_t ck;
  assert_int_equal(s3_checksum_init(&ck, S3_CK_NONE), -1);
}

/* crc(A||B) from crc(A), crc(B), len(B): how a multipart upload gets a full-object CRC. */
static void test_combine(void **state) {
  (void)state;
  static const size_t cuts[] = {0, 1, 7, 8, 9, 500, 1026, 1027};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    size_t c = cuts[i], rest = sizeof big - c;
    assert_int_equal(
        s3_crc_combine(S3_CK_CRC32, s3_crc32(0, big, c), s3_crc32(0, big + c, rest), rest),
        s3_crc32(0, big, sizeof big));
    assert_int_equal(
        s3_crc_combine(S3_CK_CRC32C, s3_crc32c(0, big, c), s3_crc32c(0, big + c, rest), rest),
        s3_crc32c(0, big, sizeof big));
    assert_true(s3_crc_combine(S3_CK_CRC64NVME, s3_crc64nvme(0, big, c),
                               s3_crc64nvme(0, big + c, rest), rest) ==
                s3_crc64nvme(0, big, sizeof big));
  }
  /* A long B exercises many squarings: three 1 MiB parts. */
  size_t part = 1 << 20;
  uint8_t *buf = malloc(3 * part);
  for (size_t i = 0; i < 3 * part; i++) buf[i] = (uint8_t)(i * 31 + (i >> 9));
  uint64_t c64 = s3_crc64nvme(0, buf, part);
  uint32_t c32 = s3_crc32c(0, buf, part);
  for (int p = 1; p < 3; p++) {
    c64 = s3_crc_combine(S3_CK_CRC64NVME, c64, s3_crc64nvme(0, buf + p * part, part), part);
    c32 = (uint32_t)s3_crc_combine(S3_CK_CRC32C, c32, s3_crc32c(0, buf + p * part, part), part);
  }
  assert_true(c64 == s3_crc64nvme(0, buf, 3 * part));
  assert_int_equal(c32, s3_crc32c(0, buf, 3 * part));
  free(buf);
  assert_int_equal(s3_crc_combine(S3_CK_SHA256, 1, 2, 3), 0);
}

static void test_md5(void **state) {
  (void)state;
  size_t n;
  const kat_t *k = kats(&n);
  for (size_t i = 0; i < n; i++) {
    uint8_t raw[16];
    char hex[33], b64[25];
    s3_md5(k[i].data, k[i].len, raw, hex, b64);
    assert_string_equal(hex, k[i].md5_hex);
    assert_string_equal(b64, k[i].md5_b64);
    assert_int_equal(s3_content_md5_check(k[i].md5_b64, raw), 1);
    /* the incremental form gives the same (ETag of a multipart part) */
    s3_checksum_t ck;
    char out[S3_CHECKSUM_B64_MAX];
    assert_int_equal(s3_checksum_init(&ck, S3_CK_MD5), 0);
    s3_checksum_update(&ck, k[i].data, k[i].len);
    s3_checksum_final(&ck, out);
    assert_string_equal(out, k[i].md5_b64);
  }
  uint8_t raw[16];
  s3_md5("abc", 3, raw, NULL, NULL);
  assert_int_equal(s3_content_md5_check("1B2M2Y8AsgTpgAmY7PhCfg==", raw), 0); /* BadDigest */
  assert_int_equal(s3_content_md5_check("1B2M2Y8AsgTpgAmY7PhCfg", raw), -1); /* no padding */
  assert_int_equal(s3_content_md5_check("not base64!!", raw), -1);
  assert_int_equal(s3_content_md5_check("AAAA", raw), -1); /* 3 bytes */
  assert_int_equal(s3_content_md5_check("1B2M2Y8AsgTpgAmY7PhCfgAA", raw), -1); /* 18 bytes */
  assert_int_equal(s3_content_md5_check(NULL, raw), -1);
}

static void test_base64(void **state) {
  (void)state;
  uint8_t out[8];
  char enc[16];
  assert_int_equal(s3_base64_encode("f", 1, enc), 4);
  assert_string_equal(enc, "Zg==");
  assert_int_equal(s3_base64_encode("fo", 2, enc), 4);
  assert_string_equal(enc, "Zm8=");
  assert_int_equal(s3_base64_encode("foo", 3, enc), 4);
  assert_string_equal(enc, "Zm9v");
  assert_int_equal(s3_base64_decode("Zg==", 4, out, sizeof out), 1);
  assert_int_equal(out[0], 'f');
  assert_int_equal(s3_base64_decode("Zm8=", 4, out, sizeof out), 2);
  assert_memory_equal(out, "fo", 2);
  assert_int_equal(s3_base64_decode("Zm9vYmFy", 8, out, sizeof out), 6);
  assert_memory_equal(out, "foobar", 6);
  assert_int_equal(s3_base64_decode("Zm9vYmFy", 8, out, 5), -1); /* no room */
  assert_int_equal(s3_base64_decode("Zm9", 3, out, sizeof out), -1);
  assert_int_equal(s3_base64_decode(" Zg=", 4, out, sizeof out), -1);
  assert_int_equal(s3_base64_decode("Z===", 4, out, sizeof out), -1);
  assert_int_equal(s3_base64_decode("", 0, out, sizeof out), -1);
  /* CRC32 is 4 bytes: a CRC64NVME-sized value is not a valid crc32 header */
  assert_true(s3_checksum_valid(S3_CK_CRC32, "i9aeUg=="));
  assert_false(s3_checksum_valid(S3_CK_CRC32, "OOJZ0D8xKts="));
  assert_false(s3_checksum_valid(S3_CK_CRC64NVME, "i9aeUg=="));
  assert_false(s3_checksum_valid(S3_CK_SHA256, "garbage"));
  assert_false(s3_checksum_valid(S3_CK_NONE, "AAAAAA=="));
}

static void test_sha256_hex(void **state) {
  (void)state;
  char hex[65];
  s3_sha256_hex("", 0, hex);
  assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  s3_sha256_hex("hello world", 11, hex);
  assert_string_equal(hex, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
}

static void test_free_unfinished(void **state) {
  (void)state;
  s3_checksum_t ck;
  assert_int_equal(s3_checksum_init(&ck, S3_CK_SHA256), 0);
  s3_checksum_update(&ck, "x", 1);
  s3_checksum_free(&ck); /* LSan checks the EVP context went away */
  s3_checksum_free(&ck);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_raw_crcs),       cmocka_unit_test(test_header_values),
      cmocka_unit_test(test_incremental),    cmocka_unit_test(test_aws_doc_crc32c),
      cmocka_unit_test(test_names),          cmocka_unit_test(test_combine),
      cmocka_unit_test(test_md5),            cmocka_unit_test(test_base64),
      cmocka_unit_test(test_sha256_hex),     cmocka_unit_test(test_free_unfinished),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
