#include "ccurl.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

// The loaded entry points. Written once under `once`, read only after ccurl_load returned 0.
static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    curl_version_info_data *(*version_info)(CURLversion);
} api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static char failure[256];

static void load(void) {
    // The SONAME, as the package manager installs it (libcurl4 on Debian, libcurl on OpenWrt).
    void *library = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        const char *why = dlerror();
        snprintf(failure, sizeof failure, "cannot load libcurl.so.4: %s", why ? why : "unknown error");
        return;
    }
#define CCURL_SYMBOL(field, name)                                                              \
    do {                                                                                       \
        *(void **)(&api.field) = dlsym(library, name);                                         \
        if (!api.field) {                                                                      \
            snprintf(failure, sizeof failure, "libcurl.so.4 has no symbol %s", name);          \
            dlclose(library);                                                                  \
            return;                                                                            \
        }                                                                                      \
    } while (0)
    CCURL_SYMBOL(global_init, "curl_global_init");
    CCURL_SYMBOL(easy_init, "curl_easy_init");
    CCURL_SYMBOL(easy_cleanup, "curl_easy_cleanup");
    CCURL_SYMBOL(easy_perform, "curl_easy_perform");
    CCURL_SYMBOL(easy_strerror, "curl_easy_strerror");
    CCURL_SYMBOL(easy_setopt, "curl_easy_setopt");
    CCURL_SYMBOL(easy_getinfo, "curl_easy_getinfo");
    CCURL_SYMBOL(slist_append, "curl_slist_append");
    CCURL_SYMBOL(slist_free_all, "curl_slist_free_all");
    CCURL_SYMBOL(version_info, "curl_version_info");
#undef CCURL_SYMBOL
    CURLcode rc = api.global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(failure, sizeof failure, "curl_global_init failed: %s", api.easy_strerror(rc));
        return;
    }
    loaded = 1;
}

int ccurl_load(char *error, size_t errorLength) {
    pthread_once(&once, load);
    if (loaded) return 0;
    if (error && errorLength > 0) snprintf(error, errorLength, "%s", failure);
    return -1;
}

CURL *ccurl_easy_init(void) { return api.easy_init(); }
void ccurl_easy_cleanup(CURL *handle) { api.easy_cleanup(handle); }
CURLcode ccurl_easy_perform(CURL *handle) { return api.easy_perform(handle); }
const char *ccurl_easy_strerror(CURLcode code) { return api.easy_strerror(code); }
struct curl_slist *ccurl_slist_append(struct curl_slist *list, const char *string) { return api.slist_append(list, string); }
void ccurl_slist_free_all(struct curl_slist *list) { api.slist_free_all(list); }

CURLcode ccurl_setopt_long(CURL *handle, CURLoption option, long value) { return api.easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_string(CURL *handle, CURLoption option, const char *value) { return api.easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_pointer(CURL *handle, CURLoption option, void *value) { return api.easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) { return api.easy_setopt(handle, option, value); }
CURLcode ccurl_setopt_write_function(CURL *handle, ccurl_write_callback function) { return api.easy_setopt(handle, CURLOPT_WRITEFUNCTION, function); }
CURLcode ccurl_setopt_header_function(CURL *handle, ccurl_write_callback function) { return api.easy_setopt(handle, CURLOPT_HEADERFUNCTION, function); }
CURLcode ccurl_getinfo_long(CURL *handle, CURLINFO info, long *value) { return api.easy_getinfo(handle, info, value); }
unsigned int ccurl_version_num(void) { return api.version_info(CURLVERSION_NOW)->version_num; }
const char *ccurl_version_string(void) { return api.version_info(CURLVERSION_NOW)->version; }
const char *ccurl_ssl_version_string(void) {
    const char *s = api.version_info(CURLVERSION_NOW)->ssl_version;
    return s ? s : "";
}
