#pragma once
// For tests that listen on TCP (vireod over TCP+TLS, published ports): a free loopback port and
// a self-signed certificate.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/fd.h"
#include "base/subprocess.h"

namespace vireo::testing {

// A TCP port nobody listens on right now (the kernel's pick, released again); 0 on failure.
inline uint16_t free_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A self-signed certificate and key for CN=name, made with the openssl tool.
inline void make_cert(const std::filesystem::path& dir, const std::string& name) {
  auto r =
      run_process({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=" + name,
                   "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout",
                   (dir / (name + ".key")).string(), "-out", (dir / (name + ".crt")).string()});
  ASSERT_TRUE(r && r->ok()) << (r ? r->err : r.error().message());
}

}  // namespace vireo::testing
