/* s3_chunked.h - push decoder for aws-chunked request bodies (SigV4 streaming uploads): data
 * goes straight through to a callback while chunk and trailer signatures are checked. */
#ifndef GUREUM_S3_CHUNKED_H
#define GUREUM_S3_CHUNKED_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "s3_auth.h"

typedef struct s3_chunked_s s3_chunked_t;

/* Decoded data, pointing into the buffer given to s3_chunked_feed. Return 0 to go on, 1 to
 * pause (feed returns early; feed the rest later), -1 to abort. Until s3_chunked_finish
 * returns 0 the data is unproven: a chunk's signature is checked when the chunk ends. */
typedef int (*s3_chunked_data_fn)(void *arg, const void *data, size_t len);

/* auth: the verified request (its payload mode; for signed modes the signing key, scope,
 * timestamp and seed signature). decoded_length: x-amz-decoded-content-length, -1 if absent.
 * NULL only when out of memory; a mode that is not aws-chunked fails on the first feed. */
s3_chunked_t *s3_chunked_new(const s3_auth_t *auth, int64_t decoded_length, s3_chunked_data_fn fn,
                             void *arg);
void s3_chunked_free(s3_chunked_t *c);

/* Bytes consumed (less than len only when the callback paused), or -1 on error. */
ssize_t s3_chunked_feed(s3_chunked_t *c, const void *data, size_t len);
/* The body ended: 0 if it was complete, well signed and of the declared length, else -1. */
int s3_chunked_finish(s3_chunked_t *c);

/* After an error: S3 error code (IncompleteBody, SignatureDoesNotMatch, InvalidRequest...) and
 * a message for the error document. */
const char *s3_chunked_code(const s3_chunked_t *c);
const char *s3_chunked_message(const s3_chunked_t *c);

/* A trailer by lowercase name (e.g. "x-amz-checksum-crc32"), after finish; NULL if absent. */
const char *s3_chunked_trailer(const s3_chunked_t *c, const char *name);
uint64_t s3_chunked_decoded(const s3_chunked_t *c); /* data bytes passed on so far */

#endif
