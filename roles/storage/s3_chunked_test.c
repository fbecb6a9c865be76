/* s3_chunked_test.c - aws-chunked decoding: AWS's chunked-upload examples (plain and with a
 * trailing checksum), botocore's unsigned-trailer body, any slicing, tampering, truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "s3_auth.h"
#include "s3_checksum.h"
#include "s3_chunked.h"

#define EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *d, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static int collect(void *arg, const void *data, size_t len) {
  put(arg, data, len);
  return 0;
}

/* The signing material of AWS's examples: 20130524, us-east-1, the example secret. */
static s3_auth_t aws_auth(s3_payload_t mode, const char *seed) {
  s3_auth_t a;
  memset(&a, 0, sizeof a);
  a.status = S3_AUTH_OK;
  a.payload = mode;
  strcpy(a.timestamp, "20130524T000000Z");
  strcpy(a.scope, "20130524/us-east-1/s3/aws4_request");
  strcpy(a.seed_signature, seed);
  s3_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3", a.signing_key);
  return a;
}

/* ---- AWS "PUT Object" chunked example: 65536 + 1024 bytes of 'a' ---- */

#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG3 "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
/* ... and the same upload with STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER and CRC32C. */
#define TSEED "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define TSIG1 "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
#define TSIG2 "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
#define TSIG3 "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define TSIGT "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

static buf_t aws_body(const char *s1, const char *s2, const char *s3, const char *tail) {
  buf_t b = {0};
  char *a = malloc(65536);
  memset(a, 'a', 65536);
  puts_(&b, "10000;chunk-signature=");
  puts_(&b, s1);
  puts_(&b, "\r\n");
  put(&b, a, 65536);
  puts_(&b, "\r\n400;chunk-signature=");
  puts_(&b, s2);
  puts_(&b, "\r\n");
  put(&b, a, 1024);
  puts_(&b, "\r\n0;chunk-signature=");
  puts_(&b, s3);
  puts_(&b, "\r\n");
  puts_(&b, tail);
  free(a);
  return b;
}

static int all_a(const buf_t *out) {
  for (size_t i = 0; i < out->len; i++)
    if (out->p[i] != 'a') return 0;
  return out->len == 66560;
}

/* Feed `body` in slices from `next_slice` (0 = all at once); return finish()'s result. */
static int decode(s3_chunked_t *c, const buf_t *body, size_t slice, unsigned seed) {
  srand(seed);
  for (size_t off = 0; off < body->len;) {
    size_t n = slice ? slice : body->len;
    if (seed) n = 1 + (size_t)rand() % (slice * 2);
    if (n > body->len - off) n = body->len - off;
    ssize_t r = s3_chunked_feed(c, body->p + off, n);
    if (r < 0) return -1;
    assert_int_equal(r, n);
    off += n;
  }
  return s3_chunked_finish(c);
}

static void test_aws_example(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  buf_t body = aws_body(SIG1, SIG2, SIG3, "\r\n");
  assert_int_equal(body.len, 66824); /* the example's Content-Length */
  static const size_t slices[] = {0, 1, 7, 100, 8192, 65536 + 88};
  for (size_t i = 0; i < sizeof slices / sizeof slices[0]; i++) {
    buf_t out = {0};
    s3_chunked_t *c = s3_chunked_new(&a, 66560, collect, &out);
    if (decode(c, &body, slices[i], 0) != 0) fail_msg("slice %zu: %s", slices[i], s3_chunked_message(c));
    assert_true(all_a(&out));
    assert_int_equal(s3_chunked_decoded(c), 66560);
    s3_chunked_free(c);
    free(out.p);
  }
  for (unsigned seed = 1; seed <= 20; seed++) { /* random slices */
    buf_t out = {0};
    s3_chunked_t *c = s3_chunked_new(&a, -1, collect, &out);
    assert_int_equal(decode(c, &body, 1 + seed * 37, seed), 0);
    assert_true(all_a(&out));
    s3_chunked_free(c);
    free(out.p);
  }
  free(body.p);
}

static void test_aws_trailer_example(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_STREAMING_TRAILER, TSEED);
  static const char *tails[] = {
      /* as the AWS SDKs send it */
      "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TSIGT "\r\n\r\n",
      /* a blank line before the trailers, and none after: seen from other encoders */
      "\r\nx-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TSIGT,
      "x-amz-checksum-crc32c: sOO8/Q==\r\nx-amz-trailer-signature: " TSIGT "\r\n",
  };
  for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
    buf_t body = aws_body(TSIG1, TSIG2, TSIG3, tails[t]);
    for (size_t slice = 0; slice < 300; slice += 149) {
      buf_t out = {0};
      s3_chunked_t *c = s3_chunked_new(&a, 66560, collect, &out);
      if (decode(c, &body, slice, 0) != 0) fail_msg("tail %zu: %s", t, s3_chunked_message(c));
      assert_true(all_a(&out));
      const char *v = s3_chunked_trailer(c, "x-amz-checksum-crc32c");
      assert_non_null(v);
      assert_string_equal(v, "sOO8/Q==");
      assert_null(s3_chunked_trailer(c, "x-amz-trailer-signature"));
      /* the caller's check: the trailer is the checksum of what was passed on */
      s3_checksum_t ck;
      char sum[S3_CHECKSUM_B64_MAX];
      s3_checksum_init(&ck, S3_CK_CRC32C);
      s3_checksum_update(&ck, out.p, out.len);
      s3_checksum_final(&ck, sum);
      assert_string_equal(sum, v);
      s3_chunked_free(c);
      free(out.p);
    }
    free(body.p);
  }
  /* a different checksum value breaks the trailer signature */
  buf_t body = aws_body(TSIG1, TSIG2, TSIG3, "x-amz-checksum-crc32c:AAAAAA==\r\nx-amz-trailer-signature:" TSIGT "\r\n\r\n");
  s3_chunked_t *c = s3_chunked_new(&a, 66560, NULL, NULL);
  assert_int_equal(decode(c, &body, 0, 0), -1);
  assert_string_equal(s3_chunked_code(c), "SignatureDoesNotMatch");
  s3_chunked_free(c);
  free(body.p);
  /* no trailer signature at all */
  body = aws_body(TSIG1, TSIG2, TSIG3, "x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n");
  c = s3_chunked_new(&a, 66560, NULL, NULL);
  assert_int_equal(decode(c, &body, 0, 0), -1);
  assert_string_equal(s3_chunked_code(c), "SignatureDoesNotMatch");
  s3_chunked_free(c);
  free(body.p);
  /* the non-trailer signatures do not verify under this seed */
  body = aws_body(SIG1, SIG2, SIG3, "\r\n");
  c = s3_chunked_new(&a, 66560, NULL, NULL);
  assert_int_equal(decode(c, &body, 0, 0), -1);
  assert_string_equal(s3_chunked_code(c), "SignatureDoesNotMatch");
  s3_chunked_free(c);
  free(body.p);
}

/* ---- bodies signed here with the library's own primitives ---- */

static void sign_chunk(const s3_auth_t *a, char prev[65], const void *d, size_t n) {
  char hex[65], sts[400];
  s3_sha256_hex(d, n, hex);
  int l = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n" EMPTY "\n%s", a->timestamp,
                   a->scope, prev, hex);
  s3_sigv4_sign(a->signing_key, sts, (size_t)l, prev);
}

static void sign_trailer(const s3_auth_t *a, char prev[65], const char *canon) {
  char hex[65], sts[400];
  s3_sha256_hex(canon, strlen(canon), hex);
  int l = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256-TRAILER\n%s\n%s\n%s\n%s", a->timestamp, a->scope,
                   prev, hex);
  s3_sigv4_sign(a->signing_key, sts, (size_t)l, prev);
}

/* Chunks of the given sizes over data; trailers "name:value" (one) if trailer is set. */
static buf_t build(const s3_auth_t *a, const uint8_t *data, const size_t *sizes, size_t n,
                   const char *trailer) {
  buf_t b = {0};
  char prev[65], line[128];
  int sig = a->payload != S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
  strcpy(prev, a->seed_signature);
  for (size_t i = 0, off = 0; i <= n; i++) {
    size_t len = i < n ? sizes[i] : 0;
    if (sig) {
      sign_chunk(a, prev, data + off, len);
      snprintf(line, sizeof line, "%zx;chunk-signature=%s\r\n", len, prev);
    } else {
      snprintf(line, sizeof line, "%zx\r\n", len);
    }
    puts_(&b, line);
    put(&b, data + off, len);
    if (len) puts_(&b, "\r\n");
    off += len;
  }
  if (trailer) {
    snprintf(line, sizeof line, "%s\r\n", trailer);
    puts_(&b, line);
    if (a->payload == S3_PAYLOAD_STREAMING_TRAILER) {
      snprintf(line, sizeof line, "%s\n", trailer);
      sign_trailer(a, prev, line);
      snprintf(line, sizeof line, "x-amz-trailer-signature:%s\r\n", prev);
      puts_(&b, line);
    }
  }
  puts_(&b, "\r\n");
  return b;
}

static uint8_t data[3000];

static int setup(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 + (i >> 8));
  return 0;
}

/* Own signing agrees with AWS's published chain. */
static void test_own_signer_matches_aws(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  char prev[65], *d = malloc(65536);
  memset(d, 'a', 65536);
  strcpy(prev, SEED);
  sign_chunk(&a, prev, d, 65536);
  assert_string_equal(prev, SIG1);
  sign_chunk(&a, prev, d, 1024);
  assert_string_equal(prev, SIG2);
  sign_chunk(&a, prev, d, 0);
  assert_string_equal(prev, SIG3);
  free(d);
}

static void test_roundtrip_shapes(void **state) {
  (void)state;
  static const size_t shapes[][4] = {{1, 1, 1, 0}, {3000, 0}, {8192 - 5192, 0}, {17, 983, 2000, 0},
                                     {2999, 1, 0}};
  static const s3_payload_t modes[] = {S3_PAYLOAD_STREAMING, S3_PAYLOAD_STREAMING_TRAILER,
                                       S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER};
  for (size_t m = 0; m < 3; m++) {
    s3_auth_t a = aws_auth(modes[m], SEED);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      size_t n = 0, total = 0;
      while (n < 4 && shapes[s][n]) total += shapes[s][n++];
      char sum[S3_CHECKSUM_B64_MAX], trailer[80];
      s3_checksum_t ck;
      s3_checksum_init(&ck, S3_CK_CRC64NVME);
      s3_checksum_update(&ck, data, total);
      s3_checksum_final(&ck, sum);
      snprintf(trailer, sizeof trailer, "x-amz-checksum-crc64nvme:%s", sum);
      buf_t body = build(&a, data, shapes[s], n, modes[m] == S3_PAYLOAD_STREAMING ? NULL : trailer);
      for (size_t slice = 0; slice <= 5; slice++) {
        buf_t out = {0};
        s3_chunked_t *c = s3_chunked_new(&a, (int64_t)total, collect, &out);
        if (decode(c, &body, slice, (unsigned)slice) != 0)
          fail_msg("mode %zu shape %zu slice %zu: %s", m, s, slice, s3_chunked_message(c));
        assert_int_equal(out.len, total);
        assert_memory_equal(out.p, data, total);
        if (modes[m] != S3_PAYLOAD_STREAMING)
          assert_string_equal(s3_chunked_trailer(c, "x-amz-checksum-crc64nvme"), sum);
        s3_chunked_free(c);
        free(out.p);
      }
      free(body.p);
    }
  }
}

static int expect_fail(const s3_auth_t *a, const buf_t *body, int64_t len, const char *code) {
  s3_chunked_t *c = s3_chunked_new(a, len, NULL, NULL);
  int r = decode(c, body, 0, 0);
  if (r != -1 || strcmp(s3_chunked_code(c), code) != 0)
    fail_msg("want %s, got %d %s", code, r, s3_chunked_code(c) ? s3_chunked_code(c) : "-");
  s3_chunked_free(c);
  return r;
}

static void test_tampering(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  static const size_t sizes[] = {1000, 1000, 1000};
  buf_t body = build(&a, data, sizes, 3, NULL);
  /* every byte of every data chunk: flipping it breaks that chunk's signature */
  size_t hdr = strlen("3e8;chunk-signature=") + 64 + 2;
  for (size_t chunk = 0; chunk < 3; chunk++) {
    for (size_t i = 0; i < 1000; i += 97) {
      size_t at = chunk * (hdr + 1000 + 2) + hdr + i;
      body.p[at] ^= 1;
      expect_fail(&a, &body, 3000, "SignatureDoesNotMatch");
      body.p[at] ^= 1;
    }
  }
  /* a signature digit */
  body.p[hdr - 3] ^= 1;
  expect_fail(&a, &body, 3000, "SignatureDoesNotMatch");
  body.p[hdr - 3] ^= 1;
  /* swapping the first two (equal-sized, individually valid) chunks breaks the chain */
  buf_t swapped = {0};
  size_t cl = hdr + 1000 + 2;
  put(&swapped, body.p + cl, cl);
  put(&swapped, body.p, cl);
  put(&swapped, body.p + 2 * cl, body.len - 2 * cl);
  expect_fail(&a, &swapped, 3000, "SignatureDoesNotMatch");
  free(swapped.p);
  /* another upload's seed */
  s3_auth_t other = aws_auth(S3_PAYLOAD_STREAMING, TSEED);
  expect_fail(&other, &body, 3000, "SignatureDoesNotMatch");
  /* a chunk with its signature stripped */
  buf_t bare = {0};
  puts_(&bare, "3e8\r\n");
  put(&bare, body.p + hdr, body.len - hdr);
  expect_fail(&a, &bare, 3000, "SignatureDoesNotMatch");
  free(bare.p);
  free(body.p);
}

/* Every proper prefix of a body is refused at finish. Only a missing final CRLF is forgiven,
 * and only where a signature proves the end: the signed last chunk (no trailers) or a verified
 * trailer signature. An unsigned trailer section must be closed by its blank line. */
static void test_truncated(void **state) {
  (void)state;
  static const struct {
    s3_payload_t mode;
    size_t slack;
  } modes[] = {{S3_PAYLOAD_STREAMING, 2}, {S3_PAYLOAD_STREAMING_TRAILER, 4},
               {S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER, 1}};
  static const size_t sizes[] = {10, 5};
  for (size_t m = 0; m < 3; m++) {
    s3_auth_t a = aws_auth(modes[m].mode, SEED);
    buf_t body = build(&a, data, sizes, 2, m ? "x-amz-checksum-crc32:AAAAAA==" : NULL);
    size_t sig_line = strlen("x-amz-trailer-signature:") + 64 + 2;
    for (size_t cut = 0; cut <= body.len; cut++) {
      s3_chunked_t *c = s3_chunked_new(&a, -1, NULL, NULL);
      assert_int_equal(s3_chunked_feed(c, body.p, cut), cut);
      int r = s3_chunked_finish(c);
      const char *code = s3_chunked_code(c);
      if (cut + modes[m].slack >= body.len) {
        if (r != 0) fail_msg("mode %zu cut %zu/%zu: %s", m, cut, body.len, s3_chunked_message(c));
      } else if (r != -1) {
        fail_msg("mode %zu cut %zu/%zu accepted", m, cut, body.len);
      } else if (strcmp(code, "IncompleteBody") != 0 &&
                 !(m == 1 && cut > body.len - 2 - sig_line && strcmp(code, "SignatureDoesNotMatch") == 0)) {
        fail_msg("mode %zu cut %zu/%zu: %s", m, cut, body.len, code);
      }
      s3_chunked_free(c);
    }
    free(body.p);
  }
}

static void test_decoded_length(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  static const size_t sizes[] = {100, 50};
  buf_t body = build(&a, data, sizes, 2, NULL);
  expect_fail(&a, &body, 151, "IncompleteBody"); /* fewer bytes than declared */
  expect_fail(&a, &body, 149, "IncompleteBody"); /* more */
  expect_fail(&a, &body, 99, "IncompleteBody");
  s3_chunked_t *c = s3_chunked_new(&a, 150, NULL, NULL);
  assert_int_equal(decode(c, &body, 0, 0), 0);
  s3_chunked_free(c);
  free(body.p);
}

/* What aws CLI v2 / boto3 send over https: STREAMING-UNSIGNED-PAYLOAD-TRAILER (captured). */
static void test_botocore_unsigned_trailer(void **state) {
  (void)state;
  s3_auth_t a;
  memset(&a, 0, sizeof a);
  a.status = S3_AUTH_ANONYMOUS; /* no signing material needed */
  a.payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
  buf_t body = {0};
  puts_(&body, "12\r\nstreamed body here\r\n0\r\nx-amz-checksum-crc32:RI5zjg==\r\n\r\n");
  for (size_t slice = 0; slice < 4; slice++) {
    buf_t out = {0};
    s3_chunked_t *c = s3_chunked_new(&a, 18, collect, &out);
    assert_int_equal(decode(c, &body, slice, 0), 0);
    assert_int_equal(out.len, 18);
    assert_memory_equal(out.p, "streamed body here", 18);
    assert_string_equal(s3_chunked_trailer(c, "x-amz-checksum-crc32"), "RI5zjg==");
    s3_checksum_t ck;
    char sum[S3_CHECKSUM_B64_MAX];
    s3_checksum_init(&ck, S3_CK_CRC32);
    s3_checksum_update(&ck, out.p, out.len);
    s3_checksum_final(&ck, sum);
    assert_string_equal(sum, "RI5zjg==");
    s3_chunked_free(c);
    free(out.p);
  }
  free(body.p);
  /* the same framing is refused where chunk signatures are required */
  s3_auth_t signed_a = aws_auth(S3_PAYLOAD_STREAMING_TRAILER, SEED);
  body = (buf_t){0};
  puts_(&body, "12\r\nstreamed body here\r\n0\r\nx-amz-checksum-crc32:RI5zjg==\r\n\r\n");
  expect_fail(&signed_a, &body, 18, "SignatureDoesNotMatch");
  free(body.p);
}

static void test_malformed(void **state) {
  (void)state;
  s3_auth_t a;
  memset(&a, 0, sizeof a);
  a.payload = S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
  static const char *bad[] = {
      "zz\r\nabc\r\n0\r\n\r\n",               /* size not hex */
      "\r\n3\r\nabc\r\n0\r\n\r\n",            /* blank before the first chunk */
      "-3\r\nabc\r\n0\r\n\r\n",               /* sign */
      "3\r\nabcX\r\n0\r\n\r\n",               /* data longer than its size */
      "3\r\nab\r\n0\r\n\r\n",                 /* shorter */
      "11111111111111111\r\n",                /* 17 hex digits */
      "fffffffffffff\r\n",                    /* absurd size */
      "3\r\nabc\r\n0\r\nno colon here\r\n\r\n",
      "3\r\nabc\r\n0\r\n:empty name\r\n\r\n",
      "3\r\nabc\r\n0\r\n\r\nextra",           /* data after the end */
      "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s3_chunked_t *c = s3_chunked_new(&a, -1, NULL, NULL);
    ssize_t r = s3_chunked_feed(c, bad[i], strlen(bad[i]));
    int f = r < 0 ? -1 : s3_chunked_finish(c);
    if (f != -1) fail_msg("accepted: %s", bad[i]);
    assert_non_null(s3_chunked_code(c));
    assert_int_equal(s3_chunked_feed(c, "x", 1), -1); /* errors stick */
    s3_chunked_free(c);
  }
  /* a line longer than any real header */
  char *longline = malloc(2000);
  memset(longline, '0', 1999);
  longline[1999] = '\0';
  s3_chunked_t *c = s3_chunked_new(&a, -1, NULL, NULL);
  assert_int_equal(s3_chunked_feed(c, longline, 1999), -1);
  assert_string_equal(s3_chunked_code(c), "InvalidRequest");
  s3_chunked_free(c);
  free(longline);
  /* NUL inside a line */
  c = s3_chunked_new(&a, -1, NULL, NULL);
  assert_int_equal(s3_chunked_feed(c, "3\0\r\nabc", 7), -1);
  s3_chunked_free(c);
  /* trailers are only for the -TRAILER modes */
  s3_auth_t plain = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  buf_t body = build(&plain, data, (size_t[]){5}, 1, NULL);
  body.len -= 2;
  puts_(&body, "x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
  expect_fail(&plain, &body, 5, "InvalidRequest");
  free(body.p);
  /* too many trailers */
  buf_t many = {0};
  puts_(&many, "0\r\n");
  for (int i = 0; i < 9; i++) puts_(&many, "x-amz-meta-a:b\r\n");
  puts_(&many, "\r\n");
  expect_fail(&a, &many, 0, "InvalidRequest");
  free(many.p);
}

/* A payload mode that is not aws-chunked, or signed chunks without a verified request. */
static void test_modes(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_SHA256, SEED);
  s3_chunked_t *c = s3_chunked_new(&a, -1, NULL, NULL);
  assert_int_equal(s3_chunked_feed(c, "0\r\n\r\n", 5), -1);
  assert_string_equal(s3_chunked_code(c), "InvalidRequest");
  s3_chunked_free(c);
  a = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  a.status = S3_AUTH_ERROR;
  c = s3_chunked_new(&a, -1, NULL, NULL);
  assert_int_equal(s3_chunked_finish(c), -1);
  assert_string_equal(s3_chunked_code(c), "AccessDenied");
  s3_chunked_free(c);
  s3_chunked_free(NULL);
}

/* The callback can pause (back-pressure) and abort. */
typedef struct {
  buf_t out;
  int calls, abort_at;
} pauser_t;

static int pause_cb(void *arg, const void *d, size_t n) {
  pauser_t *p = arg;
  put(&p->out, d, n);
  if (++p->calls == p->abort_at) return -1;
  return 1;
}

static void test_pause_and_abort(void **state) {
  (void)state;
  s3_auth_t a = aws_auth(S3_PAYLOAD_STREAMING, SEED);
  static const size_t sizes[] = {700, 800, 900};
  buf_t body = build(&a, data, sizes, 3, NULL);
  pauser_t p = {.abort_at = -1};
  s3_chunked_t *c = s3_chunked_new(&a, 2400, pause_cb, &p);
  size_t off = 0;
  int feeds = 0;
  while (off < body.len) {
    ssize_t r = s3_chunked_feed(c, body.p + off, body.len - off);
    assert_true(r > 0);
    off += (size_t)r;
    feeds++;
  }
  assert_int_equal(s3_chunked_finish(c), 0);
  assert_int_equal(p.calls, 3); /* one piece per chunk, each followed by a pause */
  assert_int_equal(feeds, 4);
  assert_memory_equal(p.out.p, data, 2400);
  s3_chunked_free(c);
  free(p.out.p);

  pauser_t q = {.abort_at = 2};
  c = s3_chunked_new(&a, 2400, pause_cb, &q);
  off = 0;
  ssize_t r;
  while ((r = s3_chunked_feed(c, body.p + off, body.len - off)) > 0) off += (size_t)r;
  assert_int_equal(r, -1);
  assert_string_equal(s3_chunked_code(c), "InternalError");
  s3_chunked_free(c);
  free(q.out.p);
  free(body.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aws_example),         cmocka_unit_test(test_aws_trailer_example),
      cmocka_unit_test(test_own_signer_matches_aws), cmocka_unit_test(test_roundtrip_shapes),
      cmocka_unit_test(test_tampering),           cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_decoded_length),      cmocka_unit_test(test_botocore_unsigned_trailer),
      cmocka_unit_test(test_malformed),           cmocka_unit_test(test_modes),
      cmocka_unit_test(test_pause_and_abort),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
