// The keel.storage/1 C table (storage_api_table): ctx lookup, argument checks, error_message.

#include "storage/storage_api.hpp"

#include <cstdint>
#include <future>
#include <string>
#include <utility>

#include <catch2/catch.hpp>

#include "abi/host_ctx.hpp"
#include "storage/database.hpp"
#include "storage_test_support.hpp"

using namespace keel::test::storage;
using keel::host::storage::storage_api_table;

namespace {

std::string message(const keel_storage_api& api, keel_host_ctx* ctx) { return str(api.error_message(ctx)); }

int32_t ignore_entry(void*, const keel_kv_entry*) { return 0; }

}  // namespace

TEST_CASE("storage api: the table is complete", "[storage][api]") {
  const auto& api = storage_api_table();
  CHECK(api.struct_size == sizeof(keel_storage_api));
  CHECK(api.reserved == 0);
  CHECK(api.exec != nullptr);
  CHECK(api.prepare != nullptr);
  CHECK(api.begin != nullptr);
  CHECK(api.commit != nullptr);
  CHECK(api.rollback != nullptr);
  CHECK(api.kv_get != nullptr);
  CHECK(api.kv_put != nullptr);
  CHECK(api.kv_delete != nullptr);
  CHECK(api.kv_list != nullptr);
  CHECK(api.error_message != nullptr);
}

TEST_CASE("storage api: calls reach the ctx's database and report errors per thread", "[storage][api]") {
  TestDb t;
  const auto& api = storage_api_table();
  keel_host_ctx ctx{};
  ctx.storage = t.db.get();

  REQUIRE(api.exec(&ctx, 0, pb("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"), nullptr, 0, nullptr, nullptr,
                   nullptr) == KEEL_OK);
  CHECK(message(api, &ctx).empty());

  const keel_sql_param params[1] = {text_p("hello")};
  auto res = new_result();
  REQUIRE(api.exec(&ctx, 0, pb("INSERT INTO t (v) VALUES (?)"), params, 1, nullptr, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 1);
  CHECK(res.last_insert_id == 1);

  Rows rows;
  REQUIRE(api.exec(&ctx, 0, pb("SELECT id, v FROM t"), nullptr, 0, &Rows::collect, &rows, nullptr) == KEEL_OK);
  REQUIRE(rows.rows.size() == 1);
  CHECK(rows.rows[0][1].bytes == "hello");

  // Database errors come back through error_message().
  CHECK(api.exec(&ctx, 0, pb("SELEC 1"), nullptr, 0, nullptr, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(message(api, &ctx), "syntax error"));
  CHECK(api.exec(&ctx, 0, pb("INSERT INTO t (v) VALUES (?)"), params, 1, nullptr, nullptr, nullptr) == KEEL_ERR_CONFLICT);
  const auto* duplicate = on_postgres() ? "duplicate key value violates unique constraint" : "UNIQUE constraint failed";
  CHECK(contains(message(api, &ctx), duplicate));

  // The message is per thread: a success elsewhere does not clear it.
  auto other = std::async(std::launch::async, [&] {
    const auto st = api.exec(&ctx, 0, pb("SELECT 1"), nullptr, 0, nullptr, nullptr, nullptr);
    return std::make_pair(st, message(api, &ctx));
  });
  const auto [other_st, other_message] = other.get();
  CHECK(other_st == KEEL_OK);
  CHECK(other_message.empty());
  CHECK(contains(message(api, &ctx), duplicate));
  // ...and a success here does.
  REQUIRE(api.exec(&ctx, 0, pb("SELECT 1"), nullptr, 0, nullptr, nullptr, nullptr) == KEEL_OK);
  CHECK(message(api, &ctx).empty());

  // NULL params with a non-zero count.
  CHECK(api.exec(&ctx, 0, pb("SELECT ?"), nullptr, 1, nullptr, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(message(api, &ctx), "NULL"));
  // Wrong count through the table.
  CHECK(api.exec(&ctx, 0, pb("SELECT ?, ?"), params, 1, nullptr, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(message(api, &ctx), "2 parameter"));
  // Empty SQL with a NULL pointer.
  CHECK(api.exec(&ctx, 0, keel_plugin_bytes{nullptr, 0}, nullptr, 0, nullptr, nullptr, nullptr) ==
        KEEL_ERR_INVALID_ARGUMENT);
  CHECK(!message(api, &ctx).empty());
  // SQL with a NULL pointer and a length.
  CHECK(api.exec(&ctx, 0, keel_plugin_bytes{nullptr, 8}, nullptr, 0, nullptr, nullptr, nullptr) ==
        KEEL_ERR_INVALID_ARGUMENT);
  CHECK(!message(api, &ctx).empty());

  // prepare
  keel_sql_info info{};
  info.struct_size = sizeof(info);
  REQUIRE(api.prepare(&ctx, pb("SELECT v FROM t WHERE id = ?"), &info) == KEEL_OK);
  CHECK(info.param_count == 1);
  CHECK(info.column_count == 1);
  CHECK(info.read_only == 1);
  CHECK(api.prepare(&ctx, pb("SELECT v FROM t"), nullptr) == KEEL_ERR_INVALID_ARGUMENT);

  // Transactions.
  keel_txn txn = 0;
  REQUIRE(api.begin(&ctx, 0, &txn) == KEEL_OK);
  REQUIRE(api.exec(&ctx, txn, pb("DELETE FROM t"), nullptr, 0, nullptr, nullptr, nullptr) == KEEL_OK);
  REQUIRE(api.rollback(&ctx, txn) == KEEL_OK);
  CHECK(api.commit(&ctx, txn) == KEEL_ERR_NOT_FOUND);
  CHECK(contains(message(api, &ctx), std::to_string(txn)));
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 1);
}

TEST_CASE("storage api: kv through the table", "[storage][api][kv]") {
  TestDb t;
  const auto& api = storage_api_table();
  keel_host_ctx ctx{};
  ctx.storage = t.db.get();

  auto args = put_args("k", "v1");
  std::int64_t version = 0;
  REQUIRE(api.kv_put(&ctx, 0, &args, &version) == KEEL_OK);
  CHECK(version == 1);
  auto e = new_entry();
  REQUIRE(api.kv_get(&ctx, 0, pb("k"), &e) == KEEL_OK);
  CHECK(str(e.value) == "v1");
  CHECK(api.kv_get(&ctx, 0, pb("nope"), &e) == KEEL_ERR_NOT_FOUND);
  CHECK(!message(api, &ctx).empty());
  CHECK(api.kv_put(&ctx, 0, nullptr, &version) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(!message(api, &ctx).empty());
  args.struct_size = 0;
  CHECK(api.kv_put(&ctx, 0, &args, &version) == KEEL_ERR_INVALID_ARGUMENT);
  args = put_args("k", "v2", 5);
  CHECK(api.kv_put(&ctx, 0, &args, &version) == KEEL_ERR_CONFLICT);
  CHECK(contains(message(api, &ctx), "expected version 5"));
  // A key given as a NULL pointer with a length is refused, not read.
  args = put_args("k", "v2");
  args.key = {nullptr, 3};
  CHECK(api.kv_put(&ctx, 0, &args, &version) == KEEL_ERR_INVALID_ARGUMENT);
  args = put_args("k", "v2");
  args.value = {nullptr, 3};
  CHECK(api.kv_put(&ctx, 0, &args, &version) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(api.kv_get(&ctx, 0, keel_plugin_bytes{nullptr, 3}, &e) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(api.kv_delete(&ctx, 0, keel_plugin_bytes{nullptr, 3}, KEEL_KV_ANY_VERSION) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(api.kv_list(&ctx, 0, keel_plugin_bytes{nullptr, 3}, pb(""), 10, &ignore_entry, nullptr, nullptr) ==
        KEEL_ERR_INVALID_ARGUMENT);
  CHECK(api.kv_list(&ctx, 0, pb(""), keel_plugin_bytes{nullptr, 3}, 10, &ignore_entry, nullptr, nullptr) ==
        KEEL_ERR_INVALID_ARGUMENT);
  REQUIRE(api.kv_get(&ctx, 0, pb("k"), &e) == KEEL_OK);
  CHECK(str(e.value) == "v1");

  std::uint32_t more = 9;
  int seen = 0;
  REQUIRE(api.kv_list(&ctx, 0, keel_plugin_bytes{nullptr, 0}, keel_plugin_bytes{nullptr, 0}, 10,
                      [](void* user, const keel_kv_entry*) -> int32_t {
                        ++*static_cast<int*>(user);
                        return 0;
                      },
                      &seen, &more) == KEEL_OK);
  CHECK(seen == 1);
  CHECK(more == 0);
  REQUIRE(api.kv_delete(&ctx, 0, pb("k"), 1) == KEEL_OK);
  CHECK(api.kv_delete(&ctx, 0, pb("k"), KEEL_KV_ANY_VERSION) == KEEL_ERR_NOT_FOUND);
}

TEST_CASE("storage api: without a database every call is PERMISSION_DENIED", "[storage][api]") {
  const auto& api = storage_api_table();
  keel_host_ctx no_storage{};
  for (keel_host_ctx* ctx : {&no_storage, static_cast<keel_host_ctx*>(nullptr)}) {
    keel_txn txn = 0;
    keel_sql_info info{};
    info.struct_size = sizeof(info);
    auto e = new_entry();
    auto args = put_args("k", "v");
    std::int64_t version = 0;
    const keel_status results[] = {
        api.exec(ctx, 0, pb("SELECT 1"), nullptr, 0, nullptr, nullptr, nullptr),
        api.prepare(ctx, pb("SELECT 1"), &info),
        api.begin(ctx, 0, &txn),
        api.commit(ctx, 1),
        api.rollback(ctx, 1),
        api.kv_get(ctx, 0, pb("k"), &e),
        api.kv_put(ctx, 0, &args, &version),
        api.kv_delete(ctx, 0, pb("k"), KEEL_KV_ANY_VERSION),
        api.kv_list(ctx, 0, pb(""), pb(""), 10, &ignore_entry, nullptr, nullptr),
    };
    for (auto st : results) CHECK(st == KEEL_ERR_PERMISSION_DENIED);
    CHECK(contains(message(api, ctx), "ext:keel.storage/1"));
  }
}
