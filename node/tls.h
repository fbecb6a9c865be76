/* tls.h - TLS between nodes: the cluster CA and node certificates (`gureum tls init|issue`),
 * the start-up checks of a node's tls.* files, and the NNG TLS configurations built from them. */
#ifndef GUREUM_TLS_H
#define GUREUM_TLS_H

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <stddef.h>

#define TLS_MAX_SANS 16
#define TLS_PATH_MAX 1024

/* Results of the generation functions (0 = success). */
enum {
  TLS_OK = 0,
  TLS_EINVAL = -1, /* a bad argument: the message names it */
  TLS_EEXIST = -2, /* a file would be overwritten and force was not given */
  TLS_ENOCA = -3,  /* no usable CA in the directory */
  TLS_EIO = -4,    /* a file could not be read or written, or a crypto call failed */
};

/* Which of the three configured files a check found at fault. */
enum { TLS_FILE_CA = 1, TLS_FILE_CERT = 2, TLS_FILE_KEY = 3 };

typedef struct tls_paths_s {
  char cert[TLS_PATH_MAX]; /* init: the CA certificate; issue: the node certificate */
  char key[TLS_PATH_MAX];  /* init: the CA key; issue: the node key */
  char ca[TLS_PATH_MAX];   /* the CA certificate in both cases */
} tls_paths_t;

typedef struct tls_issue_opts_s {
  const char *dir;  /* holds ca.crt + ca.key; NAME.crt + NAME.key are written there */
  const char *name; /* the certificate's CN and file names: [A-Za-z0-9._-], 1..63 chars */
  const char *ips[TLS_MAX_SANS]; /* IPv4 SANs: the addresses peers dial the node at */
  int nips;
  const char *dns[TLS_MAX_SANS]; /* DNS SANs */
  int ndns;
  int days;  /* validity */
  int force; /* replace existing NAME.crt / NAME.key */
} tls_issue_opts_t;

/* Create DIR (mode 0700) if needed and write a new cluster CA: ca.crt and ca.key (0600),
 * ECDSA P-256, valid `days`. Refuses to replace an existing CA unless `force`. */
int tls_make_ca(const char *dir, int days, int force, tls_paths_t *out, char *err, size_t errlen);

/* Write NAME.crt + NAME.key (0600) signed by DIR's CA: serverAuth+clientAuth, one IP SAN and
 * one DNS SAN of the same text per address (see docs/architecture.md, "TLS between nodes"). */
int tls_issue(const tls_issue_opts_t *o, tls_paths_t *out, char *err, size_t errlen);

/* `tls ensure`, the CA half: keep DIR's CA (checked: a CA, its key matching) or make one when
 * there is none, or when only half of one is there and none of `nodes` (n) has files from it.
 * *made says whether one was made; out as for tls_make_ca. */
int tls_ensure_ca(const char *dir, const tls_issue_opts_t *nodes, int n, int *made,
                  tls_paths_t *out, char *err, size_t errlen);

/* `tls ensure`, one node: keep NAME.crt + NAME.key when both exist and they pass
 * tls_check_files against DIR's ca.crt for every address in o->ips (else TLS_EEXIST, the message
 * saying how to replace them); otherwise issue a new pair (*made = 1). o->ndns must be 0. */
int tls_ensure_node(const tls_issue_opts_t *o, int *made, tls_paths_t *out, char *err,
                    size_t errlen);

/* Check a node's files: each readable and PEM, the key belongs to the certificate, the
 * certificate is valid now, chains to the CA and may serve as client and server, and (when
 * `ip` is not NULL, "" or "0.0.0.0") names `ip` the way peers verify it. Returns 0, or a
 * TLS_FILE_* naming the file at fault with the reason in `why`. */
int tls_check_files(const char *ca, const char *cert, const char *key, const char *ip, char *why,
                    size_t whylen);

/* A node's CA, certificate and key as PEM text, read once at start and shared by reference
 * (each rpc_t holds one). */
typedef struct tls_creds_s tls_creds_t;

/* Returns NULL with the reason in err if a file cannot be read (run tls_check_files first). */
tls_creds_t *tls_creds_load(const char *ca, const char *cert, const char *key, char *err,
                            size_t errlen);
tls_creds_t *tls_creds_hold(tls_creds_t *c);
void tls_creds_release(tls_creds_t *c);

/* An NNG TLS configuration requiring a certificate from the cluster CA of the peer, with ours
 * presented: for a listener (server = 1) or for a dialer that checks the server's certificate
 * names `server_name` (NULL = chain only). The caller owns it (nng_tls_config_free); NNG
 * dialers and listeners take their own hold. Returns 0 or an NNG error. */
int tls_nng_config(const tls_creds_t *c, int server, const char *server_name,
                   nng_tls_config **out);

/* `gureum tls init|issue|ensure ...`: returns a CLI exit code (0 ok, 2 bad usage, 3 failed). */
int tls_cli(int argc, char **argv);

#endif
