// executor_environment: the variables every executor starts with (threads,
// and malloc's huge pages unless the operator decided otherwise).
#include <doctest.h>

#include <string>
#include <vector>

#include "supervisor/executor_process.hpp"

using inferq::supervisor::executor_environment;

TEST_CASE("threads for OpenMP, MKL and OpenBLAS, and malloc's huge pages") {
  CHECK(executor_environment(3, nullptr) ==
        std::vector<std::string>{"OMP_NUM_THREADS=3", "MKL_NUM_THREADS=3", "OPENBLAS_NUM_THREADS=3",
                                 "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"});
  CHECK(executor_environment(1, "").back() == "GLIBC_TUNABLES=glibc.malloc.hugetlb=1");
}

TEST_CASE("the operator's GLIBC_TUNABLES is kept: appended to, or left alone when it sets hugetlb") {
  CHECK(executor_environment(2, "glibc.malloc.arena_max=2").back() ==
        "GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
  // An opt-out (or a different choice) is theirs: nothing is added, the
  // inherited value reaches the executor as it is.
  const auto env = executor_environment(2, "glibc.malloc.hugetlb=0");
  CHECK(env.size() == 3);
  for (const auto& e : env) CHECK(e.rfind("GLIBC_TUNABLES=", 0) != 0);
}
