#include "storage/testing.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

#include <unistd.h>
#include <variant>

#include "package/manifest.hpp"
#include "storage/migrations.hpp"
#include "storage/storage_api.hpp"

namespace keel::host::storage {

TestDatabase::TestDatabase(keel_host_ctx* ctx, const std::filesystem::path& file, std::string_view manifest_json,
                           const keel_host_api* host)
    : ctx_(ctx) {
  auto parsed = package::parse_manifest(manifest_json);
  if (auto* errors = std::get_if<std::vector<package::ManifestError>>(&parsed))
    throw std::runtime_error("TestDatabase: invalid manifest: " + errors->front().str());
  const auto& manifest = std::get<package::Manifest>(parsed);
  Options options;
  options.file = file;
  options.plugin = manifest.name;
  if (const char* url = std::getenv("KEEL_TEST_POSTGRES_URL"); url != nullptr && *url != '\0') {
    // A schema of its own per database: tests running side by side never share data.
    // The random part keeps a later process with the same pid off an earlier run's schema.
    static std::atomic<int> databases{0};
    static const auto run = std::random_device{}();
    options.engine = StorageEngine::kPostgres;
    options.postgres.url = url;
    options.postgres.prefix =
        "t" + std::to_string(::getpid()) + "r" + std::to_string(run % 100000) + "n" + std::to_string(++databases);
  }
  db_ = open_database(std::move(options));
  if (auto why = migrate(*db_, manifest.migrations); !why.empty()) throw std::runtime_error("TestDatabase: " + why);
  CommittedPublish on_publish;
  if (host != nullptr && host->publish != nullptr)
    on_publish = [host, ctx](const keel_publish_args& args) { return host->publish(ctx, &args); };
  // The bus's rules for the storage table's publish (docs/events.md): a declared topic, and a
  // durable one inside a transaction.
  PublishAdmission admit = [publishes = manifest.publishes, durable = manifest.durable](
                               std::string_view topic, bool in_transaction, std::string& why) {
    const auto listed = [&](const std::vector<std::string>& topics) {
      return std::find(topics.begin(), topics.end(), topic) != topics.end();
    };
    if (!listed(publishes)) {
      why = "topic " + std::string{topic} + " is not in the manifest's events.publishes";
      return KEEL_ERR_PERMISSION_DENIED;
    }
    if (in_transaction && !listed(durable)) {
      why = "topic " + std::string{topic} +
            " is in-memory: publish it with keel_host_api.publish after the commit (or list it in events.durable)";
      return KEEL_ERR_INVALID_ARGUMENT;
    }
    return KEEL_OK;
  };
  bind_storage(ctx_, db_.get(), std::move(on_publish), std::move(admit));
}

TestDatabase::~TestDatabase() {
  bind_storage(ctx_, nullptr);
  db_->close();
}

const keel_storage_api& TestDatabase::table() const noexcept { return bound_storage_api_table(); }

}  // namespace keel::host::storage
