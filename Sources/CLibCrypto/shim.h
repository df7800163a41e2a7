#ifndef MEETPUNT_CLIBCRYPTO_SHIM_H
#define MEETPUNT_CLIBCRYPTO_SHIM_H
#include <openssl/hmac.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>

// One-shot HMAC-SHA256. EVP_sha256() is a function, but keeping the whole call in C
// keeps OpenSSL's types out of Swift. Returns 1 on success.
static inline int cmp_hmac_sha256(const void *key, int key_len, const unsigned char *data, size_t data_len,
                                  unsigned char out[32]) {
    unsigned int out_len = 0;
    unsigned char *r = HMAC(EVP_sha256(), key, key_len, data, data_len, out, &out_len);
    return (r != NULL && out_len == 32) ? 1 : 0;
}
static inline int cmp_random_bytes(unsigned char *buf, int len) { return RAND_bytes(buf, len); }
static inline int cmp_constant_time_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }
#endif
