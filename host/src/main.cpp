// keel: command line entry point. Everything else lives in keel_host_core.
#include <malloc.h>

#include "app/app.hpp"

int main(int argc, char** argv) {
  // Keep freed heap memory for reuse instead of trimming it back to the kernel after every
  // burst: event and request bursts otherwise grow the heap again with brk each time (perf:
  // sysmalloc ~6% of an in-memory event burst). Idle memory is unaffected; after a burst up to
  // this much stays mapped.
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_TOP_PAD, 4 << 20);
  return keel::host::app::run_cli(argc, argv);
}
