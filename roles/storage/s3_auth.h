/* s3_auth.h - AWS Signature Version 4 verification for the S3 API (Authorization header and
 * presigned URLs), with the signing material aws-chunked bodies need to check chunk signatures. */
#ifndef GUREUM_S3_AUTH_H
#define GUREUM_S3_AUTH_H

#include <stdint.h>
#include <time.h>

typedef enum {
  S3_AUTH_OK = 0,    /* signature verified: akid and payload fields are valid */
  S3_AUTH_ANONYMOUS, /* no credentials at all: the caller may allow it for public buckets */
  S3_AUTH_ERROR,     /* code + message say why, as S3 would */
} s3_auth_status_t;

/* What x-amz-content-sha256 promised about the body. */
typedef enum {
  S3_PAYLOAD_UNSIGNED = 0,                 /* UNSIGNED-PAYLOAD (and presigned URLs) */
  S3_PAYLOAD_SHA256,                       /* hex SHA-256: the caller checks it after reading */
  S3_PAYLOAD_STREAMING,                    /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD */
  S3_PAYLOAD_STREAMING_TRAILER,            /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
  S3_PAYLOAD_STREAMING_UNSIGNED_TRAILER,   /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
} s3_payload_t;

#define S3_AUTH_CLOCK_SKEW 900     /* seconds, as S3 */
#define S3_AUTH_MAX_EXPIRES 604800 /* a week, for presigned URLs */

typedef struct s3_auth_req_s {
  const char *method;
  const char *path;  /* raw, as on the request line, before '?' */
  const char *query; /* raw, after '?' (NULL or "" when none) */
  /* Value of a request header by lowercase name, NULL if absent. */
  const char *(*get_header)(void *arg, const char *lowercase_name);
  void *header_arg;
  /* Secret key of an access key id, NULL if unknown. */
  const char *(*lookup_secret)(void *arg, const char *akid);
  void *secret_arg;
  const char *region; /* if set, the credential scope must name it; NULL accepts any */
  time_t now;
} s3_auth_req_t;

typedef struct s3_auth_s {
  s3_auth_status_t status;
  const char *code;  /* S3 error code (static), NULL unless S3_AUTH_ERROR */
  char message[256]; /* S3-style message for the error document */
  int presigned;
  char akid[129];
  char region[64];
  s3_payload_t payload;
  char payload_sha256[65]; /* lowercase hex when payload == S3_PAYLOAD_SHA256 */
  /* For aws-chunked bodies: the request signature seeds the chain of chunk signatures. */
  char seed_signature[65];
  char timestamp[17];  /* 20130524T000000Z */
  char scope[128];     /* 20130524/us-east-1/s3/aws4_request */
  uint8_t signing_key[32];
  char string_to_sign[320]; /* on SignatureDoesNotMatch: S3 returns it to help debug clients */
} s3_auth_t;

/* Authenticate one request. Never allocates anything the caller frees. */
s3_auth_status_t s3_auth_verify(const s3_auth_req_t *req, s3_auth_t *out);

/* SigV4 building blocks, shared with the aws-chunked decoder and tests. */
void s3_sigv4_signing_key(const char *secret, const char *date8, const char *region,
                          const char *service, uint8_t key[32]);
void s3_sigv4_sign(const uint8_t key[32], const char *msg, size_t len, char hex[65]);
/* Constant-time equality of two 64-char lowercase hex signatures; given may be NULL. */
int s3_sigv4_equal(const char *expected, const char *given);

#endif
