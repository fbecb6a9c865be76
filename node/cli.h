/* cli.h - the `gureum` command line: client commands that talk to a node's admin API.
 * Exit codes: 0 success, 1 not found, 2 bad usage, 3 the node could not do it (or be reached). */
#ifndef GUREUM_CLI_H
#define GUREUM_CLI_H

#include <stdio.h>

#define CLI_OK 0
#define CLI_NOTFOUND 1
#define CLI_USAGE 2
#define CLI_FAILED 3

typedef struct cli_cmd_s {
  const char *name;
  int (*run)(int argc, char **argv); /* argv[0] is the command name */
  const char *summary;
} cli_cmd_t;

/* Every client command, NULL-terminated. */
extern const cli_cmd_t cli_commands[];

void cli_usage(FILE *out);

#endif
