/* s3_auth_test.c - SigV4 verification against AWS's published S3 examples and requests captured
 * from botocore (both its awscrt and pure-Python signers), plus every way a request is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "s3_auth.h"

typedef struct {
  const char *name, *value;
} hdr_t;

typedef struct {
  const char *method, *path, *query;
  hdr_t h[16]; /* ends with {NULL, NULL} */
} vec_t;

#define EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define T_2013 1369353600 /* 20130524T000000Z, the time of every AWS example */
#define T_2024 1709987696 /* 20240309T123456Z, the time botocore was pinned to */
#define AWS_AKID "AKIAIOSFODNN7EXAMPLE"
#define AWS_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define CRED "Credential=" AWS_AKID "/20130524/us-east-1/s3/aws4_request"
#define HOST "examplebucket.s3.amazonaws.com"

static const char *get_header(void *arg, const char *name) {
  for (const hdr_t *h = arg; h->name; h++)
    if (strcasecmp(h->name, name) == 0) return h->value;
  return NULL;
}

static const char *lookup_secret(void *arg, const char *akid) {
  (void)arg;
  if (strcmp(akid, AWS_AKID) == 0) return AWS_SECRET;
  if (strcmp(akid, "AKIDEXAMPLEGUREUM01") == 0) return "gureumSecretKey/Example+Test0123456789abc";
  if (strcmp(akid, "AKIDWRONGSECRET") == 0) return "not-the-secret";
  return NULL;
}

static const char *region_wanted;

static s3_auth_status_t run(const char *method, const char *path, const char *query,
                            const hdr_t *h, time_t now, s3_auth_t *out) {
  s3_auth_req_t r = {.method = method, .path = path, .query = query, .get_header = get_header,
                     .header_arg = (void *)h, .lookup_secret = lookup_secret, .region = region_wanted,
                     .now = now};
  return s3_auth_verify(&r, out);
}

static void expect_error(const char *method, const char *path, const char *query, const hdr_t *h,
                         time_t now, const char *code) {
  s3_auth_t a;
  s3_auth_status_t st = run(method, path, query, h, now, &a);
  if (st != S3_AUTH_ERROR || strcmp(a.code, code) != 0)
    fail_msg("%s %s?%s: want %s, got status %d %s (%s)", method, path, query ? query : "", code,
             st, a.code ? a.code : "-", a.message);
  assert_true(a.message[0] != '\0');
}

static void expect_ok(const char *method, const char *path, const char *query, const hdr_t *h,
                      time_t now, s3_auth_t *a) {
  s3_auth_status_t st = run(method, path, query, h, now, a);
  if (st != S3_AUTH_OK)
    fail_msg("%s %s?%s: %s: %s\n%s", method, path, query ? query : "", a->code, a->message,
             a->string_to_sign);
}

/* ---- AWS's published examples (Signature Calculations for the Authorization Header) ---- */

#define GET_SIG "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
#define GET_AUTHZ "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" GET_SIG

static void test_aws_get_object(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY},
               {"x-amz-date", "20130524T000000Z"}, {"authorization", GET_AUTHZ}, {NULL, NULL}};
  s3_auth_t a;
  expect_ok("GET", "/test.txt", "", h, T_2013, &a);
  assert_string_equal(a.akid, AWS_AKID);
  assert_string_equal(a.region, "us-east-1");
  assert_int_equal(a.presigned, 0);
  assert_int_equal(a.payload, S3_PAYLOAD_SHA256);
  assert_string_equal(a.payload_sha256, EMPTY);
  assert_string_equal(a.seed_signature, GET_SIG);
  assert_string_equal(a.timestamp, "20130524T000000Z");
  assert_string_equal(a.scope, "20130524/us-east-1/s3/aws4_request");
  assert_null(a.code);
  /* Header values are trimmed and inner runs of spaces folded before signing. */
  h[1].value = "  bytes=0-9 \t";
  expect_ok("GET", "/test.txt", NULL, h, T_2013, &a);
  /* The configured region must match the credential scope when one is set. */
  region_wanted = "us-east-1";
  expect_ok("GET", "/test.txt", NULL, h, T_2013, &a);
  region_wanted = "eu-west-1";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "AuthorizationHeaderMalformed");
  region_wanted = NULL;
}

static void test_aws_put_object(void **state) {
  (void)state;
  hdr_t h[] = {
      {"host", HOST},
      {"date", "Fri, 24 May 2013 00:00:00 GMT"},
      {"x-amz-date", "20130524T000000Z"},
      {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
      {"x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"},
      {"authorization", "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=date;host;x-amz-content-sha256;"
                        "x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238"
                        "d841ea1380cd77a1b5971af0ece108bd"},
      {NULL, NULL}};
  s3_auth_t a;
  /* '$' is sent raw or encoded; either way the canonical URI is /test%24file.text */
  expect_ok("PUT", "/test$file.text", NULL, h, T_2013, &a);
  expect_ok("PUT", "/test%24file.text", NULL, h, T_2013, &a);
  assert_int_equal(a.payload, S3_PAYLOAD_SHA256);
  assert_string_equal(a.payload_sha256, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  h[3].value = "STANDARD";
  expect_error("PUT", "/test$file.text", NULL, h, T_2013, "SignatureDoesNotMatch");
}

static void test_aws_bucket_queries(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"x-amz-date", "20130524T000000Z"}, {"x-amz-content-sha256", EMPTY},
               {"authorization", "AWS4-HMAC-SHA256 " CRED ", SignedHeaders=host;x-amz-content-sha256;"
                                 "x-amz-date, Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f"
                                 "91ac7a200a0136783543"},
               {NULL, NULL}};
  s3_auth_t a;
  expect_ok("GET", "/", "lifecycle", h, T_2013, &a); /* a bare name signs as "lifecycle=" */
  expect_ok("GET", "/", "lifecycle=", h, T_2013, &a);
  expect_ok("GET", "", "lifecycle", h, T_2013, &a); /* empty path is "/" */
  expect_error("GET", "/", "lifecycle&x=1", h, T_2013, "SignatureDoesNotMatch");
  h[3].value = "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
               "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
  expect_ok("GET", "/", "max-keys=2&prefix=J", h, T_2013, &a);
  expect_ok("GET", "/", "prefix=J&max-keys=2", h, T_2013, &a); /* sorted before signing */
  expect_ok("GET", "/", "prefix=%4A&max-keys=2&", h, T_2013, &a); /* same once re-encoded */
  expect_error("GET", "/", "max-keys=3&prefix=J", h, T_2013, "SignatureDoesNotMatch");
}

#define PRESIGN_Q                                                                                \
  "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-" \
  "1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
#define PRESIGN_SIG "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

static void test_aws_presigned(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {NULL, NULL}};
  s3_auth_t a;
  const char *q = PRESIGN_Q "&X-Amz-Signature=" PRESIGN_SIG;
  expect_ok("GET", "/test.txt", q, h, T_2013 + 3600, &a);
  assert_int_equal(a.presigned, 1);
  assert_int_equal(a.payload, S3_PAYLOAD_UNSIGNED);
  assert_string_equal(a.akid, AWS_AKID);
  /* The signature may sit anywhere in the query. */
  expect_ok("GET", "/test.txt", "X-Amz-Signature=" PRESIGN_SIG "&" PRESIGN_Q, h, T_2013, &a);
  expect_ok("GET", "/test.txt", q, h, T_2013 + 86400, &a);
  /* expiry replaces the clock-skew check */
  s3_auth_status_t st = run("GET", "/test.txt", q, h, T_2013 + 86401, &a);
  assert_int_equal(st, S3_AUTH_ERROR);
  assert_string_equal(a.code, "AccessDenied");
  assert_string_equal(a.message, "Request has expired");
  expect_error("GET", "/test.txt", q, h, T_2013 - 3600, "AccessDenied"); /* not valid yet */
  expect_ok("GET", "/test.txt", q, h, T_2013 - 600, &a); /* within the skew allowance */
  /* tampering */
  expect_error("GET", "/test2.txt", q, h, T_2013, "SignatureDoesNotMatch");
  expect_error("PUT", "/test.txt", q, h, T_2013, "SignatureDoesNotMatch");
  expect_error("GET", "/test.txt", PRESIGN_Q "&X-Amz-Signature=" PRESIGN_SIG "&x-id=GetObject", h,
               T_2013, "SignatureDoesNotMatch");
  hdr_t other[] = {{"host", "otherbucket.s3.amazonaws.com"}, {NULL, NULL}};
  expect_error("GET", "/test.txt", q, other, T_2013, "SignatureDoesNotMatch");
}

static void test_presigned_errors(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {NULL, NULL}};
  const char *qe = "AuthorizationQueryParametersError";
  const char *sig = "&X-Amz-Signature=" PRESIGN_SIG;
  char q[1024];
  /* each required parameter missing in turn */
  static const char *params[] = {"X-Amz-Algorithm=", "X-Amz-Credential=", "X-Amz-Date=",
                                 "X-Amz-Expires=", "X-Amz-SignedHeaders="};
  for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
    char *p = q;
    char src[1024];
    snprintf(src, sizeof src, "%s%s", PRESIGN_Q, sig);
    for (char *tok = strtok(src, "&"); tok; tok = strtok(NULL, "&"))
      if (strncmp(tok, params[i], strlen(params[i])) != 0) p += sprintf(p, "%s%s", p == q ? "" : "&", tok);
    expect_error("GET", "/test.txt", q, h, T_2013, qe);
  }
  expect_error("GET", "/test.txt", PRESIGN_Q, h, T_2013, qe); /* no signature */
#define WITH(from, to)                                                                  \
  do {                                                                                  \
    char *at = strstr(strcpy(q, PRESIGN_Q "&X-Amz-Signature=" PRESIGN_SIG), from);      \
    memmove(at + strlen(to), at + strlen(from), strlen(at + strlen(from)) + 1);         \
    memcpy(at, to, strlen(to));                                                         \
  } while (0)
  WITH("Expires=86400", "Expires=0");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("Expires=86400", "Expires=604801");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("Expires=86400", "Expires=-5");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("Expires=86400", "Expires=1d");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("Expires=86400", "Expires=604800"); /* allowed, but now signed differently */
  expect_error("GET", "/test.txt", q, h, T_2013, "SignatureDoesNotMatch");
  WITH("HMAC-SHA256", "HMAC-SHA1");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("Date=20130524T000000Z", "Date=2013-05-24T00:00:00Z");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("Date=20130524T000000Z", "Date=20130525T000000Z");
  expect_error("GET", "/test.txt", q, h, T_2013, qe); /* scope date differs */
  WITH("%2Fs3%2F", "%2Fec2%2F");
  expect_error("GET", "/test.txt", q, h, T_2013, qe);
  WITH("AKIAIOSFODNN7EXAMPLE", "AKIAUNKNOWN");
  expect_error("GET", "/test.txt", q, h, T_2013, "InvalidAccessKeyId");
  /* Authorization header and query signature together */
  hdr_t both[] = {{"host", HOST}, {"authorization", GET_AUTHZ}, {NULL, NULL}};
  expect_error("GET", "/test.txt", PRESIGN_Q "&X-Amz-Signature=" PRESIGN_SIG, both, T_2013, "InvalidArgument");
  /* SigV2 query authentication is not supported */
  expect_error("GET", "/test.txt", "AWSAccessKeyId=" AWS_AKID "&Signature=abc%3D&Expires=1369440000",
               h, T_2013, "InvalidRequest");
#undef WITH
}

/* The chunked-upload examples: their seed signatures verify, and the result carries what
 * the aws-chunked decoder needs. */
static void test_aws_streaming_seed(void **state) {
  (void)state;
  hdr_t h[] = {
      {"host", "s3.amazonaws.com"},
      {"x-amz-date", "20130524T000000Z"},
      {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
      {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
      {"content-encoding", "aws-chunked"},
      {"x-amz-decoded-content-length", "66560"},
      {"content-length", "66824"},
      {"authorization", "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=content-encoding;content-length;host;"
                        "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                        "x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4"
                        "adea153f7db9fa80a0a9"},
      {NULL, NULL}};
  s3_auth_t a;
  expect_ok("PUT", "/examplebucket/chunkObject.txt", NULL, h, T_2013, &a);
  assert_int_equal(a.payload, S3_PAYLOAD_STREAMING);
  assert_string_equal(a.seed_signature, "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
  uint8_t key[32];
  s3_sigv4_signing_key(AWS_SECRET, "20130524", "us-east-1", "s3", key);
  assert_memory_equal(a.signing_key, key, 32);

  hdr_t t[] = {
      {"host", "s3.amazonaws.com"},
      {"x-amz-date", "20130524T000000Z"},
      {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
      {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"},
      {"content-encoding", "aws-chunked"},
      {"x-amz-decoded-content-length", "66560"},
      {"x-amz-trailer", "x-amz-checksum-crc32c"},
      {"authorization", "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=content-encoding;host;"
                        "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                        "x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f3661"
                        "9c00e2dfc72633413f02d3b74544bfeb8e"},
      {NULL, NULL}};
  expect_ok("PUT", "/examplebucket/chunkObject.txt", NULL, t, T_2013, &a);
  assert_int_equal(a.payload, S3_PAYLOAD_STREAMING_TRAILER);
}

/* ---- what botocore 1.44.8 really sends ----
 * Captured from a botocore S3 client (path style, signature_version s3v4, clock pinned) whose
 * before-send hook recorded the prepared request and returned a stub response; the presigned
 * ones come from generate_presigned_url. Unsigned headers (user-agent, amz-sdk-*) dropped. */

/* botocore 1.44.8 (awscrt signer, as in aws CLI v2), time fixed at 20240309T123456Z */
static const vec_t vec_crt[] = {
    {"GET", "/bkt/dir/my%20file%20%C3%BCn%C3%AF%2B%281%29%26%3D.txt", "", {
         {"range", "bytes=0-9"},
         {"x-amz-checksum-mode", "ENABLED"},
         {"host", "127.0.0.1:9000"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-checksum-mode;x-amz-content-sha256;x-amz-date, Signature=ed8d14fcefcd915cf8b4292a17d83595f429f6d0bee4895adbdf1f2c6961ef71"},
         {NULL, NULL}}},
    {"GET", "/bkt", "list-type=2&prefix=a%2Fb%20c%2Bd&delimiter=%2F&max-keys=10&start-after=x~y%2Az&encoding-type=url", {
         {"host", "127.0.0.1:9000"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=f50e31f88e41a9d9a2f45fe73ec493b6454747ba6b028b1bb224342cb2b5bf5b"},
         {NULL, NULL}}},
    {"PUT", "/bkt/k1", "", {
         {"x-amz-meta-note", "a   b"},
         {"content-type", "text/plain"},
         {"expect", "100-continue"},
         {"x-amz-checksum-crc32", "DUoRhQ=="},
         {"x-amz-sdk-checksum-algorithm", "CRC32"},
         {"host", "127.0.0.1:9000"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-checksum-crc32;x-amz-content-sha256;x-amz-date;x-amz-meta-note;x-amz-sdk-checksum-algorithm, Signature=ea228db1f479381272b956d2a4e5463da3eb436f1b24cb2a3f93b8563f4b7266"},
         {"content-length", "11"},
         {NULL, NULL}}},
    {"POST", "/bkt/big%20obj", "uploads", {
         {"host", "127.0.0.1:9000"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=d3e49deff8743021ba9b1df02f109505e56475c30b8075d850b3906764e06a75"},
         {"content-length", "0"},
         {NULL, NULL}}},
    {"PUT", "/bkt/k2", "", {
         {"expect", "100-continue"},
         {"transfer-encoding", "chunked"},
         {"content-encoding", "aws-chunked"},
         {"x-amz-trailer", "x-amz-checksum-crc32"},
         {"x-amz-decoded-content-length", "18"},
         {"x-amz-sdk-checksum-algorithm", "CRC32"},
         {"host", "s3.gureum.test"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-sdk-checksum-algorithm;x-amz-trailer, Signature=2b440a11a503bf7196165b6c96695fa9d42e704925f0662dde1be0c2549e8d2b"},
         {NULL, NULL}}},
    {"HEAD", "/bkt/%E6%97%A5%E6%9C%AC%E8%AA%9E/%E3%82%AD%E3%83%BC", "versionId=v1~2", {
         {"host", "s3.gureum.test"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=5c4690e258b19767b3061f434fd367bf4fa0583469e6679ad9c96fad6c271d4d"},
         {NULL, NULL}}},
    {"GET", "/bkt/dir/my%20file%20%C3%BCn%C3%AF.txt", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLEGUREUM01%2F20240309%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240309T123456Z&X-Amz-SignedHeaders=host&X-Amz-Expires=3600&X-Amz-Signature=259084a44675ee04f3ef39743df249b0bce74f817e599bfecf0a9c10706a34b9", {{"host", "127.0.0.1:9000"}, {NULL, NULL}}},
    {"PUT", "/bkt/up%20load", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLEGUREUM01%2F20240309%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240309T123456Z&X-Amz-SignedHeaders=host&X-Amz-Expires=600&X-Amz-Signature=cfae9eb9b94b9cb93ce2aae527128780edef399ca52e00be575dad823f65df85", {{"host", "127.0.0.1:9000"}, {NULL, NULL}}},
    {"GET", "/bkt/v", "versionId=abc%2Fdef%3D&response-content-disposition=attachment%3B%20filename%3D%22x%20y.txt%22&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLEGUREUM01%2F20240309%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240309T123456Z&X-Amz-SignedHeaders=host&X-Amz-Expires=604800&X-Amz-Signature=57b67818b6b12338a128ebbfabb614a339b5f94c39013bd2d9e1948d4e19514b", {{"host", "127.0.0.1:9000"}, {NULL, NULL}}},
};
/* botocore 1.44.8 (pure-Python signer, as boto3 without awscrt), time fixed at 20240309T123456Z */
static const vec_t vec_py[] = {
    {"GET", "/bkt/dir/my%20file%20%C3%BCn%C3%AF%2B%281%29%26%3D.txt", "", {
         {"host", "127.0.0.1:9000"},
         {"range", "bytes=0-9"},
         {"x-amz-checksum-mode", "ENABLED"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-checksum-mode;x-amz-content-sha256;x-amz-date, Signature=ed8d14fcefcd915cf8b4292a17d83595f429f6d0bee4895adbdf1f2c6961ef71"},
         {NULL, NULL}}},
    {"GET", "/bkt", "list-type=2&prefix=a%2Fb%20c%2Bd&delimiter=%2F&max-keys=10&start-after=x~y%2Az&encoding-type=url", {
         {"host", "127.0.0.1:9000"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=f50e31f88e41a9d9a2f45fe73ec493b6454747ba6b028b1bb224342cb2b5bf5b"},
         {NULL, NULL}}},
    {"PUT", "/bkt/k1", "", {
         {"host", "127.0.0.1:9000"},
         {"x-amz-meta-note", "  a   b  "},
         {"content-type", "text/plain"},
         {"expect", "100-continue"},
         {"x-amz-checksum-crc32", "DUoRhQ=="},
         {"x-amz-sdk-checksum-algorithm", "CRC32"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-checksum-crc32;x-amz-content-sha256;x-amz-date;x-amz-meta-note;x-amz-sdk-checksum-algorithm, Signature=ea228db1f479381272b956d2a4e5463da3eb436f1b24cb2a3f93b8563f4b7266"},
         {"content-length", "11"},
         {NULL, NULL}}},
    {"POST", "/bkt/big%20obj", "uploads", {
         {"host", "127.0.0.1:9000"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=d3e49deff8743021ba9b1df02f109505e56475c30b8075d850b3906764e06a75"},
         {"content-length", "0"},
         {NULL, NULL}}},
    {"PUT", "/bkt/k2", "", {
         {"host", "s3.gureum.test"},
         {"expect", "100-continue"},
         {"transfer-encoding", "chunked"},
         {"content-encoding", "aws-chunked"},
         {"x-amz-trailer", "x-amz-checksum-crc32"},
         {"x-amz-decoded-content-length", "18"},
         {"x-amz-sdk-checksum-algorithm", "CRC32"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-sdk-checksum-algorithm;x-amz-trailer, Signature=2b440a11a503bf7196165b6c96695fa9d42e704925f0662dde1be0c2549e8d2b"},
         {NULL, NULL}}},
    {"HEAD", "/bkt/%E6%97%A5%E6%9C%AC%E8%AA%9E/%E3%82%AD%E3%83%BC", "versionId=v1~2", {
         {"host", "s3.gureum.test"},
         {"x-amz-date", "20240309T123456Z"},
         {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
         {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEGUREUM01/20240309/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=5c4690e258b19767b3061f434fd367bf4fa0583469e6679ad9c96fad6c271d4d"},
         {NULL, NULL}}},
    {"GET", "/bkt/dir/my%20file%20%C3%BCn%C3%AF.txt", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLEGUREUM01%2F20240309%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240309T123456Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=259084a44675ee04f3ef39743df249b0bce74f817e599bfecf0a9c10706a34b9", {{"host", "127.0.0.1:9000"}, {NULL, NULL}}},
    {"PUT", "/bkt/up%20load", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLEGUREUM01%2F20240309%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240309T123456Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Signature=cfae9eb9b94b9cb93ce2aae527128780edef399ca52e00be575dad823f65df85", {{"host", "127.0.0.1:9000"}, {NULL, NULL}}},
    {"GET", "/bkt/v", "versionId=abc%2Fdef%3D&response-content-disposition=attachment%3B%20filename%3D%22x%20y.txt%22&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLEGUREUM01%2F20240309%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240309T123456Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature=57b67818b6b12338a128ebbfabb614a339b5f94c39013bd2d9e1948d4e19514b", {{"host", "127.0.0.1:9000"}, {NULL, NULL}}},
};

static void run_vectors(const vec_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    s3_auth_t a;
    expect_ok(v[i].method, v[i].path, v[i].query, v[i].h, T_2024, &a);
    assert_string_equal(a.akid, "AKIDEXAMPLEGUREUM01");
    int presigned = get_header((void *)v[i].h, "authorization") == NULL;
    assert_int_equal(a.presigned, presigned);
    const char *p = get_header((void *)v[i].h, "x-amz-content-sha256");
    if (presigned) assert_int_equal(a.payload, S3_PAYLOAD_UNSIGNED);
    else if (strcmp(p, "STREAMING-UNSIGNED-PAYLOAD-TRAILER") == 0)
      assert_int_equal(a.payload, S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
    else assert_string_equal(a.payload_sha256, p);
    /* one character of the path or query changed must break it */
    char path[256], query[512];
    snprintf(path, sizeof path, "%sx", v[i].path);
    expect_error(v[i].method, path, v[i].query, v[i].h, T_2024, "SignatureDoesNotMatch");
    snprintf(query, sizeof query, "%s%sa=b", v[i].query, *v[i].query ? "&" : "");
    expect_error(v[i].method, v[i].path, query, v[i].h, T_2024, "SignatureDoesNotMatch");
  }
}

static void test_botocore_crt(void **state) {
  (void)state;
  run_vectors(vec_crt, sizeof vec_crt / sizeof vec_crt[0]);
}

static void test_botocore_python(void **state) {
  (void)state;
  run_vectors(vec_py, sizeof vec_py / sizeof vec_py[0]);
}

/* ---- refusals ---- */

static void test_tampering(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY},
               {"x-amz-date", "20130524T000000Z"}, {"authorization", GET_AUTHZ}, {NULL, NULL}};
  s3_auth_t a;
  h[1].value = "bytes=0-99";
  assert_int_equal(run("GET", "/test.txt", NULL, h, T_2013, &a), S3_AUTH_ERROR);
  assert_string_equal(a.code, "SignatureDoesNotMatch");
  /* S3 echoes the string to sign; and no signing material leaks out of a failure */
  static const char prefix[] = "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n";
  assert_memory_equal(a.string_to_sign, prefix, sizeof prefix - 1);
  assert_int_equal(strlen(a.string_to_sign), sizeof prefix - 1 + 64);
  static const uint8_t zero[32];
  assert_memory_equal(a.signing_key, zero, 32);
  h[1].value = "bytes=0-9";
  h[0].value = "otherbucket.s3.amazonaws.com";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  h[0].value = HOST;
  expect_error("HEAD", "/test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  expect_error("GET", "/Test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  expect_error("GET", "/test.txt", "versionId=1", h, T_2013, "SignatureDoesNotMatch");
  h[2].value = "UNSIGNED-PAYLOAD";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  h[2].value = EMPTY;
  h[4].value = "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" "F0E8BDB87C964420E857BD35B5D6ED310BD44F0170ABA48DD91039C6036BDB41";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  h[4].value = "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb4";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  /* a signed header missing from the request */
  hdr_t no_range[] = {{"host", HOST}, {"x-amz-content-sha256", EMPTY}, {"x-amz-date", "20130524T000000Z"},
                      {"authorization", GET_AUTHZ}, {NULL, NULL}};
  expect_error("GET", "/test.txt", NULL, no_range, T_2013, "SignatureDoesNotMatch");
}

static void test_keys(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY},
               {"x-amz-date", "20130524T000000Z"},
               {"authorization", "AWS4-HMAC-SHA256 Credential=AKIDWRONGSECRET/20130524/us-east-1/s3/"
                                 "aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
                                 "x-amz-date,Signature=" GET_SIG},
               {NULL, NULL}};
  expect_error("GET", "/test.txt", NULL, h, T_2013, "SignatureDoesNotMatch");
  h[4].value = "AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN/20130524/us-east-1/s3/aws4_request,"
               "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" GET_SIG;
  expect_error("GET", "/test.txt", NULL, h, T_2013, "InvalidAccessKeyId");
}

static void test_clock_skew(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY},
               {"x-amz-date", "20130524T000000Z"}, {"authorization", GET_AUTHZ}, {NULL, NULL}};
  s3_auth_t a;
  expect_ok("GET", "/test.txt", NULL, h, T_2013 + 900, &a);
  expect_ok("GET", "/test.txt", NULL, h, T_2013 - 900, &a);
  expect_error("GET", "/test.txt", NULL, h, T_2013 + 901, "RequestTimeTooSkewed");
  expect_error("GET", "/test.txt", NULL, h, T_2013 - 901, "RequestTimeTooSkewed");
  expect_error("GET", "/test.txt", NULL, h, T_2013 + 86400 * 365, "RequestTimeTooSkewed");
}

/* Signed with only a Date header (no x-amz-date): the string to sign still uses the ISO form. */
static void test_date_header(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-content-sha256", EMPTY},
               {"authorization", "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=date;host;x-amz-content-sha256,"
                                 "Signature=f51e643fca75b7c8fd918b44dd7f5de20a60f46a456fd2170e1e8248a77144e1"},
               {NULL, NULL}};
  s3_auth_t a;
  expect_ok("GET", "/test.txt", NULL, h, T_2013 + 60, &a);
  assert_string_equal(a.timestamp, "20130524T000000Z");
  expect_error("GET", "/test.txt", NULL, h, T_2013 + 3600, "RequestTimeTooSkewed");
  h[1].value = "Fri, 24 May 2013 00:00:00";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "AccessDenied");
  h[1].value = "Fri, 31 Feb 2013 00:00:00 GMT";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "AccessDenied");
}

/* Clients that sign their path exactly as sent, with a looser encoder than AWS's. */
static void test_path_encodings(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"x-amz-content-sha256", EMPTY}, {"x-amz-date", "20130524T000000Z"},
               {"authorization", NULL}, {NULL, NULL}};
  s3_auth_t a;
  h[3].value = "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
               "Signature=f4dd38f1f3f8434c0ee4d4720bd6cb3eb7763dc9360fce0321e6b22d17e2239f"; /* "/bkt/a=b" */
  expect_ok("GET", "/bkt/a=b", NULL, h, T_2013, &a);
  h[3].value = "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
               "Signature=34ff0ca3446341d9ba7381347d93f3c15047a66cd3d367ba8e251ca9bbe4229f"; /* "/bkt/a%2Fb" */
  expect_ok("GET", "/bkt/a%2Fb", NULL, h, T_2013, &a);
  expect_error("GET", "/bkt/a/b", NULL, h, T_2013, "SignatureDoesNotMatch");
  h[3].value = "AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
               "Signature=454b192416313f69b9cf712d77ecd22403cf83573ffb41f2d675ccbd42b2d9b7"; /* "/bkt/%C3%BC" */
  expect_ok("GET", "/bkt/%C3%BC", NULL, h, T_2013, &a);
  expect_ok("GET", "/bkt/%c3%bc", NULL, h, T_2013, &a);
  expect_ok("GET", "/bkt/\xc3\xbc", NULL, h, T_2013, &a);
}

static void test_malformed(void **state) {
  (void)state;
  hdr_t h[] = {{"host", HOST}, {"range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY},
               {"x-amz-date", "20130524T000000Z"}, {"authorization", NULL}, {NULL, NULL}};
  static const struct {
    const char *authz, *code;
  } cases[] = {
      {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;range;x-amz-content-sha256;x-amz-date", "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 " CRED ",Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 SignedHeaders=host,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential", "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 ", "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential=" AWS_AKID "/20130524/us-east-1/s3,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential=" AWS_AKID "/2013052/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential=" AWS_AKID "/20130524/us-east-1/ec2/aws4_request,SignedHeaders=host,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential=" AWS_AKID "/20130524/us-east-1/s3/aws5_request,SignedHeaders=host,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 Credential=" AWS_AKID "/20130523/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=range;x-amz-date,Signature=" GET_SIG, "AccessDenied"},
      {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=host;;range,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=,Signature=" GET_SIG, "AuthorizationHeaderMalformed"},
      {"AWS " AWS_AKID ":frJIUN8DYpKDtOLCwo//yllqDzg=", "InvalidRequest"},
      {"AWS4-ECDSA-P256-SHA256 " CRED ",SignedHeaders=host,Signature=" GET_SIG, "InvalidRequest"},
      {"AWS4-HMAC-SHA256-X " CRED, "InvalidRequest"},
      {"Bearer abc", "InvalidArgument"},
      {"AWS4-HMAC-SHA256", "AuthorizationHeaderMalformed"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    h[4].value = cases[i].authz;
    expect_error("GET", "/test.txt", NULL, h, T_2013, cases[i].code);
  }
  h[4].value = GET_AUTHZ;
  h[2].name = "x-amz-content-sha";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "InvalidRequest");
  h[2].name = "x-amz-content-sha256";
  h[2].value = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "InvalidArgument");
  h[2].value = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "InvalidArgument");
  h[2].value = EMPTY;
  h[3].value = "20130524T000000";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "AccessDenied");
  h[3].value = "20130532T000000Z";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "AccessDenied");
  h[3].name = "x-amz-datex";
  expect_error("GET", "/test.txt", NULL, h, T_2013, "AccessDenied");
}

static void test_anonymous(void **state) {
  (void)state;
  s3_auth_t a;
  hdr_t h[] = {{"host", HOST}, {NULL, NULL}, {NULL, NULL}};
  assert_int_equal(run("GET", "/bkt/key", "list-type=2", h, T_2013, &a), S3_AUTH_ANONYMOUS);
  assert_int_equal(a.payload, S3_PAYLOAD_UNSIGNED);
  assert_null(a.code);
  hdr_t blank[] = {{"host", HOST}, {"authorization", "  "}, {NULL, NULL}};
  assert_int_equal(run("GET", "/bkt/key", NULL, blank, T_2013, &a), S3_AUTH_ANONYMOUS);
  h[1] = (hdr_t){"x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"};
  assert_int_equal(run("PUT", "/bkt/key", NULL, h, T_2013, &a), S3_AUTH_ANONYMOUS);
  assert_int_equal(a.payload, S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
  h[1].value = EMPTY;
  assert_int_equal(run("PUT", "/bkt/key", NULL, h, T_2013, &a), S3_AUTH_ANONYMOUS);
  assert_int_equal(a.payload, S3_PAYLOAD_SHA256);
  h[1].value = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
  expect_error("PUT", "/bkt/key", NULL, h, T_2013, "AccessDenied");
  h[1].value = "bogus";
  expect_error("PUT", "/bkt/key", NULL, h, T_2013, "InvalidArgument");
}

/* The AWS General Reference's derived-key example (its secret has '+' where S3's has '/'). */
static void test_primitives(void **state) {
  (void)state;
  uint8_t key[32];
  char hex[65];
  s3_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam", key);
  /* the hex of the key itself */
  static const char *want = "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d";
  for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", key[i]);
  assert_string_equal(hex, want);
  assert_true(s3_sigv4_equal(want, want));
  assert_false(s3_sigv4_equal(want, "f4780e2d"));
  assert_false(s3_sigv4_equal(want, NULL));
  assert_false(s3_sigv4_equal(want, "04780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aws_get_object),     cmocka_unit_test(test_aws_put_object),
      cmocka_unit_test(test_aws_bucket_queries), cmocka_unit_test(test_aws_presigned),
      cmocka_unit_test(test_presigned_errors),   cmocka_unit_test(test_aws_streaming_seed),
      cmocka_unit_test(test_botocore_crt),       cmocka_unit_test(test_botocore_python),
      cmocka_unit_test(test_tampering),          cmocka_unit_test(test_keys),
      cmocka_unit_test(test_clock_skew),         cmocka_unit_test(test_date_header),
      cmocka_unit_test(test_path_encodings),     cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_anonymous),          cmocka_unit_test(test_primitives),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
