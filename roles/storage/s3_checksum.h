/* s3_checksum.h - the checksums S3 clients send and expect back: CRC32, CRC32C, CRC64NVME,
 * SHA1, SHA256 as x-amz-checksum-* (base64 of the big-endian digest), and MD5 for Content-MD5. */
#ifndef GUREUM_S3_CHECKSUM_H
#define GUREUM_S3_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  S3_CK_NONE = 0,
  S3_CK_CRC32,     /* IEEE 802.3, as zlib */
  S3_CK_CRC32C,    /* Castagnoli */
  S3_CK_CRC64NVME, /* CRC-64/NVME */
  S3_CK_SHA1,
  S3_CK_SHA256,
  S3_CK_MD5, /* not an x-amz-checksum algorithm: for ETag and Content-MD5 only */
} s3_checksum_algo_t;

#define S3_CHECKSUM_RAW_MAX 32 /* SHA256 */
#define S3_CHECKSUM_B64_MAX 48 /* base64 of 32 bytes is 44 chars, plus NUL */

/* "CRC32", "crc32c", "CRC64NVME", "SHA1", "SHA256" (any case) as in x-amz-checksum-algorithm and
 * x-amz-sdk-checksum-algorithm; also the header form "x-amz-checksum-crc32". S3_CK_NONE if
 * unknown (MD5 is never accepted here). */
s3_checksum_algo_t s3_checksum_algo_parse(const char *name);
const char *s3_checksum_algo_name(s3_checksum_algo_t algo);   /* "CRC32", ..., NULL if none */
const char *s3_checksum_header(s3_checksum_algo_t algo);      /* "x-amz-checksum-crc32", ... */
size_t s3_checksum_digest_len(s3_checksum_algo_t algo);       /* raw bytes: 4, 4, 8, 20, 32, 16 */

/* Incremental context; embed it. init returns -1 on allocation failure or S3_CK_NONE. final
 * releases the context; s3_checksum_free does the same for a context never finalised. */
typedef struct s3_checksum_s {
  s3_checksum_algo_t algo;
  uint64_t crc;
  void *md; /* EVP_MD_CTX for the hash algorithms */
} s3_checksum_t;

int s3_checksum_init(s3_checksum_t *ck, s3_checksum_algo_t algo);
void s3_checksum_update(s3_checksum_t *ck, const void *data, size_t len);
size_t s3_checksum_final_raw(s3_checksum_t *ck, uint8_t out[S3_CHECKSUM_RAW_MAX]);
/* Base64 text exactly as S3 puts it in x-amz-checksum-*; returns its length (0 on failure). */
size_t s3_checksum_final(s3_checksum_t *ck, char out[S3_CHECKSUM_B64_MAX]);
void s3_checksum_free(s3_checksum_t *ck);

/* A header value is a well-formed checksum of this algorithm (base64 of the right length). */
int s3_checksum_valid(s3_checksum_algo_t algo, const char *b64);

/* The raw CRCs (zlib convention: start with 0, pass the previous result to continue). */
uint32_t s3_crc32(uint32_t crc, const void *data, size_t len);
uint32_t s3_crc32c(uint32_t crc, const void *data, size_t len);
uint64_t s3_crc64nvme(uint64_t crc, const void *data, size_t len);
/* CRC of A||B from crc(A), crc(B) and len(B): full-object checksums of multipart uploads. */
uint64_t s3_crc_combine(s3_checksum_algo_t algo, uint64_t crc_a, uint64_t crc_b, uint64_t len_b);

/* One-shot MD5; any output may be NULL. hex is lowercase (the ETag), b64 is Content-MD5 form. */
void s3_md5(const void *data, size_t len, uint8_t raw[16], char hex[33], char b64[25]);
/* Content-MD5 header against the body's MD5: 1 match, 0 mismatch (BadDigest), -1 not a
 * base64 MD5 at all (InvalidDigest). */
int s3_content_md5_check(const char *header, const uint8_t md5[16]);

void s3_sha256_hex(const void *data, size_t len, char hex[65]);
void s3_hex(const uint8_t *in, size_t len, char *out); /* writes 2*len chars + NUL */
/* Standard padded base64. encode returns the text length; decode returns the byte count, or -1
 * if the input is not canonical padded base64 or does not fit in cap. */
size_t s3_base64_encode(const void *in, size_t len, char *out);
int s3_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t cap);

#endif
