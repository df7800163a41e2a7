#define _GNU_SOURCE  // RTLD_DEEPBIND
#include "ccrypto.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>

// The loaded entry points. Written once under `once`, read only after cmp_crypto_load returned 0.
static struct {
    int (*init_crypto)(uint64_t, const OPENSSL_INIT_SETTINGS *);
    unsigned char *(*hmac)(const EVP_MD *, const void *, int, const unsigned char *, size_t, unsigned char *, unsigned int *);
    const EVP_MD *(*sha256)(void);
    EVP_MAC *(*mac_fetch)(OSSL_LIB_CTX *, const char *, const char *);
    void (*mac_free)(EVP_MAC *);
    EVP_MAC_CTX *(*mac_ctx_new)(EVP_MAC *);
    void (*mac_ctx_free)(EVP_MAC_CTX *);
    int (*mac_init)(EVP_MAC_CTX *, const unsigned char *, size_t, const OSSL_PARAM[]);
    int (*mac_update)(EVP_MAC_CTX *, const unsigned char *, size_t);
    int (*mac_final)(EVP_MAC_CTX *, unsigned char *, size_t *, size_t);
    OSSL_PARAM (*param_utf8_string)(const char *, char *, size_t);
    OSSL_PARAM (*param_end)(void);
    int (*rand_bytes)(unsigned char *, int);
    int (*memcmp)(const void *, const void *, size_t);
} api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static int withoutTLS;
static char failure[256];

static void load(void) {
    // The SONAME of OpenSSL 3, as Debian (libssl3) and OpenWrt (libopenssl3) install it. RTLD_DEEPBIND
    // (glibc): libcrypto's thousands of references to its own exported symbols resolve in libcrypto
    // first, not after a search through the agent and every library it links (libpcap alone brings
    // eight), which was 0.4 ms of each load here. libcrypto needs only libc and the agent interposes no
    // libc function; an LD_PRELOADed one (a malloc replacement, a profiler) is then bypassed in
    // libcrypto's own calls. Left out where it does not exist and under sanitizers, which refuse it.
    int flags = RTLD_NOW | RTLD_LOCAL;
#if defined(RTLD_DEEPBIND) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#if !defined(__has_feature)
    flags |= RTLD_DEEPBIND;
#elif !__has_feature(address_sanitizer) && !__has_feature(thread_sanitizer) && !__has_feature(memory_sanitizer)
    flags |= RTLD_DEEPBIND;
#endif
#endif
    void *library = dlopen("libcrypto.so.3", flags);
    if (!library) {
        const char *why = dlerror();
        snprintf(failure, sizeof failure, "cannot load libcrypto.so.3: %s", why ? why : "unknown error");
        return;
    }
#define CCRYPTO_SYMBOL(field, name)                                                           \
    do {                                                                                      \
        *(void **)(&api.field) = dlsym(library, name);                                        \
        if (!api.field) {                                                                     \
            snprintf(failure, sizeof failure, "libcrypto.so.3 has no symbol %s", name);       \
            dlclose(library);                                                                 \
            return;                                                                           \
        }                                                                                     \
    } while (0)
    CCRYPTO_SYMBOL(init_crypto, "OPENSSL_init_crypto");
    CCRYPTO_SYMBOL(hmac, "HMAC");
    CCRYPTO_SYMBOL(sha256, "EVP_sha256");
    CCRYPTO_SYMBOL(mac_fetch, "EVP_MAC_fetch");
    CCRYPTO_SYMBOL(mac_free, "EVP_MAC_free");
    CCRYPTO_SYMBOL(mac_ctx_new, "EVP_MAC_CTX_new");
    CCRYPTO_SYMBOL(mac_ctx_free, "EVP_MAC_CTX_free");
    CCRYPTO_SYMBOL(mac_init, "EVP_MAC_init");
    CCRYPTO_SYMBOL(mac_update, "EVP_MAC_update");
    CCRYPTO_SYMBOL(mac_final, "EVP_MAC_final");
    CCRYPTO_SYMBOL(param_utf8_string, "OSSL_PARAM_construct_utf8_string");
    CCRYPTO_SYMBOL(param_end, "OSSL_PARAM_construct_end");
    CCRYPTO_SYMBOL(rand_bytes, "RAND_bytes");
    CCRYPTO_SYMBOL(memcmp, "CRYPTO_memcmp");
#undef CCRYPTO_SYMBOL
    // The choice of no clean-up at exit is process-wide and only the first initialisation makes it; `run`
    // loads libcrypto here at start, before libcurl (which links it) is opened, so the choice is this one.
    uint64_t options = OPENSSL_INIT_NO_ATEXIT;
    // Without TLS (`analyze`), neither openssl.cnf (TLS policy and providers: 0.4 ms to read) nor the
    // legacy name tables of every cipher and digest, which OpenSSL 3 copies into its name map at the
    // first fetch (0.35 ms of the first HMAC's 0.8-1.15 ms here). HMAC-SHA256 does not need them:
    // EVP_MAC_fetch("HMAC") and the digest "SHA256" resolve through names the default provider registers
    // itself, and the one-shot HMAC() takes EVP_sha256()'s name from the built-in object table. What
    // would miss them is EVP_get_digestbyname and EVP_get_cipherbyname, which certificate verification
    // uses: hence "without TLS" (ccrypto.h).
    if (withoutTLS)
        options |= OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS;
    if (api.init_crypto(options, NULL) != 1) {
        snprintf(failure, sizeof failure, "libcrypto.so.3: OPENSSL_init_crypto failed");
        return;
    }
    loaded = 1;
}

int cmp_crypto_configure_without_tls(void) {
    if (loaded) return 0;
    withoutTLS = 1;
    return 1;
}

int cmp_crypto_is_without_tls(void) { return withoutTLS; }

int cmp_crypto_load(char *error, size_t errorLength) {
    pthread_once(&once, load);
    if (loaded) return 0;
    if (error && errorLength > 0) snprintf(error, errorLength, "%s", failure);
    return -1;
}

int cmp_hmac_sha256(const void *key, int keyLength, const unsigned char *data, size_t dataLength, unsigned char out[32]) {
    unsigned int outLength = 0;
    unsigned char *r = api.hmac(api.sha256(), key, keyLength, data, dataLength, out, &outLength);
    return (r != NULL && outLength == 32) ? 1 : 0;
}

void *cmp_hmac_sha256_keyed(const void *key, size_t keyLength) {
    EVP_MAC *mac = api.mac_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *context = api.mac_ctx_new(mac);
    api.mac_free(mac);  // the context holds its own reference
    if (context == NULL) return NULL;
    OSSL_PARAM params[2] = {api.param_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0), api.param_end()};
    if (api.mac_init(context, key, keyLength, params) != 1) {
        api.mac_ctx_free(context);
        return NULL;
    }
    return context;
}

int cmp_hmac_sha256_run(void *context, const unsigned char *data, size_t dataLength, unsigned char out[32]) {
    size_t outLength = 0;
    // EVP_MAC_init without a key starts over with the key the context holds.
    if (api.mac_init(context, NULL, 0, NULL) != 1 || api.mac_update(context, data, dataLength) != 1) return 0;
    return api.mac_final(context, out, &outLength, 32) == 1 && outLength == 32 ? 1 : 0;
}

void cmp_hmac_sha256_free(void *context) { api.mac_ctx_free(context); }

int cmp_random_bytes(unsigned char *buffer, int length) { return api.rand_bytes(buffer, length); }

int cmp_constant_time_equal(const void *a, const void *b, size_t length) { return api.memcmp(a, b, length) == 0; }
