// WebSocket routes through a real HttpServer on a Unix socket: messages both ways, sends from
// another thread, the route closing, a refused upgrade carrying its HTTP error, a plain GET.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <thread>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include "base/ids.h"
#include "server/http_server.h"

namespace vireo::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using UnixSocket = asio::local::stream_protocol::socket;

class WebSocketRouteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("vireo-ws-" + random_hex(6));
    std::filesystem::create_directories(dir_);
    socket_ = (dir_ / "s.sock").string();
    // Echoes each message with its kind; "bye" makes the route close; "thread" is answered
    // from another thread.
    router_.add_upgrade("/1.0/things/{name}/echo", [this](Request& req, UpgradeResponder respond) {
      if (req.params["name"] == "refused") {
        respond(std::unexpected(Error(ErrorCode::kConflict, "thing refused is not running")));
        return;
      }
      auto socket = std::make_shared<std::shared_ptr<WebSocket>>();
      *socket = respond(WebSocketHandlers{
          .on_message =
              [socket, name = req.params["name"], this](std::string m, MessageKind kind) {
                if (m == "bye") return (*socket)->close("done");
                if (m == "thread") {
                  threads_.emplace_back([s = *socket] { s->send("from a thread"); });
                  return;
                }
                (*socket)->send(name + ":" + m, kind);
              },
          .on_closed = [this] { closed_.set_value(); },
      });
    });
    server_ = std::make_unique<HttpServer>(io_, router_, events_, Credentials{}, ServerLimits{});
    ASSERT_TRUE(server_->listen_unix(socket_, 0600));
    io_thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    for (auto& t : threads_) t.join();
    asio::post(io_, [this] { server_->stop(); });
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<websocket::stream<UnixSocket>> open(const std::string& target,
                                                      beast::error_code& ec) {
    auto ws = std::make_unique<websocket::stream<UnixSocket>>(client_io_);
    ws->next_layer().connect(asio::local::stream_protocol::endpoint(socket_), ec);
    if (!ec) ws->handshake("vireod", target, ec);
    return ws;
  }
  std::string read(websocket::stream<UnixSocket>& ws, beast::error_code& ec) {
    beast::flat_buffer b;
    ws.read(b, ec);
    return beast::buffers_to_string(b.data());
  }

  std::filesystem::path dir_;
  std::string socket_;
  asio::io_context io_;
  asio::io_context client_io_;
  Router router_;
  EventHub events_{io_};
  std::unique_ptr<HttpServer> server_;
  std::thread io_thread_;
  std::vector<std::thread> threads_;
  std::promise<void> closed_;
};

TEST_F(WebSocketRouteTest, MessagesFlowBothWaysUntilTheRouteCloses) {
  beast::error_code ec;
  auto ws = open("/1.0/things/a/echo", ec);
  ASSERT_FALSE(ec) << ec.message();
  ws->binary(true);
  ws->write(asio::buffer(std::string("x\0y", 3)), ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(read(*ws, ec), std::string("a:x\0y", 5));
  EXPECT_TRUE(ws->got_binary());
  ws->text(true);
  ws->write(asio::buffer(std::string("hi")), ec);
  EXPECT_EQ(read(*ws, ec), "a:hi");
  EXPECT_TRUE(ws->got_text());
  ws->write(asio::buffer(std::string("thread")), ec);
  EXPECT_EQ(read(*ws, ec), "from a thread");
  ws->write(asio::buffer(std::string("bye")), ec);
  read(*ws, ec);
  EXPECT_EQ(ec, websocket::error::closed);
  EXPECT_EQ(ws->reason().reason, "done");
  EXPECT_EQ(closed_.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

TEST_F(WebSocketRouteTest, ClientClosingReachesTheRoute) {
  beast::error_code ec;
  auto ws = open("/1.0/things/a/echo", ec);
  ASSERT_FALSE(ec) << ec.message();
  ws->next_layer().close();
  EXPECT_EQ(closed_.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

TEST_F(WebSocketRouteTest, RefusedUpgradeAnswersTheRoutesError) {
  UnixSocket s(client_io_);
  s.connect(asio::local::stream_protocol::endpoint(socket_));
  websocket::stream<UnixSocket&> ws(s);
  beast::http::response<beast::http::string_body> res;
  beast::error_code ec;
  // Asynchronous: Boost 1.74's synchronous handshake drops the refusal.
  ws.async_handshake(res, "vireod", "/1.0/things/refused/echo",
                     [&](beast::error_code e) { ec = e; });
  client_io_.run();
  client_io_.restart();
  EXPECT_TRUE(ec);
  EXPECT_EQ(res.result_int(), 409);
  EXPECT_NE(res.body().find("thing refused is not running"), std::string::npos) << res.body();

  auto none = open("/1.0/nothing/here", ec);
  EXPECT_TRUE(ec);
}

TEST_F(WebSocketRouteTest, PlainGetOfAWebSocketRouteIsABadRequest) {
  Request req;
  req.method = Method::kGet;
  req.path = "/1.0/things/a/echo";
  Response out;
  router_.dispatch(req, [&](Response r) { out = std::move(r); });
  EXPECT_EQ(out.status, 400);
}

}  // namespace
}  // namespace vireo::server
