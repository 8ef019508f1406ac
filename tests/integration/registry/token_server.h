#pragma once
// A test token server for registries with token authentication (Docker's token spec, as
// docker-registry implements it): GET /token?service=S&scope=repository:NAME:ACTIONS with Basic
// credentials answers {"token": JWT}, a JWT signed RS256 by a test key whose self-signed
// certificate travels in its x5c header (the registry trusts that certificate through its
// rootcertbundle). Wrong or missing credentials get 401.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>

namespace vireo::registry::testing {

class TokenServer {
 public:
  // key_pem/cert_pem: the signing key and its certificate (PEM files).
  TokenServer(std::filesystem::path key_pem, std::filesystem::path cert_pem, std::string issuer,
              std::string service, std::string user, std::string password);
  ~TokenServer();
  uint16_t port() const { return port_; }
  // Grant only this action whatever is asked for (a read-only account); empty: all asked.
  void grant_only(std::string action) { only_ = std::move(action); }
  int tokens_issued() const { return issued_; }

 private:
  void serve();
  std::string answer(const std::string& request);
  std::string make_token(const std::string& scope);

  std::filesystem::path key_, cert_;
  std::string issuer_, service_, user_, password_, only_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> issued_{0};
  std::thread thread_;
};

}  // namespace vireo::registry::testing
