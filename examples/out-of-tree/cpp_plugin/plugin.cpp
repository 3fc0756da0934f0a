// cpp_plugin's ABI-facing file: the manifest and the one exported entry point.
#include "greeter.hpp"

#include <keel/sdk/plugin.hpp>

KEEL_PLUGIN(cpp_plugin::Greeter, R"json({"name": "cpp_plugin", "version": "1.0.0", "abi": "1.0",
  "description": "out-of-tree example written in C++ with the SDK, built with clang++",
  "routes": [{"method": "GET", "path": "/hi", "summary": "says which compiler built it"}]})json");
