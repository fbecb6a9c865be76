/* config.h - node configuration: built-in defaults, then a YAML file, then GUREUM_* environment
 * variables, then command-line flags. Every key is described once, in the table in config.c. */
#ifndef GUREUM_CONFIG_H
#define GUREUM_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_SEEDS 32
#define CONFIG_MAX_ROLES 8

/* Role names a node may serve, in canonical order. */
extern const char *const config_role_names[];
#define CONFIG_NROLES 5

typedef struct config_s {
  char name[64];         /* name: unique node name; default: the host name */
  char bind[64];         /* bind: IPv4 address every listener binds */
  char advertise[64];    /* advertise: address peers use to reach us; default = bind */
  char data_dir[512];    /* data_dir */
  char zone[64];         /* zone: failure domain label */
  char seeds[CONFIG_MAX_SEEDS][80]; /* seeds: "IP:PORT" of cluster RPC ports */
  int nseeds;
  char roles[CONFIG_MAX_ROLES][16]; /* roles */
  int nroles;
  char secret[256];      /* cluster.secret: shared by every node; authenticates the cluster channel */

  int admin_port;        /* ports.admin */
  int rpc_port;          /* ports.rpc */
  int raft_port;         /* ports.raft */

  char log_level[16];    /* log.level */
  char log_file[512];    /* log.file: "" = stderr */

  int rpc_timeout_ms;    /* rpc.timeout_ms: default per-call deadline */
  int rpc_max_inflight;  /* rpc.max_inflight: outstanding calls per peer before EBUSY */
  int rpc_server_contexts; /* rpc.server_contexts: requests served concurrently */
  int rpc_max_message_kb; /* rpc.max_message_kb: larger frames are refused */
  int rpc_max_clock_skew_s; /* rpc.max_clock_skew_s: frames older/newer than this are replays */

  int store_sync_writes; /* store.sync_writes: fsync the WAL on every acknowledged write */
  int store_cache_mb;    /* store.cache_mb: RocksDB block cache */

  int shutdown_timeout_s; /* shutdown_timeout_s: hard deadline for a clean stop */

  /* gossip.*: SWIM/Lifeguard timings (used by the membership module) */
  int gossip_probe_interval_ms;
  int gossip_probe_timeout_ms;
  int gossip_indirect_checks;
  int gossip_suspicion_mult;
  int gossip_suspicion_max_mult;
  int gossip_retransmit_mult;
  int gossip_interval_ms;
  int gossip_nodes;
  int gossip_pushpull_interval_ms;
  int gossip_awareness_max;
  int gossip_reap_s;
  int gossip_dead_gossip_s;

  /* raft.*: the control plane (libraft) */
  int raft_election_timeout_ms;
  int raft_heartbeat_ms;
  int raft_snapshot_threshold;
  int raft_snapshot_trailing;
  int raft_dead_voter_timeout_s;
  int raft_write_timeout_ms;
  int raft_max_voters;

  /* s3.*: the storage role's S3 API and static website endpoint */
  int s3_port;
  int s3_website_port;
  char s3_domain[128];         /* virtual-hosted style: BUCKET.<domain> */
  char s3_website_domain[128]; /* websites: BUCKET.<website domain> */
  char s3_region[32];
  int s3_max_skew_s;

  /* storage.*: replication of the storage role (layout, sync, scrub) */
  int storage_replicas;        /* copies of each object (STANDARD) */
  int storage_rr_replicas;     /* copies for REDUCED_REDUNDANCY */
  int storage_dead_timeout_s;  /* a dead storage node keeps its partitions this long */
  int storage_rebalance_mib_s; /* bound on the data rate of rebalancing */
  int storage_sync_interval_s; /* anti-entropy period */
  int storage_scrub_interval_s;
  int storage_tombstone_ttl_s;
  int storage_debug_hooks;     /* test-only fault injection endpoints */
  /* tls.*: PEM files of the cluster channel's TLS; all three or none (none = plain TCP) */
  char tls_ca[512];   /* the cluster CA every peer's certificate must chain to */
  char tls_cert[512]; /* this node's certificate, naming its advertise address */
  char tls_key[512];  /* this node's private key */
} config_t;

/* Fill with built-in defaults. */
void config_defaults(config_t *c);

/* Apply a YAML file. On error returns -1 and writes "FILE:LINE: key 'x': why" to err. */
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);

/* Apply GUREUM_<KEY> variables (dots become underscores, e.g. GUREUM_RPC_TIMEOUT_MS). */
int config_load_env(config_t *c, char *const *envp, char *err, size_t errlen);

/* Set one key from a string, as a flag or env var would ("rpc.timeout_ms", "2000").
 * `origin` names the source in error messages (e.g. "--seeds" or "GUREUM_SEEDS"). */
int config_set(config_t *c, const char *key, const char *value, const char *origin, char *err,
               size_t errlen);

/* Cross-key checks after everything is applied (e.g. advertise defaults to bind; the tls.*
 * files exist, match and name the advertise address). */
int config_finish(config_t *c, char *err, size_t errlen);

/* Print every key with its default and description (for `gureum config defaults`). */
void config_print_defaults(FILE *out);

int config_has_role(const config_t *c, const char *role);

/* Whether the tls.* keys are set (config_finish has checked they are all set or none). */
int config_has_tls(const config_t *c);

#endif
