#pragma once
// TLS for NBD listeners (NBD_OPT_STARTTLS): a listener's credentials (X.509 and/or pre-shared
// keys), loaded once when the listener is created, and the TLS side of a connection's transport.
//
// A listener with a TlsConfig requires TLS (the NBD spec's FORCEDTLS mode, like qemu-nbd with
// tls-creds): clients must send NBD_OPT_STARTTLS before any other option. With a CA file,
// clients must also present a certificate that chains to it (mutual TLS). With a PSK file,
// clients may instead authenticate with a username and its key (TLS-PSK, as libnbd's
// tls-psk-file and qemu's tls-creds-psk do). TLS 1.2 or later.
//
// TlsContext is immutable once created and shared by every connection of its listener (OpenSSL's
// SSL_CTX is thread-safe for creating sessions). A TlsStream belongs to one connection thread.
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

struct ssl_ctx_st;
struct ssl_st;
struct iovec;

namespace vireo::storage::nbd {

struct TlsConfig {
  std::filesystem::path cert_file;  // PEM: the server certificate (a chain may follow)
  std::filesystem::path key_file;   // PEM: its private key
  std::filesystem::path ca_file;    // PEM, optional: client certificates must chain to it
  // Optional: "username:hexkey" lines (the format of psktool, libnbd's tls-psk-file and qemu's
  // keys.psk). Enough on its own: without a certificate, only PSK clients are served.
  std::filesystem::path psk_file;
  bool enabled() const {
    return !cert_file.empty() || !key_file.empty() || !ca_file.empty() || !psk_file.empty();
  }
};

class TlsContext {
 public:
  // Loads and checks the files; the error names the file that is missing, unreadable, not PEM,
  // or (the key) does not match the certificate.
  [[nodiscard]] static Result<std::shared_ptr<const TlsContext>> create(const TlsConfig& config);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  bool verifies_clients() const { return verify_clients_; }
  ssl_ctx_st* get() const { return ctx_; }
  // The key of a PSK username; null if unknown.
  const std::vector<uint8_t>* psk(std::string_view username) const;

 private:
  TlsContext() = default;
  Result<void> load_certificate(const TlsConfig& config);
  Result<void> load_psk(const std::filesystem::path& file);
  ssl_ctx_st* ctx_ = nullptr;
  bool verify_clients_ = false;
  std::map<std::string, std::vector<uint8_t>, std::less<>> psk_;
};

// The TLS session of one connection on a blocking socket (the socket stays owned by the caller).
class TlsStream {
 public:
  // Runs the server side of the handshake on fd; fails on anything but a good handshake
  // (garbage, a failed certificate check, a client without a required certificate).
  [[nodiscard]] static Result<std::unique_ptr<TlsStream>> accept(const TlsContext& ctx, int fd);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Reads at most n bytes, at least one; 0 means the client closed the connection.
  [[nodiscard]] Result<size_t> read_some(void* dst, size_t n);
  // Writes every byte of every part (small parts are gathered into one TLS record).
  [[nodiscard]] Result<void> write(std::span<const iovec> parts);
  // Whether decrypted bytes are waiting to be read (another request may be buffered).
  bool buffered() const;
  // Tells the client the session ends (close_notify), after a clean end of the NBD session.
  void close();

 private:
  TlsStream() = default;
  Result<void> write_all(const uint8_t* data, size_t n);
  ssl_st* ssl_ = nullptr;
  std::unique_ptr<uint8_t[]> gather_;
};

}  // namespace vireo::storage::nbd
