#include "db/session.hpp"

#include <atomic>
#include <regex>

#include "db/error.hpp"
#include "db/raw.hpp"

namespace inferq::db {
namespace {

// libpq's text is "ERROR:  message\nDETAIL: ...\nCONTEXT: ..."; people and
// logs want the message.
std::string primary_message(const std::string& text) {
  std::string m = text.substr(0, text.find('\n'));
  for (const char* prefix : {"ERROR:  ", "FATAL:  "})
    if (m.rfind(prefix, 0) == 0) m.erase(0, std::char_traits<char>::length(prefix));
  return m;
}

std::atomic<bool> g_transaction_pooling{false};

class Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel, std::vector<Notification>& sink)
      : pqxx::notification_receiver(c, channel), sink_(sink) {}
  void operator()(const std::string& payload, int /*backend_pid*/) override {
    sink_.push_back({channel(), payload});
  }

 private:
  std::vector<Notification>& sink_;
};

}  // namespace

Session::Session(std::string url, std::string application_name, std::chrono::milliseconds statement_timeout,
                 std::vector<std::string> listen_channels)
    : url_(std::move(url)),
      application_name_(std::move(application_name)),
      statement_timeout_(statement_timeout),
      listen_channels_(std::move(listen_channels)) {}

Session::~Session() = default;

bool Session::connected() const noexcept { return raw_ != nullptr; }

void Session::disconnect() noexcept { raw_.reset(); }

int Session::socket() const noexcept { return raw_ ? raw_->conn.sock() : -1; }

std::vector<Notification> Session::take_notifications() {
  std::vector<Notification> out;
  if (!raw_) return out;
  try {
    raw_->conn.get_notifs();
  } catch (const std::exception& e) {
    raw_.reset();
    throw DbError(std::string("connection lost: ") + e.what(), true);
  }
  out.swap(raw_->pending);
  return out;
}

void Session::connect() {
  if (raw_) return;
  try {
    auto raw = std::make_unique<Raw>(url_);
    pqxx::nontransaction tx(raw->conn);
    // PgBouncer keeps application_name for its client (it is a reported
    // parameter) and sets it on whichever server connection serves it; a
    // statement_timeout or a LISTEN would stay on one server connection.
    tx.exec_params("SELECT set_config('application_name', $1, false)", application_name_);
    const bool pooled = transaction_pooling();
    if (statement_timeout_.count() > 0 && !pooled) {
      tx.exec("SET statement_timeout = " + std::to_string(statement_timeout_.count()));
    }
    // LISTEN here, so that nothing committed after connect() returns is
    // missed; the receivers (which would LISTEN lazily) only collect.
    if (!pooled) {
      for (const auto& channel : listen_channels_) tx.exec("LISTEN " + tx.quote_name(channel));
    }
    tx.commit();
    if (!pooled) {
      for (const auto& channel : listen_channels_)
        raw->receivers.push_back(std::make_unique<Receiver>(raw->conn, channel, raw->pending));
    }
    raw_ = std::move(raw);
  } catch (const pqxx::broken_connection& e) {
    throw DbError(std::string("cannot connect to ") + redact_url(url_) + ": " + e.what(), true);
  } catch (const pqxx::sql_error& e) {
    throw DbError(std::string("cannot set up session: ") + e.what(), false, e.sqlstate());
  } catch (const std::exception& e) {
    // libpq reports a malformed URL this way; it will not heal by retrying.
    throw DbError(std::string("cannot connect to ") + redact_url(url_) + ": " + e.what(), false);
  }
}

void Session::run(const std::function<void(Raw&)>& fn) {
  connect();
  try {
    fn(*raw_);
  } catch (const pqxx::broken_connection& e) {
    raw_.reset();
    throw DbError(std::string("connection lost: ") + e.what(), true);
  } catch (const pqxx::in_doubt_error& e) {
    raw_.reset();
    throw DbError(std::string("connection lost during commit: ") + e.what(), true);
  } catch (const pqxx::sql_error& e) {
    // Admin shutdown / crash recovery arrive as SQL errors of class 57 or 08.
    const std::string& state = e.sqlstate();
    const bool lost = state.rfind("57P", 0) == 0 || state.rfind("08", 0) == 0;
    if (lost || !raw_->conn.is_open()) raw_.reset();
    throw DbError(primary_message(e.what()), lost, state);
  } catch (const DbError&) {
    throw;
  } catch (const pqxx::failure& e) {
    raw_.reset();
    throw DbError(std::string("database failure: ") + e.what(), true);
  }
}

void set_transaction_pooling(bool on) noexcept { g_transaction_pooling.store(on); }

bool transaction_pooling() noexcept { return g_transaction_pooling.load(); }

std::string redact_url(const std::string& url) {
  static const std::regex kUserinfoPassword(R"(^([a-z]+://[^:/@]*):[^@]*@)");
  static const std::regex kKeywordPassword(R"(password=[^ &]*)");
  std::string out = std::regex_replace(url, kUserinfoPassword, "$1:***@");
  return std::regex_replace(out, kKeywordPassword, "password=***");
}

}  // namespace inferq::db
