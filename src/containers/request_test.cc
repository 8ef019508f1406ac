#include "containers/request.h"

#include <gtest/gtest.h>

#include <set>

#include "containers/engine.h"

namespace vireo::containers {
namespace {

using std::chrono::milliseconds;

Json caps_of(const Json& spec) {
  return spec["process"]["capabilities"]["bounding"];
}

bool has(const Json& list, const std::string& v) {
  for (const auto& e : list)
    if (e == v) return true;
  return false;
}

image::ImageConfig image_config() {
  image::ImageConfig c;
  c.entrypoint = {"/bin/entry"};
  c.cmd = {"serve", "--port", "80"};
  c.env = {"PATH=/image/bin", "A=image"};
  c.working_dir = "/srv";
  return c;
}

Result<Json> spec_for(const Json& body) {
  auto r = TRY(parse_create_request(body));
  return build_spec(r, "web", image_config(), {}, "/b/rootfs");
}

TEST(ContainerRequestTest, ImageProcessSettingsWithoutOverrides) {
  auto spec = spec_for({{"image", "app:1"}});
  ASSERT_TRUE(spec) << spec.error().message();
  EXPECT_EQ((*spec)["process"]["args"], Json({"/bin/entry", "serve", "--port", "80"}));
  EXPECT_EQ((*spec)["process"]["cwd"], "/srv");
  EXPECT_EQ((*spec)["process"]["env"], Json({"PATH=/image/bin", "A=image"}));
  EXPECT_EQ((*spec)["process"]["terminal"], false);
  EXPECT_EQ((*spec)["root"]["path"], "/b/rootfs");
  EXPECT_EQ((*spec)["root"]["readonly"], false);
  EXPECT_EQ((*spec)["hostname"], "web");
  EXPECT_TRUE(has(caps_of(*spec), "CAP_CHOWN"));
  EXPECT_FALSE(has(caps_of(*spec), "CAP_SYS_ADMIN"));
  bool netns = false;
  for (const auto& ns : (*spec)["linux"]["namespaces"]) netns |= ns["type"] == "network";
  EXPECT_TRUE(netns);
  EXPECT_TRUE((*spec)["linux"].contains("seccomp"));
  EXPECT_TRUE((*spec)["linux"].contains("maskedPaths"));
}

TEST(ContainerRequestTest, RequestOverridesCommandEntrypointEnvWorkdirAndUser) {
  auto spec = spec_for({{"image", "app:1"},
                        {"command", {"echo", "hi"}},
                        {"env", {"A=req", "B=2"}},
                        {"workdir", "/tmp"},
                        {"user", "1000:1000"},
                        {"tty", true}});
  ASSERT_TRUE(spec) << spec.error().message();
  EXPECT_EQ((*spec)["process"]["args"], Json({"/bin/entry", "echo", "hi"}));
  EXPECT_EQ((*spec)["process"]["env"], Json({"PATH=/image/bin", "TERM=xterm", "A=req", "B=2"}));
  EXPECT_EQ((*spec)["process"]["cwd"], "/tmp");
  EXPECT_EQ((*spec)["process"]["user"]["uid"], 1000);
  EXPECT_EQ((*spec)["process"]["user"]["gid"], 1000);
  EXPECT_EQ((*spec)["process"]["terminal"], true);

  auto entry = spec_for({{"image", "app:1"}, {"entrypoint", {"/bin/sh", "-c"}}});
  ASSERT_TRUE(entry);
  EXPECT_EQ((*entry)["process"]["args"], Json({"/bin/sh", "-c"}));  // the image Cmd dropped
}

TEST(ContainerRequestTest, NoCommandAnywhereIsRefused) {
  auto r = parse_create_request({{"image", "scratch:1"}});
  ASSERT_TRUE(r);
  auto spec = build_spec(*r, "x", image::ImageConfig{}, {}, "/r");
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code(), ErrorCode::kInvalidArgument);
}

TEST(ContainerRequestTest, ResourcesCapabilitiesMountsNetworkAndReadOnly) {
  auto spec =
      spec_for({{"image", "app:1"},
                {"memory", 64 << 20},
                {"cpus", 1.5},
                {"pids_limit", 100},
                {"cap_add", {"NET_ADMIN", "CAP_SYS_TIME"}},
                {"cap_drop", {"chown"}},
                {"read_only", true},
                {"network", "host"},
                {"mounts", {{{"source", "/tmp"}, {"target", "/data"}, {"read_only", true}}}}});
  ASSERT_TRUE(spec) << spec.error().message();
  const Json& res = (*spec)["linux"]["resources"];
  EXPECT_EQ(res["memory"]["limit"], 64 << 20);
  EXPECT_EQ(res["cpu"]["quota"], 150000);
  EXPECT_EQ(res["cpu"]["period"], 100000);
  EXPECT_EQ(res["pids"]["limit"], 100);
  EXPECT_TRUE(has(caps_of(*spec), "CAP_NET_ADMIN"));
  EXPECT_TRUE(has(caps_of(*spec), "CAP_SYS_TIME"));
  EXPECT_FALSE(has(caps_of(*spec), "CAP_CHOWN"));
  EXPECT_EQ((*spec)["root"]["readonly"], true);
  for (const auto& ns : (*spec)["linux"]["namespaces"]) EXPECT_NE(ns["type"], "network");
  const Json& last = (*spec)["mounts"].back();
  EXPECT_EQ(last["destination"], "/data");
  EXPECT_EQ(last["source"], "/tmp");
  EXPECT_EQ(last["options"], Json({"rbind", "ro"}));

  auto all = spec_for({{"image", "app:1"}, {"cap_drop", {"ALL"}}, {"cap_add", {"KILL"}}});
  ASSERT_TRUE(all);
  EXPECT_EQ(caps_of(*all), Json({"CAP_KILL"}));
  auto every = spec_for({{"image", "app:1"}, {"cap_add", {"ALL"}}});
  ASSERT_TRUE(every);
  EXPECT_EQ(caps_of(*every).size(), 41u);
}

TEST(ContainerRequestTest, MissingBindSourceIsNotFound) {
  auto spec =
      spec_for({{"image", "app:1"}, {"mounts", {{{"source", "/no/such/dir"}, {"target", "/d"}}}}});
  ASSERT_FALSE(spec);
  EXPECT_EQ(spec.error().code(), ErrorCode::kNotFound);
}

TEST(ContainerRequestTest, UnknownFieldsAndWrongTypesAreRefused) {
  for (const Json& body :
       {Json{{"image", "a"}, {"bogus", 1}}, Json{{"image", 3}},
        Json{{"image", "a"}, {"command", "echo hi"}}, Json{{"image", "a"}, {"tty", "yes"}},
        Json{{"image", "a"}, {"memory", 1.5}}, Json{{"image", "a"}, {"cap_add", {"NOT_A_CAP"}}},
        Json{{"image", "a"}, {"network", "bad name!"}},
        Json{{"image", "a"}, {"restart", {{"policy", "sometimes"}}}},
        Json{{"image", "a"}, {"mounts", {{{"source", "rel"}, {"target", "/d"}}}}},
        Json{{"image", "a"}, {"name", "-bad"}}, Json{{"name", "x"}}, Json::array()}) {
    auto r = parse_create_request(body);
    EXPECT_FALSE(r) << body.dump();
    if (!r) {
      EXPECT_EQ(r.error().code(), ErrorCode::kInvalidArgument) << body.dump();
    }
  }
}

TEST(ContainerRequestTest, NormalizedRequestRoundTrips) {
  Json body = {
      {"image", "app:1"},          {"name", "web"},
      {"command", {"x"}},          {"restart", {{"policy", "on-failure"}, {"max_retries", 3}}},
      {"labels", {{"team", "a"}}}, {"start", true}};
  auto r = parse_create_request(body);
  ASSERT_TRUE(r);
  Json j = to_json(*r);
  EXPECT_FALSE(j.contains("start"));
  EXPECT_EQ(j["restart"]["policy"], "on-failure");
  EXPECT_EQ(j["restart"]["max_retries"], 3);
  EXPECT_EQ(j["entrypoint"], nullptr);
  auto again = parse_create_request(j);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(to_json(*again), j);
}

TEST(ContainerNameTest, Validation) {
  for (const char* ok : {"a", "web-1", "A.b_c", "0x"}) EXPECT_TRUE(valid_name(ok)) << ok;
  for (const char* bad : {"", "-a", "_a", ".a", "a b", "a/b", "é"}) EXPECT_FALSE(valid_name(bad));
  EXPECT_FALSE(valid_name(std::string(129, 'a')));
  std::set<std::string> names;
  for (int i = 0; i < 50; ++i) {
    std::string n = generate_name();
    EXPECT_TRUE(valid_name(n)) << n;
    names.insert(n);
  }
  EXPECT_GT(names.size(), 10u);
}

TEST(ContainerSignalTest, Names) {
  EXPECT_EQ(parse_signal("KILL").value(), 9);
  EXPECT_EQ(parse_signal("SIGTERM").value(), 15);
  EXPECT_EQ(parse_signal("hup").value(), 1);
  EXPECT_EQ(parse_signal("9").value(), 9);
  EXPECT_FALSE(parse_signal("0"));
  EXPECT_FALSE(parse_signal("SIGBOGUS"));
  EXPECT_FALSE(parse_signal("100"));
}

TEST(RestartPolicyTest, Decisions) {
  RestartPolicy no;
  EXPECT_FALSE(should_restart(no, 1, 0, false));
  RestartPolicy on_failure{RestartKind::kOnFailure, 2};
  EXPECT_FALSE(should_restart(on_failure, 0, 0, false));
  EXPECT_TRUE(should_restart(on_failure, 1, 0, false));
  EXPECT_TRUE(should_restart(on_failure, 1, 1, false));
  EXPECT_FALSE(should_restart(on_failure, 1, 2, false));
  EXPECT_TRUE(should_restart(RestartPolicy{RestartKind::kOnFailure, 0}, 1, 1000, false));
  RestartPolicy always{RestartKind::kAlways, 0};
  EXPECT_TRUE(should_restart(always, 0, 50, false));
  EXPECT_FALSE(should_restart(always, 0, 0, true));
  EXPECT_FALSE(should_restart(RestartPolicy{RestartKind::kUnlessStopped, 0}, 1, 0, true));
}

TEST(RestartPolicyTest, BackoffDoublesToTenSecondsAndResetsAfterALongRun) {
  Backoff b;
  std::vector<int64_t> delays;
  for (int i = 0; i < 10; ++i) delays.push_back(b.delay_after(milliseconds(50)).count());
  EXPECT_EQ(delays,
            (std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000}));
  EXPECT_EQ(b.delay_after(milliseconds(9999)).count(), 10000);
  EXPECT_EQ(b.delay_after(milliseconds(10000)).count(), 100);
  EXPECT_EQ(b.delay_after(milliseconds(10)).count(), 200);
}

}  // namespace
}  // namespace vireo::containers

namespace vireo::containers {
namespace {

TEST(ExecRequest, ParsedStrictly) {
  auto r = parse_exec_request(Json{{"command", {"sh", "-c", "true"}},
                                   {"env", {"A=1"}},
                                   {"workdir", "/tmp"},
                                   {"user", "1000:1000"}});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->command, (std::vector<std::string>{"sh", "-c", "true"}));
  EXPECT_EQ(r->env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(r->workdir, "/tmp");
  EXPECT_EQ(r->user, "1000:1000");
  for (const Json& bad : {Json::array(), Json{{"command", Json::array()}}, Json{{"command", "sh"}},
                          Json{{"command", {""}}}, Json{{"command", {1}}},
                          Json{{"command", {"true"}}, {"env", {"NOEQUALS"}}},
                          Json{{"command", {"true"}}, {"workdir", "relative"}},
                          Json{{"command", {"true"}}, {"tty", true}}})
    EXPECT_FALSE(parse_exec_request(bad)) << bad.dump();
}

}  // namespace
}  // namespace vireo::containers

namespace vireo::containers {
namespace {

TEST(UpdateRequest, ParsedStrictly) {
  auto u = parse_update_request(Json{{"memory", 128 << 20}, {"cpus", 0.5}, {"pids_limit", 10}});
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(*u->memory, 128 << 20);
  EXPECT_DOUBLE_EQ(*u->cpus, 0.5);
  EXPECT_EQ(*u->pids_limit, 10);
  for (const Json& bad :
       {Json::object(), Json::array(), Json{{"memory", 1 << 20}}, Json{{"memory", "1G"}},
        Json{{"cpus", 0}}, Json{{"pids_limit", -1}}, Json{{"ports", "8080:80"}},
        Json{{"ports", {"80"}}}, Json{{"volumes", Json::array()}}})
    EXPECT_FALSE(parse_update_request(bad)) << bad.dump();
  // Ports alone (none at all included) are an update.
  auto ports = parse_update_request(Json{{"ports", {"8080:80", "53:53/udp"}}});
  ASSERT_TRUE(ports) << ports.error().message();
  EXPECT_EQ(ports->ports->size(), 2u);
  EXPECT_TRUE(parse_update_request(Json{{"ports", Json::array()}}));
}

TEST(HealthCheckTest, ParsedStrictlyAndRoundTrips) {
  auto r = parse_create_request(
      Json{{"image", "a"},
           {"health", {{"command", {"sh", "-c", "true"}}, {"interval_ms", 500}, {"retries", 2}}}});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(r->health);
  EXPECT_EQ(r->health->interval, std::chrono::milliseconds(500));
  EXPECT_EQ(r->health->timeout, std::chrono::seconds(30));
  EXPECT_EQ(r->health->retries, 2);
  auto again = parse_create_request(to_json(*r));
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->health->command, r->health->command);
  EXPECT_EQ(again->health->interval, r->health->interval);
  for (const Json& bad : {Json{{"command", Json::array()}}, Json{{"command", {""}}},
                          Json{{"command", {"true"}}, {"interval_ms", 10}},
                          Json{{"command", {"true"}}, {"retries", 0}},
                          Json{{"command", {"true"}}, {"timeout_ms", "5s"}},
                          Json{{"command", {"true"}}, {"every", 5}}, Json("true")}) {
    EXPECT_FALSE(parse_create_request(Json{{"image", "a"}, {"health", bad}})) << bad.dump();
  }
}

TEST(PortSpecTest, DockerFormsAndErrors) {
  auto p = parse_port_spec("8080:80");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(*p, (PublishedPort{"0.0.0.0", 8080, 80, "tcp"}));
  p = parse_port_spec("127.0.0.1:5353:53/udp");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(*p, (PublishedPort{"127.0.0.1", 5353, 53, "udp"}));
  EXPECT_EQ(format_port(*p), "127.0.0.1:5353->53/udp");
  for (const char* bad : {"80", "0:80", "8080:0", "70000:80", "8080:80/sctp", "a:80",
                          "8080:", "1.2.3:8080:80", "::80", "8080:80/", ""}) {
    auto r = parse_port_spec(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message().find("port '"), std::string::npos) << bad;
    }
  }
}

TEST(PortSpecTest, PortsNeedANetworkAndEachHostPortOnce) {
  auto ok = parse_create_request(
      Json{{"image", "a"}, {"network", "lan"}, {"ports", {"8080:80", "8081:81/udp"}}});
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(ok->ports.size(), 2u);
  EXPECT_EQ(ok->network_name, "lan");
  auto dflt = parse_create_request(Json{{"image", "a"}, {"ports", {"8080:80"}}});
  ASSERT_TRUE(dflt) << dflt.error().message();  // the default network
  EXPECT_EQ(to_json(*dflt)["network"], "default");
  for (const Json& bad :
       {Json{{"image", "a"}, {"network", "none"}, {"ports", {"8080:80"}}},
        Json{{"image", "a"}, {"network", "host"}, {"ip", "10.0.0.2"}},
        Json{{"image", "a"}, {"ports", {"8080:80", "127.0.0.1:8080:81"}}},
        Json{{"image", "a"}, {"ports", {Json{{"host_port", 1}}}}},
        Json{{"image", "a"}, {"ports", {Json{{"host_port", 1}, {"container_port", 70000}}}}},
        Json{{"image", "a"}, {"ip", "10.0.0"}}}) {
    auto r = parse_create_request(bad);
    EXPECT_FALSE(r) << bad.dump();
  }
  // The same port on two protocols, or on two addresses, is fine.
  EXPECT_TRUE(parse_create_request(Json{{"image", "a"}, {"ports", {"53:53", "53:53/udp"}}}));
  EXPECT_TRUE(parse_create_request(
      Json{{"image", "a"}, {"ports", {"127.0.0.1:80:80", "127.0.0.2:80:80"}}}));
}

}  // namespace
}  // namespace vireo::containers
