#include "compute/tls_identity.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <memory>

namespace vireo::compute {

namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, size_t(n));
}

}  // namespace

Result<TlsIdentity> make_tls_identity(const std::string& common_name) {
  KeyPtr key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  CertPtr cert(X509_new(), X509_free);
  if (!key || !cert)
    return make_error(ErrorCode::kInternal, "make a migration certificate: key generation failed");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1)
    return make_error(ErrorCode::kInternal, "make a migration certificate: no random");
  serial[0] &= 0x7f;  // a positive serial number
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr),
                                                 BN_free);
  X509* x = cert.get();
  X509_NAME* name = X509_get_subject_name(x);
  bool ok = bn && X509_set_version(x, 2) &&
            BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x)) &&
            X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&  // hosts' clocks differ a little
            X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600) &&
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                       -1, -1, 0) &&
            X509_set_issuer_name(x, name) && X509_set_pubkey(x, key.get()) &&
            X509_sign(x, key.get(), EVP_sha256()) > 0;
  if (!ok) return make_error(ErrorCode::kInternal, "make a migration certificate: signing failed");
  BioPtr cert_bio(BIO_new(BIO_s_mem()), BIO_free), key_bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!cert_bio || !key_bio || !PEM_write_bio_X509(cert_bio.get(), x) ||
      !PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr))
    return make_error(ErrorCode::kInternal, "make a migration certificate: PEM encoding failed");
  return TlsIdentity{bio_text(cert_bio.get()), bio_text(key_bio.get())};
}

}  // namespace vireo::compute
