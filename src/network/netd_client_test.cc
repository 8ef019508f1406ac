// NetdClient against a scripted vireo-netd stand-in on a unix socket: replies without "ok",
// netd's error category kept, one reconnect when netd went away, a bounded wait for a netd that
// does not answer, garbage refused.
#include "network/netd_client.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "base/ids.h"
#include "base/line_server.h"

namespace vireo::net {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Answers each request line with reply(request, connection number); an empty answer closes
// the connection instead, "-" answers nothing (netd hangs).
class FakeNetd {
 public:
  using Reply = std::function<std::string(const Json&, int)>;
  explicit FakeNetd(Reply reply)
      : path_(fs::temp_directory_path() / ("vireo-fake-netd-" + random_hex(6) + ".sock")),
        reply_(std::move(reply)) {
    listener_ = *listen_unix_socket(path_);
    // The stand-in serves from one thread with blocking calls.
    ::fcntl(listener_.get(), F_SETFL, ::fcntl(listener_.get(), F_GETFL) & ~O_NONBLOCK);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeNetd() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
    ::unlink(path_.c_str());
  }
  const fs::path& path() const { return path_; }

 private:
  void serve() {
    for (int connection = 0;; ++connection) {
      Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!fd) return;
      std::string buffer;
      char chunk[4096];
      for (ssize_t n; (n = ::recv(fd.get(), chunk, sizeof chunk, 0)) > 0;) {
        buffer.append(chunk, size_t(n));
        size_t nl;
        bool closed = false;
        while (!closed && (nl = buffer.find('\n')) != std::string::npos) {
          std::string answer = reply_(*parse_json(buffer.substr(0, nl)), connection);
          buffer.erase(0, nl + 1);
          if (answer.empty())
            closed = true;
          else if (answer != "-")
            (void)::send(fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
        }
        if (closed) break;
      }
    }
  }

  fs::path path_;
  Reply reply_;
  Fd listener_;
  std::thread thread_;
};

TEST(NetdClientTest, RepliesComeBackWithoutOkAndErrorsKeepTheirCategory) {
  FakeNetd netd([](const Json& r, int) -> std::string {
    if (r["op"] == "network.list") return "{\"ok\":true,\"networks\":[]}\n";
    if (r["op"] == "network.delete")
      return fmt::format("{{\"ok\":false,\"code\":\"{}\",\"error\":\"network x not found\"}}\n",
                         to_string(ErrorCode::kNotFound));
    // Two replies in one write: the second is kept for the next call.
    if (r["op"] == "stats") return "{\"ok\":true,\"n\":1}\n";
    return "{\"ok\":false,\"error\":\"no code\"}\n";
  });
  auto client = NetdClient::connect(netd.path(), 2s);
  ASSERT_TRUE(client) << client.error().message();
  auto list = (*client)->call("network.list");
  ASSERT_TRUE(list);
  EXPECT_EQ(*list, (Json{{"networks", Json::array()}}));
  auto missing = (*client)->call("network.delete", {{"name", "x"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.error().message(), "network x not found");
  auto uncoded = (*client)->call("port.list");
  ASSERT_FALSE(uncoded);
  EXPECT_EQ(uncoded.error().code(), ErrorCode::kInternal);
  EXPECT_EQ((*client)->call("stats")->value("n", 0), 1);
}

TEST(NetdClientTest, ReconnectsOnceWhenNetdWentAway) {
  // The first connection is closed after the connect check; the call after it reconnects.
  FakeNetd netd([](const Json& r, int connection) -> std::string {
    if (connection == 0 && r["op"] != "network.list") return "";
    return fmt::format("{{\"ok\":true,\"connection\":{}}}\n", connection);
  });
  auto client = NetdClient::connect(netd.path(), 2s);
  ASSERT_TRUE(client);
  auto reply = (*client)->call("stats");
  ASSERT_TRUE(reply) << reply.error().message();
  EXPECT_EQ(reply->value("connection", -1), 1);
}

TEST(NetdClientTest, SilentNetdIsUnavailableWithinTheTimeout) {
  FakeNetd netd([](const Json& r, int) -> std::string {
    return r["op"] == "network.list" ? "{\"ok\":true}\n" : "-";
  });
  auto client = NetdClient::connect(netd.path(), 200ms);
  ASSERT_TRUE(client);
  auto start = std::chrono::steady_clock::now();
  auto reply = (*client)->call("stats");
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "two attempts of 200 ms each";
}

TEST(NetdClientTest, GarbageAndNoNetdAreErrorsNotCrashes) {
  FakeNetd netd([](const Json& r, int) -> std::string {
    return r["op"] == "network.list" ? "{\"ok\":true}\n" : "[1,2]\n";
  });
  auto client = NetdClient::connect(netd.path(), 2s);
  ASSERT_TRUE(client);
  auto reply = (*client)->call("stats");
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kInternal);
  auto nobody = NetdClient::connect("/nonexistent/netd.sock", 200ms);
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(nobody.error().message().find("/nonexistent/netd.sock"), std::string::npos);
}

}  // namespace
}  // namespace vireo::net
