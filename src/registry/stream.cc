#include "registry/stream.h"

#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/error.hpp>
#include <vector>

namespace vireo::registry {

namespace asio_error = boost::asio::error;

Stream::Stream(Fd fd, SSL* ssl, std::chrono::milliseconds timeout)
    : fd_(std::move(fd)), ssl_(ssl), timeout_(timeout) {
  timeval tv{time_t(timeout.count() / 1000), suseconds_t(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (ssl_) SSL_set_fd(ssl_, fd_.get());
}

Stream::~Stream() {
  if (ssl_) SSL_free(ssl_);
}

bool Stream::wait(short events) {
  pollfd p{fd_.get(), events, 0};
  for (;;) {
    int rc = ::poll(&p, 1, int(timeout_.count()));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

bool Stream::ssl_retry(int rc, boost::system::error_code& ec) {
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    if (wait(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) return true;
    ec = asio_error::timed_out;
    return false;
  }
  ec = err == SSL_ERROR_ZERO_RETURN ? boost::system::error_code(asio_error::eof)
                                    : boost::system::error_code(asio_error::connection_reset);
  return false;
}

Result<void> Stream::handshake() {
  if (!ssl_) return {};
  for (;;) {
    int rc = SSL_accept(ssl_);
    if (rc == 1) return {};
    boost::system::error_code ec;
    if (!ssl_retry(rc, ec)) return make_error(ErrorCode::kIo, "TLS handshake failed");
  }
}

size_t Stream::read(void* p, size_t n, boost::system::error_code& ec, bool wait_all) {
  ec = {};
  for (;;) {
    if (ssl_) {
      int rc = SSL_read(ssl_, p, int(std::min<size_t>(n, 1 << 30)));
      if (rc > 0) return size_t(rc);
      if (!ssl_retry(rc, ec)) return 0;
      continue;
    }
    ssize_t rc = ::recv(fd_.get(), p, n, wait_all ? MSG_WAITALL : 0);
    if (rc > 0) return size_t(rc);
    if (rc == 0) {
      ec = asio_error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
    if (!wait(POLLIN)) {
      ec = asio_error::timed_out;
      return 0;
    }
  }
}

size_t Stream::write(const void* p, size_t n, boost::system::error_code& ec) {
  ec = {};
  for (;;) {
    if (ssl_) {
      int rc = SSL_write(ssl_, p, int(std::min<size_t>(n, 1 << 30)));
      if (rc > 0) return size_t(rc);
      if (!ssl_retry(rc, ec)) return 0;
      continue;
    }
    ssize_t rc = ::send(fd_.get(), p, n, MSG_NOSIGNAL);
    if (rc >= 0) return size_t(rc);
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
    if (!wait(POLLOUT)) {
      ec = asio_error::timed_out;
      return 0;
    }
  }
}

void Stream::linger_close() {
  if (ssl_) SSL_shutdown(ssl_);
  ::shutdown(fd_.get(), SHUT_WR);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<char> sink(1 << 16);
  size_t total = 0;
  while (total < (64u << 20) && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) return;
    ssize_t n = ::recv(fd_.get(), sink.data(), sink.size(), 0);
    if (n <= 0) return;
    total += size_t(n);
  }
}

Result<void> Stream::write_all(const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    boost::system::error_code ec;
    size_t w = write(c, n, ec);
    if (ec) return make_error(ErrorCode::kIo, "send: {}", ec.message());
    c += w, n -= w;
  }
  return {};
}

Result<void> Stream::send_file(int file, uint64_t offset, uint64_t len) {
  if (ssl_) {
    std::vector<char> buf(1 << 20);
    while (len > 0) {
      ssize_t n = ::pread(file, buf.data(), std::min<uint64_t>(len, buf.size()), off_t(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return make_error(ErrorCode::kIo, "read blob: {}", n ? strerror(errno) : "EOF");
      TRY(write_all(buf.data(), size_t(n)));
      offset += uint64_t(n), len -= uint64_t(n);
    }
    return {};
  }
  off_t off = off_t(offset);
  while (len > 0) {
    ssize_t n = ::sendfile(fd_.get(), file, &off, std::min<uint64_t>(len, 1 << 30));
    if (n > 0) {
      len -= uint64_t(n);
      continue;
    }
    if (n == 0) return make_error(ErrorCode::kIo, "blob shorter than expected");
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return errno_error("sendfile");
    if (!wait(POLLOUT)) return make_error(ErrorCode::kTimeout, "send timed out");
  }
  return {};
}

}  // namespace vireo::registry
