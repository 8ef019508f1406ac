#pragma once
// For tests of vireod over TCP+TLS: a free loopback port and a self-signed certificate.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/subprocess.h"

namespace vireo::testing {

inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
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
