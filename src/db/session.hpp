#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace inferq::db {

class Raw;  // the libpqxx connection, hidden from everything outside src/db/

struct Notification {
  std::string channel;
  std::string payload;
};

// One PostgreSQL connection for one thread, opened lazily and reopened on the
// next use after it was lost. Not thread-safe: each thread that talks to the
// database owns its own Session.
class Session {
 public:
  // `application_name` shows in pg_stat_activity. `statement_timeout`
  // bounds every statement (0 = server default) so no caller blocks forever;
  // the client also waits at most reply_bound(statement_timeout) for the
  // server in any one run() or connect(), even through a pooler where no
  // statement_timeout is set, then drops the connection.
  // Each (re)connection LISTENs on `listen_channels`. Through a transaction
  // pooler (transaction_pooling()) neither is set: see there.
  Session(std::string url, std::string application_name,
          std::chrono::milliseconds statement_timeout = std::chrono::milliseconds{0},
          std::vector<std::string> listen_channels = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Opens the connection if it is not open. Blocks on connecting.
  // Throws DbError (connection_lost() = true when the server is unreachable).
  void connect();
  bool connected() const noexcept;
  // Closes the connection; the next use reopens it.
  void disconnect() noexcept;
  const std::string& url() const noexcept { return url_; }

  // The connection's socket to poll for notifications; -1 when not connected.
  int socket() const noexcept;
  // Reads what the server sent and takes the notifications received so far,
  // including those that came in during earlier statements (none when not
  // connected). Throws DbError (connection_lost) when the connection is
  // lost, and drops it: the next use reconnects and LISTENs again.
  std::vector<Notification> take_notifications();

  // Runs `fn` against the open connection, translating library errors into
  // DbError and dropping the connection when it was lost. Used by the
  // operation files of src/db/ only.
  void run(const std::function<void(Raw&)>& fn);

 private:
  std::string url_;
  std::string application_name_;
  std::chrono::milliseconds statement_timeout_;
  std::chrono::milliseconds reply_bound_;
  std::vector<std::string> listen_channels_;
  std::unique_ptr<Raw> raw_;
};

// How long a Session with `statement_timeout` waits for the server in one
// run() before it shuts the socket down: twice the timeout, and at least 10 s
// past it (the server's own cancel, and the reply's transfer); 0 (no bound)
// for a Session without a timeout. A peer that froze mid-statement still
// ACKs at the TCP level, so keepalives and tcp_user_timeout never fire.
std::chrono::milliseconds reply_bound(std::chrono::milliseconds statement_timeout);

// Says that every Session of this process reaches PostgreSQL through a
// pooler in transaction mode (database.transaction_pooling; PgBouncer
// pool_mode = transaction), where consecutive transactions of one connection
// may run on different server connections: statements are then unnamed, and
// a connection sets up no session state (no statement_timeout, no LISTEN:
// listen channels are ignored). Call once at start-up, before any Session
// connects.
void set_transaction_pooling(bool on) noexcept;
bool transaction_pooling() noexcept;

// The URL with any password replaced by "***", for log lines: a URL's
// userinfo (postgresql://u:PASS@h) and its ?password= parameter, and a
// keyword string's password=PASS, password = 'quoted value' included.
std::string redact_url(const std::string& url);

// `text` (an error from libpq, which may echo parts of the URL) with the
// password that `url` holds replaced by "***" wherever it stands alone (not
// inside a longer word), as written and percent-decoded, and with
// redact_url applied to it.
std::string redact_secrets(const std::string& text, const std::string& url);

// `url` with the TCP bounds every connection gets unless the URL sets them:
// connect_timeout=10 (seconds, the whole connection start-up), keepalives
// every 10 s after 30 s idle, 3 lost (a dead host or a cut network is seen
// in about a minute), tcp_user_timeout=60000 (ms: sent data unacknowledged
// that long drops the connection). Works for URLs and keyword strings.
std::string with_tcp_bounds(const std::string& url);

}  // namespace inferq::db
