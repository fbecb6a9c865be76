/* s3_checksum.c - CRC32/CRC32C/CRC64NVME (slice-by-8 tables built once), SHA and MD5 through
 * OpenSSL EVP, and the base64/hex forms S3 uses on the wire. */
#include "s3_checksum.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

/* All three CRCs are reflected with init and xorout all ones, so one scheme serves them:
 * these are the bit-reversed generator polynomials. */
#define POLY_CRC32 0xEDB88320u
#define POLY_CRC32C 0x82F63B78u
#define POLY_CRC64NVME 0x9A6C9329AC4BC9B5ull /* reflected 0xAD93D23594C93659 */

static uint32_t crc32_tab[8][256];
static uint32_t crc32c_tab[8][256];
static uint64_t crc64_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_tables_init(void) {
  for (unsigned n = 0; n < 256; n++) {
    uint32_t a = n, b = n;
    uint64_t c = n;
    for (int k = 0; k < 8; k++) {
      a = (a & 1) ? (a >> 1) ^ POLY_CRC32 : a >> 1;
      b = (b & 1) ? (b >> 1) ^ POLY_CRC32C : b >> 1;
      c = (c & 1) ? (c >> 1) ^ POLY_CRC64NVME : c >> 1;
    }
    crc32_tab[0][n] = a;
    crc32c_tab[0][n] = b;
    crc64_tab[0][n] = c;
  }
  /* tab[k][n] is the CRC of byte n followed by k zero bytes: eight lookups per 8 bytes. */
  for (unsigned n = 0; n < 256; n++) {
    for (int k = 1; k < 8; k++) {
      uint32_t a = crc32_tab[k - 1][n], b = crc32c_tab[k - 1][n];
      uint64_t c = crc64_tab[k - 1][n];
      crc32_tab[k][n] = (a >> 8) ^ crc32_tab[0][a & 0xff];
      crc32c_tab[k][n] = (b >> 8) ^ crc32c_tab[0][b & 0xff];
      crc64_tab[k][n] = (c >> 8) ^ crc64_tab[0][c & 0xff];
    }
  }
}

static uint32_t load_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc32_run(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n) {
  pthread_once(&crc_once, crc_tables_init);
  crc = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint32_t lo = crc ^ load_le32(p), hi = load_le32(p + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  while (n--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t s3_crc32(uint32_t crc, const void *data, size_t len) {
  return crc32_run(crc32_tab, crc, data, len);
}

uint32_t s3_crc32c(uint32_t crc, const void *data, size_t len) {
  return crc32_run(crc32c_tab, crc, data, len);
}

uint64_t s3_crc64nvme(uint64_t crc, const void *data, size_t len) {
  const uint8_t *p = data;
  const uint64_t(*t)[256] = crc64_tab;
  pthread_once(&crc_once, crc_tables_init);
  crc = ~crc;
  for (; len >= 8; p += 8, len -= 8) {
    uint64_t v = crc ^ (load_le32(p) | (uint64_t)load_le32(p + 4) << 32);
    crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^
          t[4][(v >> 24) & 0xff] ^ t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
          t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
  }
  while (len--) crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* a*b modulo the polynomial, both in reflected form (the top bit of the width is x^0). */
static uint64_t crc_multmodp(uint64_t a, uint64_t b, uint64_t poly, int width) {
  uint64_t m = (uint64_t)1 << (width - 1), p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ poly : b >> 1;
  }
  return p;
}

/* zlib's crc32_combine method: crc(A||B) = crc(A)*x^(8*len(B)) + crc(B) mod P; the all-ones
 * init and xorout cancel out, so it holds for all three CRCs here. */
uint64_t s3_crc_combine(s3_checksum_algo_t algo, uint64_t crc_a, uint64_t crc_b, uint64_t len_b) {
  uint64_t poly;
  int width;
  switch (algo) {
  case S3_CK_CRC32: poly = POLY_CRC32, width = 32; break;
  case S3_CK_CRC32C: poly = POLY_CRC32C, width = 32; break;
  case S3_CK_CRC64NVME: poly = POLY_CRC64NVME, width = 64; break;
  default: return 0;
  }
  uint64_t x = (uint64_t)1 << (width - 1); /* x^0 */
  uint64_t sq = (uint64_t)1 << (width - 9); /* x^8: one byte */
  for (; len_b; len_b >>= 1) {
    if (len_b & 1) x = crc_multmodp(sq, x, poly, width);
    sq = crc_multmodp(sq, sq, poly, width);
  }
  return crc_multmodp(x, crc_a, poly, width) ^ crc_b;
}

static const struct {
  s3_checksum_algo_t algo;
  const char *name, *header;
  size_t len;
} algos[] = {
    {S3_CK_CRC32, "CRC32", "x-amz-checksum-crc32", 4},
    {S3_CK_CRC32C, "CRC32C", "x-amz-checksum-crc32c", 4},
    {S3_CK_CRC64NVME, "CRC64NVME", "x-amz-checksum-crc64nvme", 8},
    {S3_CK_SHA1, "SHA1", "x-amz-checksum-sha1", 20},
    {S3_CK_SHA256, "SHA256", "x-amz-checksum-sha256", 32},
};

s3_checksum_algo_t s3_checksum_algo_parse(const char *name) {
  if (!name) return S3_CK_NONE;
  if (strncasecmp(name, "x-amz-checksum-", 15) == 0) name += 15;
  for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
    if (strcasecmp(name, algos[i].name) == 0) return algos[i].algo;
  return S3_CK_NONE;
}

const char *s3_checksum_algo_name(s3_checksum_algo_t algo) {
  for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
    if (algos[i].algo == algo) return algos[i].name;
  return algo == S3_CK_MD5 ? "MD5" : NULL;
}

const char *s3_checksum_header(s3_checksum_algo_t algo) {
  for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
    if (algos[i].algo == algo) return algos[i].header;
  return NULL;
}

size_t s3_checksum_digest_len(s3_checksum_algo_t algo) {
  for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
    if (algos[i].algo == algo) return algos[i].len;
  return algo == S3_CK_MD5 ? 16 : 0;
}

static const EVP_MD *checksum_md(s3_checksum_algo_t algo) {
  switch (algo) {
  case S3_CK_SHA1: return EVP_sha1();
  case S3_CK_SHA256: return EVP_sha256();
  case S3_CK_MD5: return EVP_md5();
  default: return NULL;
  }
}

int s3_checksum_init(s3_checksum_t *ck, s3_checksum_algo_t algo) {
  ck->algo = algo;
  ck->crc = 0;
  ck->md = NULL;
  if (algo == S3_CK_NONE || s3_checksum_digest_len(algo) == 0) return -1;
  const EVP_MD *md = checksum_md(algo);
  if (!md) return 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL)) {
    EVP_MD_CTX_free(ctx);
    return -1;
  }
  ck->md = ctx;
  return 0;
}

void s3_checksum_update(s3_checksum_t *ck, const void *data, size_t len) {
  switch (ck->algo) {
  case S3_CK_CRC32: ck->crc = s3_crc32((uint32_t)ck->crc, data, len); break;
  case S3_CK_CRC32C: ck->crc = s3_crc32c((uint32_t)ck->crc, data, len); break;
  case S3_CK_CRC64NVME: ck->crc = s3_crc64nvme(ck->crc, data, len); break;
  default:
    if (ck->md) EVP_DigestUpdate(ck->md, data, len);
    break;
  }
}

size_t s3_checksum_final_raw(s3_checksum_t *ck, uint8_t out[S3_CHECKSUM_RAW_MAX]) {
  size_t n = s3_checksum_digest_len(ck->algo);
  if (ck->md) {
    unsigned int outl = 0;
    if (!EVP_DigestFinal_ex(ck->md, out, &outl)) outl = 0;
    s3_checksum_free(ck);
    return outl;
  }
  /* S3 sends CRCs big-endian, whatever the width. */
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(ck->crc >> (8 * (n - 1 - i)));
  return n;
}

size_t s3_checksum_final(s3_checksum_t *ck, char out[S3_CHECKSUM_B64_MAX]) {
  uint8_t raw[S3_CHECKSUM_RAW_MAX];
  size_t n = s3_checksum_final_raw(ck, raw);
  if (n == 0) {
    out[0] = '\0';
    return 0;
  }
  return s3_base64_encode(raw, n, out);
}

void s3_checksum_free(s3_checksum_t *ck) {
  EVP_MD_CTX_free(ck->md);
  ck->md = NULL;
}

int s3_checksum_valid(s3_checksum_algo_t algo, const char *b64) {
  uint8_t raw[S3_CHECKSUM_RAW_MAX];
  size_t want = s3_checksum_digest_len(algo);
  if (!b64 || want == 0) return 0;
  return s3_base64_decode(b64, strlen(b64), raw, sizeof raw) == (int)want;
}

void s3_md5(const void *data, size_t len, uint8_t raw[16], char hex[33], char b64[25]) {
  uint8_t d[16];
  unsigned int outl = 0;
  EVP_Digest(data, len, d, &outl, EVP_md5(), NULL);
  if (raw) memcpy(raw, d, 16);
  if (hex) s3_hex(d, 16, hex);
  if (b64) s3_base64_encode(d, 16, b64);
}

int s3_content_md5_check(const char *header, const uint8_t md5[16]) {
  uint8_t got[18]; /* room for one stray byte, so a longer value is a length error */
  if (!header) return -1;
  if (s3_base64_decode(header, strlen(header), got, sizeof got) != 16) return -1;
  return CRYPTO_memcmp(got, md5, 16) == 0;
}

void s3_sha256_hex(const void *data, size_t len, char hex[65]) {
  uint8_t d[32];
  unsigned int outl = 0;
  EVP_Digest(data, len, d, &outl, EVP_sha256(), NULL);
  s3_hex(d, 32, hex);
}

void s3_hex(const uint8_t *in, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * len] = '\0';
}

size_t s3_base64_encode(const void *in, size_t len, char *out) {
  return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int s3_base64_decode(const char *in, size_t inlen, uint8_t *out, size_t cap) {
  /* EVP_DecodeBlock counts padding as data, skips surrounding blanks and wants whole quads:
   * check the shape here so only plain padded text gets through, then decode quad by quad. */
  if (inlen == 0 || inlen % 4 != 0) return -1;
  size_t pad = in[inlen - 1] == '=' ? (in[inlen - 2] == '=' ? 2 : 1) : 0;
  for (size_t i = 0; i < inlen - pad; i++) {
    char c = in[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '+' || c == '/'))
      return -1;
  }
  size_t n = inlen / 4 * 3 - pad;
  if (n > cap || n > 0x7fffffff) return -1;
  for (size_t i = 0, o = 0; i < inlen; i += 4, o += 3) {
    uint8_t q[3];
    if (EVP_DecodeBlock(q, (const unsigned char *)in + i, 4) != 3) return -1;
    memcpy(out + o, q, n - o < 3 ? n - o : 3);
  }
  return (int)n;
}
