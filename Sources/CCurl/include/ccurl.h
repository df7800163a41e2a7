#ifndef MEETPUNT_CCURL_H
#define MEETPUNT_CCURL_H
#include <stddef.h>
#include <curl/curl.h>

// libcurl is loaded (dlopen of its SONAME) when `meetpunt-agent run` builds its transport, not at process
// start: its dependency tree (TLS, HTTP/2, IDN, LDAP, Kerberos …) cost 5 ms of dynamic linking on every
// start, and `analyze FILE` and `sample --once` never talk HTTP. The agent's only calls into libcurl go
// through the wrappers below; the header is included for its types and constants only.

/// Loads libcurl and runs curl_global_init once (thread-safe); 0 on success, otherwise -1 with the
/// reason in `error`. Every other function here may be called only after it returned 0.
int ccurl_load(char *error, size_t errorLength);

CURL *ccurl_easy_init(void);
void ccurl_easy_cleanup(CURL *handle);
CURLcode ccurl_easy_perform(CURL *handle);
const char *ccurl_easy_strerror(CURLcode code);
struct curl_slist *ccurl_slist_append(struct curl_slist *list, const char *string);
void ccurl_slist_free_all(struct curl_slist *list);

// curl_easy_setopt and curl_easy_getinfo are variadic: Swift cannot call them, so each argument type
// gets a typed wrapper.
CURLcode ccurl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode ccurl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode ccurl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode ccurl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);
typedef size_t (*ccurl_write_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);
CURLcode ccurl_setopt_write_function(CURL *handle, ccurl_write_callback function);
CURLcode ccurl_setopt_header_function(CURL *handle, ccurl_write_callback function);
CURLcode ccurl_getinfo_long(CURL *handle, CURLINFO info, long *value);
unsigned int ccurl_version_num(void);
const char *ccurl_version_string(void);
/// The TLS library libcurl was built with, or "" when it has none.
const char *ccurl_ssl_version_string(void);

#endif
