/* main.c - entry point of the one `gureum` binary: `gureum node start` runs the daemon,
 * every other command is a client of a node's admin API (cli.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "node.h"

extern char **environ;

static const char node_usage[] =
    "gureum node start [--config FILE] [--name NAME] [--data DIR] [--bind IP] [--advertise IP]\n"
    "                  [--seeds IP:PORT,...] [--roles r1,r2] [--zone ZONE] [--log-level LEVEL]\n"
    "                  [--log-file FILE]";

/* Flags map onto config keys; the config table does the validation. */
static const struct {
  const char *flag, *key;
} node_flags[] = {
    {"--name", "name"},     {"--data", "data_dir"},       {"--bind", "bind"},
    {"--advertise", "advertise"}, {"--seeds", "seeds"},   {"--roles", "roles"},
    {"--zone", "zone"},     {"--log-level", "log.level"}, {"--log-file", "log.file"},
};
#define NODE_NFLAGS (sizeof node_flags / sizeof node_flags[0])

static int node_fail(const char *msg) {
  fprintf(stderr, "gureum: %s\nusage: %s\n", msg, node_usage);
  return CLI_USAGE;
}

static int cmd_node_start(int argc, char **argv) {
  config_t cfg;
  char err[600];
  const char *config_file = getenv("GUREUM_CONFIG");
  config_defaults(&cfg);
  /* First pass: --help and --config, since the file applies before env and flags. */
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      printf("usage: %s\n\nStart a node. With no flags: a single node with every role on 127.0.0.1,\n"
             "data under ./gureum-data. Precedence: defaults < --config FILE < GUREUM_* env < flags.\n"
             "Every key and its default: `gureum config defaults`.\n",
             node_usage);
      return CLI_OK;
    }
    if (strcmp(argv[i], "--config") == 0) {
      if (i + 1 >= argc) return node_fail("--config needs a FILE");
      config_file = argv[++i];
    }
  }
  if (config_file && config_load_file(&cfg, config_file, err, sizeof err) != 0) {
    fprintf(stderr, "gureum: %s\n", err);
    return CLI_USAGE;
  }
  if (config_load_env(&cfg, environ, err, sizeof err) != 0) {
    fprintf(stderr, "gureum: %s\n", err);
    return CLI_USAGE;
  }
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0) {
      i++;
      continue;
    }
    size_t f;
    for (f = 0; f < NODE_NFLAGS; f++)
      if (strcmp(argv[i], node_flags[f].flag) == 0) break;
    if (f == NODE_NFLAGS) {
      snprintf(err, sizeof err, "unknown option '%s'", argv[i]);
      return node_fail(err);
    }
    if (i + 1 >= argc) {
      snprintf(err, sizeof err, "%s needs a value", argv[i]);
      return node_fail(err);
    }
    if (config_set(&cfg, node_flags[f].key, argv[i + 1], argv[i], err, sizeof err) != 0) {
      fprintf(stderr, "gureum: %s\n", err);
      return CLI_USAGE;
    }
    i++;
  }
  if (config_finish(&cfg, err, sizeof err) != 0) {
    fprintf(stderr, "gureum: %s\n", err);
    return CLI_USAGE;
  }
  log_set_level(log_level_parse(cfg.log_level));
  log_set_node(cfg.name);
  if (cfg.log_file[0] && log_set_file(cfg.log_file) != 0) {
    fprintf(stderr, "gureum: cannot open log file %s\n", cfg.log_file);
    return CLI_USAGE;
  }
  return node_run(&cfg);
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    cli_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? CLI_USAGE : CLI_OK;
  }
  if (strcmp(argv[1], "node") == 0) {
    if (argc >= 3 && strcmp(argv[2], "start") == 0) return cmd_node_start(argc - 3, argv + 3);
    if (argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
      printf("usage: %s\n", node_usage);
      return CLI_OK;
    }
    return node_fail("expected 'node start'");
  }
  for (const cli_cmd_t *c = cli_commands; c->name; c++)
    if (strcmp(argv[1], c->name) == 0) return c->run(argc - 1, argv + 1);
  fprintf(stderr, "gureum: unknown command '%s'\n", argv[1]);
  cli_usage(stderr);
  return CLI_USAGE;
}
