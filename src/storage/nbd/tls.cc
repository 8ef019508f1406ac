#include "storage/nbd/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "base/file.h"
#include "base/log.h"

namespace vireo::storage::nbd {
namespace {

// Gathered writes go out in pieces of this size: several TLS records per SSL_write, and a large
// read reply's header travels in the same records as its first data.
constexpr size_t kGather = 64 << 10;
// Room for the records of one gathered piece (each record adds a header and a tag).
constexpr int kWriteBuffer = kGather + (8 << 10);

// The reasons on this thread's OpenSSL error queue, which is emptied.
std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    std::string text = reason ? reason : fmt::format("OpenSSL error {:#x}", e);
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += ": ";
    out += text;
  }
  return out.empty() ? "unknown TLS error" : out;
}

Error tls_error(ssl_st* ssl, int ret, std::string_view what) {
  int saved_errno = errno;
  switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_ZERO_RETURN:
      ERR_clear_error();
      return Error(ErrorCode::kIo, fmt::format("{}: client disconnected", what));
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        if (saved_errno == 0)
          return Error(ErrorCode::kIo, fmt::format("{}: client disconnected", what));
        return Error::from_errno(saved_errno, what);
      }
      break;
    default:
      break;
  }
  std::string reason = ssl_errors();
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) reason += fmt::format(" ({})", X509_verify_cert_error_string(verify));
  return Error(ErrorCode::kPermissionDenied, fmt::format("{}: {}", what, reason));
}

// A socket BIO that sends with MSG_NOSIGNAL (OpenSSL's own uses write(), which raises SIGPIPE
// when a client goes away) and retries EINTR.
int bio_write(BIO* b, const char* data, int len) {
  int fd = int(reinterpret_cast<intptr_t>(BIO_get_data(b)));
  while (true) {
    ssize_t n = ::send(fd, data, size_t(len), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    return int(n);
  }
}

int bio_read(BIO* b, char* data, int len) {
  int fd = int(reinterpret_cast<intptr_t>(BIO_get_data(b)));
  while (true) {
    ssize_t n = ::recv(fd, data, size_t(len), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = 0;  // an orderly close, not a stale errno
    return int(n);
  }
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

const BIO_METHOD* socket_method() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "vireo nbd socket");
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    return m;
  }();
  return method;
}

// OpenSSL asks for the key of a PSK identity (TLS 1.2 PSK cipher suites, and TLS 1.3 external
// PSKs, which it takes to be SHA-256 based, as GnuTLS makes them); 0 refuses the handshake.
unsigned int psk_callback(SSL* ssl, const char* identity, unsigned char* psk,
                          unsigned int max_len) {
  const auto* ctx = static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  const std::vector<uint8_t>* key = identity ? ctx->psk(identity) : nullptr;
  if (!key || key->size() > max_len) {
    std::string name = identity ? identity : "";
    bool printable =
        std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
    spdlog::info("nbd: TLS-PSK: unknown username {}", printable ? name : "(unprintable)");
    return 0;
  }
  std::memcpy(psk, key->data(), key->size());
  spdlog::debug("nbd: TLS-PSK client {}", identity);
  return unsigned(key->size());
}

// A clear error for a file that cannot be opened, before OpenSSL's terser one.
Result<void> check_readable(const std::filesystem::path& path, std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(fmt::format("{} {}", what, path.string()));
  ::close(fd);
  return {};
}

}  // namespace

Result<std::shared_ptr<const TlsContext>> TlsContext::create(const TlsConfig& config) {
  bool x509 = !config.cert_file.empty() || !config.key_file.empty() || !config.ca_file.empty();
  if ((x509 || config.psk_file.empty()) && (config.cert_file.empty() || config.key_file.empty()))
    return make_error(ErrorCode::kInvalidArgument,
                      "TLS needs both a certificate and a key file (got {} and {})",
                      config.cert_file.empty() ? "none" : config.cert_file.string(),
                      config.key_file.empty() ? "none" : config.key_file.string());
  std::shared_ptr<TlsContext> t(new TlsContext());
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(TLS_server_method());
  if (!t->ctx_) return make_error(ErrorCode::kInternal, "SSL_CTX_new: {}", ssl_errors());
  SSL_CTX* ctx = t->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No renegotiation (a client could make the server spend CPU on demand), no session cache:
  // every NBD connection is long-lived.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_read_ahead(ctx, 1);
  if (x509) TRY(t->load_certificate(config));
  if (!config.psk_file.empty()) TRY(t->load_psk(config.psk_file));
  return t;
}

Result<void> TlsContext::load_certificate(const TlsConfig& config) {
  const std::string cert = config.cert_file.string(), key = config.key_file.string();
  TRY(check_readable(config.cert_file, "TLS certificate"));
  if (SSL_CTX_use_certificate_chain_file(ctx_, cert.c_str()) != 1)
    return make_error(ErrorCode::kInvalidArgument, "TLS certificate {}: {}", cert, ssl_errors());
  TRY(check_readable(config.key_file, "TLS key"));
  if (SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx_) != 1) {
    std::string why = ssl_errors();
    if (why.find("mismatch") != std::string::npos)
      return make_error(ErrorCode::kInvalidArgument, "TLS key {} does not match certificate {}",
                        key, cert);
    return make_error(ErrorCode::kInvalidArgument, "TLS key {}: {}", key, why);
  }
  if (config.ca_file.empty()) return {};
  const std::string ca = config.ca_file.string();
  TRY(check_readable(config.ca_file, "TLS CA"));
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
  if (SSL_CTX_load_verify_locations(ctx_, ca.c_str(), nullptr) != 1 || !names) {
    if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
    return make_error(ErrorCode::kInvalidArgument, "TLS CA {}: {}", ca, ssl_errors());
  }
  SSL_CTX_set_client_CA_list(ctx_, names);
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  verify_clients_ = true;
  return {};
}

Result<void> TlsContext::load_psk(const std::filesystem::path& file) {
  std::string where = "TLS PSK file " + file.string();
  std::string text = TRY_CTX(read_file(file), "TLS PSK file");
  size_t line_no = 0;
  for (std::string_view rest = text; !rest.empty();) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    std::string_view user = line.substr(0, colon == std::string_view::npos ? 0 : colon);
    std::string_view hex = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    // The key is never part of a message.
    if (user.empty() || hex.empty() || hex.size() % 2 || hex.size() / 2 > PSK_MAX_PSK_LEN)
      return make_error(ErrorCode::kInvalidArgument,
                        "{} line {}: not USERNAME:HEXKEY (1-{} bytes of key)", where, line_no,
                        PSK_MAX_PSK_LEN);
    std::vector<uint8_t> key(hex.size() / 2);
    for (size_t i = 0; i < hex.size(); ++i) {
      char c = hex[i];
      int v = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (v < 0)
        return make_error(ErrorCode::kInvalidArgument, "{} line {}: the key is not hexadecimal",
                          where, line_no);
      key[i / 2] = uint8_t(key[i / 2] << 4 | v);
    }
    psk_.insert_or_assign(std::string(user), std::move(key));
  }
  if (psk_.empty()) return make_error(ErrorCode::kInvalidArgument, "{}: no keys", where);
  SSL_CTX_set_app_data(ctx_, this);
  SSL_CTX_set_psk_server_callback(ctx_, psk_callback);
  return {};
}

const std::vector<uint8_t>* TlsContext::psk(std::string_view username) const {
  auto it = psk_.find(username);
  return it == psk_.end() ? nullptr : &it->second;
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

Result<std::unique_ptr<TlsStream>> TlsStream::accept(const TlsContext& ctx, int fd) {
  std::unique_ptr<TlsStream> s(new TlsStream());
  ERR_clear_error();
  s->ssl_ = SSL_new(ctx.get());
  BIO* bio = s->ssl_ ? BIO_new(socket_method()) : nullptr;
  if (!bio) return make_error(ErrorCode::kInternal, "TLS session: {}", ssl_errors());
  BIO_set_data(bio, reinterpret_cast<void*>(intptr_t(fd)));
  BIO_set_init(bio, 1);
  // Records are written through a buffer that write() flushes, so that the records of one
  // gathered piece leave in one send instead of one send each.
  BIO* buffer = BIO_new(BIO_f_buffer());
  if (!buffer || BIO_set_write_buffer_size(buffer, kWriteBuffer) != 1 || !BIO_up_ref(bio)) {
    BIO_free(buffer);
    BIO_free(bio);
    return make_error(ErrorCode::kInternal, "TLS session: {}", ssl_errors());
  }
  SSL_set_bio(s->ssl_, bio, BIO_push(buffer, bio));
  errno = 0;
  if (int rc = SSL_accept(s->ssl_); rc != 1)
    return std::unexpected(tls_error(s->ssl_, rc, "TLS handshake"));
  if (ctx.verifies_clients()) {
    if (X509* peer = SSL_get1_peer_certificate(s->ssl_)) {
      char subject[256] = {};
      X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof subject);
      spdlog::debug("nbd: TLS client {} ({})", subject, SSL_get_version(s->ssl_));
      X509_free(peer);
    }
  }
  return s;
}

TlsStream::~TlsStream() {
  SSL_free(ssl_);
}

bool TlsStream::buffered() const {
  return SSL_pending(ssl_) > 0;
}

void TlsStream::close() {
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);  // one-way: the client's own close_notify is not awaited
  ERR_clear_error();
}

Result<size_t> TlsStream::read_some(void* dst, size_t n) {
  ERR_clear_error();
  errno = 0;
  int got = SSL_read(ssl_, dst, int(std::min<size_t>(n, INT_MAX)));
  if (got > 0) return size_t(got);
  if (SSL_get_error(ssl_, got) == SSL_ERROR_ZERO_RETURN) return size_t(0);
  return std::unexpected(tls_error(ssl_, got, "TLS receive"));
}

Result<void> TlsStream::write_all(const uint8_t* data, size_t n) {
  while (n > 0) {
    ERR_clear_error();
    errno = 0;
    int sent = SSL_write(ssl_, data, int(std::min<size_t>(n, INT_MAX)));
    if (sent <= 0) return std::unexpected(tls_error(ssl_, sent, "TLS send"));
    data += sent;
    n -= size_t(sent);
  }
  return {};
}

Result<void> TlsStream::write(std::span<const iovec> parts) {
  if (!gather_) gather_.reset(new uint8_t[kGather]);
  size_t used = 0;
  for (const iovec& p : parts) {
    const auto* data = static_cast<const uint8_t*>(p.iov_base);
    size_t n = p.iov_len;
    while (n > 0) {
      if (used == 0 && n >= kGather) {  // large data goes out without a copy
        TRY(write_all(data, n));
        break;
      }
      size_t take = std::min(n, kGather - used);
      std::memcpy(gather_.get() + used, data, take);
      used += take;
      data += take;
      n -= take;
      if (used == kGather) {
        TRY(write_all(gather_.get(), used));
        used = 0;
      }
    }
  }
  if (used > 0) TRY(write_all(gather_.get(), used));
  if (BIO_flush(SSL_get_wbio(ssl_)) != 1)
    return std::unexpected(Error::from_errno(errno ? errno : EPIPE, "TLS send"));
  return {};
}

}  // namespace vireo::storage::nbd
