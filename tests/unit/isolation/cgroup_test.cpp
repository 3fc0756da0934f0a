// Where a cgroup's directory is, from what /proc/self/mountinfo and /proc/self/cgroup say, and
// the pid a forked runner writes to join its group.
#include <catch2/catch.hpp>

#include <string>

#include <fcntl.h>
#include <unistd.h>

#include "isolation/cgroup.hpp"

using keel::host::isolation::cgroup_directory;

TEST_CASE("cgroup directories follow the part of the hierarchy a mount shows", "[isolation][cgroup]") {
  // The whole hierarchy mounted (a VM, or a container with its own cgroup namespace).
  CHECK(cgroup_directory("/", "/sys/fs/cgroup", "/") == "/sys/fs/cgroup");
  CHECK(cgroup_directory("/", "/sys/fs/cgroup/memory", "/process_api/77b3") == "/sys/fs/cgroup/memory/process_api/77b3");
  // Only the container's own group mounted, the path still the host's view of it.
  CHECK(cgroup_directory("/docker/abc", "/sys/fs/cgroup/cpu", "/docker/abc") == "/sys/fs/cgroup/cpu");
  CHECK(cgroup_directory("/docker/abc", "/sys/fs/cgroup/cpu", "/docker/abc/keel") == "/sys/fs/cgroup/cpu/keel");
  // A group the mount does not show, and a sibling whose name only starts the same.
  CHECK(cgroup_directory("/docker/abc", "/sys/fs/cgroup/cpu", "/system.slice").empty());
  CHECK(cgroup_directory("/docker/abc", "/sys/fs/cgroup/cpu", "/docker/abcd").empty());
}

TEST_CASE("join_cgroups writes the caller's pid to each group", "[isolation][cgroup]") {
  int a[2], b[2];
  REQUIRE(::pipe(a) == 0);
  REQUIRE(::pipe(b) == 0);
  CHECK(keel::host::isolation::join_cgroups({a[1], b[1]}));
  const auto expected = std::to_string(::getpid());
  for (const int fd : {a[0], b[0]}) {
    char text[32] = {};
    CHECK(::read(fd, text, sizeof text - 1) == static_cast<ssize_t>(expected.size()));
    CHECK(std::string(text) == expected);
  }
  ::close(a[1]);
  CHECK_FALSE(keel::host::isolation::join_cgroups({a[1]}));  // a closed descriptor: the child reports the step
  for (const int fd : {a[0], b[0], b[1]}) ::close(fd);
}
