#include "token_server.h"

#include "registry_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "base/base64.h"
#include "base/file.h"
#include "base/json.h"

namespace vireo::registry::testing {

namespace {

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::string query_param(const std::string& target, const std::string& name) {
  auto q = target.find('?');
  if (q == std::string::npos) return {};
  std::string_view rest = std::string_view(target).substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos && kv.substr(0, eq) == name)
      return url_decode(kv.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return {};
}

std::string reply(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Unauthorized") +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TokenServer::TokenServer(std::filesystem::path key_pem, std::filesystem::path cert_pem,
                         std::string issuer, std::string service, std::string user,
                         std::string password)
    : key_(std::move(key_pem)),
      cert_(std::move(cert_pem)),
      issuer_(std::move(issuer)),
      service_(std::move(service)),
      user_(std::move(user)),
      password_(std::move(password)) {
  Listener l = listen_loopback();
  if (l.fd < 0) return;
  listen_fd_ = l.fd;
  port_ = l.port;
  thread_ = std::thread([this] { serve(); });
}

TokenServer::~TokenServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
}

void TokenServer::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string out = answer(request);
    (void)!::send(c, out.data(), out.size(), MSG_NOSIGNAL);
    ::close(c);
  }
}

std::string TokenServer::answer(const std::string& request) {
  auto sp1 = request.find(' ');
  auto sp2 = request.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) return reply(401, "{}");
  std::string target = request.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string expected = "Basic " + base64_encode(user_ + ":" + password_);
  bool authorized = false;
  for (const char* name : {"\r\nAuthorization: ", "\r\nauthorization: "}) {
    auto h = request.find(name);
    if (h == std::string::npos) continue;
    auto start = h + std::string_view(name).size();
    authorized = request.substr(start, request.find("\r\n", start) - start) == expected;
  }
  if (!authorized || query_param(target, "service") != service_)
    return reply(401, R"({"details":"bad credentials"})");
  ++issued_;
  return reply(200, Json{{"token", make_token(query_param(target, "scope"))}}.dump());
}

std::string TokenServer::make_token(const std::string& scope) {
  // scope: repository:NAME:ACTIONS
  Json access = Json::array();
  auto first = scope.find(':'), last = scope.rfind(':');
  if (first != std::string::npos && last != first) {
    Json actions = Json::array();
    std::string list = scope.substr(last + 1);
    if (!only_.empty()) list = only_;
    for (size_t p = 0; p <= list.size();) {
      auto comma = list.find(',', p);
      actions.push_back(list.substr(p, comma == std::string::npos ? std::string::npos : comma - p));
      if (comma == std::string::npos) break;
      p = comma + 1;
    }
    access.push_back({{"type", scope.substr(0, first)},
                      {"name", scope.substr(first + 1, last - first - 1)},
                      {"actions", actions}});
  }
  std::unique_ptr<FILE, int (*)(FILE*)> cf(::fopen(cert_.c_str(), "r"), ::fclose);
  std::unique_ptr<X509, void (*)(X509*)> cert(PEM_read_X509(cf.get(), nullptr, nullptr, nullptr),
                                              X509_free);
  std::unique_ptr<FILE, int (*)(FILE*)> kf(::fopen(key_.c_str(), "r"), ::fclose);
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      PEM_read_PrivateKey(kf.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  if (!cert || !key) return {};
  unsigned char* der = nullptr;
  int der_len = i2d_X509(cert.get(), &der);
  std::string x5c = base64_encode(
      std::string_view(reinterpret_cast<const char*>(der), static_cast<size_t>(der_len)));
  OPENSSL_free(der);
  auto now = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  Json header = {{"alg", "RS256"}, {"typ", "JWT"}, {"x5c", {x5c}}};
  Json claims = {{"iss", issuer_},
                 {"sub", user_},
                 {"aud", service_},
                 {"exp", now + 600},
                 {"nbf", now - 60},
                 {"iat", now - 60},
                 {"jti", std::to_string(now) + "-" + std::to_string(issued_.load())},
                 {"access", access}};
  std::string signing_input =
      base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t sig_len = 0;
  if (EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1)
    return {};
  std::string sig(sig_len, '\0');
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1)
    return {};
  sig.resize(sig_len);
  return signing_input + "." + base64url_encode(sig);
}

}  // namespace vireo::registry::testing
