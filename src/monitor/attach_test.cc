#include "monitor/attach.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>

namespace vireo::monitor {
namespace {

namespace fs = std::filesystem;

struct FakeSink : AttachSink {
  std::string input;
  std::vector<std::pair<uint16_t, uint16_t>> resizes;
  int closes = 0;
  void on_stdin(std::string_view d) override { input.append(d); }
  void on_resize(uint16_t r, uint16_t c) override { resizes.emplace_back(r, c); }
  void on_close_stdin() override { ++closes; }
};

class AttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vireo-attach-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    epoll_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    auto s = AttachServer::create((dir_ / "attach.sock").string(), epoll_.get(), &sink_);
    ASSERT_TRUE(s) << s.error().message();
    server_ = std::move(*s);
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  Fd connect_client() {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = (dir_ / "attach.sock").string();
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  }

  // Runs the server's side of the loop until done() or 5 seconds passed.
  bool pump_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      epoll_event ev[8];
      int n = ::epoll_wait(epoll_.get(), ev, 8, 50);
      for (int i = 0; i < n; ++i) server_->handle(ev[i].data.fd, ev[i].events);
    }
    return true;
  }

  // Reads one frame from a client socket (blocking, bounded by poll).
  std::pair<int, std::string> read_frame(int fd) {
    std::string got;
    auto read_n = [&](size_t n) {
      std::string out;
      while (out.size() < n) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) return out;
        char buf[4096];
        ssize_t r = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
        if (r <= 0) return out;
        out.append(buf, static_cast<size_t>(r));
      }
      return out;
    };
    std::string h = read_n(5);
    if (h.size() < 5) return {-1, ""};
    uint32_t len = static_cast<uint32_t>(static_cast<unsigned char>(h[1])) << 24 |
                   static_cast<uint32_t>(static_cast<unsigned char>(h[2])) << 16 |
                   static_cast<uint32_t>(static_cast<unsigned char>(h[3])) << 8 |
                   static_cast<unsigned char>(h[4]);
    return {static_cast<unsigned char>(h[0]), read_n(len)};
  }

  void send_frame(int fd, FrameType t, std::string_view payload) {
    std::string f;
    append_frame(f, t, payload);
    ASSERT_EQ(::write(fd, f.data(), f.size()), static_cast<ssize_t>(f.size()));
  }

  fs::path dir_;
  Fd epoll_;
  FakeSink sink_;
  std::unique_ptr<AttachServer> server_;
};

TEST_F(AttachTest, SocketIsOwnerOnly) {
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "attach.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AttachTest, EveryClientReceivesOutputFramedByStream) {
  Fd a = connect_client(), b = connect_client();
  ASSERT_TRUE(pump_until([&] { return server_->client_count() == 2; }));
  server_->broadcast(Stream::kStdout, "out\n");
  server_->broadcast(Stream::kStderr, "err\n");
  for (int fd : {a.get(), b.get()}) {
    EXPECT_EQ(read_frame(fd), std::make_pair(1, std::string("out\n")));
    EXPECT_EQ(read_frame(fd), std::make_pair(2, std::string("err\n")));
  }
}

TEST_F(AttachTest, ClientInputReachesTheSinkEvenWhenSplitAcrossWrites) {
  Fd a = connect_client();
  std::string frames;
  append_frame(frames, FrameType::kStdin, "hello");
  append_frame(frames, FrameType::kResize, std::string("\x00\x19\x00\x50", 4));
  append_frame(frames, FrameType::kCloseStdin, "");
  for (char c : frames) ASSERT_EQ(::write(a.get(), &c, 1), 1);
  ASSERT_TRUE(pump_until([&] { return sink_.closes == 1; }));
  EXPECT_EQ(sink_.input, "hello");
  ASSERT_EQ(sink_.resizes.size(), 1u);
  EXPECT_EQ(sink_.resizes[0], std::make_pair(uint16_t{25}, uint16_t{80}));
}

TEST_F(AttachTest, OversizedOrUnknownFramesDisconnectTheClient) {
  Fd a = connect_client(), b = connect_client();
  ASSERT_TRUE(pump_until([&] { return server_->client_count() == 2; }));
  char big[5] = {0, 0x7f, 0, 0, 0};
  ASSERT_EQ(::write(a.get(), big, 5), 5);
  send_frame(b.get(), static_cast<FrameType>(9), "x");
  ASSERT_TRUE(pump_until([&] { return server_->client_count() == 0; }));
}

TEST_F(AttachTest, SlowClientIsDroppedWithoutHoldingBackOthers) {
  Fd slow = connect_client(), fast = connect_client();
  ASSERT_TRUE(pump_until([&] { return server_->client_count() == 2; }));
  std::string chunk(16 * 1024, 'x');
  size_t received = 0, sent = 0;
  // The fast client reads everything; the slow one never reads.
  while (server_->client_count() == 2 && sent < 64 * 1024 * 1024) {
    server_->broadcast(Stream::kStdout, chunk);
    sent += chunk.size();
    ASSERT_TRUE(pump_until([] { return true; }));
    char buf[65536];
    for (;;) {
      ssize_t r = ::recv(fast.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (r <= 0) break;
      received += static_cast<size_t>(r);
    }
    epoll_event ev[8];
    int n = ::epoll_wait(epoll_.get(), ev, 8, 0);
    for (int i = 0; i < n; ++i) server_->handle(ev[i].data.fd, ev[i].events);
  }
  ASSERT_EQ(server_->client_count(), 1u);
  EXPECT_LT(sent, 8u * 1024 * 1024);  // dropped after about kMaxQueued plus the socket buffer
  // The slow client sees end of file once it drains what was sent before the drop.
  char buf[65536];
  ssize_t r;
  while ((r = ::read(slow.get(), buf, sizeof buf)) > 0) {
  }
  EXPECT_EQ(r, 0);
  EXPECT_GT(received, 0u);
}

TEST_F(AttachTest, CloseAllSendsExitFrameAndRemovesSocket) {
  Fd a = connect_client();
  ASSERT_TRUE(pump_until([&] { return server_->client_count() == 1; }));
  server_->close_all(R"({"exit_code":0})");
  EXPECT_EQ(read_frame(a.get()), std::make_pair(3, std::string(R"({"exit_code":0})")));
  char c;
  EXPECT_EQ(::read(a.get(), &c, 1), 0);
  EXPECT_FALSE(fs::exists(dir_ / "attach.sock"));
}

}  // namespace
}  // namespace vireo::monitor
