/* tls.c - TLS between nodes: a cluster CA and node certificates made with OpenSSL 3 (ECDSA
 * P-256), the checks of a node's tls.* files, and the NNG (mbedtls) configs built from them. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#define TLS_CA_DAYS 3650   /* a CA outlives many node certificates */
#define TLS_NODE_DAYS 825  /* the usual ceiling for server certificates */
#define TLS_MAX_DAYS 36500
#define TLS_MAX_FILE (1 << 20) /* PEM files are a few KiB; anything huge is not ours */
#define TLS_BACKDATE_S 3600    /* nodes whose clocks lag a little still accept a new cert */

/* Writes the message and returns `code`, so a check reads `return tls_fail(TLS_EINVAL, ...)`. */
static int tls_fail(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int tls_fail(int code, char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* OpenSSL's reason for the last failure (and an empty queue afterwards). */
static const char *tls_ssl_reason(char *buf, size_t len) {
  unsigned long e = ERR_peek_last_error();
  if (e) ERR_error_string_n(e, buf, len);
  else snprintf(buf, len, "unknown OpenSSL error");
  ERR_clear_error();
  return buf;
}

/* ---- argument checks ---- */

static int tls_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 63) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '.' || *s == '_' || *s == '-'))
      return 0;
  return 1;
}

static int tls_ipv4_ok(const char *s) {
  struct in_addr a;
  return inet_pton(AF_INET, s, &a) == 1;
}

/* A host name: dot-separated labels of letters, digits and '-', or a leading "*." wildcard. */
static int tls_dns_ok(const char *s) {
  size_t n = strlen(s), label = 0;
  if (n == 0 || n > 253) return 0;
  if (strncmp(s, "*.", 2) == 0) s += 2;
  for (; *s; s++) {
    if (*s == '.') {
      if (label == 0) return 0;
      label = 0;
    } else if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
               *s == '-') {
      if (++label > 63) return 0;
    } else {
      return 0;
    }
  }
  return label > 0;
}

/* ---- files ---- */

static int tls_path(char *out, size_t outlen, const char *dir, const char *name, const char *ext) {
  int n = snprintf(out, outlen, "%s/%s%s", dir, name, ext);
  return n > 0 && (size_t)n < outlen ? 0 : -1;
}

static int tls_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* The whole file, NUL-terminated; NULL with the reason in why. */
static char *tls_read_file(const char *path, char *why, size_t whylen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    tls_fail(0, why, whylen, "cannot read %s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(TLS_MAX_FILE + 1);
  size_t n = buf ? fread(buf, 1, TLS_MAX_FILE + 1, f) : 0;
  int bad = !buf || ferror(f);
  fclose(f);
  if (bad || n > TLS_MAX_FILE) {
    tls_fail(0, why, whylen, "cannot read %s: %s", path, bad ? "read error" : "file too large");
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  return buf;
}

/* Written beside the target and renamed over it, so a crash never leaves half a key behind and
 * the mode is right from the first byte (an existing file's looser mode is not inherited). */
static int tls_write_file(const char *path, const char *data, size_t len, mode_t mode, char *err,
                          size_t errlen) {
  char tmp[TLS_PATH_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return tls_fail(TLS_EIO, err, errlen, "cannot write %s: %s", tmp, strerror(errno));
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  int ok = off == len && fsync(fd) == 0;
  int saved = errno;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    tls_fail(0, err, errlen, "cannot write %s: %s", path, strerror(ok ? errno : saved));
    unlink(tmp);
    return TLS_EIO;
  }
  return TLS_OK;
}

static int tls_make_dir(const char *dir, char *err, size_t errlen) {
  if (mkdir(dir, 0700) == 0 || errno == EEXIST) return TLS_OK;
  return tls_fail(TLS_EIO, err, errlen, "cannot create directory %s: %s", dir, strerror(errno));
}

/* ---- OpenSSL: keys, certificates, PEM ---- */

/* ECDSA P-256: small, fast, and accepted by the mbedtls 2.28 engine inside NNG. */
static EVP_PKEY *tls_keygen(void) { return EVP_EC_gen("P-256"); }

typedef struct tls_pem_s {
  char *data;
  size_t len;
} tls_pem_t;

/* The PEM text of a certificate, or (x == NULL) of a private key: PKCS#8, unencrypted, since
 * the key file's mode is its protection. Keys pass through secure memory, wiped when freed. */
static int tls_pem(X509 *x, EVP_PKEY *k, tls_pem_t *out) {
  BIO *b = BIO_new(x ? BIO_s_mem() : BIO_s_secmem());
  char *p;
  int ok = b && (x ? PEM_write_bio_X509(b, x)
                   : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL));
  long n = ok ? BIO_get_mem_data(b, &p) : 0;
  if (ok && n > 0 && (out->data = malloc((size_t)n))) {
    memcpy(out->data, p, (size_t)n);
    out->len = (size_t)n;
  } else {
    ok = 0;
  }
  BIO_free(b);
  return ok;
}

static void tls_pem_free(tls_pem_t *p) {
  if (p->data) OPENSSL_cleanse(p->data, p->len);
  free(p->data);
  p->data = NULL;
}

static int tls_add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  int ok = e && X509_add_ext(cert, e, -1);
  X509_EXTENSION_free(e);
  return ok;
}

/* 127 random bits: unique serials without a serial file to keep in sync. */
static int tls_set_serial(X509 *x) {
  unsigned char raw[16];
  if (RAND_bytes(raw, sizeof raw) != 1) return 0;
  raw[0] &= 0x7f;
  BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
  int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
  BN_free(bn);
  return ok;
}

/* One X.509v3 extension in OpenSSL's config syntax, e.g. {NID_key_usage, "critical,..."}. */
typedef struct tls_ext_s {
  int nid;
  const char *value;
} tls_ext_t;

/* A certificate for `key` named O=gureum, CN=`cn`, signed by issuer/ikey (self-signed when
 * issuer is NULL); `exts` ends with nid 0. */
static X509 *tls_cert_make(EVP_PKEY *key, const char *cn, int days, X509 *issuer, EVP_PKEY *ikey,
                           const tls_ext_t *exts) {
  X509 *x = X509_new();
  X509_NAME *name = X509_NAME_new();
  int ok = x && name && X509_set_version(x, X509_VERSION_3) && tls_set_serial(x) &&
           X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"gureum",
                                      -1, -1, 0) &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                      -1, 0) &&
           X509_set_subject_name(x, name) &&
           X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) &&
           X509_gmtime_adj(X509_getm_notBefore(x), -TLS_BACKDATE_S) &&
           X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) && X509_set_pubkey(x, key);
  for (const tls_ext_t *e = exts; ok && e->nid; e++)
    ok = tls_add_ext(x, issuer ? issuer : x, e->nid, e->value);
  ok = ok && X509_sign(x, issuer ? ikey : key, EVP_sha256()) > 0;
  X509_NAME_free(name);
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

/* Writes the certificate (0644) and key (0600) PEMs. */
static int tls_save_pair(X509 *x, EVP_PKEY *k, const char *crt_path, const char *key_path,
                         char *err, size_t errlen) {
  tls_pem_t c = {0}, p = {0};
  char why[256];
  int rv = TLS_EIO;
  if (!tls_pem(x, NULL, &c) || !tls_pem(NULL, k, &p))
    tls_fail(0, err, errlen, "cannot encode PEM: %s", tls_ssl_reason(why, sizeof why));
  else if ((rv = tls_write_file(key_path, p.data, p.len, 0600, err, errlen)) == TLS_OK)
    rv = tls_write_file(crt_path, c.data, c.len, 0644, err, errlen);
  tls_pem_free(&c);
  tls_pem_free(&p);
  return rv;
}

static X509 *tls_parse_cert(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return x;
}

static EVP_PKEY *tls_parse_key(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return k;
}

/* ---- tls init ---- */

int tls_make_ca(const char *dir, int days, int force, tls_paths_t *out, char *err, size_t errlen) {
  if (!dir || !*dir)
    return tls_fail(TLS_EINVAL, err, errlen, "--dir: empty directory name");
  if (days < 1 || days > TLS_MAX_DAYS)
    return tls_fail(TLS_EINVAL, err, errlen, "--days %d: want 1..%d", days, TLS_MAX_DAYS);
  memset(out, 0, sizeof *out);
  if (tls_path(out->cert, sizeof out->cert, dir, "ca", ".crt") != 0 ||
      tls_path(out->key, sizeof out->key, dir, "ca", ".key") != 0)
    return tls_fail(TLS_EINVAL, err, errlen, "--dir: path too long");
  memcpy(out->ca, out->cert, sizeof out->ca);
  if (!force && (tls_exists(out->cert) || tls_exists(out->key))) {
    return tls_fail(TLS_EEXIST, err, errlen,
                    "a CA already exists in %s; keep it, or pass --force to replace it (every "
                    "node certificate must then be issued again)",
                    dir);
  }
  int rv = tls_make_dir(dir, err, errlen);
  if (rv != TLS_OK) return rv;

  /* A random suffix tells two clusters' CAs apart in every error message. */
  unsigned char raw[4];
  char cn[64], why[256];
  if (RAND_bytes(raw, sizeof raw) != 1) memset(raw, 0, sizeof raw);
  snprintf(cn, sizeof cn, "gureum cluster CA %02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3]);
  static const tls_ext_t exts[] = {
      {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
      {NID_key_usage, "critical,keyCertSign,cRLSign"},
      {NID_subject_key_identifier, "hash"},
      {0, NULL},
  };
  EVP_PKEY *k = tls_keygen();
  X509 *x = k ? tls_cert_make(k, cn, days, NULL, NULL, exts) : NULL;
  if (!x) {
    tls_fail(0, err, errlen, "cannot make the CA certificate: %s",
             tls_ssl_reason(why, sizeof why));
    rv = TLS_EIO;
  } else {
    rv = tls_save_pair(x, k, out->cert, out->key, err, errlen);
  }
  X509_free(x);
  EVP_PKEY_free(k);
  return rv;
}

/* ---- tls issue ---- */

typedef struct tls_ca_s {
  X509 *cert;
  EVP_PKEY *key;
} tls_ca_t;

static void tls_ca_free(tls_ca_t *ca) {
  X509_free(ca->cert);
  EVP_PKEY_free(ca->key);
}

static int tls_ca_load(const tls_paths_t *p, const char *dir, tls_ca_t *ca, char *err,
                       size_t errlen) {
  char why[256];
  memset(ca, 0, sizeof *ca);
  char *crt = tls_read_file(p->ca, why, sizeof why);
  char *key = crt ? tls_read_file(p->key, why, sizeof why) : NULL;
  if (!crt || !key) {
    free(crt);
    return tls_fail(TLS_ENOCA, err, errlen,
                    "no cluster CA in %s (%s); create one with `gureum tls init --dir %s`", dir,
                    why, dir);
  }
  ca->cert = tls_parse_cert(crt);
  ca->key = tls_parse_key(key);
  OPENSSL_cleanse(key, strlen(key));
  free(key);
  free(crt);
  const char *bad = NULL;
  if (!ca->cert) bad = "ca.crt is not a PEM certificate";
  else if (!ca->key) bad = "ca.key is not a PEM private key";
  else if (X509_check_ca(ca->cert) != 1) bad = "ca.crt is not a CA certificate";
  else if (X509_check_private_key(ca->cert, ca->key) != 1) bad = "ca.key does not match ca.crt";
  if (!bad) return TLS_OK;
  ERR_clear_error();
  tls_ca_free(ca);
  return tls_fail(TLS_ENOCA, err, errlen,
                  "unusable CA in %s: %s; recreate it with `gureum tls init --dir %s --force`", dir,
                  bad, dir);
}

static int tls_issue_check(const tls_issue_opts_t *o, char *err, size_t errlen) {
  const int bad = TLS_EINVAL;
  if (!o->dir || !*o->dir) return tls_fail(bad, err, errlen, "--dir: empty directory name");
  if (!o->name || !tls_name_ok(o->name))
    return tls_fail(bad, err, errlen, "NAME '%s': want 1..63 of [A-Za-z0-9._-]",
                    o->name ? o->name : "");
  if (strcmp(o->name, "ca") == 0)
    return tls_fail(bad, err, errlen, "NAME 'ca' is taken by the CA's own files; pick another");
  if (o->days < 1 || o->days > TLS_MAX_DAYS)
    return tls_fail(bad, err, errlen, "--days %d: want 1..%d", o->days, TLS_MAX_DAYS);
  if (o->nips + o->ndns == 0)
    return tls_fail(bad, err, errlen,
                    "need at least one --ip (the address peers reach this node at) or --dns");
  for (int i = 0; i < o->nips; i++)
    if (!tls_ipv4_ok(o->ips[i]))
      return tls_fail(bad, err, errlen, "--ip '%s': want a numeric IPv4 address", o->ips[i]);
  for (int i = 0; i < o->ndns; i++)
    if (!tls_dns_ok(o->dns[i]))
      return tls_fail(bad, err, errlen, "--dns '%s': want a host name", o->dns[i]);
  return TLS_OK;
}

/* "IP:a,DNS:a,...,DNS:h": every address also as a DNS name, because NNG's mbedtls 2.28 compares
 * the server name it dials only with dNSName entries; standard verifiers use the IP entry. */
static int tls_san_list(const tls_issue_opts_t *o, char *out, size_t outlen) {
  size_t n = 0;
  out[0] = '\0';
  for (int i = 0; i < o->nips; i++)
    n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%sIP:%s,DNS:%s", n ? "," : "",
                          o->ips[i], o->ips[i]);
  for (int i = 0; i < o->ndns; i++)
    n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%sDNS:%s", n ? "," : "",
                          o->dns[i]);
  return n < outlen ? 0 : -1;
}

int tls_issue(const tls_issue_opts_t *o, tls_paths_t *out, char *err, size_t errlen) {
  int rv = tls_issue_check(o, err, errlen);
  if (rv != TLS_OK) return rv;
  memset(out, 0, sizeof *out);
  char sans[TLS_MAX_SANS * 2 * 300];
  if (tls_path(out->cert, sizeof out->cert, o->dir, o->name, ".crt") != 0 ||
      tls_path(out->key, sizeof out->key, o->dir, o->name, ".key") != 0 ||
      tls_path(out->ca, sizeof out->ca, o->dir, "ca", ".crt") != 0 ||
      tls_san_list(o, sans, sizeof sans) != 0)
    return tls_fail(TLS_EINVAL, err, errlen, "--dir or SANs: too long");
  if (!o->force && (tls_exists(out->cert) || tls_exists(out->key))) {
    return tls_fail(TLS_EEXIST, err, errlen, "%s already exists; pass --force to replace it",
                    out->cert);
  }
  tls_paths_t cap = *out;
  if (tls_path(cap.key, sizeof cap.key, o->dir, "ca", ".key") != 0) return TLS_EINVAL;
  tls_ca_t ca;
  if ((rv = tls_ca_load(&cap, o->dir, &ca, err, errlen)) != TLS_OK) return rv;

  const tls_ext_t exts[] = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature"},
      {NID_ext_key_usage, "serverAuth,clientAuth"},
      {NID_subject_alt_name, sans},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
      {0, NULL},
  };
  char why[256];
  EVP_PKEY *k = tls_keygen();
  X509 *x = k ? tls_cert_make(k, o->name, o->days, ca.cert, ca.key, exts) : NULL;
  if (!x) {
    tls_fail(0, err, errlen, "cannot make the certificate: %s", tls_ssl_reason(why, sizeof why));
    rv = TLS_EIO;
  } else {
    rv = tls_save_pair(x, k, out->cert, out->key, err, errlen);
  }
  X509_free(x);
  EVP_PKEY_free(k);
  tls_ca_free(&ca);
  return rv;
}

/* ---- tls ensure ---- */

int tls_ensure_ca(const char *dir, const tls_issue_opts_t *nodes, int n, int *made,
                  tls_paths_t *out, char *err, size_t errlen) {
  *made = 0;
  if (!dir || !*dir) return tls_fail(TLS_EINVAL, err, errlen, "--dir: empty directory name");
  memset(out, 0, sizeof *out);
  if (tls_path(out->cert, sizeof out->cert, dir, "ca", ".crt") != 0 ||
      tls_path(out->key, sizeof out->key, dir, "ca", ".key") != 0)
    return tls_fail(TLS_EINVAL, err, errlen, "--dir: path too long");
  memcpy(out->ca, out->cert, sizeof out->ca);
  int have_crt = tls_exists(out->cert), have_key = tls_exists(out->key);
  if (have_crt && have_key) {
    tls_ca_t ca;
    int rv = tls_ca_load(out, dir, &ca, err, errlen);
    if (rv == TLS_OK) tls_ca_free(&ca);
    return rv;
  }
  if (have_crt || have_key) {
    /* Half a CA (a run cut short between the two files) is only made anew when nothing
     * issued from it is here: otherwise those certificates would silently stop verifying. */
    for (int i = 0; i < n; i++) {
      char crt[TLS_PATH_MAX], key[TLS_PATH_MAX];
      if (tls_path(crt, sizeof crt, dir, nodes[i].name, ".crt") == 0 &&
          tls_path(key, sizeof key, dir, nodes[i].name, ".key") == 0 &&
          (tls_exists(crt) || tls_exists(key)))
        return tls_fail(TLS_ENOCA, err, errlen,
                        "%s has %s but not %s, and certificates issued from it (%s); restore "
                        "the missing file, or make a new CA with `gureum tls init --dir %s "
                        "--force` and issue every node again",
                        dir, have_crt ? "ca.crt" : "ca.key", have_crt ? "ca.key" : "ca.crt",
                        nodes[i].name, dir);
    }
  }
  int rv = tls_make_ca(dir, TLS_CA_DAYS, 1, out, err, errlen);
  *made = rv == TLS_OK;
  return rv;
}

int tls_ensure_node(const tls_issue_opts_t *o, int *made, tls_paths_t *out, char *err,
                    size_t errlen) {
  *made = 0;
  int rv = tls_issue_check(o, err, errlen);
  if (rv != TLS_OK) return rv;
  if (o->ndns)
    return tls_fail(TLS_EINVAL, err, errlen, "%s: DNS names are not checked by ensure; use issue",
                    o->name);
  memset(out, 0, sizeof *out);
  if (tls_path(out->cert, sizeof out->cert, o->dir, o->name, ".crt") != 0 ||
      tls_path(out->key, sizeof out->key, o->dir, o->name, ".key") != 0 ||
      tls_path(out->ca, sizeof out->ca, o->dir, "ca", ".crt") != 0)
    return tls_fail(TLS_EINVAL, err, errlen, "--dir: path too long");
  if (tls_exists(out->cert) && tls_exists(out->key)) {
    char why[700];
    for (int i = 0; i < o->nips; i++)
      if (tls_check_files(out->ca, out->cert, out->key, o->ips[i], why, sizeof why) != 0)
        return tls_fail(TLS_EEXIST, err, errlen,
                        "existing certificate of %s unusable (%s); to replace it: `gureum tls "
                        "issue %s --dir %s --ip %s --force`",
                        o->name, why, o->name, o->dir, o->ips[i]);
    return TLS_OK;
  }
  /* None, or half a pair (the key is written first): a new pair. */
  tls_issue_opts_t f = *o;
  f.force = 1;
  rv = tls_issue(&f, out, err, errlen);
  *made = rv == TLS_OK;
  return rv;
}

/* ---- checks of a node's files ---- */

/* Does a dNSName SAN equal `ip`? That is the entry NNG's mbedtls matches the dialled IP with. */
static int tls_cert_names_ip(X509 *x, const char *ip) {
  GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  int found = 0;
  for (int i = 0; names && !found && i < sk_GENERAL_NAME_num(names); i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type != GEN_DNS) continue;
    const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
    int len = ASN1_STRING_length(g->d.dNSName);
    found = (size_t)len == strlen(ip) && strncasecmp((const char *)s, ip, (size_t)len) == 0;
  }
  GENERAL_NAMES_free(names);
  return found;
}

/* Chain, validity dates and purposes, as the peers' TLS stack will judge them. */
static int tls_verify_chain(X509 *ca, X509 *cert, char *why, size_t whylen) {
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  int ok = store && ctx && X509_STORE_add_cert(store, ca) &&
           X509_STORE_CTX_init(ctx, store, cert, NULL);
  if (ok) X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  int verified = ok && X509_verify_cert(ctx) == 1;
  if (ok && !verified)
    tls_fail(0, why, whylen, "does not verify against tls.ca: %s",
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
  else if (!ok)
    tls_fail(0, why, whylen, "cannot verify: out of memory");
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  ERR_clear_error();
  if (verified && X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0) != 1) {
    tls_fail(0, why, whylen, "may not be used as a TLS client (extendedKeyUsage lacks "
                             "clientAuth); issue it with `gureum tls issue`");
    return 0;
  }
  return verified;
}

static void tls_warn_key_mode(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && (st.st_mode & 077))
    log_warn("tls", "key_readable_by_others", "file=%s mode=%03o hint=%s", path,
             (unsigned)(st.st_mode & 0777), "chmod_600");
}

/* Reads one file for tls_check_files; on failure *fault says which. */
static char *tls_check_read(const char *path, int which, int *fault, char *why, size_t whylen) {
  char *s = *fault ? NULL : tls_read_file(path, why, whylen);
  if (!s && !*fault) *fault = which;
  return s;
}

static int tls_check_parsed(X509 *ca, X509 *cert, EVP_PKEY *key, const char *ip, char *why,
                            size_t whylen) {
  if (!ca) return tls_fail(TLS_FILE_CA, why, whylen, "not a PEM certificate");
  if (X509_check_ca(ca) != 1) return tls_fail(TLS_FILE_CA, why, whylen, "not a CA certificate");
  if (!cert) return tls_fail(TLS_FILE_CERT, why, whylen, "not a PEM certificate");
  if (!key)
    return tls_fail(TLS_FILE_KEY, why, whylen,
                    "not a PEM private key (encrypted keys are not supported)");
  if (X509_check_private_key(cert, key) != 1)
    return tls_fail(TLS_FILE_KEY, why, whylen, "does not belong to the certificate in tls.cert");
  if (!tls_verify_chain(ca, cert, why, whylen)) return TLS_FILE_CERT;
  if (ip && *ip && strcmp(ip, "0.0.0.0") != 0 && !tls_cert_names_ip(cert, ip))
    return tls_fail(TLS_FILE_CERT, why, whylen,
                    "does not name this node's address %s, which peers verify; issue one with "
                    "`gureum tls issue NAME --ip %s`",
                    ip, ip);
  return 0;
}

int tls_check_files(const char *ca, const char *cert, const char *key, const char *ip, char *why,
                    size_t whylen) {
  int fault = 0;
  char *ca_pem = tls_check_read(ca, TLS_FILE_CA, &fault, why, whylen);
  char *cert_pem = tls_check_read(cert, TLS_FILE_CERT, &fault, why, whylen);
  char *key_pem = tls_check_read(key, TLS_FILE_KEY, &fault, why, whylen);
  if (!fault) {
    X509 *x_ca = tls_parse_cert(ca_pem), *x_cert = tls_parse_cert(cert_pem);
    EVP_PKEY *k = tls_parse_key(key_pem);
    ERR_clear_error();
    char reason[400];
    fault = tls_check_parsed(x_ca, x_cert, k, ip, reason, sizeof reason);
    const char *paths[] = {NULL, ca, cert, key};
    if (fault) tls_fail(0, why, whylen, "%s: %s", paths[fault], reason);
    X509_free(x_ca);
    X509_free(x_cert);
    EVP_PKEY_free(k);
    if (!fault) tls_warn_key_mode(key);
  }
  if (key_pem) OPENSSL_cleanse(key_pem, strlen(key_pem));
  free(ca_pem);
  free(cert_pem);
  free(key_pem);
  return fault;
}

/* ---- credentials for NNG ---- */

struct tls_creds_s {
  atomic_int refs;
  char *ca, *cert, *key; /* PEM text */
};

tls_creds_t *tls_creds_load(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen) {
  tls_creds_t *c = calloc(1, sizeof *c);
  if (!c) {
    tls_fail(0, err, errlen, "out of memory");
    return NULL;
  }
  atomic_init(&c->refs, 1);
  if (!(c->ca = tls_read_file(ca, err, errlen)) || !(c->cert = tls_read_file(cert, err, errlen)) ||
      !(c->key = tls_read_file(key, err, errlen))) {
    tls_creds_release(c);
    return NULL;
  }
  return c;
}

tls_creds_t *tls_creds_hold(tls_creds_t *c) {
  if (c) atomic_fetch_add(&c->refs, 1);
  return c;
}

void tls_creds_release(tls_creds_t *c) {
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1) return;
  if (c->key) OPENSSL_cleanse(c->key, strlen(c->key));
  free(c->ca);
  free(c->cert);
  free(c->key);
  free(c);
}

int tls_nng_config(const tls_creds_t *c, int server, const char *server_name,
                   nng_tls_config **out) {
  nng_tls_config *cfg;
  int rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
  if (rv != 0) return rv;
  /* Both directions: a peer without a certificate from our CA never completes a handshake,
   * so its frames never reach the envelope check, let alone a handler. */
  if ((rv = nng_tls_config_ca_chain(cfg, c->ca, NULL)) != 0 ||
      (rv = nng_tls_config_own_cert(cfg, c->cert, c->key, NULL)) != 0 ||
      (rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
      (!server && server_name && (rv = nng_tls_config_server_name(cfg, server_name)) != 0)) {
    nng_tls_config_free(cfg);
    return rv;
  }
  *out = cfg;
  return 0;
}

/* ---- CLI ---- */

static const char tls_usage[] =
    "gureum tls init [--dir DIR] [--days N] [--force] [--json]\n"
    "       gureum tls issue NAME [--dir DIR] [--ip A.B.C.D ...] [--dns HOST ...] [--days N]\n"
    "                             [--force] [--json]\n"
    "       gureum tls ensure NAME=IP[,IP...] ... [--dir DIR] [--days N] [--json]";

static int tls_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int tls_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "gureum: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nusage: %s\n", tls_usage);
  va_end(ap);
  return CLI_USAGE;
}

static void tls_help(void) {
  printf("usage: %s\n\n"
         "Make the certificates that secure the cluster channel (RPC and Raft ports):\n"
         "  init   a cluster CA: DIR/ca.crt and DIR/ca.key (mode 0600; keep it off the nodes)\n"
         "  issue  a node certificate NAME.crt + NAME.key signed by DIR's CA; --ip is the address\n"
         "         peers reach the node at (its advertise address), repeatable, as is --dns\n"
         "  ensure the CA unless DIR has one, and NAME.crt + NAME.key for every NAME=IP that has\n"
         "         none; what exists is checked (signed by DIR's CA, naming IP) and kept, so it\n"
         "         can run on every start (containers, provisioning scripts)\n\n"
         "  --dir DIR   where the CA lives and files are written (default ./gureum-tls)\n"
         "  --days N    validity (default %d for the CA, %d for a node)\n"
         "  --force     replace existing files\n"
         "  --json      print the paths written as JSON\n\n"
         "Then set tls.ca, tls.cert and tls.key on every node (docs/configuration.md).\n",
         tls_usage, TLS_CA_DAYS, TLS_NODE_DAYS);
}

#define TLS_MAX_TARGETS 64 /* NAME=IP arguments of one `tls ensure` */

typedef struct tls_args_s {
  const char *dir, *days, *pos[1 + TLS_MAX_TARGETS];
  int npos, force, json;
  tls_issue_opts_t issue;
} tls_args_t;

/* A flag's value: "--dir=X" or "--dir X". NULL (after the usage message) if missing. */
static const char *tls_flag_value(int argc, char **argv, int *i, size_t namelen) {
  if (argv[*i][namelen] == '=') return argv[*i] + namelen + 1;
  if (*i + 1 < argc) return argv[++*i];
  tls_usage_error("%.*s needs a value", (int)namelen, argv[*i]);
  return NULL;
}

static int tls_flag_is(const char *arg, const char *name) {
  size_t n = strlen(name);
  return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* Returns 0, -1 after --help, or CLI_USAGE. */
static int tls_parse(int argc, char **argv, tls_args_t *a) {
  memset(a, 0, sizeof *a);
  a->dir = "./gureum-tls";
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *v;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return tls_help(), -1;
    if (!strcmp(arg, "--force")) a->force = 1;
    else if (!strcmp(arg, "--json")) a->json = 1;
    else if (tls_flag_is(arg, "--dir")) {
      if (!(a->dir = tls_flag_value(argc, argv, &i, 5))) return CLI_USAGE;
    } else if (tls_flag_is(arg, "--days")) {
      if (!(a->days = tls_flag_value(argc, argv, &i, 6))) return CLI_USAGE;
    } else if (tls_flag_is(arg, "--ip") || tls_flag_is(arg, "--dns")) {
      int ip = arg[2] == 'i';
      if (!(v = tls_flag_value(argc, argv, &i, ip ? 4 : 5))) return CLI_USAGE;
      int *n = ip ? &a->issue.nips : &a->issue.ndns;
      if (*n >= TLS_MAX_SANS)
        return tls_usage_error("at most %d of %s", TLS_MAX_SANS, ip ? "--ip" : "--dns");
      (ip ? a->issue.ips : a->issue.dns)[(*n)++] = v;
    } else if (arg[0] == '-' && arg[1]) {
      return tls_usage_error("unknown option '%s'", arg);
    } else if (a->npos < (int)(sizeof a->pos / sizeof a->pos[0])) {
      a->pos[a->npos++] = arg;
    } else {
      return tls_usage_error("unexpected argument '%s'", arg);
    }
  }
  return 0;
}

static int tls_parse_days(const char *s, int def, int *out) {
  if (!s) return *out = def, 0;
  char *end;
  long d = strtol(s, &end, 10);
  if (!*s || *end || d < 1 || d > TLS_MAX_DAYS) return -1;
  *out = (int)d;
  return 0;
}

/* Absolute paths, so the printed config works from any directory. */
static void tls_abs(char *path, size_t len) {
  char buf[PATH_MAX];
  if (realpath(path, buf) && strlen(buf) < len) memcpy(path, buf, strlen(buf) + 1);
}

static int tls_exit(int rv, const char *err) {
  fprintf(stderr, "gureum: %s\n", err);
  return rv == TLS_EINVAL ? CLI_USAGE : CLI_FAILED;
}

static void tls_print_json(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  puts(s ? s : "null");
  free(s);
  json_decref(j);
}

static int tls_cmd_init(const tls_args_t *a) {
  int days;
  char err[512];
  tls_paths_t p;
  if (a->npos != 1) return tls_usage_error("unexpected argument '%s'", a->pos[1]);
  if (tls_parse_days(a->days, TLS_CA_DAYS, &days) != 0)
    return tls_usage_error("--days '%s': want 1..%d", a->days, TLS_MAX_DAYS);
  int rv = tls_make_ca(a->dir, days, a->force, &p, err, sizeof err);
  if (rv != TLS_OK) return tls_exit(rv, err);
  tls_abs(p.cert, sizeof p.cert);
  tls_abs(p.key, sizeof p.key);
  if (a->json) {
    tls_print_json(json_pack("{s:s,s:s}", "ca_cert", p.cert, "ca_key", p.key));
  } else {
    printf("wrote %s\nwrote %s (mode 0600: whoever holds it can add nodes; keep it off the nodes)\n"
           "next: gureum tls issue NODE_NAME --dir %s --ip NODE_IP\n",
           p.cert, p.key, a->dir);
  }
  return CLI_OK;
}

static int tls_cmd_issue(tls_args_t *a) {
  char err[512];
  tls_paths_t p;
  if (a->npos > 2) return tls_usage_error("unexpected argument '%s'", a->pos[2]);
  if (a->npos != 2) return tls_usage_error("issue needs NAME");
  if (tls_parse_days(a->days, TLS_NODE_DAYS, &a->issue.days) != 0)
    return tls_usage_error("--days '%s': want 1..%d", a->days, TLS_MAX_DAYS);
  a->issue.dir = a->dir;
  a->issue.name = a->pos[1];
  a->issue.force = a->force;
  int rv = tls_issue(&a->issue, &p, err, sizeof err);
  if (rv == TLS_EINVAL) return tls_usage_error("%s", err);
  if (rv != TLS_OK) return tls_exit(rv, err);
  tls_abs(p.cert, sizeof p.cert);
  tls_abs(p.key, sizeof p.key);
  tls_abs(p.ca, sizeof p.ca);
  if (a->json) {
    tls_print_json(json_pack("{s:s,s:s,s:s}", "cert", p.cert, "key", p.key, "ca", p.ca));
  } else {
    printf("wrote %s\nwrote %s (mode 0600)\ncopy them and ca.crt to the node, and configure:\n"
           "tls:\n  ca: %s\n  cert: %s\n  key: %s\n",
           p.cert, p.key, p.ca, p.cert, p.key);
  }
  return CLI_OK;
}

/* "NAME=IP[,IP...]" into o (ips point into buf). */
static int tls_parse_target(const char *arg, char *buf, size_t buflen, tls_issue_opts_t *o) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg || !eq[1] || strlen(arg) >= buflen)
    return tls_usage_error("'%s': want NAME=IP[,IP...], e.g. node1=10.0.0.11", arg);
  memcpy(buf, arg, strlen(arg) + 1);
  buf[eq - arg] = '\0';
  o->name = buf;
  o->nips = 0;
  for (char *save = NULL, *ip = strtok_r(buf + (eq - arg) + 1, ",", &save); ip;
       ip = strtok_r(NULL, ",", &save)) {
    if (o->nips >= TLS_MAX_SANS)
      return tls_usage_error("'%s': at most %d addresses", arg, TLS_MAX_SANS);
    o->ips[o->nips++] = ip;
  }
  return 0;
}

static int tls_cmd_ensure(tls_args_t *a) {
  static char bufs[TLS_MAX_TARGETS][TLS_MAX_SANS * 16 + 80];
  static tls_issue_opts_t nodes[TLS_MAX_TARGETS];
  char err[1400];
  int n = a->npos - 1, days, made, rv;
  if (n < 1) return tls_usage_error("ensure needs at least one NAME=IP");
  if (a->force)
    return tls_usage_error("ensure keeps what exists; replace a file with issue --force");
  if (a->issue.nips || a->issue.ndns)
    return tls_usage_error("ensure takes the addresses as NAME=IP, not --ip/--dns");
  if (tls_parse_days(a->days, TLS_NODE_DAYS, &days) != 0)
    return tls_usage_error("--days '%s': want 1..%d", a->days, TLS_MAX_DAYS);
  for (int i = 0; i < n; i++) {
    memset(&nodes[i], 0, sizeof nodes[i]);
    if ((rv = tls_parse_target(a->pos[1 + i], bufs[i], sizeof bufs[i], &nodes[i])) != 0) return rv;
    nodes[i].dir = a->dir;
    nodes[i].days = days;
    if ((rv = tls_issue_check(&nodes[i], err, sizeof err)) != TLS_OK)
      return tls_usage_error("%s: %s", a->pos[1 + i], err);
    if (strcmp(nodes[i].name, "ca") == 0)
      return tls_usage_error("NAME 'ca' is taken by the CA's own files; pick another");
    for (int j = 0; j < i; j++)
      if (strcmp(nodes[j].name, nodes[i].name) == 0)
        return tls_usage_error("%s is named twice", nodes[i].name);
  }
  tls_paths_t p;
  if ((rv = tls_ensure_ca(a->dir, nodes, n, &made, &p, err, sizeof err)) != TLS_OK)
    return tls_exit(rv, err);
  tls_abs(p.cert, sizeof p.cert);
  json_t *out = json_pack("{s:s,s:b,s:[]}", "ca", p.cert, "ca_made", made, "nodes");
  if (!a->json) printf("%s %s\n", made ? "wrote" : "kept ", p.cert);
  for (int i = 0; i < n; i++) {
    if ((rv = tls_ensure_node(&nodes[i], &made, &p, err, sizeof err)) != TLS_OK) {
      json_decref(out);
      return tls_exit(rv, err);
    }
    tls_abs(p.cert, sizeof p.cert);
    tls_abs(p.key, sizeof p.key);
    json_array_append_new(json_object_get(out, "nodes"),
                          json_pack("{s:s,s:s,s:s,s:b}", "name", nodes[i].name, "cert", p.cert,
                                    "key", p.key, "made", made));
    if (!a->json) printf("%s %s, %s\n", made ? "wrote" : "kept ", p.cert, p.key);
  }
  if (a->json) tls_print_json(out);
  else json_decref(out);
  return CLI_OK;
}

int tls_cli(int argc, char **argv) {
  tls_args_t a;
  int rv = tls_parse(argc, argv, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  if (a.npos == 0) return tls_usage_error("expected 'init', 'issue NAME' or 'ensure NAME=IP ...'");
  if (!strcmp(a.pos[0], "init")) return tls_cmd_init(&a);
  if (!strcmp(a.pos[0], "issue")) return tls_cmd_issue(&a);
  if (!strcmp(a.pos[0], "ensure")) return tls_cmd_ensure(&a);
  return tls_usage_error("unknown subcommand '%s'", a.pos[0]);
}
