/* log.c - structured logging: one line per event, key=value fields.
 * A line is built in full first, then written with one call, so threads never interleave. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static struct {
  log_level_t level;
  FILE *out; /* NULL = stderr */
  char node[64];
  pthread_mutex_t mu;
} g_log = {LOG_INFO, NULL, "", PTHREAD_MUTEX_INITIALIZER};

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  return -1;
}

void log_set_level(log_level_t lvl) { g_log.level = lvl; }

void log_set_node(const char *name) { snprintf(g_log.node, sizeof g_log.node, "%s", name); }

int log_set_file(const char *path) {
  FILE *f = NULL;
  if (path && *path) {
    f = fopen(path, "a");
    if (!f) return -errno;
    setvbuf(f, NULL, _IOLBF, 0);
  }
  pthread_mutex_lock(&g_log.mu);
  if (g_log.out) fclose(g_log.out);
  g_log.out = f;
  pthread_mutex_unlock(&g_log.mu);
  return 0;
}

void log_write(log_level_t lvl, const char *module, const char *event, const char *fmt, ...) {
  if (lvl < g_log.level) return;
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[lvl]);
  if (g_log.node[0]) n += snprintf(line + n, sizeof line - n, " node=%s", g_log.node);
  n += snprintf(line + n, sizeof line - n, " mod=%s event=%s", module, event);
  if (fmt && *fmt && n < (int)sizeof line - 2) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
  }
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  pthread_mutex_lock(&g_log.mu);
  fwrite(line, 1, n, g_log.out ? g_log.out : stderr);
  pthread_mutex_unlock(&g_log.mu);
}
