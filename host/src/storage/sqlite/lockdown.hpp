#pragma once
// What a plugin's SQL may do on its own database (docs/storage.md "Lockdown"): the authorizer's
// decisions, the host's reserved names, and the checks made on a statement's text where the
// authorizer cannot see enough. Pure functions, no connection.

#include <string_view>

namespace keel::host::storage {

/// ASCII case-insensitive "s starts with prefix".
[[nodiscard]] bool iequals_prefix(std::string_view s, std::string_view prefix) noexcept;
/// `s` without leading whitespace, SQL comments and empty statements (";").
[[nodiscard]] std::string_view skip_filler(std::string_view s) noexcept;
/// A table or index name the host keeps for itself ("_keel_...", any case).
[[nodiscard]] bool reserved(const char* name) noexcept;
/// The authorizer's answer (SQLITE_OK or SQLITE_DENY) to `action` on a plugin connection, with
/// sqlite3_set_authorizer's first two detail arguments.
[[nodiscard]] int decide_plugin_action(int action, const char* a1, const char* a2) noexcept;
/// True when `sql` renames a table onto the host's reserved names ("ALTER TABLE a RENAME TO
/// _keel_kv", however the new name is quoted). The authorizer only sees the old name of an ALTER
/// TABLE, so the new one is read from the text, tokenized as SQLite reads it.
[[nodiscard]] bool renames_onto_reserved(std::string_view sql);

}  // namespace keel::host::storage
