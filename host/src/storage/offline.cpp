#include "storage/offline.hpp"

#include "storage/postgres/postgres_database.hpp"
#include "storage/sqlite/sqlite_database.hpp"

namespace keel::host::storage {

Options options_for(const config::Config& cfg, std::string_view plugin) {
  Options o;
  o.engine = cfg.storage.engine;
  o.file = database_file(cfg.server.data_dir, plugin);
  o.plugin = std::string(plugin);
  o.synchronous = cfg.storage.synchronous;
  o.busy_timeout = cfg.storage.busy_timeout;
  o.readers = cfg.storage.readers;
  o.statement_cache = cfg.storage.statement_cache;
  o.transaction_timeout = cfg.storage.transaction_timeout;
  o.max_bytes = cfg.storage.max_db_bytes;
  if (const auto sec = cfg.plugin_sections.find(std::string(plugin)); sec != cfg.plugin_sections.end()) {
    if (sec->second.max_db_bytes) o.max_bytes = *sec->second.max_db_bytes;
    if (!sec->second.storage_engine.empty())
      o.engine = sec->second.storage_engine == "postgres" ? StorageEngine::kPostgres : StorageEngine::kSqlite;
  }
  o.postgres.url = cfg.storage.postgres_url;
  o.postgres.prefix = cfg.storage.postgres_prefix;
  o.postgres.pool_size = cfg.storage.postgres_pool_size;
  o.postgres.connect_timeout = cfg.storage.postgres_connect_timeout;
  return o;
}

MigrationHistory read_migration_history(const Options& options) {
  if (options.engine == StorageEngine::kPostgres) return read_postgres_history(options);
  return read_sqlite_history(options.file);
}

bool storage_answers(const Options& options) {
  return options.engine != StorageEngine::kPostgres || postgres_answers(options);
}

std::string describe_location(const Options& options) {
  if (options.engine == StorageEngine::kPostgres)
    return describe_postgres_url(options.postgres.url) + " schema " +
           PostgresDatabase::schema_name(options.postgres.prefix, options.plugin);
  return options.file.string();
}

std::string backup_file_name(const Options& options) {
  return options.plugin + (options.engine == StorageEngine::kPostgres ? ".pgdump" : ".db");
}

void backup_database(const Options& options, const std::filesystem::path& target, const BackupTools& tools) {
  if (options.engine == StorageEngine::kPostgres) return backup_postgres(options, target, tools.pg_dump);
  backup(options.file, target);
}

}  // namespace keel::host::storage
