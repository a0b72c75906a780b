#include "util/scope_guard.hpp"

#include <doctest.h>

#include <utility>

using inferq::util::ScopeGuard;

TEST_CASE("ScopeGuard runs on scope exit") {
  int runs = 0;
  {
    ScopeGuard guard([&] { ++runs; });
    CHECK(runs == 0);
  }
  CHECK(runs == 1);
}

TEST_CASE("ScopeGuard runs when the scope is left by an exception") {
  int runs = 0;
  try {
    ScopeGuard guard([&] { ++runs; });
    throw 1;
  } catch (int) {
  }
  CHECK(runs == 1);
}

TEST_CASE("A dismissed ScopeGuard does not run") {
  int runs = 0;
  {
    ScopeGuard guard([&] { ++runs; });
    guard.dismiss();
  }
  CHECK(runs == 0);
}

TEST_CASE("A moved ScopeGuard runs once") {
  int runs = 0;
  {
    ScopeGuard first([&] { ++runs; });
    { ScopeGuard second(std::move(first)); }
    CHECK(runs == 1);
  }
  CHECK(runs == 1);
}
