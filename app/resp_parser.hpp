#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rollblock {

/// The limits of one client's request stream.
struct resp_limits {
  /// The most bytes one client may have buffered: an unfinished request plus
  /// whatever follows it. A BLOCK.APPLY of 20,000 ops is about 0.6 MB.
  std::size_t max_buffer = 64ull << 20;
  /// The longest bulk string accepted (values above 65,535 bytes still parse,
  /// so the store can refuse them politely).
  std::size_t max_bulk_length = 16ull << 20;
  /// The most elements in one request array.
  std::size_t max_elements = 1ull << 20;
  /// The longest inline request line and the longest "*N" / "$N" header line
  /// (redis-server's PROTO_INLINE_MAX_SIZE).
  std::size_t max_inline = 64ull << 10;
  /// Before authentication (redis-server's limits): at most this many
  /// elements and bulk bytes per request.
  std::size_t unauthenticated_max_elements = 10;
  std::size_t unauthenticated_max_bulk_length = 16384;
};

/// An incremental parser of RESP requests as redis-server reads them: arrays
/// of bulk strings ("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n") and inline commands
/// ("GET key\r\n", with redis-server's quoting rules). Input arrives in
/// chunks of any size; a request split at any byte parses the same.
///
/// Use: feed(chunk), then call next() until it returns need_more (or error).
/// The arguments of a command point into the chunk or into the parser's own
/// buffer (no copy when a request lies within one chunk); they stay valid
/// until the next call of next() or feed(). Only the unfinished tail of a
/// chunk is copied.
///
/// After an error the parser stays failed: error() is the text to send
/// ("Protocol error: ..."), and the connection should be closed.
class resp_parser {
public:
  enum class result { command, need_more, error };

  explicit resp_parser(resp_limits limits = {});

  resp_parser(const resp_parser&) = delete;
  resp_parser& operator=(const resp_parser&) = delete;

  /// Adds the next chunk of input. `chunk` must stay valid until next()
  /// returns need_more or error (or until the next feed()).
  void feed(std::string_view chunk);

  /// Copies the input not parsed yet into the parser's own buffer, so the
  /// last chunk fed may die before next() returns need_more.
  void retain() {
    feed({});
  }

  /// Parses the next command from the input fed so far.
  result next();

  /// The arguments of the command next() returned last (never empty).
  const std::vector<std::string_view>& args() const {
    return args_;
  }

  /// The error text ("Protocol error: ...") once next() returned error.
  const std::string& error() const {
    return error_;
  }

  /// Switches between the limits for clients that have authenticated (or
  /// need not) and those that have not.
  void set_authenticated(bool x) {
    authenticated_ = x;
  }

  /// Returns the bytes the parser holds (fed but not yet parsed, or parsed
  /// into an unfinished request).
  std::size_t buffered() const {
    return in_.size() - start_;
  }

  const resp_limits& limits() const {
    return limits_;
  }

private:
  result fail(std::string text);
  result need_more();
  result parse_inline();
  result parse_array_header();
  result parse_array_elements();

  /// Finds "\r\n" ending a header line that starts at `from`; sets `eol` to
  /// the position of '\r'. Returns command when found, need_more when
  /// incomplete, error when too long or not followed by '\n'.
  result find_header_end(std::size_t from, const char* too_big,
                         std::size_t& eol);

  resp_limits limits_;
  bool authenticated_ = true;
  bool failed_ = false;
  std::string error_;

  /// The parser's own copy of input that outlived its chunk.
  std::string buf_;
  /// The input being parsed: the caller's chunk or buf_.
  std::string_view in_;
  bool in_owned_ = false;
  /// Where the current request starts in in_, and the next byte to parse.
  std::size_t start_ = 0;
  std::size_t pos_ = 0;

  /// Inside an array: elements still to read (0: not inside one), the length
  /// of the bulk whose header was read (-1: none), and the elements read so
  /// far as (offset from start_, length).
  std::int64_t elements_left_ = 0;
  std::int64_t bulk_length_ = -1;
  std::vector<std::pair<std::size_t, std::size_t>> spans_;

  std::vector<std::string> inline_args_;
  std::vector<std::string_view> args_;
};

/// Parses a decimal integer the way redis-server does (string2ll): no sign
/// but '-', no leading zeros, no spaces, no overflow.
bool parse_resp_int(std::string_view text, std::int64_t& out);

/// Splits an inline request line the way redis-server does (sdssplitargs):
/// blanks separate arguments; "double quotes" take \n \r \t \b \a \xHH and
/// \<char> escapes; 'single quotes' take \'. Returns false on unbalanced
/// quotes (or a closing quote not followed by a blank).
bool split_inline_args(std::string_view line, std::vector<std::string>& out);

} // namespace rollblock
