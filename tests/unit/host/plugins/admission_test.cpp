// Admission into a plugin generation (plugins/host_impl.hpp): what lets a reload or a disable
// drain a generation knowing nothing can still enter it.

#include <atomic>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "plugins/host_impl.hpp"

namespace kp = keel::host::plugins;
using Impl = kp::PluginHost::Impl;

TEST_CASE("admission: a generation admits only while it accepts, and counts what it admitted", "[plugins][admission]") {
  kp::Plugin p;
  CHECK_FALSE(Impl::admit(p));  // not started yet
  CHECK(p.in_flight.load() == 0);
  p.accepting.store(true);
  REQUIRE(Impl::admit(p));
  CHECK(p.in_flight.load() == 1);
  {
    const Impl::Admission held(&p);
    CHECK(p.in_flight.load() == 1);
  }
  CHECK(p.in_flight.load() == 0);  // released with the scope
  REQUIRE(Impl::admit(p));
  kp::Plugin* handed_over = nullptr;
  {
    Impl::Admission held(&p);
    handed_over = held.transfer();  // to a queued job, which releases it when done
  }
  CHECK(handed_over == &p);
  CHECK(p.in_flight.load() == 1);
  p.in_flight.fetch_sub(1);
  p.accepting.store(false);
  CHECK_FALSE(Impl::admit(p));
  CHECK(p.in_flight.load() == 0);
}

TEST_CASE("admission: once a drain saw nothing inside, nothing enters any more", "[plugins][admission]") {
  // Clients admit and release in a loop while the control thread stops accepting and waits for
  // in_flight to reach 0, as a reload's drain does; after that no admission may succeed.
  for (int round = 0; round < 50; ++round) {
    kp::Plugin p;
    p.accepting.store(true);
    std::atomic<bool> drained{false};
    std::atomic<int> entered_after_drain{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < 3; ++t) {
      clients.emplace_back([&] {
        for (int i = 0; i < 2000; ++i) {
          if (!Impl::admit(p)) continue;
          if (drained.load()) entered_after_drain++;
          p.in_flight.fetch_sub(1);
        }
      });
    }
    std::this_thread::yield();
    p.accepting.store(false);
    while (p.in_flight.load() != 0) std::this_thread::yield();
    drained.store(true);
    for (auto& c : clients) c.join();
    CHECK(entered_after_drain.load() == 0);
    CHECK(p.in_flight.load() == 0);
  }
}
