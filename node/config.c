/* config.c - node configuration: one table of keys drives the defaults, the YAML loader, the
 * GUREUM_* environment, command-line flags and `gureum config defaults`. */
#include "config.h"

#include "log.h"
#include "tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

const char *const config_role_names[] = {"storage", "edge", "balancer", "dns", "pipeline", NULL};

typedef enum { T_STR, T_INT, T_BOOL, T_SEEDS, T_ROLES } key_type_t;

/* Extra check on a string value once its length is known to be fine; writes the reason. */
typedef int (*check_fn)(const char *v, char *why, size_t whylen);

typedef struct {
  const char *key;    /* dotted key, as nested in YAML ("rpc.timeout_ms") */
  key_type_t type;
  size_t off;         /* offsetof(config_t, field) */
  size_t size;        /* string: bytes in the field; list: bytes in one item */
  size_t count_off;   /* list: offsetof the item count */
  long long min, max; /* int: value range; string: length range; list: item count range */
  const char *def;    /* default as text, parsed like any other value; NULL = the host name */
  check_fn check;     /* string only; NULL = any text */
  const char *desc;
} key_desc_t;

static int check_name(const char *v, char *why, size_t whylen);
static int check_ipv4(const char *v, char *why, size_t whylen);
static int check_ipv4_or_empty(const char *v, char *why, size_t whylen);
static int check_log_level(const char *v, char *why, size_t whylen);

#define FIELD(f) offsetof(config_t, f)
#define FSIZE(f) sizeof(((config_t *)0)->f)
/* String length limits come from the field itself, so the table cannot overflow the struct. */
#define K_STR(k, f, minlen, def, chk, desc) \
  {k, T_STR, FIELD(f), FSIZE(f), 0, minlen, (long long)FSIZE(f) - 1, def, chk, desc}
#define K_INT(k, f, lo, hi, def, desc) {k, T_INT, FIELD(f), FSIZE(f), 0, lo, hi, def, NULL, desc}
#define K_BOOL(k, f, def, desc) {k, T_BOOL, FIELD(f), FSIZE(f), 0, 0, 1, def, NULL, desc}
#define K_LIST(k, t, f, nf, minn, def, desc)                                                   \
  {k, t, FIELD(f), FSIZE(f[0]), FIELD(nf), minn, (long long)(FSIZE(f) / FSIZE(f[0])), def, \
   NULL, desc}

#define MS_MAX 3600000 /* one hour: any gossip timing beyond that is a typo */

static const key_desc_t keys[] = {
    K_STR("name", name, 1, NULL, check_name, "unique node name: [A-Za-z0-9._-], max 63 chars"),
    K_STR("bind", bind, 1, "127.0.0.1", check_ipv4, "numeric IPv4 address every listener binds"),
    K_STR("advertise", advertise, 0, "", check_ipv4_or_empty,
          "IPv4 address peers use to reach this node; empty = bind"),
    K_STR("data_dir", data_dir, 1, "./gureum-data", NULL, "directory for all persistent state"),
    K_STR("zone", zone, 1, "default", NULL, "failure domain label; replicas spread across zones"),
    K_LIST("seeds", T_SEEDS, seeds, nseeds, 0, "",
           "IPv4:PORT of other nodes' RPC ports to join through; list or comma-separated"),
    K_LIST("roles", T_ROLES, roles, nroles, 1, "storage,edge,balancer,dns,pipeline",
           "roles this node serves: storage, edge, balancer, dns, pipeline"),
    K_STR("cluster.secret", secret, 8, "gureum-insecure-dev-secret", NULL,
          "shared secret authenticating the cluster channel; same on every node"),
    K_INT("ports.admin", admin_port, 1, 65535, "7070", "admin HTTP API port"),
    K_INT("ports.rpc", rpc_port, 1, 65535, "7071", "inter-node RPC port"),
    K_INT("ports.raft", raft_port, 1, 65535, "7072", "Raft consensus port"),
    K_STR("log.level", log_level, 1, "info", check_log_level, "debug, info, warn or error"),
    K_STR("log.file", log_file, 0, "", NULL, "append log lines to this file; empty = stderr"),
    K_INT("rpc.timeout_ms", rpc_timeout_ms, 10, 600000, "2000", "default per-call deadline"),
    K_INT("rpc.max_inflight", rpc_max_inflight, 1, 65536, "256",
          "outstanding calls per peer before callers get EBUSY"),
    K_INT("rpc.server_contexts", rpc_server_contexts, 1, 1024, "64",
          "requests served concurrently"),
    K_INT("rpc.max_message_kb", rpc_max_message_kb, 1, 1048576, "16384",
          "larger frames are refused"),
    K_INT("rpc.max_clock_skew_s", rpc_max_clock_skew_s, 1, 86400, "300",
          "frames older or newer than this are treated as replays"),
    K_BOOL("store.sync_writes", store_sync_writes, "true",
           "fsync the WAL before acknowledging a write"),
    K_INT("store.cache_mb", store_cache_mb, 0, 65536, "64", "RocksDB block cache size"),
    K_INT("shutdown_timeout_s", shutdown_timeout_s, 1, 300, "10",
          "hard deadline for a clean stop"),
    K_INT("gossip.probe_interval_ms", gossip_probe_interval_ms, 1, MS_MAX, "500",
          "time between failure-detector probes"),
    K_INT("gossip.probe_timeout_ms", gossip_probe_timeout_ms, 1, MS_MAX, "250",
          "wait for a direct ack before asking other members"),
    K_INT("gossip.indirect_checks", gossip_indirect_checks, 0, 64, "3",
          "members asked to probe indirectly"),
    K_INT("gossip.suspicion_mult", gossip_suspicion_mult, 1, 100, "5",
          "suspicion minimum = mult x max(1, log10 n) x probe interval; expected confirmations = mult - 2"),
    K_INT("gossip.suspicion_max_mult", gossip_suspicion_max_mult, 1, 100, "6",
          "upper bound of the suspicion timeout, as a multiple of its minimum"),
    K_INT("gossip.retransmit_mult", gossip_retransmit_mult, 1, 100, "4",
          "scales how many times each update is gossiped"),
    K_INT("gossip.interval_ms", gossip_interval_ms, 1, MS_MAX, "100",
          "time between gossip rounds"),
    K_INT("gossip.nodes", gossip_nodes, 1, 64, "3", "members each gossip round is sent to"),
    K_INT("gossip.pushpull_interval_ms", gossip_pushpull_interval_ms, 1, MS_MAX, "15000",
          "time between full state syncs with a random member"),
    K_INT("gossip.awareness_max", gossip_awareness_max, 1, 64, "8",
          "Lifeguard local-health ceiling; probe timeouts stretch up to this factor"),
    K_INT("gossip.reap_s", gossip_reap_s, 1, 604800, "3600",
          "how long dead or left members are kept before being forgotten"),
    K_INT("gossip.dead_gossip_s", gossip_dead_gossip_s, 1, 3600, "30",
          "how long a dead member is still gossiped about"),
    K_INT("raft.election_timeout_ms", raft_election_timeout_ms, 50, 600000, "1000",
          "Raft election timeout (randomised between 1x and 2x); pre-vote is always on"),
    K_INT("raft.heartbeat_ms", raft_heartbeat_ms, 10, 60000, "100", "leader heartbeat interval"),
    K_INT("raft.snapshot_threshold", raft_snapshot_threshold, 8, 10000000, "1024",
          "log entries between automatic snapshots"),
    K_INT("raft.snapshot_trailing", raft_snapshot_trailing, 0, 10000000, "512",
          "log entries kept after a snapshot, so slightly lagging nodes catch up without one"),
    K_INT("raft.dead_voter_timeout_s", raft_dead_voter_timeout_s, 1, 86400, "30",
          "a voter gossip reports dead this long is replaced by a healthy standby"),
    K_INT("raft.write_timeout_ms", raft_write_timeout_ms, 100, 600000, "5000",
          "how long a write or linearizable read waits for a leader and a quorum"),
    K_INT("raft.max_voters", raft_max_voters, 1, 9, "5",
          "voters once the cluster has that many nodes (3 below it); the rest are standbys"),
    K_INT("s3.port", s3_port, 1, 65535, "9000", "S3 API port (storage role)"),
    K_INT("s3.website_port", s3_website_port, 1, 65535, "9080", "static website port (storage role)"),
    K_STR("s3.domain", s3_domain, 1, "s3.localhost", NULL,
          "virtual-hosted-style requests: Host BUCKET.<domain>"),
    K_STR("s3.website_domain", s3_website_domain, 1, "website.localhost", NULL,
          "website requests: Host BUCKET.<domain> (or a bucket named like the host)"),
    K_STR("s3.region", s3_region, 1, "us-east-1", NULL, "region name clients sign requests for"),
    K_INT("s3.max_skew_s", s3_max_skew_s, 1, 86400, "900",
          "signed requests further than this from our clock are RequestTimeTooSkewed"),
    K_INT("storage.replicas", storage_replicas, 1, 7, "3",
          "copies of each object (capped at the number of storage nodes)"),
    K_INT("storage.rr_replicas", storage_rr_replicas, 1, 7, "2",
          "copies of REDUCED_REDUNDANCY objects (at most storage.replicas)"),
    K_INT("storage.dead_timeout_s", storage_dead_timeout_s, 1, 86400, "30",
          "a dead storage node keeps its partitions this long; back in time, nothing moves"),
    K_INT("storage.rebalance_mib_s", storage_rebalance_mib_s, 1, 100000, "64",
          "bound on the rate at which rebalancing copies data, MiB/s per node"),
    K_INT("storage.sync_interval_s", storage_sync_interval_s, 1, 86400, "30",
          "anti-entropy period: replicas compare their partitions this often"),
    K_INT("storage.scrub_interval_s", storage_scrub_interval_s, 1, 2592000, "3600",
          "period of the scrub that re-reads stored blocks and checks their checksums"),
    K_INT("storage.tombstone_ttl_s", storage_tombstone_ttl_s, 1, 31536000, "86400",
          "how long deletions are remembered so that a stale replica cannot resurrect data"),
    K_BOOL("storage.debug_hooks", storage_debug_hooks, "false",
           "enable test-only fault injection endpoints; never in production"),
    K_STR("tls.ca", tls_ca, 0, "", NULL,
          "cluster CA certificate (PEM); with tls.cert and tls.key the cluster channel is TLS"),
    K_STR("tls.cert", tls_cert, 0, "", NULL,
          "this node's certificate (PEM, from `gureum tls issue`), naming its advertise address"),
    K_STR("tls.key", tls_key, 0, "", NULL, "this node's private key (PEM, mode 0600)"),
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* Env names that are not derived from a key; the derived name wins when both are set. */
static const struct {
  const char *env;
  const char *key;
} env_aliases[] = {{"GUREUM_SECRET", "cluster.secret"}};

/* Room for one list item while a list is staged; every list field must fit. */
#define LIST_MAX 32
#define LIST_W 80
_Static_assert(CONFIG_MAX_SEEDS <= LIST_MAX && CONFIG_MAX_ROLES <= LIST_MAX, "LIST_MAX");
_Static_assert(sizeof(((config_t *)0)->seeds[0]) <= LIST_W, "LIST_W");
_Static_assert(sizeof(((config_t *)0)->roles[0]) <= LIST_W, "LIST_W");

/* Lists are built here and copied into config_t only once every item is valid, so a bad
 * item never leaves a half-replaced list behind. */
typedef struct {
  char item[LIST_MAX][LIST_W];
  int n;
} list_t;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static const key_desc_t *find_key(const char *key) {
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].key, key) == 0) return &keys[i];
  return NULL;
}

/* A section is a prefix of some dotted key ("rpc" for "rpc.timeout_ms"). */
static int is_section(const char *prefix) {
  size_t n = strlen(prefix);
  for (size_t i = 0; i < NKEYS; i++)
    if (strncmp(keys[i].key, prefix, n) == 0 && keys[i].key[n] == '.') return 1;
  return 0;
}

/* Edit distance, to turn "unknown key" into "did you mean". Keys are short, so one row will do. */
static size_t edit_distance(const char *a, const char *b) {
  size_t lb = strlen(b), row[128];
  if (lb >= sizeof row / sizeof row[0]) return (size_t)-1;
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; a[i - 1]; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* Writes " (did you mean 'x'?)" or "" for an unknown key. */
static void suggest(const char *key, char *out, size_t outlen) {
  const char *best = NULL;
  size_t bestd = 3; /* further than two edits is a different key, not a typo */
  out[0] = '\0';
  for (size_t i = 0; i < NKEYS; i++) {
    size_t d = edit_distance(key, keys[i].key);
    if (d < bestd) bestd = d, best = keys[i].key;
  }
  if (best) snprintf(out, outlen, " (did you mean '%s'?)", best);
}

static const char *type_name(const key_desc_t *d) {
  switch (d->type) {
  case T_STR: return "a string";
  case T_INT: return "an integer";
  case T_BOOL: return "a boolean (true/false)";
  case T_SEEDS: return "a list of IPv4:PORT seeds";
  case T_ROLES: return "a list of roles";
  }
  return "a value";
}

/* ---- value checks ---- */

static int name_char_ok(int ch) {
  return isalnum((unsigned char)ch) || ch == '.' || ch == '_' || ch == '-';
}

static int check_name(const char *v, char *why, size_t whylen) {
  for (const char *p = v; *p; p++) {
    if (!name_char_ok(*p)) {
      snprintf(why, whylen, "invalid character '%c' in '%.64s' (allowed: A-Z a-z 0-9 . _ -)", *p,
               v);
      return -1;
    }
  }
  return 0;
}

static int ipv4_ok(const char *v) {
  struct in_addr a;
  return inet_pton(AF_INET, v, &a) == 1;
}

static int check_ipv4(const char *v, char *why, size_t whylen) {
  if (ipv4_ok(v)) return 0;
  snprintf(why, whylen, "expected a numeric IPv4 address, got '%.80s'", v);
  return -1;
}

static int check_ipv4_or_empty(const char *v, char *why, size_t whylen) {
  return *v ? check_ipv4(v, why, whylen) : 0;
}

/* log.c owns the level names, so they are checked there, not listed twice. */
static int check_log_level(const char *v, char *why, size_t whylen) {
  if (log_level_parse(v) >= 0) return 0;
  snprintf(why, whylen, "expected one of debug, info, warn, error, got '%.80s'", v);
  return -1;
}

static int check_seed(const char *v, char *why, size_t whylen) {
  char host[LIST_W];
  const char *colon = strrchr(v, ':');
  size_t hl = colon ? (size_t)(colon - v) : 0;
  const char *port = colon ? colon + 1 : "";
  long p = 0;
  int digits = *port != '\0' && strlen(port) <= 5;
  for (const char *s = port; digits && *s; s++)
    if (!isdigit((unsigned char)*s)) digits = 0;
  if (digits) p = strtol(port, NULL, 10);
  if (colon && hl < sizeof host) {
    memcpy(host, v, hl);
    host[hl] = '\0';
    if (ipv4_ok(host) && digits && p >= 1 && p <= 65535) return 0;
  }
  snprintf(why, whylen, "invalid seed '%.80s': expected IPv4:PORT, e.g. 10.0.0.2:7071", v);
  return -1;
}

static int check_role(const list_t *l, const char *v, char *why, size_t whylen) {
  int known = 0;
  for (int i = 0; config_role_names[i]; i++)
    if (strcmp(config_role_names[i], v) == 0) known = 1;
  if (!known) {
    snprintf(why, whylen,
             "unknown role '%.40s' (expected storage, edge, balancer, dns or pipeline)", v);
    return -1;
  }
  for (int i = 0; i < l->n; i++) {
    if (strcmp(l->item[i], v) == 0) {
      snprintf(why, whylen, "duplicate role '%s'", v);
      return -1;
    }
  }
  return 0;
}

/* ---- setting one key ---- */

static int set_str(config_t *c, const key_desc_t *d, const char *v, char *why, size_t whylen) {
  size_t n = strlen(v);
  /* Lengths only, never the value: this may be the cluster secret. */
  if ((long long)n < d->min) {
    snprintf(why, whylen, "too short (at least %lld characters)", d->min);
    return -1;
  }
  if ((long long)n > d->max) {
    snprintf(why, whylen, "too long (at most %lld characters)", d->max);
    return -1;
  }
  if (d->check && d->check(v, why, whylen) != 0) return -1;
  memcpy((char *)c + d->off, v, n + 1);
  return 0;
}

static int parse_int(const key_desc_t *d, const char *v, int *out, char *why, size_t whylen) {
  const char *p = v + (*v == '+' || *v == '-');
  int ok = isdigit((unsigned char)*p);
  for (; ok && *p; p++)
    if (!isdigit((unsigned char)*p)) ok = 0;
  if (!ok) {
    snprintf(why, whylen, "expected an integer, got '%.80s'", v);
    return -1;
  }
  errno = 0;
  long long x = strtoll(v, NULL, 10);
  if (errno == ERANGE || x < d->min || x > d->max) {
    snprintf(why, whylen, "value %.40s out of range %lld..%lld", v, d->min, d->max);
    return -1;
  }
  *out = (int)x;
  return 0;
}

static int parse_bool(const char *v, int *out, char *why, size_t whylen) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
    if (strcasecmp(v, no[i]) == 0) return *out = 0, 0;
  }
  snprintf(why, whylen, "expected a boolean (true/false/yes/no/on/off/1/0), got '%.80s'", v);
  return -1;
}

static int list_add(const key_desc_t *d, list_t *l, const char *v, size_t len, char *why,
                    size_t whylen) {
  if (l->n >= d->max) {
    snprintf(why, whylen, "too many entries (at most %lld)", d->max);
    return -1;
  }
  if (len >= d->size) {
    int shown = len > 80 ? 80 : (int)len;
    snprintf(why, whylen, "entry '%.*s' is too long (at most %zu characters)", shown, v,
             d->size - 1);
    return -1;
  }
  char item[LIST_W];
  memcpy(item, v, len);
  item[len] = '\0';
  int rc = d->type == T_SEEDS ? check_seed(item, why, whylen) : check_role(l, item, why, whylen);
  if (rc != 0) return -1;
  memcpy(l->item[l->n++], item, len + 1);
  return 0;
}

static int list_commit(config_t *c, const key_desc_t *d, const list_t *l, char *why,
                       size_t whylen) {
  if (l->n < d->min) {
    snprintf(why, whylen, "needs at least %lld entr%s", d->min, d->min == 1 ? "y" : "ies");
    return -1;
  }
  char *base = (char *)c + d->off;
  memset(base, 0, (size_t)d->max * d->size);
  for (int i = 0; i < l->n; i++)
    memcpy(base + (size_t)i * d->size, l->item[i], strlen(l->item[i]) + 1);
  memcpy((char *)c + d->count_off, &l->n, sizeof l->n);
  return 0;
}

/* "a, b,c" -> items; blanks around commas are dropped, and so are empty items, which
 * makes "" an empty list. */
static int set_list_text(config_t *c, const key_desc_t *d, const char *v, char *why,
                         size_t whylen) {
  list_t l;
  l.n = 0;
  while (*v) {
    const char *end = strchr(v, ',');
    if (!end) end = v + strlen(v);
    const char *s = v, *e = end;
    while (s < e && isspace((unsigned char)*s)) s++;
    while (e > s && isspace((unsigned char)e[-1])) e--;
    if (e > s && list_add(d, &l, s, (size_t)(e - s), why, whylen) != 0) return -1;
    v = *end ? end + 1 : end;
  }
  return list_commit(c, d, &l, why, whylen);
}

/* Parse `v` as the value of `d` and store it; on failure `c` is unchanged and `why` says why. */
static int set_value(config_t *c, const key_desc_t *d, const char *v, char *why, size_t whylen) {
  int x = 0;
  switch (d->type) {
  case T_STR: return set_str(c, d, v, why, whylen);
  case T_INT:
    if (parse_int(d, v, &x, why, whylen) != 0) return -1;
    break;
  case T_BOOL:
    if (parse_bool(v, &x, why, whylen) != 0) return -1;
    break;
  case T_SEEDS:
  case T_ROLES: return set_list_text(c, d, v, why, whylen);
  }
  memcpy((char *)c + d->off, &x, sizeof x);
  return 0;
}

/* ---- public: defaults, flags ---- */

static void default_name(char *out, size_t outlen) {
  char host[256] = "";
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  /* A host name may hold characters a node name may not; replace rather than fail at start. */
  size_t j = 0;
  for (size_t i = 0; host[i] && j + 1 < outlen; i++)
    out[j++] = name_char_ok(host[i]) ? host[i] : '-';
  out[j] = '\0';
  if (j == 0) snprintf(out, outlen, "gureum");
}

void config_defaults(config_t *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < NKEYS; i++) {
    char why[256];
    if (!keys[i].def) {
      default_name((char *)c + keys[i].off, keys[i].size);
    } else if (set_value(c, &keys[i], keys[i].def, why, sizeof why) != 0) {
      /* A bad default is a bug in the table above; no configuration can fix it. */
      fprintf(stderr, "config: bad built-in default for '%s': %s\n", keys[i].key, why);
      abort();
    }
  }
}

int config_set(config_t *c, const char *key, const char *value, const char *origin, char *err,
               size_t errlen) {
  const key_desc_t *d = find_key(key);
  char why[256];
  if (!d) {
    char hint[96];
    suggest(key, hint, sizeof hint);
    if (origin)
      set_err(err, errlen, "%s: unknown key '%s'%s", origin, key, hint);
    else
      set_err(err, errlen, "key '%s': unknown key%s", key, hint);
    return -1;
  }
  if (set_value(c, d, value, why, sizeof why) != 0) {
    if (origin)
      set_err(err, errlen, "%s: %s", origin, why);
    else
      set_err(err, errlen, "key '%s': %s", key, why);
    return -1;
  }
  return 0;
}

/* ---- YAML ---- */

typedef struct {
  config_t *c;
  const char *path;
  yaml_document_t *doc;
  char *err;
  size_t errlen;
  unsigned char seen[NKEYS]; /* a key given twice is almost always a merge mistake */
} load_t;

static int fail(load_t *L, const yaml_node_t *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(load_t *L, const yaml_node_t *at, const char *key, const char *fmt, ...) {
  char why[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  size_t line = at->start_mark.line + 1; /* libyaml counts from 0 */
  if (key)
    set_err(L->err, L->errlen, "%s:%zu: key '%s': %s", L->path, line, key, why);
  else
    set_err(L->err, L->errlen, "%s:%zu: %s", L->path, line, why);
  return -1;
}

static const char *node_kind(const yaml_node_t *n) {
  return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a sequence"
                                                                                    : "a scalar";
}

/* An unquoted empty value, "~" or "null": YAML's null. */
static int is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *s = (const char *)n->data.scalar.value;
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Scalar text, or NULL if it holds a NUL byte (possible with "\0" escapes) and so cannot be
 * a C string. */
static const char *scalar_text(const yaml_node_t *n) {
  const char *s = (const char *)n->data.scalar.value;
  return strlen(s) == n->data.scalar.length ? s : NULL;
}

static int apply_sequence(load_t *L, const key_desc_t *d, yaml_node_t *seq) {
  list_t l;
  char why[256];
  l.n = 0;
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
       it++) {
    yaml_node_t *item = yaml_document_get_node(L->doc, *it);
    if (item->type != YAML_SCALAR_NODE)
      return fail(L, item, d->key, "expected %s, got %s inside the list", type_name(d),
                  node_kind(item));
    const char *s = scalar_text(item);
    if (!s) return fail(L, item, d->key, "entry contains a NUL byte");
    if (list_add(d, &l, s, strlen(s), why, sizeof why) != 0)
      return fail(L, item, d->key, "%s", why);
  }
  if (list_commit(L->c, d, &l, why, sizeof why) != 0) return fail(L, seq, d->key, "%s", why);
  return 0;
}

static int apply_node(load_t *L, const key_desc_t *d, yaml_node_t *v) {
  char why[256];
  int list = d->type == T_SEEDS || d->type == T_ROLES;
  if (v->type == YAML_SEQUENCE_NODE && list) return apply_sequence(L, d, v);
  if (v->type != YAML_SCALAR_NODE)
    return fail(L, v, d->key, "expected %s, got %s", type_name(d), node_kind(v));

  const char *s = scalar_text(v);
  if (!s) return fail(L, v, d->key, "value contains a NUL byte");
  int typed = d->type == T_INT || d->type == T_BOOL;
  if (is_null(v)) {
    if (typed) return fail(L, v, d->key, "expected %s, got an empty value", type_name(d));
    s = "";
  } else if (typed && v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
    /* "2000" in quotes is a string in YAML; say so rather than guess what was meant. */
    return fail(L, v, d->key, "expected %s, got the quoted string '%.80s'", type_name(d), s);
  }
  if (set_value(L->c, d, s, why, sizeof why) != 0) return fail(L, v, d->key, "%s", why);
  return 0;
}

static int apply_mapping(load_t *L, yaml_node_t *map, const char *prefix) {
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
    yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
    const char *name = k->type == YAML_SCALAR_NODE ? scalar_text(k) : NULL;
    if (!name) return fail(L, k, NULL, "keys must be plain names, got %s", node_kind(k));

    char key[128];
    int n = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", name);
    if (n < 0 || (size_t)n >= sizeof key) return fail(L, k, name, "unknown key");

    const key_desc_t *d = find_key(key);
    if (d) {
      size_t i = (size_t)(d - keys);
      if (L->seen[i]) return fail(L, k, key, "given more than once");
      L->seen[i] = 1;
      if (apply_node(L, d, v) != 0) return -1;
    } else if (is_section(key)) {
      /* A section whose keys are all commented out is empty, not wrong. */
      if (is_null(v)) continue;
      if (v->type != YAML_MAPPING_NODE)
        return fail(L, v, key, "expected a mapping of %s.* keys, got %s", key, node_kind(v));
      if (apply_mapping(L, v, key) != 0) return -1;
    } else {
      char hint[96];
      suggest(key, hint, sizeof hint);
      return fail(L, k, key, "unknown key%s", hint);
    }
  }
  return 0;
}

static int apply_document(load_t *L) {
  yaml_node_t *root = yaml_document_get_root_node(L->doc);
  if (!root || is_null(root)) return 0; /* empty file, or only comments */
  if (root->type != YAML_MAPPING_NODE)
    return fail(L, root, NULL, "the top level must be a mapping of keys, got %s", node_kind(root));
  return apply_mapping(L, root, "");
}

static int yaml_fail(load_t *L, const yaml_parser_t *p) {
  const char *problem = p->problem ? p->problem : "unknown error";
  if (p->error == YAML_MEMORY_ERROR) {
    set_err(L->err, L->errlen, "%s: out of memory while reading YAML", L->path);
  } else if (p->error == YAML_READER_ERROR) {
    /* Encoding errors have a byte offset but no line. */
    set_err(L->err, L->errlen, "%s: invalid YAML: %s at byte %zu", L->path, problem,
            p->problem_offset);
  } else if (p->context) {
    set_err(L->err, L->errlen, "%s:%zu: invalid YAML: %s (%s at line %zu)", L->path,
            p->problem_mark.line + 1, problem, p->context, p->context_mark.line + 1);
  } else {
    set_err(L->err, L->errlen, "%s:%zu: invalid YAML: %s", L->path, p->problem_mark.line + 1,
            problem);
  }
  return -1;
}

/* Reads the first document and applies it, then makes sure nothing follows it: a second
 * document would otherwise be silently ignored. */
static int load_stream(load_t *L, yaml_parser_t *p) {
  yaml_document_t doc;
  if (!yaml_parser_load(p, &doc)) return yaml_fail(L, p);
  L->doc = &doc;
  int rc = apply_document(L);
  yaml_document_delete(&doc);
  if (rc != 0) return rc;

  if (!yaml_parser_load(p, &doc)) return yaml_fail(L, p);
  yaml_node_t *extra = yaml_document_get_root_node(&doc);
  if (extra && !is_null(extra)) {
    L->doc = &doc;
    rc = fail(L, extra, NULL, "more than one YAML document; put every key in one mapping");
  }
  yaml_document_delete(&doc);
  return rc;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  /* A directory opens fine and only fails on read, as a puzzling "input error". */
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    set_err(err, errlen, "%s: cannot open: %s", path, strerror(EISDIR));
    return -1;
  }
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) {
    fclose(f);
    set_err(err, errlen, "%s: out of memory while reading YAML", path);
    return -1;
  }
  yaml_parser_set_input_file(&p, f);

  /* Work on a copy so a bad file changes nothing. */
  config_t tmp = *c;
  load_t L = {.c = &tmp, .path = path, .err = err, .errlen = errlen};
  int rc = load_stream(&L, &p);
  yaml_parser_delete(&p);
  fclose(f);
  if (rc == 0) *c = tmp;
  return rc;
}

/* ---- environment ---- */

/* "rpc.timeout_ms" -> "GUREUM_RPC_TIMEOUT_MS" */
static void env_name(const char *key, char *out, size_t outlen) {
  size_t j = (size_t)snprintf(out, outlen, "GUREUM_");
  for (; *key && j + 1 < outlen; key++)
    out[j++] = *key == '.' ? '_' : (char)toupper((unsigned char)*key);
  out[j] = '\0';
}

static const char *env_get(char *const *envp, const char *name) {
  size_t n = strlen(name);
  for (; *envp; envp++)
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return *envp + n + 1;
  return NULL;
}

int config_load_env(config_t *c, char *const *envp, char *err, size_t errlen) {
  if (!envp) envp = environ;
  config_t tmp = *c; /* all or nothing, as with a file */
  char name[96], canon[96];
  /* Variables are looked up by key, never the other way round: any other GUREUM_* variable
   * (GUREUM_NODE belongs to the CLI) is none of our business and is left alone. */
  for (size_t i = 0; i < sizeof env_aliases / sizeof env_aliases[0]; i++) {
    const char *v = env_get(envp, env_aliases[i].env);
    env_name(env_aliases[i].key, canon, sizeof canon);
    if (v && !env_get(envp, canon) &&
        config_set(&tmp, env_aliases[i].key, v, env_aliases[i].env, err, errlen) != 0)
      return -1;
  }
  for (size_t i = 0; i < NKEYS; i++) {
    env_name(keys[i].key, name, sizeof name);
    const char *v = env_get(envp, name);
    if (v && config_set(&tmp, keys[i].key, v, name, err, errlen) != 0) return -1;
  }
  *c = tmp;
  return 0;
}

/* ---- finish, print, roles ---- */

/* tls.*: all three or none, and the files must be usable before anything starts. */
static int config_finish_tls(const config_t *c, char *err, size_t errlen) {
  static const char *const names[] = {"tls.ca", "tls.cert", "tls.key"};
  const char *vals[] = {c->tls_ca, c->tls_cert, c->tls_key};
  int set = !!vals[0][0] + !!vals[1][0] + !!vals[2][0];
  if (set == 0) return 0;
  for (int i = 0; i < 3; i++)
    if (!vals[i][0]) {
      set_err(err, errlen, "key '%s': not set, but other tls.* keys are; set tls.ca, tls.cert "
                           "and tls.key together, or none of them", names[i]);
      return -1;
    }
  char why[600];
  int bad = tls_check_files(c->tls_ca, c->tls_cert, c->tls_key, c->advertise, why, sizeof why);
  if (bad == 0) return 0;
  set_err(err, errlen, "key '%s': %s", names[bad - 1], why);
  return -1;
}

int config_has_tls(const config_t *c) { return c->tls_ca[0] != '\0'; }

int config_finish(config_t *c, char *err, size_t errlen) {
  if (!c->advertise[0]) memcpy(c->advertise, c->bind, sizeof c->advertise);
  if (!ipv4_ok(c->bind)) {
    set_err(err, errlen, "key 'bind': expected a numeric IPv4 address, got '%.80s'", c->bind);
    return -1;
  }
  if (!ipv4_ok(c->advertise)) {
    set_err(err, errlen, "key 'advertise': expected a numeric IPv4 address, got '%.80s'",
            c->advertise);
    return -1;
  }
  /* Legal for a lone node, but peers cannot dial the wildcard address. */
  if (strcmp(c->advertise, "0.0.0.0") == 0)
    log_warn("config", "advertise_unroutable", "advertise=%s hint=%s", c->advertise,
             "set_advertise_to_an_address_peers_can_reach");
  return config_finish_tls(c, err, errlen);
}

void config_print_defaults(FILE *out) {
  char lhs[NKEYS][160];
  int width = 0;
  for (size_t i = 0; i < NKEYS; i++) {
    const char *def = keys[i].def ? keys[i].def : "<host name>";
    int n = snprintf(lhs[i], sizeof lhs[i], "%s = %s", keys[i].key, *def ? def : "\"\"");
    if (n > width) width = n;
  }
  for (size_t i = 0; i < NKEYS; i++) fprintf(out, "%-*s    # %s\n", width, lhs[i], keys[i].desc);
}

int config_has_role(const config_t *c, const char *role) {
  for (int i = 0; i < c->nroles; i++)
    if (strcmp(c->roles[i], role) == 0) return 1;
  return 0;
}
