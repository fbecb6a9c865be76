/* log.h - structured logging: one line per event, key=value fields.
 * Thread-safe; lines go to stderr or to the file named in the config. */
#ifndef GUREUM_LOG_H
#define GUREUM_LOG_H

#include <stdarg.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

/* Parse "debug", "info", "warn", "error"; returns -1 if unknown. */
int log_level_parse(const char *s);
void log_set_level(log_level_t lvl);
/* Send lines to `path` (appending); NULL or "" means stderr. Returns 0 or -errno. */
int log_set_file(const char *path);
/* Name of this process in every line (node=NAME). */
void log_set_node(const char *name);

/* `fmt` holds the remaining key=value fields, e.g. "addr=%s port=%d". */
void log_write(log_level_t lvl, const char *module, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(mod, ev, ...) log_write(LOG_DEBUG, mod, ev, __VA_ARGS__)
#define log_info(mod, ev, ...) log_write(LOG_INFO, mod, ev, __VA_ARGS__)
#define log_warn(mod, ev, ...) log_write(LOG_WARN, mod, ev, __VA_ARGS__)
#define log_error(mod, ev, ...) log_write(LOG_ERROR, mod, ev, __VA_ARGS__)

#endif
