// End-to-end tests of vireod: the real daemon on a temporary root, driven through the CLI, the
// client library and raw HTTP.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <future>
#include <random>
#include <thread>

#include "base/file.h"
#include "client/client.h"
#include "daemon_process.h"
#include "raw_http.h"

namespace vireo::testing {
namespace {

using namespace std::chrono_literals;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(daemon_.start()) << "vireod did not start"; }
  std::unique_ptr<client::Client> connect() {
    auto c = client::Client::connect({.socket_path = daemon_.socket()});
    EXPECT_TRUE(c) << c.error().message();
    return c ? std::move(*c) : nullptr;
  }
  DaemonProcess daemon_;
};

TEST_F(DaemonTest, InfoThroughCliAndClient) {
  auto r = daemon_.cli({"info"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("accelerator:"), std::string::npos) << r.out;
  auto json = daemon_.cli({"info", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0);
  auto parsed = parse_json(json.out);
  ASSERT_TRUE(parsed);
  EXPECT_EQ((*parsed)["api_version"], "1.0");
  auto info = connect()->info();
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->host.kernel.empty());
  EXPECT_TRUE(info->host.accelerator == "kvm" || info->host.accelerator == "tcg");
  EXPECT_FALSE(info->host.accelerator_reason.empty());
  auto yaml = daemon_.cli({"-f", "yaml", "info"});
  EXPECT_NE(yaml.out.find("api_version: \"1.0\""), std::string::npos) << yaml.out;
}

TEST_F(DaemonTest, SocketIsGroupOnly) {
  struct stat st {};
  ASSERT_EQ(::stat(daemon_.socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(DaemonTest, ProfileLifecycleWithEtags) {
  auto c = connect();
  auto created = c->create("profiles", Json{{"name", "web"}, {"description", "web tier"}});
  ASSERT_TRUE(created) << created.error().message();
  auto obj = c->get("profiles", "web");
  ASSERT_TRUE(obj);
  EXPECT_FALSE(obj->etag.empty());
  auto patched = c->patch("profiles", "web", Json{{"config", {{"limits.cpu", "2"}}}}, obj->etag);
  ASSERT_TRUE(patched) << patched.error().message();
  auto stale = c->patch("profiles", "web", Json{{"description", "x"}}, obj->etag);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), ErrorCode::kPreconditionFailed);
  EXPECT_EQ(c->get("profiles", "web")->data["description"], "web tier");
  auto list = daemon_.cli({"profile", "ls"});
  EXPECT_NE(list.out.find("web tier"), std::string::npos);
  EXPECT_TRUE(c->remove("profiles", "web"));
  EXPECT_EQ(c->get("profiles", "web").error().code(), ErrorCode::kNotFound);
}

TEST_F(DaemonTest, CliPrintsJustTheErrorLineAndExitCodes) {
  auto missing = daemon_.cli({"profile", "show", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err, "profile 'nope' not found\n");
  auto usage = daemon_.cli({"profile", "frobnicate"});
  EXPECT_EQ(usage.exit_code, 2);
  auto bad_name = daemon_.cli({"profile", "create", "bad/name"});
  EXPECT_EQ(bad_name.exit_code, 1);
  EXPECT_NE(bad_name.err.find("invalid profile name"), std::string::npos) << bad_name.err;
  EXPECT_EQ(daemon_.cli({"profile", "create", "a", "-c", "novalue"}).exit_code, 2);
}

TEST_F(DaemonTest, NoDaemonIsAClearError) {
  auto r = run_process(
      {bin_dir() + "/vireo", "--socket", (daemon_.dir() / "nothing.sock").string(), "info"});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_NE(r->err.find("is vireod running?"), std::string::npos) << r->err;
}

TEST_F(DaemonTest, HttpErrorsHaveStatusAndBody) {
  const std::string sock = daemon_.socket();
  auto bad_json = raw_http(sock, http_request("POST", "/1.0/profiles", R"({"name": "x",})"));
  EXPECT_EQ(bad_json.status, 400);
  EXPECT_EQ(bad_json.body["code"], 400);
  EXPECT_TRUE(bad_json.body["error"].get<std::string>().starts_with("invalid JSON at byte 14:"))
      << bad_json.body;

  auto unknown = raw_http(sock, http_request("GET", "/1.0/nowhere"));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body["error"], "no such endpoint: GET /1.0/nowhere");

  auto method = raw_http(sock, http_request("PUT", "/1.0"));
  EXPECT_EQ(method.status, 405);
  EXPECT_NE(method.head.find("Allow: GET"), std::string::npos);
  EXPECT_EQ(method.body["code"], 405);

  // Only the header: the server must refuse on the declared length without reading the body.
  auto too_big =
      raw_http(sock, "POST /1.0/profiles HTTP/1.1\r\nHost: x\r\nContent-Length: 17000000\r\n\r\n");
  EXPECT_EQ(too_big.status, 413);
  EXPECT_EQ(too_big.body["code"], 413);

  ASSERT_EQ(raw_http(sock, http_request("POST", "/1.0/profiles", R"({"name": "p"})")).status, 201);
  auto conflict = raw_http(sock, http_request("PATCH", "/1.0/profiles/p", R"({"description": "d"})",
                                              "If-Match: \"stale-1\"\r\n"));
  EXPECT_EQ(conflict.status, 412);
  EXPECT_EQ(conflict.body["code"], 412);

  auto garbage = raw_http(sock, "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(garbage.status, 400);

  auto bad_wait = raw_http(sock, http_request("GET", "/1.0/operations/x?wait=soon"));
  EXPECT_EQ(bad_wait.status, 400);
}

TEST_F(DaemonTest, GarbageConnectionsDoNotHurtTheServer) {
  std::mt19937 rng(42);
  const std::vector<std::string> seeds = {
      http_request("GET", "/1.0"), http_request("POST", "/1.0/profiles", R"({"name":"g"})"),
      "GET /1.0 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
      "GET /" + std::string(100000, 'a') + " HTTP/1.1\r\n\r\n",
      "GET /1.0 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"};
  for (int i = 0; i < 300; ++i) {
    std::string bytes = seeds[static_cast<size_t>(i) % seeds.size()];
    for (int flips = 0; flips < 1 + i % 8 && !bytes.empty(); ++flips)
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
    bytes.resize(rng() % (bytes.size() + 1));
    raw_http(daemon_.socket(), bytes);
  }
  auto ok = raw_http(daemon_.socket(), http_request("GET", "/1.0"));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(::kill(daemon_.pid(), 0), 0) << "vireod died";
}

TEST_F(DaemonTest, OperationsWaitProgressAndCancel) {
  auto ok = daemon_.cli({"debug", "sleep", "0.2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  auto failed = daemon_.cli({"debug", "sleep", "0.1", "--fail"});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_NE(failed.err.find("sleep failed as asked"), std::string::npos) << failed.err;

  auto started = daemon_.cli({"debug", "sleep", "30", "--detach"});
  ASSERT_EQ(started.exit_code, 0);
  std::string id = started.out.substr(0, started.out.find('\n'));
  auto shown = daemon_.cli({"operation", "show", id, "-f", "json"});
  EXPECT_EQ((*parse_json(shown.out))["status"], "running");
  EXPECT_NE(daemon_.cli({"operation", "ls"}).out.find(id), std::string::npos);
  EXPECT_EQ(daemon_.cli({"operation", "cancel", id}).exit_code, 0);
  auto waited = daemon_.cli({"operation", "wait", id});
  EXPECT_EQ(waited.exit_code, 1);
  EXPECT_NE(waited.err.find("was cancelled"), std::string::npos) << waited.err;
  auto again = daemon_.cli({"operation", "cancel", id});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already finished"), std::string::npos);
  EXPECT_EQ(daemon_.cli({"operation", "show", "no-such-op"}).exit_code, 1);
}

TEST_F(DaemonTest, WaitWithTimeoutReturnsRunningOperation) {
  auto c = connect();
  Json body = {{"seconds", 30}};
  auto reply = c->request("POST", "/1.0/debug/sleep", &body);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 202);
  EXPECT_TRUE(reply->location.starts_with("/1.0/operations/"));
  const std::string id = reply->body["id"];
  auto t0 = std::chrono::steady_clock::now();
  auto op = c->wait_operation(id, 1s);
  ASSERT_TRUE(op);
  EXPECT_EQ(op->status, api::OperationStatus::kRunning);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 900ms);
  ASSERT_TRUE(c->cancel_operation(id));
  EXPECT_EQ(c->wait_operation(id, 10s)->status, api::OperationStatus::kCancelled);
}

TEST_F(DaemonTest, EventsStreamLifecycleAndOperations) {
  std::promise<void> subscribed;
  std::atomic<bool> saw_lifecycle{false}, saw_operation{false};
  std::thread watcher([&] {
    auto c = connect();
    (void)c->watch_events(
        {"lifecycle", "operation"},
        [&](const api::Event& e) {
          if (e.type == "lifecycle" && e.metadata["action"] == "profile-created")
            saw_lifecycle = true;
          if (e.type == "operation" && e.metadata["status"] == "success") saw_operation = true;
          return !(saw_lifecycle && saw_operation);
        },
        [&] {
          subscribed.set_value();
          return true;
        });
  });
  ASSERT_EQ(subscribed.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_EQ(daemon_.cli({"profile", "create", "evt"}).exit_code, 0);
  EXPECT_EQ(daemon_.cli({"debug", "sleep", "0.05"}).exit_code, 0);
  watcher.join();  // returns once both were seen; ctest's timeout bounds it otherwise
  EXPECT_TRUE(saw_lifecycle);
  EXPECT_TRUE(saw_operation);
}

TEST_F(DaemonTest, UnknownEventTypeIsRefused) {
  auto c = connect();
  auto r = c->watch_events({"bogus"}, [](const api::Event&) { return false; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << r.error().message();
  EXPECT_NE(r.error().message().find("unknown event type 'bogus'"), std::string::npos)
      << r.error().message();
}

TEST_F(DaemonTest, ConcurrentClients) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      auto c = client::Client::connect({.socket_path = daemon_.socket()});
      if (!c) {
        ++failures;
        return;
      }
      for (int i = 0; i < 50; ++i) {
        if (!(*c)->info()) ++failures;
      }
      if (!(*c)->create("profiles", Json{{"name", fmt::format("p{}", t)}})) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(connect()->list("profiles")->size(), 16u);
}

TEST_F(DaemonTest, SigtermShutsDownCleanlyAndStateSurvives) {
  EXPECT_EQ(daemon_.cli({"profile", "create", "keep", "-d", "kept"}).exit_code, 0);
  EXPECT_EQ(daemon_.stop(), 0);
  EXPECT_FALSE(std::filesystem::exists(daemon_.socket()));
  ASSERT_TRUE(daemon_.start());
  auto show = daemon_.cli({"profile", "show", "keep", "-f", "json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ((*parse_json(show.out))["description"], "kept");
}

TEST_F(DaemonTest, Kill9KeepsEverythingCommitted) {
  auto c = connect();
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(c->create("profiles", Json{{"name", fmt::format("k{}", i)}}));
  c.reset();
  daemon_.kill();
  EXPECT_TRUE(std::filesystem::exists(daemon_.socket()));  // stale socket left behind
  ASSERT_TRUE(daemon_.start()) << "restart after kill -9 must replace the stale socket";
  EXPECT_EQ(connect()->list("profiles")->size(), 20u);
}

TEST_F(DaemonTest, SecondDaemonOnSameRootIsRefused) {
  auto r = run_process({bin_dir() + "/vireod", "--root", daemon_.root().string(), "--socket",
                        (daemon_.dir() / "other.sock").string(), "--foreground"},
                       {.timeout = 10s});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_NE(r->err.find("another vireod is running"), std::string::npos) << r->err;
}

TEST_F(DaemonTest, CompletionScriptCoversCommands) {
  auto r = daemon_.cli({"completion", "bash"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("complete -F _vireo vireo"), std::string::npos);
  EXPECT_NE(r.out.find("[\" operation\"]=\"ls show wait cancel"), std::string::npos) << r.out;
  auto bash = run_process({"bash", "-c", "source /dev/stdin"}, {.input = r.out});
  ASSERT_TRUE(bash);
  EXPECT_EQ(bash->exit_code, 0) << bash->err;
}

}  // namespace
}  // namespace vireo::testing

namespace vireo::testing {
namespace {

// /1.0/sandboxes: the stores of `vireo app` below the daemon's state root, as root's apps are
// below /var/lib/vireo with the default root.
TEST_F(DaemonTest, SandboxesListResetAndDeleteAppStores) {
  const std::string sock = daemon_.socket();
  std::string apps = (daemon_.root() / "apps").string();
  auto run =
      run_process({bin_dir() + "/vireo", "app", "run", "--name", "editor", "--", "/bin/sh", "-c",
                   "echo x > /etc/vireo-daemon-sbx.conf"},
                  {.timeout = std::chrono::seconds(60), .extra_env = {"VIREO_APPS_DIR=" + apps}});
  ASSERT_TRUE(run && run->ok()) << (run ? run->err : run.error().message());

  auto list = raw_http(sock, http_request("GET", "/1.0/sandboxes"));
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body.size(), 1u) << list.body;
  EXPECT_EQ(list.body[0]["name"], "editor");
  EXPECT_EQ(list.body[0]["changes"], 1);
  auto show = raw_http(sock, http_request("GET", "/1.0/sandboxes/editor"));
  ASSERT_EQ(show.status, 200);
  EXPECT_EQ(show.body["store"][0]["path"], "/etc/vireo-daemon-sbx.conf");
  EXPECT_EQ(show.body["store"][0]["change"], "added");

  auto reset = raw_http(sock, http_request("POST", "/1.0/sandboxes/editor/reset",
                                           R"({"path": "/etc/vireo-daemon-sbx.conf"})"));
  ASSERT_EQ(reset.status, 200) << reset.body;
  EXPECT_EQ(reset.body["changes"], 0);
  EXPECT_EQ(raw_http(sock, http_request("POST", "/1.0/sandboxes/editor/reset", "[1]")).status, 400);
  EXPECT_EQ(raw_http(sock, http_request("GET", "/1.0/sandboxes/-x")).status, 400);
  EXPECT_EQ(raw_http(sock, http_request("GET", "/1.0/sandboxes/ghost")).status, 404);
  ASSERT_EQ(raw_http(sock, http_request("DELETE", "/1.0/sandboxes/editor")).status, 200);
  EXPECT_FALSE(std::filesystem::exists(apps + "/editor"));
  EXPECT_TRUE(raw_http(sock, http_request("GET", "/1.0/sandboxes")).body.empty());
}

}  // namespace
}  // namespace vireo::testing

namespace vireo::testing {
namespace {

// A managed app: vireod starts `vireo app run` for it, reports it running, and stops it.
TEST_F(DaemonTest, SandboxStartedByTheDaemonRunsAndStops) {
  const std::string sock = daemon_.socket();
  std::string apps = (daemon_.root() / "apps").string();
  auto started = raw_http(sock, http_request("POST", "/1.0/sandboxes",
                                             R"({"name": "svc", "command": ["/bin/sh", "-c",
                             "echo started > /etc/vireo-managed; echo up; exec sleep 60"]})"));
  ASSERT_EQ(started.status, 201) << started.body;
  // Bounded wait for the app's first output in its log.
  std::string log = apps + "/svc/app.log";
  for (int i = 0; i < 200 && read_file(log).value_or("").find("up") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_NE(read_file(log).value_or(""), "") << "the app did not start";
  auto show = raw_http(sock, http_request("GET", "/1.0/sandboxes/svc"));
  EXPECT_EQ(show.body["running"], true) << show.body;
  EXPECT_EQ(raw_http(sock, http_request("DELETE", "/1.0/sandboxes/svc")).status, 409);
  auto again = raw_http(
      sock, http_request("POST", "/1.0/sandboxes", R"({"name": "svc", "command": ["true"]})"));
  EXPECT_EQ(again.status, 409) << again.body;

  auto stop = raw_http(sock, http_request("POST", "/1.0/sandboxes/svc/stop"));
  ASSERT_EQ(stop.status, 202) << stop.body;
  auto waited = raw_http(
      sock,
      http_request("GET", "/1.0/operations/" + stop.body["id"].get<std::string>() + "?wait=30"));
  ASSERT_EQ(waited.status, 200) << waited.body;
  EXPECT_EQ(waited.body["status"], "success") << waited.body;
  EXPECT_EQ(waited.body["result"]["running"], false) << waited.body;
  EXPECT_EQ(waited.body["result"]["changes"], 1) << waited.body;
  EXPECT_EQ(raw_http(sock, http_request("POST", "/1.0/sandboxes", R"({"name": "x"})")).status, 400);
  EXPECT_EQ(raw_http(sock, http_request("POST", "/1.0/sandboxes",
                                        R"({"name": "x", "command": ["a"], "profile": "god"})"))
                .status,
            400);
  EXPECT_EQ(raw_http(sock, http_request("DELETE", "/1.0/sandboxes/svc")).status, 200);
}

}  // namespace
}  // namespace vireo::testing
