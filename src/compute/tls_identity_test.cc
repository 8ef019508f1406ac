#include "compute/tls_identity.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>

namespace vireo::compute {
namespace {

using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

CertPtr read_cert(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), int(pem.size())),
                                                BIO_free);
  return CertPtr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
}

KeyPtr read_key(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), int(pem.size())),
                                                BIO_free);
  return KeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
}

TEST(TlsIdentityTest, CertificateIsSelfSignedForItsKeyAndValidNow) {
  auto id = make_tls_identity("vireo-migration-web1");
  ASSERT_TRUE(id) << id.error().message();
  auto cert = read_cert(id->cert_pem);
  auto key = read_key(id->key_pem);
  ASSERT_TRUE(cert && key);
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1) << "the key is the certificate's";
  EXPECT_EQ(X509_verify(cert.get(), key.get()), 1) << "signed by its own key";
  EXPECT_EQ(X509_cmp_current_time(X509_get0_notBefore(cert.get())), -1);
  EXPECT_EQ(X509_cmp_current_time(X509_get0_notAfter(cert.get())), 1);
  char cn[64] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "vireo-migration-web1");
}

TEST(TlsIdentityTest, EachIdentityIsNew) {
  auto a = make_tls_identity("x"), b = make_tls_identity("x");
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->key_pem, b->key_pem);
  auto ca = read_cert(a->cert_pem), cb = read_cert(b->cert_pem);
  ASSERT_TRUE(ca && cb);
  EXPECT_NE(ASN1_INTEGER_cmp(X509_get0_serialNumber(ca.get()), X509_get0_serialNumber(cb.get())),
            0);
}

}  // namespace
}  // namespace vireo::compute
