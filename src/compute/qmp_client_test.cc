#include "compute/qmp_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <future>

#include <gtest/gtest.h>

namespace vireo::compute {
namespace {

using namespace std::chrono_literals;

constexpr const char* kGreeting =
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}})";

// The QEMU side of a socketpair, driven line by line by each test.
class FakeQemu {
 public:
  explicit FakeQemu(Fd fd) : fd_(std::move(fd)) {}

  void send(const std::string& text) {
    std::string data = text + "\r\n";
    ASSERT_EQ(::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(data.size()));
  }
  // The next line the client wrote, parsed; null on EOF or after 5 s.
  Json read_command() {
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return Json::parse(line);
      }
      pollfd pfd{fd_.get(), POLLIN, 0};
      if (::poll(&pfd, 1, 5000) != 1) return nullptr;
      char buf[4096];
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n <= 0) return nullptr;
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }
  // Greeting plus the reply to qmp_capabilities.
  void negotiate() {
    send(kGreeting);
    Json caps = read_command();
    ASSERT_EQ(caps["execute"], "qmp_capabilities");
    send(R"({"return": {}})");
  }
  void reply(const Json& command, const Json& value) {
    send(dump_json(Json{{"return", value}, {"id", command["id"]}}));
  }
  void close() { fd_.reset(); }
  // Reads the next command with recvmsg, as QEMU does, and returns the fd that came with it
  // (invalid when none did).
  Fd read_command_with_fd(Json& command) {
    char buf[4096];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{buf, sizeof buf};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    pollfd pfd{fd_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, 5000) != 1) return Fd();
    ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) return Fd();
    buffer_.append(buf, static_cast<size_t>(n));
    Fd passed;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      passed = Fd(fd);
    }
    command = read_command();
    return passed;
  }

 private:
  Fd fd_;
  std::string buffer_;
};

struct Pair {
  Fd client;
  std::unique_ptr<FakeQemu> qemu;
};

Pair make_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {Fd(fds[0]), std::make_unique<FakeQemu>(Fd(fds[1]))};
}

// Connects a client while the fake QEMU negotiates on another thread.
std::unique_ptr<QmpClient> connect_to(Pair& pair, QmpOptions options = {}) {
  std::thread server([&] { pair.qemu->negotiate(); });
  auto client = QmpClient::connect_fd(std::move(pair.client), std::move(options));
  server.join();
  EXPECT_TRUE(client.has_value()) << client.error().message();
  return client ? std::move(*client) : nullptr;
}

TEST(QmpClientTest, NegotiatesAndExecutesCommand) {
  auto pair = make_pair();
  auto client = connect_to(pair);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->greeting()["version"]["qemu"]["major"], 7);
  auto reply = std::async(std::launch::async, [&] { return client->execute("query-status"); });
  Json cmd = pair.qemu->read_command();
  EXPECT_EQ(cmd["execute"], "query-status");
  EXPECT_FALSE(cmd.contains("arguments"));
  pair.qemu->reply(cmd, {{"status", "running"}, {"running", true}});
  auto result = reply.get();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ((*result)["status"], "running");
}

TEST(QmpClientTest, PassesArgumentsAndReportsQmpErrors) {
  auto pair = make_pair();
  auto client = connect_to(pair);
  ASSERT_TRUE(client);
  auto reply = std::async(std::launch::async, [&] {
    return client->execute("device_del", {{"id", "nic9"}});
  });
  Json cmd = pair.qemu->read_command();
  EXPECT_EQ(cmd["arguments"]["id"], "nic9");
  pair.qemu->send(
      dump_json({{"error", {{"class", "DeviceNotFound"}, {"desc", "Device 'nic9' not found"}}},
                 {"id", cmd["id"]}}));
  auto result = reply.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(result.error().message(), "qmp device_del: DeviceNotFound: Device 'nic9' not found");
}

TEST(QmpClientTest, DeliversEventsIncludingThoseBetweenCommandAndReply) {
  auto pair = make_pair();
  std::mutex m;
  std::vector<QmpEvent> events;
  QmpOptions options{.on_event = [&](const QmpEvent& e) {
    std::lock_guard lock(m);
    events.push_back(e);
  }};
  auto client = connect_to(pair, std::move(options));
  ASSERT_TRUE(client);
  auto reply = std::async(std::launch::async, [&] { return client->execute("stop"); });
  Json cmd = pair.qemu->read_command();
  pair.qemu->send(R"({"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "STOP"})");
  pair.qemu->reply(cmd, Json::object());
  ASSERT_TRUE(reply.get());
  pair.qemu->send(
      R"({"timestamp": {"seconds": 1700000001, "microseconds": 0}, "event": "SHUTDOWN",)"
      R"( "data": {"guest": true, "reason": "guest-shutdown"}})");
  // The next reply proves the reader thread has handled everything sent before it.
  auto sync = std::async(std::launch::async, [&] { return client->execute("query-status"); });
  pair.qemu->reply(pair.qemu->read_command(), Json::object());
  ASSERT_TRUE(sync.get());
  std::lock_guard lock(m);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].name, "STOP");
  EXPECT_TRUE(events[0].data.is_object());
  EXPECT_EQ(events[0].timestamp, std::chrono::system_clock::time_point(1700000000s + 5us));
  EXPECT_EQ(events[1].name, "SHUTDOWN");
  EXPECT_EQ(events[1].data["reason"], "guest-shutdown");
}

TEST(QmpClientTest, SkipsGarbageAndRepliesWithUnknownIds) {
  auto pair = make_pair();
  auto client = connect_to(pair);
  ASSERT_TRUE(client);
  auto reply = std::async(std::launch::async, [&] { return client->execute("query-version"); });
  Json cmd = pair.qemu->read_command();
  pair.qemu->send("this is not json {{{");
  pair.qemu->send("[1, 2, 3]");
  pair.qemu->send(R"({"return": {}, "id": 999999})");
  pair.qemu->send(R"({"return": {}, "id": "not-ours"})");
  pair.qemu->send(R"({"event": 42})");
  pair.qemu->reply(cmd, {{"qemu", "ok"}});
  auto result = reply.get();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ((*result)["qemu"], "ok");
  EXPECT_TRUE(client->connected());
}

TEST(QmpClientTest, MatchesRepliesSentOutOfOrder) {
  auto pair = make_pair();
  auto client = connect_to(pair);
  ASSERT_TRUE(client);
  auto first = std::async(std::launch::async, [&] { return client->execute("first"); });
  Json cmd1 = pair.qemu->read_command();
  auto second = std::async(std::launch::async, [&] { return client->execute("second"); });
  Json cmd2 = pair.qemu->read_command();
  pair.qemu->reply(cmd2, "two");
  pair.qemu->reply(cmd1, "one");
  EXPECT_EQ(*first.get(), "one");
  EXPECT_EQ(*second.get(), "two");
}

TEST(QmpClientTest, TimesOutWhenQemuDoesNotAnswer) {
  auto pair = make_pair();
  auto client = connect_to(pair);
  ASSERT_TRUE(client);
  auto start = std::chrono::steady_clock::now();
  auto result = client->execute("query-status", nullptr, 100ms);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kTimeout);
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 2s);
  // A reply arriving after the timeout is ignored and the client stays usable.
  pair.qemu->reply(pair.qemu->read_command(), "late");
  auto next = std::async(std::launch::async, [&] { return client->execute("again"); });
  pair.qemu->reply(pair.qemu->read_command(), "fresh");
  EXPECT_EQ(*next.get(), "fresh");
}

TEST(QmpClientTest, QemuDyingMidCommandFailsItAndReportsClose) {
  auto pair = make_pair();
  std::promise<std::string> closed;
  QmpOptions options{.on_close = [&](const std::string& why) { closed.set_value(why); }};
  auto client = connect_to(pair, std::move(options));
  ASSERT_TRUE(client);
  auto reply = std::async(std::launch::async, [&] { return client->execute("query-status"); });
  ASSERT_FALSE(pair.qemu->read_command().is_null());
  pair.qemu->close();
  auto result = reply.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable);
  auto why = closed.get_future();
  ASSERT_EQ(why.wait_for(5s), std::future_status::ready);
  EXPECT_NE(why.get().find("closed"), std::string::npos);
  EXPECT_FALSE(client->connected());
  auto after = client->execute("query-status");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code(), ErrorCode::kUnavailable);
}

TEST(QmpClientTest, RejectsPeerThatIsNotQmp) {
  auto pair = make_pair();
  pair.qemu->send(R"({"hello": "world"})");
  auto client = QmpClient::connect_fd(std::move(pair.client));
  ASSERT_FALSE(client);
  EXPECT_NE(client.error().message().find("QMP greeting"), std::string::npos);
}

TEST(QmpClientTest, GreetingTimesOut) {
  auto pair = make_pair();
  auto client = QmpClient::connect_fd(std::move(pair.client), {.timeout = 100ms});
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kTimeout);
}

TEST(QmpClientTest, ExecuteFromCallbackFailsInsteadOfDeadlocking) {
  auto pair = make_pair();
  std::promise<Result<Json>> from_callback;
  QmpClient* raw = nullptr;
  QmpOptions options{
      .on_event = [&](const QmpEvent&) { from_callback.set_value(raw->execute("query-status")); }};
  auto client = connect_to(pair, std::move(options));
  ASSERT_TRUE(client);
  raw = client.get();
  pair.qemu->send(R"({"event": "RESET"})");
  auto fut = from_callback.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  auto result = fut.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kInternal);
}

TEST(QmpClientTest, ConnectsOverUnixSocketPath) {
  auto dir = std::filesystem::temp_directory_path() / ("vireo-qmp-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "qmp.sock").string();
  Fd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  std::thread server([&] {
    FakeQemu qemu(Fd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC)));
    qemu.negotiate();
    qemu.reply(qemu.read_command(), "pong");
    qemu.read_command();  // waits for the client to hang up
  });
  auto client = QmpClient::connect(path);
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_EQ(*(*client)->execute("ping"), "pong");
  client->reset();
  server.join();
  std::filesystem::remove_all(dir);

  auto missing = QmpClient::connect((dir / "absent.sock").string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

// getfd: the fd travels with the command (SCM_RIGHTS) and QEMU's copy is the same file.
TEST(QmpClientTest, ExecuteWithFdPassesTheFileDescriptor) {
  auto pair = make_pair();
  auto client = connect_to(pair);
  ASSERT_TRUE(client);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  Fd read_end(p[0]), write_end(p[1]);
  auto reply = std::async(std::launch::async, [&] {
    return client->execute_with_fd("getfd", {{"fdname", "state"}}, write_end.get());
  });
  Json cmd;
  Fd passed = pair.qemu->read_command_with_fd(cmd);
  ASSERT_TRUE(passed);
  EXPECT_EQ(cmd["execute"], "getfd");
  EXPECT_EQ(cmd["arguments"]["fdname"], "state");
  pair.qemu->reply(cmd, Json::object());
  ASSERT_TRUE(reply.get());
  ASSERT_EQ(::write(passed.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(read_end.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
  EXPECT_EQ(client->execute_with_fd("getfd", {{"fdname", "x"}}, -1).error().code(),
            ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace vireo::compute
