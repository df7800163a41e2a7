#ifndef MEETPUNT_CLIBCRYPTO_SHIM_H
#define MEETPUNT_CLIBCRYPTO_SHIM_H
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

// Initialises libcrypto without registering its clean-up at exit (tearing down the provider tables took
// 0.2 ms of every `analyze` run; the process's memory goes anyway, and no thread can be hashing while
// libcrypto is torn down). The choice is process-wide and only the first initialisation makes it: in
// `run`, libcurl may initialise OpenSSL first, and then its clean-up at exit stays.
static inline void cmp_crypto_init(void) { OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL); }

// One-shot HMAC-SHA256. EVP_sha256() is a function, but keeping the whole call in C
// keeps OpenSSL's types out of Swift. Returns 1 on success.
static inline int cmp_hmac_sha256(const void *key, int key_len, const unsigned char *data, size_t data_len,
                                  unsigned char out[32]) {
    unsigned int out_len = 0;
    unsigned char *r = HMAC(EVP_sha256(), key, key_len, data, data_len, out, &out_len);
    return (r != NULL && out_len == 32) ? 1 : 0;
}
// A reusable HMAC-SHA256 context holding `key`, or NULL. One-shot HMAC() fetches the algorithm from the
// provider on every call (2.2 us here against 0.4 us for a keyed context run again).
static inline EVP_MAC_CTX *cmp_hmac_sha256_keyed(const void *key, size_t key_len) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);  // the context holds its own reference
    if (ctx == NULL) return NULL;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
// HMAC-SHA256 of `data` under the context's key (EVP_MAC_init without a key starts over with the same
// key). Returns 1 on success. The context is not safe to use from two threads at once.
static inline int cmp_hmac_sha256_run(EVP_MAC_CTX *ctx, const unsigned char *data, size_t data_len, unsigned char out[32]) {
    size_t out_len = 0;
    if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(ctx, data, data_len) != 1) return 0;
    return EVP_MAC_final(ctx, out, &out_len, 32) == 1 && out_len == 32 ? 1 : 0;
}
// Frees the context; OpenSSL clears the key it held.
static inline void cmp_hmac_sha256_free(EVP_MAC_CTX *ctx) { EVP_MAC_CTX_free(ctx); }
static inline int cmp_random_bytes(unsigned char *buf, int len) { return RAND_bytes(buf, len); }
static inline int cmp_constant_time_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }
#endif
