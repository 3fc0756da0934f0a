// keel: command line entry point. Everything else lives in keel_host_core.
#include "app/app.hpp"

int main(int argc, char** argv) { return keel::host::app::run_cli(argc, argv); }
