#pragma once
// AttachServer: the monitor's attach socket (<state-dir>/attach.sock, a SOCK_STREAM Unix socket
// of mode 0600) and its clients. Every client gets the container's live output; a client may
// write to the container's stdin and resize its terminal.
//
// Protocol: both directions carry frames of
//   [type: 1 byte][length: 4 bytes, big-endian][payload: length bytes]
// monitor -> client:  1 stdout bytes, 2 stderr bytes (with --tty all output is type 1),
//                     3 exit: the payload is the content of exit.json, sent just before the
//                       monitor closes the connection.
// client -> monitor:  0 stdin bytes (ignored unless the monitor runs with --stdin or --tty),
//                     4 resize: rows and cols, each 2 bytes big-endian (TIOCSWINSZ on the pty),
//                     5 close stdin: the container reads end of file once what was sent is
//                       written (ignored with --tty),
//                     6 publish: the container's published ports from now on, --publish
//                       values one per line (vireod's `vireo ct update -p`); the monitor
//                       answers that client alone with
// monitor -> client:  7 result: empty when the ports were applied, else the error line.
// A client payload above kMaxClientPayload, or an unknown type, disconnects the client.
//
// Slow clients: output to each client is queued up to kMaxQueued bytes; a client that falls
// further behind is disconnected, so the container and the other clients never wait on it.
// Single-threaded: the monitor's event loop calls everything here.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "monitor/frames.h"
#include "monitor/stream.h"

namespace vireo::monitor {

// What the server does with client input; implemented by the monitor.
class AttachSink {
 public:
  virtual ~AttachSink() = default;
  virtual void on_stdin(std::string_view data) = 0;
  virtual void on_resize(uint16_t rows, uint16_t cols) = 0;
  virtual void on_close_stdin() = 0;
  // specs: --publish values, one per line (none: publish nothing). "" when applied, else why
  // not (then nothing changed).
  virtual std::string on_publish(std::string_view specs) {
    (void)specs;
    return "this monitor does not publish ports";
  }
};

class AttachServer {
 public:
  static constexpr size_t kMaxQueued = 1024 * 1024;
  static constexpr size_t kMaxClientPayload = 64 * 1024;

  // Binds path (replacing a stale socket) and registers the listener with epoll_fd; the epoll
  // data of every fd it registers is the fd itself.
  [[nodiscard]] static Result<std::unique_ptr<AttachServer>> create(const std::string& path,
                                                                    int epoll_fd, AttachSink* sink);
  ~AttachServer();

  // Whether fd is the listener or a client (then handle() takes its events).
  bool owns(int fd) const;
  void handle(int fd, uint32_t events);

  // Queues output for every client.
  void broadcast(Stream stream, std::string_view data);
  // Stops or resumes reading client input (while the container's stdin is backed up).
  void pause_input(bool paused);
  // Sends the exit frame, writes what each client can take now, closes the clients and the
  // listener and removes the socket file.
  void close_all(std::string_view exit_json);

  size_t client_count() const { return clients_.size(); }

 private:
  struct Client {
    Fd fd;
    std::string in;   // bytes of an incomplete frame
    std::string out;  // queued output, from out_offset
    size_t out_offset = 0;
    bool read_closed = false;  // the client shut down its side
    bool want_out = false;     // EPOLLOUT registered
  };

  AttachServer(std::string path, Fd listener, int epoll_fd, AttachSink* sink)
      : path_(std::move(path)), listener_(std::move(listener)), epoll_fd_(epoll_fd), sink_(sink) {}

  void accept_clients();
  // Each returns false when the client must be dropped.
  bool read_input(Client& c);
  bool parse_frames(Client& c);
  bool flush(Client& c);
  void update_interest(Client& c);
  void drop(int fd);

  std::string path_;
  Fd listener_;
  int epoll_fd_;
  AttachSink* sink_;
  bool input_paused_ = false;
  std::vector<std::unique_ptr<Client>> clients_;
};

}  // namespace vireo::monitor
