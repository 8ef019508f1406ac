#include "server/router.h"

#include <gtest/gtest.h>

namespace vireo::server {
namespace {

Response call(const Router& router, Method method, const std::string& target) {
  Request req;
  req.method = method;
  parse_target(target, req.path, req.query);
  Response out;
  bool answered = false;
  router.dispatch(req, [&](Response r) {
    out = std::move(r);
    answered = true;
  });
  EXPECT_TRUE(answered);
  return out;
}

Router make_router() {
  Router r;
  r.add_sync(Method::kGet, "/1.0/things",
             [](Request&) -> Result<Response> { return Response::json("list"); });
  r.add_sync(Method::kGet, "/1.0/things/{name}",
             [](Request& q) -> Result<Response> { return Response::json(q.params["name"]); });
  r.add_sync(Method::kGet, "/1.0/things/special",
             [](Request&) -> Result<Response> { return Response::json("literal"); });
  r.add_sync(Method::kDelete, "/1.0/things/{name}",
             [](Request&) -> Result<Response> { return make_error(ErrorCode::kConflict, "busy"); });
  return r;
}

TEST(RouterTest, MatchesPlaceholdersAndDecodes) {
  auto r = call(make_router(), Method::kGet, "/1.0/things/we%62");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "web");
}

TEST(RouterTest, AHandlerThatThrowsAnswersInsteadOfEndingTheDaemon) {
  Router r;
  r.add_sync(Method::kPost, "/1.0/typed", [](Request&) -> Result<Response> {
    Json body = Json::parse(R"({"dhcp": "yes"})");
    return Response::json(body.value("dhcp", false));  // throws: not a boolean
  });
  r.add_sync(Method::kPost, "/1.0/broken",
             [](Request&) -> Result<Response> { throw std::runtime_error("boom"); });
  auto typed = call(r, Method::kPost, "/1.0/typed");
  EXPECT_EQ(typed.status, 400);
  EXPECT_NE(typed.body.dump().find("must be boolean"), std::string::npos) << typed.body;
  auto broken = call(r, Method::kPost, "/1.0/broken");
  EXPECT_EQ(broken.status, 500);
  EXPECT_NE(broken.body.dump().find("boom"), std::string::npos) << broken.body;
}

TEST(RouterTest, LiteralBeatsPlaceholder) {
  EXPECT_EQ(call(make_router(), Method::kGet, "/1.0/things/special").body, "literal");
}

TEST(RouterTest, TrailingSlashIsTheSameRoute) {
  EXPECT_EQ(call(make_router(), Method::kGet, "/1.0/things/").body, "list");
}

TEST(RouterTest, UnknownPathIs404WithErrorBody) {
  auto r = call(make_router(), Method::kGet, "/1.0/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body["code"], 404);
  EXPECT_EQ(r.body["error"], "no such endpoint: GET /1.0/nothing");
}

TEST(RouterTest, WrongMethodIs405WithAllow) {
  auto r = call(make_router(), Method::kPost, "/1.0/things/x");
  EXPECT_EQ(r.status, 405);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Allow");
  EXPECT_EQ(r.headers[0].second, "GET, DELETE");
}

TEST(RouterTest, HandlerErrorsMapToStatus) {
  auto r = call(make_router(), Method::kDelete, "/1.0/things/x");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body["error"], "busy");
}

TEST(HttpTest, ParseTargetSplitsQuery) {
  std::string path;
  std::map<std::string, std::string> query;
  parse_target("/1.0/ops/a%20b?wait=5&type=a%2Cb&flag&x=1+2", path, query);
  EXPECT_EQ(path, "/1.0/ops/a b");
  EXPECT_EQ(query["wait"], "5");
  EXPECT_EQ(query["type"], "a,b");
  EXPECT_EQ(query["flag"], "");
  EXPECT_EQ(query["x"], "1 2");
}

TEST(HttpTest, PercentDecodeLeavesBrokenEscapes) {
  EXPECT_EQ(percent_decode("%zz%4", false), "%zz%4");
  EXPECT_EQ(percent_decode("a+b", false), "a+b");
}

TEST(HttpTest, QueryIntChecksRange) {
  Request req;
  req.query["wait"] = "30";
  EXPECT_EQ(*req.query_int("wait", -1, 0, 60), 30);
  EXPECT_EQ(*req.query_int("other", -1, 0, 60), -1);
  req.query["wait"] = "999";
  EXPECT_FALSE(req.query_int("wait", -1, 0, 60));
  req.query["wait"] = "5s";
  EXPECT_FALSE(req.query_int("wait", -1, 0, 60));
}

TEST(HttpTest, EmptyOrMalformedBodyIsInvalidArgument) {
  Request req;
  EXPECT_EQ(req.json_body().error().message(), "request body is empty: expected a JSON object");
  req.body = "{\"a\":";
  EXPECT_TRUE(req.json_body().error().message().starts_with("invalid JSON at byte"));
}

}  // namespace
}  // namespace vireo::server
