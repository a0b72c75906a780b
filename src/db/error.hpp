#pragma once

#include <stdexcept>
#include <string>

namespace inferq::db {

// A database operation failed. Library exceptions are turned into this where
// they leave src/db/. connection_lost() means the connection is gone (server
// restart, network): the caller may retry after a backoff, and the session
// reconnects on its next use.
class DbError : public std::runtime_error {
 public:
  DbError(const std::string& what, bool connection_lost, std::string sqlstate = {})
      : std::runtime_error(what), connection_lost_(connection_lost), sqlstate_(std::move(sqlstate)) {}
  bool connection_lost() const noexcept { return connection_lost_; }
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  // The statement lost a race, not its data: a deadlock, a serialization
  // failure (SQLSTATE class 40) or a lock that could not be taken (55P03).
  // Running it again as it is can succeed.
  bool retryable() const noexcept {
    return connection_lost_ || sqlstate_.rfind("40", 0) == 0 || sqlstate_ == "55P03";
  }
  // The statement ran out of a resource or past a program limit (SQLSTATE
  // class 53 or 54). From a claim this is, most likely, what it read: a
  // payload whose JSON text cannot be made (see inferq.fail_unclaimable),
  // not an outage of the server.
  bool resource_limit() const noexcept {
    return sqlstate_.rfind("53", 0) == 0 || sqlstate_.rfind("54", 0) == 0;
  }

 private:
  bool connection_lost_;
  std::string sqlstate_;
};

}  // namespace inferq::db
