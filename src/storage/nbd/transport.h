#pragma once
// Transport: how one NBD connection's bytes move. Plain, straight on the socket: recv, and
// sendmsg of the caller's iovecs without a copy (the path benchmarked against qemu-nbd). After
// NBD_OPT_STARTTLS, through the connection's TlsStream. Not virtual: the plain path costs one
// predictable branch per call. Owned by the connection's thread; the socket is the caller's.
#include <sys/socket.h>
#include <sys/uio.h>

#include <memory>

#include "base/result.h"
#include "storage/nbd/tls.h"

namespace vireo::storage::nbd {

class Transport {
 public:
  explicit Transport(int fd) : fd_(fd) {}

  int fd() const { return fd_; }
  bool secure() const { return tls_ != nullptr; }
  // Whether received bytes wait inside the transport (decrypted TLS data), so that another
  // request may already be there.
  bool buffered() const { return tls_ && tls_->buffered(); }
  // From now on every byte goes through TLS.
  void start_tls(std::unique_ptr<TlsStream> tls) { tls_ = std::move(tls); }
  // After a clean end of the session: TLS says goodbye; a plain socket has nothing to say.
  void close() {
    if (tls_) tls_->close();
  }

  // Reads at most n bytes, at least one; 0 means the client closed the connection.
  [[nodiscard]] Result<size_t> read_some(void* dst, size_t n) {
    if (tls_) [[unlikely]]
      return tls_->read_some(dst, n);
    while (true) {
      ssize_t got = ::recv(fd_, dst, n, 0);
      if (got >= 0) return size_t(got);
      if (errno != EINTR) return errno_error("receive");
    }
  }

  // Writes every byte of the iovecs (which it may modify).
  [[nodiscard]] Result<void> write(iovec* iov, size_t count) {
    if (tls_) [[unlikely]]
      return tls_->write({iov, count});
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    while (msg.msg_iovlen > 0) {
      ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("send");
      size_t left = size_t(n);
      while (msg.msg_iovlen > 0 && left >= msg.msg_iov->iov_len) {
        left -= msg.msg_iov->iov_len;
        ++msg.msg_iov;
        --msg.msg_iovlen;
      }
      if (msg.msg_iovlen > 0) {
        msg.msg_iov->iov_base = static_cast<uint8_t*>(msg.msg_iov->iov_base) + left;
        msg.msg_iov->iov_len -= left;
      }
    }
    return {};
  }

 private:
  int fd_;
  std::unique_ptr<TlsStream> tls_;
};

}  // namespace vireo::storage::nbd
