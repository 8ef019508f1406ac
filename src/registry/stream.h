#pragma once
// Stream: one accepted connection (plain TCP or TLS over OpenSSL) as a Beast SyncReadStream and
// SyncWriteStream, on a blocking socket whose SO_RCVTIMEO/SO_SNDTIMEO bound every read and
// write (one system call per transfer: on a virtualized host a poll() before each costs more
// than the copy). Owned and used by one connection thread.
#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>

#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include "base/fd.h"
#include "base/result.h"

namespace vireo::registry {

class Stream {
 public:
  // ssl (owned, may be null) is an SSL object not yet handshaken, bound to nothing.
  Stream(Fd fd, SSL* ssl, std::chrono::milliseconds timeout);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // The TLS server handshake (nothing for plain TCP).
  Result<void> handshake();
  // wait_all: wait for all n bytes (plain TCP; the caller knows that many are coming).
  size_t read(void* p, size_t n, boost::system::error_code& ec, bool wait_all = false);
  size_t write(const void* p, size_t n, boost::system::error_code& ec);
  Result<void> write_all(const void* p, size_t n);
  // len bytes of file from offset: sendfile(2) for plain TCP, copies for TLS.
  Result<void> send_file(int file, uint64_t offset, uint64_t len);
  int fd() const { return fd_.get(); }
  // Ends our side and discards what the client still sends (bounded in bytes and time), so that
  // a client still writing a body it was refused reads our answer instead of a reset.
  void linger_close();

  template <class Buffers>
  size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b(*it);
      if (b.size() > 0) return read(b.data(), b.size(), ec);
    }
    ec = {};
    return 0;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::const_buffer b(*it);
      if (b.size() > 0) return write(b.data(), b.size(), ec);
    }
    ec = {};
    return 0;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  // Waits until the socket is readable (events POLLIN) or writable; false on timeout.
  bool wait(short events);
  // Maps an SSL_read/SSL_write result: true to retry after waiting, false with ec set.
  bool ssl_retry(int rc, boost::system::error_code& ec);

  Fd fd_;
  SSL* ssl_;
  std::chrono::milliseconds timeout_;
};

}  // namespace vireo::registry
