// cluster::Directory and the announcement format (docs/cluster.md "Announcements").
#include "cluster/directory.hpp"

#include <catch2/catch.hpp>

namespace kc = keel::host::cluster;
using namespace std::chrono_literals;

namespace {

kc::Announcement announcement(std::string node, std::vector<std::string> plugins) {
  kc::Announcement a;
  a.node = std::move(node);
  a.interval = 100ms;
  a.version = "0.1.0";
  for (auto& p : plugins) {
    const auto mount = "/api/" + p;
    a.plugins.push_back({std::move(p), "1.0.0", "pass", mount, {{"GET", mount + "/ping"}}, {"catalog"}});
  }
  return a;
}

}  // namespace

TEST_CASE("cluster directory: an announcement survives its JSON, and malformed ones are refused", "[cluster]") {
  const auto a = announcement("host-a", {"catalog", "orders"});
  kc::Announcement back;
  std::string error;
  REQUIRE(kc::parse_announcement(kc::to_json(a), back, error));
  CHECK(back.node == "host-a");
  CHECK(back.interval == 100ms);
  CHECK(back.version == "0.1.0");
  REQUIRE(back.plugins.size() == 2);
  CHECK(back.plugins[1].name == "orders");
  CHECK(back.plugins[1].mount == "/api/orders");
  CHECK(back.plugins[1].routes == std::vector<std::pair<std::string, std::string>>{{"GET", "/api/orders/ping"}});
  CHECK(back.plugins[1].calls == std::vector<std::string>{"catalog"});

  const auto refused = [](std::string_view json, std::string_view why) {
    kc::Announcement out;
    std::string e;
    CAPTURE(json);
    CHECK_FALSE(kc::parse_announcement(json, out, e));
    CHECK(e.find(why) != std::string::npos);
  };
  refused("not json", "not a JSON object");
  refused(R"({"v":2,"node":"a","interval_ms":1,"plugins":[]})", "unknown announcement version");
  refused(R"({"v":1,"node":"a.b","interval_ms":1,"plugins":[]})", "\"node\"");
  refused(R"({"v":1,"node":"a","interval_ms":0,"plugins":[]})", "\"interval_ms\"");
  refused(R"({"v":1,"node":"a","interval_ms":1})", "\"plugins\"");
  refused(R"({"v":1,"node":"a","interval_ms":1,"plugins":[{"name":"x.>"}]})", "valid \"name\"");
  refused(R"({"v":1,"node":"a","interval_ms":1,"plugins":[{"name":"x","mount":"/api/x/"}]})", "valid \"mount\"");
  refused(R"({"v":1,"node":"a","interval_ms":1,"plugins":[{"name":"x"}]})", "valid \"mount\"");
  refused(R"({"v":1,"node":"a","interval_ms":1,"plugins":[{"name":"x","mount":"/api/x","version":"1.0\u001b"}]})",
          "valid \"version\"");
  refused(R"({"v":1,"node":"a","interval_ms":1,"plugins":[{"name":"x","mount":"/api/x"}]})", "valid \"version\"");
}

TEST_CASE("cluster directory: hosts join, refresh, change, leave and expire", "[cluster]") {
  kc::Directory d("self");
  const auto t0 = kc::Clock::time_point{} + 1h;
  CHECK(d.apply(announcement("self", {"catalog"}), t0).empty());  // its own: ignored
  CHECK(d.versions("catalog").empty());
  CHECK(d.apply(announcement("a", {"catalog"}), t0) == "joined");
  CHECK(d.apply(announcement("a", {"catalog"}), t0 + 100ms).empty());  // a refresh
  CHECK(d.apply(announcement("a", {"catalog", "orders"}), t0 + 200ms) == "updated");
  CHECK(d.apply(announcement("b", {"orders"}), t0 + 200ms) == "joined");
  CHECK_FALSE(d.versions("orders").empty());
  CHECK(d.versions("orders") == std::vector<std::string>{"1.0.0", "1.0.0"});
  CHECK(d.versions("billing").empty());
  CHECK(d.nodes().size() == 2);
  // Silent for more than three of its intervals (100 ms each): forgotten; b announced later.
  CHECK(d.apply(announcement("b", {"orders"}), t0 + 450ms).empty());
  CHECK(d.expire(t0 + 550ms) == std::vector<std::string>{"a"});
  CHECK(d.versions("catalog").empty());
  CHECK_FALSE(d.versions("orders").empty());
  // After a gap in the link, what was known gets a fresh lease instead of expiring at once.
  d.touch_all(t0 + 2s);
  CHECK(d.expire(t0 + 2s + 200ms).empty());
  auto bye = announcement("b", {});
  bye.leaving = true;
  CHECK(d.apply(bye, t0 + 2s) == "left");
  CHECK(d.nodes().empty());
}

TEST_CASE("cluster directory: which plugin a path belongs to, and who may call whom", "[cluster]") {
  kc::Directory d("self");
  const auto t0 = kc::Clock::time_point{} + 1h;
  auto a = announcement("a", {"catalog"});
  a.plugins[0].mount = "/shop/catalog";  // a mount of its own ([plugin.catalog] mount)
  a.plugins[0].calls = {"pricing"};
  d.apply(a, t0);
  d.apply(announcement("b", {"orders"}), t0);
  CHECK(d.plugin_at("/shop/catalog") == "catalog");
  CHECK(d.plugin_at("/shop/catalog/items/1") == "catalog");
  CHECK(d.plugin_at("/shop/catalogue") == "");
  CHECK(d.plugin_at("/api/orders/7") == "orders");
  CHECK(d.plugin_at("/api/catalog/items") == "");
  CHECK(d.may_call("a", "catalog", "pricing"));
  CHECK_FALSE(d.may_call("a", "catalog", "orders"));
  CHECK_FALSE(d.may_call("b", "catalog", "pricing"));  // b does not load catalog
  CHECK(d.may_call("b", "orders", "catalog"));
}
