// catalog's only ABI-facing file: the manifest and the exported entry point. The plugin itself
// is plain C++ in src/catalog.hpp, unit-tested in tests/unit/plugins/catalog.
#include "src/catalog.hpp"

#include <keel/sdk/plugin.hpp>

KEEL_PLUGIN(catalog::CatalogPlugin, CATALOG_MANIFEST);
