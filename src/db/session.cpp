#include "db/session.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <regex>

#include "db/error.hpp"
#include "db/raw.hpp"
#include "db/reply_watchdog.hpp"

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

// What a lost connection's error says when the watchdog cut it.
std::string lost(const char* what, const std::string& detail, bool shut_down,
                 std::chrono::milliseconds bound) {
  if (!shut_down) return what + detail;
  return "no reply from the server within " + std::to_string(bound.count()) +
         " ms; the connection was shut down (" + detail + ")";
}

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
      reply_bound_(reply_bound(statement_timeout)),
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
  bool shut_down = false;
  try {
    auto raw = std::make_unique<Raw>(url_);
    // Destroyed before raw (declared after it), so before the socket closes.
    const ReplyWatch watch(raw->conn.sock(), reply_bound_, shut_down);
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
    throw DbError(std::string("cannot connect to ") + redact_url(url_) + ": " +
                      lost("", redact_secrets(e.what(), url_), shut_down, reply_bound_),
                  true);
  } catch (const pqxx::sql_error& e) {
    throw DbError(std::string("cannot set up session: ") + redact_secrets(e.what(), url_), false,
                  e.sqlstate());
  } catch (const std::exception& e) {
    // libpq reports a malformed URL this way; it will not heal by retrying.
    throw DbError(
        std::string("cannot connect to ") + redact_url(url_) + ": " + redact_secrets(e.what(), url_), false);
  }
}

void Session::run(const std::function<void(Raw&)>& fn) {
  connect();
  bool shut_down = false;
  try {
    // Ends (in the unwinding, before any handler below closes the socket)
    // when fn returns or throws.
    const ReplyWatch watch(raw_->conn.sock(), reply_bound_, shut_down);
    fn(*raw_);
  } catch (const pqxx::broken_connection& e) {
    raw_.reset();
    throw DbError(lost("connection lost: ", e.what(), shut_down, reply_bound_), true);
  } catch (const pqxx::in_doubt_error& e) {
    raw_.reset();
    throw DbError(lost("connection lost during commit: ", e.what(), shut_down, reply_bound_), true);
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
    throw DbError(lost("database failure: ", e.what(), shut_down, reply_bound_), true);
  }
  // The reply came as the watchdog cut the socket: the connection is gone.
  if (shut_down) raw_.reset();
}

std::chrono::milliseconds reply_bound(std::chrono::milliseconds statement_timeout) {
  if (statement_timeout.count() <= 0) return std::chrono::milliseconds{0};
  return statement_timeout + std::max<std::chrono::milliseconds>(statement_timeout, std::chrono::seconds(10));
}

void set_transaction_pooling(bool on) noexcept { g_transaction_pooling.store(on); }

bool transaction_pooling() noexcept { return g_transaction_pooling.load(); }

namespace {

bool is_url(const std::string& s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0;
}

// postgresql://user:PASS@host: up to the last '@' before the path.
const std::regex kUserinfoPassword(R"(([A-Za-z][A-Za-z0-9+.-]*://[^:/@?\s]*):([^/?\s]*)@)");
// ?password=PASS or &password=PASS in a URL's query.
const std::regex kQueryPassword(R"(([?&]password=)([^&\s]*))");
// password=PASS, password = 'a \' b' in a keyword string.
const std::regex kKeywordPassword(R"((\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*))");

std::string percent_decoded(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Every form of the password `url` holds, as written and decoded.
std::vector<std::string> passwords_in(const std::string& url) {
  std::vector<std::string> out;
  std::smatch m;
  if (is_url(url)) {
    if (std::regex_search(url, m, kUserinfoPassword)) out.push_back(m[2]);
    if (std::regex_search(url, m, kQueryPassword)) out.push_back(m[2]);
  } else if (std::regex_search(url, m, kKeywordPassword)) {
    std::string v = m[2];
    if (v.size() >= 2 && v.front() == '\'') {
      std::string unquoted;
      for (std::size_t i = 1; i + 1 < v.size(); ++i) {
        if (v[i] == '\\' && i + 2 < v.size()) ++i;
        unquoted += v[i];
      }
      out.push_back(v);
      v = unquoted;
    }
    out.push_back(v);
  }
  const std::size_t n = out.size();
  for (std::size_t i = 0; i < n; ++i) out.push_back(percent_decoded(out[i]));
  return out;
}

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Replaces `what` where it stands alone, not inside a longer word: libpq
// echoes a password between delimiters (quotes, ':', '@', '='), and a short
// one replaced everywhere would garble the message and, by where the ***
// fell, spell the password out ("p***ssword" for "a").
void replace_tokens(std::string& text, const std::string& what, const std::string& with) {
  if (what.empty()) return;
  for (std::size_t at = text.find(what); at != std::string::npos;) {
    const std::size_t end = at + what.size();
    const bool alone =
        (at == 0 || !is_word_char(text[at - 1])) && (end == text.size() || !is_word_char(text[end]));
    if (alone) {
      text.replace(at, what.size(), with);
      at = text.find(what, at + with.size());
    } else {
      at = text.find(what, at + 1);
    }
  }
}

}  // namespace

std::string redact_url(const std::string& url) {
  const std::string out = std::regex_replace(url, kUserinfoPassword, "$1:***@");
  return is_url(url) ? std::regex_replace(out, kQueryPassword, "$1***")
                     : std::regex_replace(out, kKeywordPassword, "$1***");
}

std::string redact_secrets(const std::string& text, const std::string& url) {
  std::string out = text;
  std::vector<std::string> secrets = passwords_in(url);
  // Longest first, so that a decoded form inside a written one goes too.
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const std::string& s : secrets) replace_tokens(out, s, "***");
  return redact_url(out);
}

std::string with_tcp_bounds(const std::string& url) {
  static const std::pair<const char*, const char*> kBounds[] = {
      {"connect_timeout", "10"},     {"keepalives", "1"},       {"keepalives_idle", "30"},
      {"keepalives_interval", "10"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "60000"},
  };
  std::string out = url;
  const bool url_form = is_url(url);
  for (const auto& [key, value] : kBounds) {
    // Set by the user: theirs wins (a keyword is a whole word followed by '=').
    const std::regex set(std::string(url_form ? "[?&]" : "(^|\\s)") + key + (url_form ? "=" : "\\s*="));
    if (std::regex_search(url, set)) continue;
    if (url_form) {
      out += out.find('?') == std::string::npos ? '?' : '&';
    } else if (!out.empty()) {
      out += ' ';
    }
    out += std::string(key) + '=' + value;
  }
  return out;
}

}  // namespace inferq::db
