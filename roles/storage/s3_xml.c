/* s3_xml.c - XML for the S3 API: an escaping writer for responses (S3's replies are flat and
 * regular) and hardened libxml2 parsing of request documents. */
#include "s3_xml.h"

#include <libxml/parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void xml_grow(s3_xml_t *x, size_t more) {
  if (x->len + more + 1 <= x->cap) return;
  size_t cap = x->cap ? x->cap : 1024;
  while (cap < x->len + more + 1) cap *= 2;
  char *b = realloc(x->buf, cap);
  if (!b) abort();
  x->buf = b;
  x->cap = cap;
}

void s3_xml_raw(s3_xml_t *x, const char *text) {
  size_t n = strlen(text);
  xml_grow(x, n);
  memcpy(x->buf + x->len, text, n);
  x->len += n;
  x->buf[x->len] = 0;
}

static void xml_escaped(s3_xml_t *x, const char *t) {
  for (; *t; t++) {
    switch (*t) {
    case '&': s3_xml_raw(x, "&amp;"); break;
    case '<': s3_xml_raw(x, "&lt;"); break;
    case '>': s3_xml_raw(x, "&gt;"); break;
    case '"': s3_xml_raw(x, "&quot;"); break;
    case '\'': s3_xml_raw(x, "&apos;"); break;
    case '\r': s3_xml_raw(x, "&#13;"); break;
    default: {
      char c[2] = {*t, 0};
      s3_xml_raw(x, c);
    }
    }
  }
}

void s3_xml_begin(s3_xml_t *x, const char *root) {
  memset(x, 0, sizeof *x);
  s3_xml_raw(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
  s3_xml_raw(x, root);
  s3_xml_raw(x, " xmlns=\"" S3_XMLNS "\">");
}

void s3_xml_open(s3_xml_t *x, const char *tag) {
  s3_xml_raw(x, "<");
  s3_xml_raw(x, tag);
  s3_xml_raw(x, ">");
}

void s3_xml_close(s3_xml_t *x, const char *tag) {
  s3_xml_raw(x, "</");
  s3_xml_raw(x, tag);
  s3_xml_raw(x, ">");
}

void s3_xml_elem(s3_xml_t *x, const char *tag, const char *text) {
  s3_xml_open(x, tag);
  xml_escaped(x, text ? text : "");
  s3_xml_close(x, tag);
}

void s3_xml_elemf(s3_xml_t *x, const char *tag, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  s3_xml_elem(x, tag, buf);
}

void s3_xml_elem_u64(s3_xml_t *x, const char *tag, uint64_t v) {
  s3_xml_elemf(x, tag, "%llu", (unsigned long long)v);
}

void s3_xml_elem_time(s3_xml_t *x, const char *tag, uint64_t ms) {
  char d[40];
  s3_iso_date(ms, d);
  s3_xml_elem(x, tag, d);
}

void s3_xml_free(s3_xml_t *x) {
  free(x->buf);
  memset(x, 0, sizeof *x);
}

xmlDocPtr s3_xml_parse(const char *body, size_t len) {
  if (!body || len == 0 || len > (1u << 20)) return NULL;
  /* No network, no entity substitution, no DTD loading: a request body cannot reach files,
   * the network, or blow up through entity expansion. */
  xmlDocPtr d = xmlReadMemory(body, (int)len, "request.xml", NULL,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (d && (d->intSubset || d->extSubset || !xmlDocGetRootElement(d))) {
    xmlFreeDoc(d);
    return NULL;
  }
  return d;
}

static int name_is(xmlNodePtr n, const char *name) {
  return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

xmlNodePtr s3_xml_child(xmlNodePtr parent, const char *name) {
  for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
    if (name_is(n, name)) return n;
  return NULL;
}

xmlNodePtr s3_xml_next(xmlNodePtr after, const char *name) {
  for (xmlNodePtr n = after ? after->next : NULL; n; n = n->next)
    if (name_is(n, name)) return n;
  return NULL;
}

char *s3_xml_child_text(xmlNodePtr parent, const char *name) {
  xmlNodePtr n = s3_xml_child(parent, name);
  if (!n) return NULL;
  xmlChar *t = xmlNodeGetContent(n);
  char *s = strdup(t ? (const char *)t : "");
  xmlFree(t);
  char *p = s;
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
  memmove(s, p, strlen(p) + 1);
  size_t l = strlen(s);
  while (l && (s[l - 1] == ' ' || s[l - 1] == '\n' || s[l - 1] == '\t' || s[l - 1] == '\r')) s[--l] = 0;
  return s;
}

void s3_http_date(uint64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

void s3_iso_date(uint64_t ms, char out[40]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, 40 - n, ".%03dZ", (int)(ms % 1000));
}

int64_t s3_parse_http_date(const char *s) {
  static const char *formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                  "%a %b %e %H:%M:%S %Y", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H%M%SZ"};
  for (size_t i = 0; s && i < sizeof formats / sizeof formats[0]; i++) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, formats[i], &tm);
    if (end && *end == 0) return (int64_t)timegm(&tm);
  }
  return -1;
}
