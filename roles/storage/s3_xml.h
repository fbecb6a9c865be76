/* s3_xml.h - XML for the S3 API: a small escaping writer for responses, and request documents
 * parsed by libxml2 with network access, DTDs and entity expansion refused. */
#ifndef GUREUM_S3_XML_H
#define GUREUM_S3_XML_H

#include <libxml/tree.h>
#include <stddef.h>
#include <stdint.h>

typedef struct s3_xml_s {
  char *buf;
  size_t len, cap;
} s3_xml_t;

#define S3_XMLNS "http://s3.amazonaws.com/doc/2006-03-01/"

/* Starts with the XML declaration and opens `root` (with the S3 namespace). */
void s3_xml_begin(s3_xml_t *x, const char *root);
void s3_xml_open(s3_xml_t *x, const char *tag);
void s3_xml_close(s3_xml_t *x, const char *tag);
void s3_xml_elem(s3_xml_t *x, const char *tag, const char *text); /* text is escaped */
void s3_xml_elemf(s3_xml_t *x, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void s3_xml_elem_u64(s3_xml_t *x, const char *tag, uint64_t v);
void s3_xml_elem_time(s3_xml_t *x, const char *tag, uint64_t ms); /* ISO 8601 with millis */
void s3_xml_raw(s3_xml_t *x, const char *text);
void s3_xml_free(s3_xml_t *x);

/* Parse a request body; NULL if it is not well-formed or declares a DTD. Free with xmlFreeDoc. */
xmlDocPtr s3_xml_parse(const char *body, size_t len);
/* Child elements by local name (namespaces ignored). */
xmlNodePtr s3_xml_child(xmlNodePtr parent, const char *name);
xmlNodePtr s3_xml_next(xmlNodePtr after, const char *name); /* next sibling with that name */
/* Text of the named child (malloc'ed, trimmed), or NULL. */
char *s3_xml_child_text(xmlNodePtr parent, const char *name);

/* HTTP dates (RFC 7231) and ISO 8601, from milliseconds since the epoch. */
void s3_http_date(uint64_t ms, char out[40]);
void s3_iso_date(uint64_t ms, char out[40]);
/* Parse an HTTP date (RFC 7231, RFC 850 or asctime); returns -1 on failure. */
int64_t s3_parse_http_date(const char *s);

#endif
