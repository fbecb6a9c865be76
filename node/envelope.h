/* envelope.h - the cluster channel's frame: a protobuf Envelope sealed with HMAC-SHA256 under a
 * key derived from the cluster secret. Frames that fail any check are refused, never executed. */
#ifndef GUREUM_ENVELOPE_H
#define GUREUM_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/envelope.pb-c.h"

/* Frame: "GRUM" | version (1 byte) | 3 reserved zero bytes | Envelope bytes | HMAC (32 bytes)
 * The MAC covers everything before it. */
#define ENVELOPE_MAGIC "GRUM"
#define ENVELOPE_FRAME_VERSION 1
#define ENVELOPE_HEADER_LEN 8
#define ENVELOPE_MAC_LEN 32
#define ENVELOPE_VERSION 1 /* Envelope.version */

typedef struct envelope_key_s {
  uint8_t k[32];
} envelope_key_t;

enum {
  ENVELOPE_OK = 0,
  ENVELOPE_ESHORT = -1,   /* shorter than header + MAC */
  ENVELOPE_EMAGIC = -2,   /* not a Gureum frame */
  ENVELOPE_EVERSION = -3, /* frame or envelope version we do not speak */
  ENVELOPE_EMAC = -4,     /* wrong secret or tampered */
  ENVELOPE_EDECODE = -5,  /* MAC fine but the protobuf is malformed */
  ENVELOPE_ESTALE = -6,   /* sent_ms too far from our clock: a replay or a broken clock */
  ENVELOPE_ETOOBIG = -7,
};

/* Derive the MAC key from the cluster secret (domain-separated SHA-256). */
void envelope_key_derive(envelope_key_t *key, const char *secret);

/* Bytes needed to frame `env`. */
size_t envelope_frame_size(const Gureum__Envelope *env);
/* Write the frame into buf (envelope_frame_size bytes). Returns the length written. */
size_t envelope_pack(const envelope_key_t *key, const Gureum__Envelope *env, uint8_t *buf);

/* Verify and decode. max_skew_ms 0 disables the clock check. On success *out must be freed
 * with gureum__envelope__free_unpacked(*out, NULL). */
int envelope_unpack(const envelope_key_t *key, const uint8_t *frame, size_t len, size_t max_len,
                    uint64_t now_ms, uint64_t max_skew_ms, Gureum__Envelope **out);

const char *envelope_strerror(int err);
/* Short label used in metrics ("auth", "magic", ...). */
const char *envelope_reason(int err);

uint64_t envelope_now_ms(void);

#endif
