#ifndef MEETPUNT_CCRYPTO_H
#define MEETPUNT_CCRYPTO_H
#include <stddef.h>

// OpenSSL's libcrypto (3.0 or newer), loaded with dlopen of its SONAME the first time a pseudonym, an HMAC
// or random bytes are asked for, not at process start: its relocations were 0.6-0.9 ms of every start,
// on the serial path before `analyze FILE` reads its first packet (`analyze` loads it on its interval
// folder's thread once the first packet is read). The agent's only calls into libcrypto go through the
// functions below; OpenSSL's types stay in ccrypto.c.

/// Loads libcrypto and initialises it once (thread-safe): 0 on success, otherwise -1 with the reason in
/// `error`. Initialised without OpenSSL's clean-up at exit (tearing down its provider tables took 0.2 ms
/// of every `analyze` run; the process's memory goes anyway). Every other function here may be called
/// only after it returned 0.
int cmp_crypto_load(char *error, size_t errorLength);

/// For a process that never opens TLS (`analyze`): makes a later cmp_crypto_load initialise libcrypto
/// without reading OpenSSL's system configuration (openssl.cnf) and without the legacy cipher and digest
/// name tables. Irreversible and process-wide: OpenSSL initialises once, so libssl loaded later would not
/// read the configuration either, and EVP_get_digestbyname/EVP_get_cipherbyname would find nothing,
/// which makes certificate verification fail ("unknown message digest algorithm"). Call it before any
/// thread may load libcrypto. Returns 0 when libcrypto was already loaded (then it has no effect), 1
/// otherwise.
int cmp_crypto_configure_without_tls(void);

/// 1 once cmp_crypto_configure_without_tls has returned 1 in this process.
int cmp_crypto_is_without_tls(void);

/// One-shot HMAC-SHA256. Returns 1 on success.
int cmp_hmac_sha256(const void *key, int keyLength, const unsigned char *data, size_t dataLength, unsigned char out[32]);

/// A reusable HMAC-SHA256 context holding `key` (an `EVP_MAC_CTX`), or NULL. One-shot HMAC() fetches the
/// algorithm from the provider on every call (2.2 us here against 0.4 us for a keyed context run again).
void *cmp_hmac_sha256_keyed(const void *key, size_t keyLength);
/// HMAC-SHA256 of `data` under the context's key. Returns 1 on success. Not for two threads at once.
int cmp_hmac_sha256_run(void *context, const unsigned char *data, size_t dataLength, unsigned char out[32]);
/// Frees the context; OpenSSL clears the key it held.
void cmp_hmac_sha256_free(void *context);

/// Bytes from OpenSSL's DRBG. Returns 1 on success.
int cmp_random_bytes(unsigned char *buffer, int length);
/// 1 when the two buffers are equal, compared in constant time.
int cmp_constant_time_equal(const void *a, const void *b, size_t length);

#endif
