/* cli.c - client commands of the `gureum` CLI (status, ping, config...): parse flags, call the
 * admin API of the node named by --node, print text or --json. */
#include "cli.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "httpc.h"
#include "tls.h"

#define CLI_DEFAULT_NODE "127.0.0.1:7070"
#define CLI_TIMEOUT_MS 15000

typedef struct cli_flag_s {
  const char *name; /* "--stale" */
  int has_value;
  const char **value; /* receives the value, or "1" for a boolean flag */
} cli_flag_t;

typedef struct cli_args_s {
  const char *node;
  int json;
  const char *pos[16];
  int npos;
} cli_args_t;

static int cli_usage_error(const char *usage, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "gureum: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nusage: %s\n", usage);
  va_end(ap);
  return CLI_USAGE;
}

/* Parses the shared flags (--node, --json, --help) plus `extra`. Returns -1 when --help was
 * printed, CLI_USAGE on a bad flag, 0 otherwise. */
static int cli_parse(int argc, char **argv, const char *usage, const char *help,
                     const cli_flag_t *extra, int min_pos, int max_pos, cli_args_t *a) {
  memset(a, 0, sizeof *a);
  a->node = getenv("GUREUM_NODE") ? getenv("GUREUM_NODE") : CLI_DEFAULT_NODE;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      printf("usage: %s\n\n%s\n\n  --node HOST:PORT  admin address of the node (default %s, or $GUREUM_NODE)\n"
             "  --json            print JSON\n",
             usage, help, CLI_DEFAULT_NODE);
      for (const cli_flag_t *f = extra; f && f->name; f++)
        printf("  %s%s\n", f->name, f->has_value ? " VALUE" : "");
      return -1;
    }
    if (strcmp(arg, "--json") == 0) {
      a->json = 1;
      continue;
    }
    if (strcmp(arg, "--node") == 0 || strncmp(arg, "--node=", 7) == 0) {
      if (arg[6] == '=') a->node = arg + 7;
      else if (++i < argc) a->node = argv[i];
      else return cli_usage_error(usage, "--node needs HOST:PORT");
      if (!strchr(a->node, ':')) return cli_usage_error(usage, "--node '%s': want HOST:PORT", a->node);
      continue;
    }
    if (arg[0] == '-' && arg[1]) {
      const cli_flag_t *f = extra;
      size_t nl = strcspn(arg, "=");
      for (; f && f->name; f++)
        if (strlen(f->name) == nl && strncmp(f->name, arg, nl) == 0) break;
      if (!f || !f->name) return cli_usage_error(usage, "unknown option '%s'", arg);
      if (!f->has_value) *f->value = "1";
      else if (arg[nl] == '=') *f->value = arg + nl + 1;
      else if (++i < argc) *f->value = argv[i];
      else return cli_usage_error(usage, "%s needs a value", f->name);
      continue;
    }
    if (a->npos >= 16) return cli_usage_error(usage, "too many arguments");
    a->pos[a->npos++] = arg;
  }
  if (a->npos < min_pos) return cli_usage_error(usage, "missing argument");
  if (a->npos > max_pos) return cli_usage_error(usage, "unexpected argument '%s'", a->pos[max_pos]);
  return 0;
}

/* Calls the node; on success *out holds the decoded JSON. Returns a CLI exit code and prints
 * the error (with what to do next) on failure. */
static int cli_call(const cli_args_t *a, const char *method, const char *path, json_t *body,
                    json_t **out) {
  char err[256];
  httpc_resp_t r;
  char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
  int rv = httpc_request(a->node, method, path, b ? "application/json" : NULL, b, b ? strlen(b) : 0,
                         CLI_TIMEOUT_MS, &r, err, sizeof err);
  free(b);
  if (rv != 0) {
    fprintf(stderr, "gureum: cannot reach node %s: %s\n"
                    "  is it running? start one with `gureum node start`, or pass --node HOST:PORT\n",
            a->node, err);
    return CLI_FAILED;
  }
  json_error_t je;
  json_t *j = json_loadb(r.body, r.body_len, 0, &je);
  int status = r.status;
  httpc_resp_free(&r);
  if (status >= 200 && status < 300 && j) {
    *out = j;
    return CLI_OK;
  }
  const char *msg = j ? json_string_value(json_object_get(json_object_get(j, "error"), "message")) : NULL;
  fprintf(stderr, "gureum: %s (HTTP %d from %s)\n", msg ? msg : "unexpected reply", status, a->node);
  json_decref(j);
  if (status == 404) return CLI_NOTFOUND;
  if (status == 400) return CLI_USAGE;
  return CLI_FAILED;
}

static void cli_print_json(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  puts(s ? s : "null");
  free(s);
}

/* ---- commands ---- */

static int cmd_status(int argc, char **argv) {
  static const char usage[] = "gureum status [--node HOST:PORT] [--json]";
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage, "Show a node's name, id, version, uptime, roles and endpoints.",
                     NULL, 0, 0, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  json_t *j;
  if ((rv = cli_call(&a, "GET", "/v1/status", NULL, &j)) != CLI_OK) return rv;
  if (a.json) {
    cli_print_json(j);
  } else {
    printf("name:     %s\nid:       %s\nversion:  %s\nuptime:   %llds\nzone:     %s\nroles:   ",
           json_string_value(json_object_get(j, "name")), json_string_value(json_object_get(j, "id")),
           json_string_value(json_object_get(j, "version")),
           (long long)json_integer_value(json_object_get(j, "uptime_s")),
           json_string_value(json_object_get(j, "zone")));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "roles"), i, v) printf(" %s", json_string_value(v));
    printf("\nendpoints:\n");
    const char *k;
    json_object_foreach(json_object_get(j, "endpoints"), k, v)
        printf("  %-10s %s\n", k, json_string_value(v));
  }
  json_decref(j);
  return CLI_OK;
}

static int cmd_ping(int argc, char **argv) {
  static const char usage[] = "gureum ping PEER_IP:RPC_PORT [--timeout MS] [--node HOST:PORT] [--json]";
  const char *timeout = NULL;
  cli_flag_t flags[] = {{"--timeout", 1, &timeout}, {NULL, 0, NULL}};
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "Ask the node to ping a peer over the authenticated cluster RPC.", flags, 1, 1, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  if (timeout && atoi(timeout) <= 0) return cli_usage_error(usage, "--timeout '%s': want milliseconds > 0", timeout);
  char path[256];
  snprintf(path, sizeof path, "/v1/ping?peer=%s&timeout_ms=%s", a.pos[0], timeout ? timeout : "2000");
  json_t *j;
  if ((rv = cli_call(&a, "GET", path, NULL, &j)) != CLI_OK) return rv;
  if (a.json) cli_print_json(j);
  else
    printf("pong from %s (%s) in %.2f ms\n", json_string_value(json_object_get(j, "name")),
           json_string_value(json_object_get(j, "peer")), json_real_value(json_object_get(j, "rtt_ms")));
  json_decref(j);
  return CLI_OK;
}

static int cmd_members(int argc, char **argv) {
  static const char usage[] = "gureum members [--node HOST:PORT] [--json]";
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "List the cluster's members as this node sees them: name, address, roles,\n"
                     "state (alive, suspect, dead, left), incarnation and the time of the last change.",
                     NULL, 0, 0, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  json_t *j;
  if ((rv = cli_call(&a, "GET", "/v1/members", NULL, &j)) != CLI_OK) return rv;
  if (a.json) {
    cli_print_json(j);
  } else {
    printf("%-16s %-22s %-8s %-5s %-24s %s\n", "NAME", "ADDRESS", "STATE", "INC", "SINCE", "ROLES");
    size_t i;
    json_t *m;
    json_array_foreach(j, i, m) {
      char roles[128] = "";
      size_t k;
      json_t *r;
      json_array_foreach(json_object_get(m, "roles"), k, r) {
        size_t l = strlen(roles);
        snprintf(roles + l, sizeof roles - l, "%s%s", l ? "," : "", json_string_value(r));
      }
      printf("%-16s %-22s %-8s %-5lld %-24s %s\n", json_string_value(json_object_get(m, "name")),
             json_string_value(json_object_get(m, "address")),
             json_string_value(json_object_get(m, "state")),
             (long long)json_integer_value(json_object_get(m, "incarnation")),
             json_string_value(json_object_get(m, "since")), roles);
    }
  }
  json_decref(j);
  return CLI_OK;
}

static int cmd_roles(int argc, char **argv) {
  static const char usage[] = "gureum roles set ROLE[,ROLE...] [--node HOST:PORT] [--json]";
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "Change the roles a running node serves (storage, edge, balancer, dns,\n"
                     "pipeline); the node starts and stops them and tells the cluster.",
                     NULL, 2, 2, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  if (strcmp(a.pos[0], "set") != 0) return cli_usage_error(usage, "unknown subcommand '%s'", a.pos[0]);
  json_t *roles = json_array();
  char *csv = strdup(a.pos[1]), *save = NULL;
  for (char *t = strtok_r(csv, ",", &save); t; t = strtok_r(NULL, ",", &save))
    json_array_append_new(roles, json_string(t));
  free(csv);
  json_t *body = json_pack("{s:o}", "roles", roles), *j;
  rv = cli_call(&a, "POST", "/v1/roles", body, &j);
  json_decref(body);
  if (rv != CLI_OK) return rv;
  if (a.json) {
    cli_print_json(j);
  } else {
    printf("%s now serves:", json_string_value(json_object_get(j, "name")));
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(j, "roles"), i, r) printf(" %s", json_string_value(r));
    printf("\n");
  }
  json_decref(j);
  return CLI_OK;
}

static int cmd_raft(int argc, char **argv) {
  static const char usage[] = "gureum raft status [--node HOST:PORT] [--json]";
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "Show the control plane: leader, term, commit and applied index, and each\n"
                     "member's Raft role (voter, standby, spare).",
                     NULL, 1, 1, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  if (strcmp(a.pos[0], "status") != 0) return cli_usage_error(usage, "unknown subcommand '%s'", a.pos[0]);
  json_t *j;
  if ((rv = cli_call(&a, "GET", "/v1/raft/status", NULL, &j)) != CLI_OK) return rv;
  if (a.json) {
    cli_print_json(j);
  } else {
    const char *leader = json_string_value(json_object_get(j, "leader"));
    printf("this node:     %s (%s)\nleader:        %s\nterm:          %lld\n"
           "commit index:  %lld\napplied index: %lld\nmembers:\n",
           json_string_value(json_object_get(j, "name")), json_string_value(json_object_get(j, "state")),
           leader && *leader ? leader : "(none)", (long long)json_integer_value(json_object_get(j, "term")),
           (long long)json_integer_value(json_object_get(j, "commit_index")),
           (long long)json_integer_value(json_object_get(j, "applied_index")));
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(j, "members"), i, m)
        printf("  %-16s %-8s %s\n", json_string_value(json_object_get(m, "name")),
               json_string_value(json_object_get(m, "role")), json_string_value(json_object_get(m, "address")));
  }
  json_decref(j);
  return CLI_OK;
}

/* Keys go into URL paths: escape everything but unreserved characters and '/'. */
static void cli_escape(const char *in, char *out, size_t outlen) {
  size_t o = 0;
  for (; *in && o + 4 < outlen; in++) {
    unsigned char ch = (unsigned char)*in;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        strchr("-._~/", ch))
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, outlen - o, "%%%02X", ch);
  }
  out[o] = 0;
}

static int cmd_state(int argc, char **argv) {
  static const char usage[] =
      "gureum state put NS/KEY VALUE [--expect REV] | get NS/KEY [--stale] | list NS/ [--stale] |\n"
      "       delete NS/KEY [--expect REV]   [--node HOST:PORT] [--json]";
  const char *expect = NULL, *stale = NULL;
  cli_flag_t flags[] = {{"--expect", 1, &expect}, {"--stale", 0, &stale}, {NULL, 0, NULL}};
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "Read and write the cluster's replicated key-value state (for debugging).\n"
                     "Writes commit through the Raft leader from any node; reads are linearizable\n"
                     "unless --stale. --expect REV makes a write conditional (0 = must not exist).",
                     flags, 2, 3, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  const char *op = a.pos[0];
  if (expect) {
    char *end;
    long long e = strtoll(expect, &end, 10);
    if (*end || e < 0) return cli_usage_error(usage, "--expect '%s': want a revision >= 0", expect);
  }
  char key[1024], path[1200];
  cli_escape(a.pos[1], key, sizeof key);
  json_t *j = NULL;
  if (strcmp(op, "put") == 0) {
    if (a.npos != 3) return cli_usage_error(usage, "put needs NS/KEY and VALUE");
    snprintf(path, sizeof path, "/v1/state/%s%s%s", key, expect ? "?expect=" : "", expect ? expect : "");
    char err[256];
    httpc_resp_t r;
    if (httpc_request(a.node, "PUT", path, "application/octet-stream", a.pos[2], strlen(a.pos[2]),
                      CLI_TIMEOUT_MS, &r, err, sizeof err) != 0) {
      fprintf(stderr, "gureum: cannot reach node %s: %s\n", a.node, err);
      return CLI_FAILED;
    }
    json_t *body = json_loadb(r.body, r.body_len, 0, NULL);
    int status = r.status;
    httpc_resp_free(&r);
    if (status != 200) {
      const char *msg = json_string_value(json_object_get(json_object_get(body, "error"), "message"));
      fprintf(stderr, "gureum: %s\n", msg ? msg : "write failed");
      json_decref(body);
      return status == 404 ? CLI_NOTFOUND : status == 400 ? CLI_USAGE : CLI_FAILED;
    }
    if (a.json) cli_print_json(body);
    else printf("revision %lld\n", (long long)json_integer_value(json_object_get(body, "revision")));
    json_decref(body);
    return CLI_OK;
  }
  if (a.npos != 2) return cli_usage_error(usage, "unexpected argument '%s'", a.pos[2]);
  if (strcmp(op, "get") == 0) {
    snprintf(path, sizeof path, "/v1/state/%s%s", key, stale ? "?stale=1" : "");
    if ((rv = cli_call(&a, "GET", path, NULL, &j)) != CLI_OK) return rv;
    if (a.json) cli_print_json(j);
    else printf("%s\n", json_string_value(json_object_get(j, "value")) ? json_string_value(json_object_get(j, "value")) : "");
  } else if (strcmp(op, "list") == 0) {
    snprintf(path, sizeof path, "/v1/state?prefix=%s%s", key, stale ? "&stale=1" : "");
    if ((rv = cli_call(&a, "GET", path, NULL, &j)) != CLI_OK) return rv;
    if (a.json) {
      cli_print_json(j);
    } else {
      size_t i;
      json_t *kv;
      json_array_foreach(json_object_get(j, "kvs"), i, kv)
          printf("%-40s rev %-8lld %s\n", json_string_value(json_object_get(kv, "key")),
                 (long long)json_integer_value(json_object_get(kv, "revision")),
                 json_string_value(json_object_get(kv, "value")) ? json_string_value(json_object_get(kv, "value")) : "");
    }
  } else if (strcmp(op, "delete") == 0) {
    snprintf(path, sizeof path, "/v1/state/%s%s%s", key, expect ? "?expect=" : "", expect ? expect : "");
    if ((rv = cli_call(&a, "DELETE", path, NULL, &j)) != CLI_OK) return rv;
    if (a.json) cli_print_json(j);
    else printf("deleted at revision %lld\n", (long long)json_integer_value(json_object_get(j, "revision")));
  } else {
    return cli_usage_error(usage, "unknown subcommand '%s'", op);
  }
  json_decref(j);
  return CLI_OK;
}

static int cmd_key(int argc, char **argv) {
  static const char usage[] =
      "gureum key create NAME [--no-create-bucket] | key list | key delete ACCESS_KEY_ID\n"
      "       [--node HOST:PORT] [--json]";
  const char *nocreate = NULL;
  cli_flag_t flags[] = {{"--no-create-bucket", 0, &nocreate}, {NULL, 0, NULL}};
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "Manage S3 access keys. `create` prints the secret once: keep it. A key may\n"
                     "create buckets (it then owns them) unless created with --no-create-bucket.",
                     flags, 1, 2, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  json_t *j = NULL;
  const char *op = a.pos[0];
  if (strcmp(op, "create") == 0 && a.npos == 2) {
    json_t *body = json_pack("{s:s,s:b}", "name", a.pos[1], "no_create_bucket", nocreate != NULL);
    rv = cli_call(&a, "POST", "/v1/keys", body, &j);
    json_decref(body);
    if (rv != CLI_OK) return rv;
    if (a.json) cli_print_json(j);
    else
      printf("access key id:     %s\nsecret access key: %s\n(the secret is shown only now)\n",
             json_string_value(json_object_get(j, "access_key_id")),
             json_string_value(json_object_get(j, "secret_access_key")));
  } else if (strcmp(op, "list") == 0 && a.npos == 1) {
    if ((rv = cli_call(&a, "GET", "/v1/keys", NULL, &j)) != CLI_OK) return rv;
    if (a.json) {
      cli_print_json(j);
    } else {
      size_t i;
      json_t *k;
      printf("%-22s %-20s %s\n", "ACCESS KEY ID", "NAME", "BUCKET GRANTS");
      json_array_foreach(j, i, k) {
        printf("%-22s %-20s", json_string_value(json_object_get(k, "access_key_id")),
               json_string_value(json_object_get(k, "name")));
        const char *b;
        json_t *p;
        json_object_foreach(json_object_get(k, "grants"), b, p) printf(" %s:%s", b, json_string_value(p));
        printf("\n");
      }
    }
  } else if (strcmp(op, "delete") == 0 && a.npos == 2) {
    char path[200];
    snprintf(path, sizeof path, "/v1/keys/%s", a.pos[1]);
    if ((rv = cli_call(&a, "DELETE", path, NULL, &j)) != CLI_OK) return rv;
    if (a.json) cli_print_json(j);
    else printf("deleted %s\n", a.pos[1]);
  } else {
    return cli_usage_error(usage, "unknown subcommand or wrong arguments");
  }
  json_decref(j);
  return CLI_OK;
}

static int cmd_bucket(int argc, char **argv) {
  static const char usage[] = "gureum bucket allow ACCESS_KEY_ID BUCKET read|write|owner [--node HOST:PORT] [--json]";
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage, "Grant an access key a permission on a bucket.", NULL, 4, 4, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  if (strcmp(a.pos[0], "allow") != 0) return cli_usage_error(usage, "unknown subcommand '%s'", a.pos[0]);
  if (strcmp(a.pos[3], "read") != 0 && strcmp(a.pos[3], "write") != 0 && strcmp(a.pos[3], "owner") != 0)
    return cli_usage_error(usage, "permission '%s': want read, write or owner", a.pos[3]);
  char path[200];
  snprintf(path, sizeof path, "/v1/buckets/%s/allow", a.pos[2]);
  json_t *body = json_pack("{s:s,s:s}", "key", a.pos[1], "permission", a.pos[3]), *j;
  rv = cli_call(&a, "POST", path, body, &j);
  json_decref(body);
  if (rv != CLI_OK) return rv;
  if (a.json) cli_print_json(j);
  else printf("%s may now %s bucket %s\n", a.pos[1], a.pos[3], a.pos[2]);
  json_decref(j);
  return CLI_OK;
}

static int cmd_config(int argc, char **argv) {
  static const char usage[] = "gureum config defaults | gureum config check FILE";
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("usage: %s\n\n  defaults    print every key with its default and meaning\n"
           "  check FILE  validate a config file (exit 2 with the key and line if it is wrong)\n",
           usage);
    return CLI_OK;
  }
  if (argc == 2 && strcmp(argv[1], "defaults") == 0) {
    config_print_defaults(stdout);
    return CLI_OK;
  }
  if (argc == 3 && strcmp(argv[1], "check") == 0) {
    config_t c;
    char err[512];
    config_defaults(&c);
    if (config_load_file(&c, argv[2], err, sizeof err) != 0 || config_finish(&c, err, sizeof err) != 0) {
      fprintf(stderr, "gureum: %s\n", err);
      return CLI_USAGE;
    }
    printf("%s: ok\n", argv[2]);
    return CLI_OK;
  }
  return cli_usage_error(usage, "expected 'defaults' or 'check FILE'");
}

/* `storage status`: the layout, each node's share, and repair/rebalance progress. */
static void cli_print_storage(json_t *j) {
  json_t *rb = json_object_get(j, "rebalance");
  printf("layout version: %lld   copies: %lld (reduced redundancy: %lld)\n",
         (long long)json_integer_value(json_object_get(j, "layout_version")),
         (long long)json_integer_value(json_object_get(j, "replicas")),
         (long long)json_integer_value(json_object_get(j, "rr_replicas")));
  printf("%-16s %-8s %-8s %10s %10s %14s %9s %6s\n", "NODE", "ZONE", "STATE", "PARTITIONS",
         "OBJECTS", "BYTES", "DIFFERING", "HINTS");
  size_t i;
  json_t *n;
  json_array_foreach(json_object_get(j, "nodes"), i, n) {
    json_t *ae = json_object_get(n, "antientropy");
    printf("%-16s %-8s %-8s %10lld %10lld %14lld %9lld %6lld\n",
           json_string_value(json_object_get(n, "name")), json_string_value(json_object_get(n, "zone")),
           json_string_value(json_object_get(n, "state")),
           (long long)json_integer_value(json_object_get(n, "partitions")),
           (long long)json_integer_value(json_object_get(n, "objects")),
           (long long)json_integer_value(json_object_get(n, "bytes")),
           (long long)json_integer_value(json_object_get(ae, "differing")),
           (long long)json_integer_value(json_object_get(n, "hints_pending")));
  }
  long long moving = json_integer_value(json_object_get(rb, "moving_partitions"));
  if (moving) {
    printf("rebalance: %lld partitions moving, %.0f%% done", moving,
           json_real_value(json_object_get(rb, "percent")));
    json_t *eta = json_object_get(rb, "eta_s");
    if (json_is_integer(eta)) printf(", ETA %llds", (long long)json_integer_value(eta));
    printf("\n");
  } else {
    printf("rebalance: settled\n");
  }
}

static int cmd_storage(int argc, char **argv) {
  static const char usage[] = "gureum storage status|scrub|sync [--node HOST:PORT] [--json]";
  cli_args_t a;
  int rv = cli_parse(argc, argv, usage,
                     "status: the storage layout (version, copies), each storage node's partitions,\n"
                     "objects and bytes, and rebalance / repair progress with a percentage and ETA.\n"
                     "scrub:  verify every block on the node now, repairing bad ones from a copy.\n"
                     "sync:   run anti-entropy on the node now.",
                     NULL, 1, 1, &a);
  if (rv) return rv < 0 ? CLI_OK : rv;
  const char *path = strcmp(a.pos[0], "status") == 0  ? "/v1/storage/status"
                     : strcmp(a.pos[0], "scrub") == 0 ? "/v1/storage/scrub"
                     : strcmp(a.pos[0], "sync") == 0  ? "/v1/storage/sync"
                                                      : NULL;
  if (!path) return cli_usage_error(usage, "unknown subcommand '%s'", a.pos[0]);
  json_t *j;
  const char *method = strcmp(a.pos[0], "status") == 0 ? "GET" : "POST";
  if ((rv = cli_call(&a, method, path, NULL, &j)) != CLI_OK)
    return rv;
  if (a.json) cli_print_json(j);
  else if (strcmp(a.pos[0], "status") == 0) cli_print_storage(j);
  else printf("%s started on %s\n", a.pos[0], a.node);
  json_decref(j);
  return CLI_OK;
}

static int cmd_version(int argc, char **argv) {
  (void)argc;
  (void)argv;
  printf("gureum %s\n", GUREUM_VERSION);
  return CLI_OK;
}

const cli_cmd_t cli_commands[] = {
    {"status", cmd_status, "show a node's status and endpoints"},
    {"members", cmd_members, "list the cluster's members and their state"},
    {"roles", cmd_roles, "change a running node's roles: roles set r1,r2"},
    {"raft", cmd_raft, "show the control plane: raft status"},
    {"state", cmd_state, "read and write the replicated state: state put|get|list|delete"},
    {"key", cmd_key, "S3 access keys: key create|list|delete"},
    {"bucket", cmd_bucket, "grant a key access to a bucket: bucket allow KEY BUCKET PERM"},
    {"storage", cmd_storage, "storage layout, replication and repair: storage status|scrub|sync"},
    {"ping", cmd_ping, "ping a peer over the cluster RPC"},
    {"config", cmd_config, "print defaults or check a config file"},
    {"tls", tls_cli, "cluster CA and node certificates: tls init|issue|ensure"},
    {"version", cmd_version, "print the version"},
    {NULL, NULL, NULL},
};

void cli_usage(FILE *out) {
  fprintf(out, "usage: gureum COMMAND [ARGS] [--help]\n\ncommands:\n");
  fprintf(out, "  %-10s %s\n", "node", "run a node: gureum node start [--help]");
  for (const cli_cmd_t *c = cli_commands; c->name; c++) fprintf(out, "  %-10s %s\n", c->name, c->summary);
}
