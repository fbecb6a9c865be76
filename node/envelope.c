/* envelope.c - seal and open cluster frames (protobuf Envelope + HMAC-SHA256).
 * Checks run cheapest-first and the MAC is verified before any protobuf decoding. */
#include "envelope.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>
#include <sys/time.h>

void envelope_key_derive(envelope_key_t *key, const char *secret) {
  /* Domain separation keeps this key distinct from any other use of the same secret. */
  static const char domain[] = "gureum-cluster-mac-v1:";
  unsigned int outl = 0;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  EVP_DigestUpdate(md, domain, sizeof domain - 1);
  EVP_DigestUpdate(md, secret, strlen(secret));
  EVP_DigestFinal_ex(md, key->k, &outl);
  EVP_MD_CTX_free(md);
}

uint64_t envelope_now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

size_t envelope_frame_size(const Gureum__Envelope *env) {
  return ENVELOPE_HEADER_LEN + gureum__envelope__get_packed_size(env) + ENVELOPE_MAC_LEN;
}

static void envelope_mac(const envelope_key_t *key, const uint8_t *data, size_t len,
                         uint8_t mac[ENVELOPE_MAC_LEN]) {
  unsigned int ml = ENVELOPE_MAC_LEN;
  HMAC(EVP_sha256(), key->k, sizeof key->k, data, len, mac, &ml);
}

size_t envelope_pack(const envelope_key_t *key, const Gureum__Envelope *env, uint8_t *buf) {
  memcpy(buf, ENVELOPE_MAGIC, 4);
  buf[4] = ENVELOPE_FRAME_VERSION;
  buf[5] = buf[6] = buf[7] = 0;
  size_t body = gureum__envelope__pack(env, buf + ENVELOPE_HEADER_LEN);
  size_t n = ENVELOPE_HEADER_LEN + body;
  envelope_mac(key, buf, n, buf + n);
  return n + ENVELOPE_MAC_LEN;
}

int envelope_unpack(const envelope_key_t *key, const uint8_t *frame, size_t len, size_t max_len,
                    uint64_t now_ms, uint64_t max_skew_ms, Gureum__Envelope **out) {
  *out = NULL;
  if (max_len && len > max_len) return ENVELOPE_ETOOBIG;
  if (len < ENVELOPE_HEADER_LEN + ENVELOPE_MAC_LEN) return ENVELOPE_ESHORT;
  if (memcmp(frame, ENVELOPE_MAGIC, 4) != 0) return ENVELOPE_EMAGIC;
  if (frame[4] != ENVELOPE_FRAME_VERSION) return ENVELOPE_EVERSION;
  size_t n = len - ENVELOPE_MAC_LEN;
  uint8_t mac[ENVELOPE_MAC_LEN];
  envelope_mac(key, frame, n, mac);
  if (CRYPTO_memcmp(mac, frame + n, ENVELOPE_MAC_LEN) != 0) return ENVELOPE_EMAC;
  Gureum__Envelope *env =
      gureum__envelope__unpack(NULL, n - ENVELOPE_HEADER_LEN, frame + ENVELOPE_HEADER_LEN);
  if (!env) return ENVELOPE_EDECODE;
  if (env->version != ENVELOPE_VERSION) {
    gureum__envelope__free_unpacked(env, NULL);
    return ENVELOPE_EVERSION;
  }
  if (max_skew_ms) {
    uint64_t d = env->sent_ms > now_ms ? env->sent_ms - now_ms : now_ms - env->sent_ms;
    if (d > max_skew_ms) {
      gureum__envelope__free_unpacked(env, NULL);
      return ENVELOPE_ESTALE;
    }
  }
  *out = env;
  return ENVELOPE_OK;
}

const char *envelope_strerror(int err) {
  switch (err) {
  case ENVELOPE_OK: return "ok";
  case ENVELOPE_ESHORT: return "frame too short";
  case ENVELOPE_EMAGIC: return "not a Gureum frame";
  case ENVELOPE_EVERSION: return "unsupported frame version";
  case ENVELOPE_EMAC: return "bad MAC (wrong cluster secret or tampered frame)";
  case ENVELOPE_EDECODE: return "malformed envelope";
  case ENVELOPE_ESTALE: return "frame timestamp outside the allowed clock skew";
  case ENVELOPE_ETOOBIG: return "frame too large";
  }
  return "unknown error";
}

const char *envelope_reason(int err) {
  switch (err) {
  case ENVELOPE_ESHORT: return "short";
  case ENVELOPE_EMAGIC: return "magic";
  case ENVELOPE_EVERSION: return "version";
  case ENVELOPE_EMAC: return "auth";
  case ENVELOPE_EDECODE: return "decode";
  case ENVELOPE_ESTALE: return "stale";
  case ENVELOPE_ETOOBIG: return "too_big";
  }
  return "other";
}
