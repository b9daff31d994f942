#include "resp_parser.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace rollblock {

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' ||
         c == '\f';
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return c - 'A' + 10;
}

/// Renders one byte for an error text: printable as is, others as \xHH.
std::string show_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f)
    return std::string(1, c);
  static constexpr char digits[] = "0123456789abcdef";
  return std::string{'\\', 'x', digits[u >> 4], digits[u & 0xf]};
}

} // namespace

bool parse_resp_int(std::string_view text, std::int64_t& out) {
  if (text.empty() || text.size() > 20)
    return false;
  if (text.size() == 1 && text[0] == '0') {
    out = 0;
    return true;
  }
  std::size_t i = 0;
  bool negative = false;
  if (text[0] == '-') {
    negative = true;
    if (++i == text.size())
      return false;
  }
  if (text[i] < '1' || text[i] > '9')
    return false;
  std::uint64_t v = 0;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c < '0' || c > '9')
      return false;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
      return false;
    v = v * 10 + d;
  }
  constexpr auto max = static_cast<std::uint64_t>(
    std::numeric_limits<std::int64_t>::max());
  if (negative) {
    if (v > max + 1)
      return false;
    out = v == max + 1 ? std::numeric_limits<std::int64_t>::min()
                       : -static_cast<std::int64_t>(v);
  } else {
    if (v > max)
      return false;
    out = static_cast<std::int64_t>(v);
  }
  return true;
}

bool split_inline_args(std::string_view line, std::vector<std::string>& out) {
  out.clear();
  // sdssplitargs works on a C string: a zero byte ends the line.
  if (auto nul = line.find('\0'); nul != std::string_view::npos)
    line = line.substr(0, nul);
  std::size_t p = 0;
  const std::size_t n = line.size();
  auto at = [&](std::size_t i) { return i < n ? line[i] : '\0'; };
  for (;;) {
    while (p < n && is_blank(line[p]))
      ++p;
    if (p >= n)
      return true;
    bool in_double = false;
    bool in_single = false;
    bool done = false;
    std::string current;
    while (!done) {
      char c = at(p);
      if (in_double) {
        if (c == '\\' && at(p + 1) == 'x' && is_hex(at(p + 2)) &&
            is_hex(at(p + 3))) {
          current.push_back(
            static_cast<char>(hex_value(at(p + 2)) * 16 + hex_value(at(p + 3))));
          p += 3;
        } else if (c == '\\' && p + 1 < n) {
          ++p;
          switch (line[p]) {
            case 'n':
              current.push_back('\n');
              break;
            case 'r':
              current.push_back('\r');
              break;
            case 't':
              current.push_back('\t');
              break;
            case 'b':
              current.push_back('\b');
              break;
            case 'a':
              current.push_back('\a');
              break;
            default:
              current.push_back(line[p]);
              break;
          }
        } else if (c == '"') {
          // A closing quote must be followed by a blank or the end.
          if (p + 1 < n && !is_blank(line[p + 1]))
            return false;
          done = true;
        } else if (p >= n) {
          return false; // unterminated quotes
        } else {
          current.push_back(c);
        }
      } else if (in_single) {
        if (c == '\\' && at(p + 1) == '\'') {
          ++p;
          current.push_back('\'');
        } else if (c == '\'') {
          if (p + 1 < n && !is_blank(line[p + 1]))
            return false;
          done = true;
        } else if (p >= n) {
          return false;
        } else {
          current.push_back(c);
        }
      } else {
        if (p >= n || is_blank(c)) {
          done = true;
        } else if (c == '"') {
          in_double = true;
        } else if (c == '\'') {
          in_single = true;
        } else {
          current.push_back(c);
        }
      }
      if (p < n)
        ++p;
    }
    out.push_back(std::move(current));
  }
}

resp_parser::resp_parser(resp_limits limits) : limits_(limits) {
}

void resp_parser::feed(std::string_view chunk) {
  if (failed_)
    return;
  // Keep what is left of the current input (normally only an unfinished
  // request: next() moves it into buf_ when it returns need_more).
  if (in_owned_) {
    if (start_ > 0) {
      buf_.erase(0, start_);
      pos_ -= start_;
      start_ = 0;
    }
    buf_.append(chunk);
    in_ = buf_;
    return;
  }
  if (start_ < in_.size()) {
    buf_.assign(in_.substr(start_));
    buf_.append(chunk);
    pos_ -= start_;
    start_ = 0;
    in_ = buf_;
    in_owned_ = true;
    return;
  }
  buf_.clear();
  in_ = chunk;
  in_owned_ = false;
  start_ = 0;
  pos_ = 0;
}

resp_parser::result resp_parser::fail(std::string text) {
  failed_ = true;
  error_ = std::move(text);
  args_.clear();
  return result::error;
}

resp_parser::result resp_parser::need_more() {
  args_.clear();
  auto tail = in_.size() - start_;
  if (tail > limits_.max_buffer)
    return fail("Protocol error: request exceeds the client buffer limit of " +
                std::to_string(limits_.max_buffer) + " bytes");
  if (in_owned_) {
    if (start_ > 0) {
      buf_.erase(0, start_);
      pos_ -= start_;
      start_ = 0;
      in_ = buf_;
    }
    if (buf_.empty()) {
      in_owned_ = false;
      in_ = {};
      pos_ = 0;
    }
  } else if (tail > 0) {
    buf_.assign(in_.substr(start_));
    pos_ -= start_;
    start_ = 0;
    in_ = buf_;
    in_owned_ = true;
  } else {
    in_ = {};
    start_ = 0;
    pos_ = 0;
  }
  return result::need_more;
}

resp_parser::result resp_parser::find_header_end(std::size_t from,
                                                 const char* too_big,
                                                 std::size_t& eol) {
  auto cr = in_.find('\r', from);
  if (cr == std::string_view::npos || cr + 1 >= in_.size()) {
    auto len = (cr == std::string_view::npos ? in_.size() : cr) - from;
    if (len > limits_.max_inline)
      return fail(std::string{"Protocol error: "} + too_big);
    return result::need_more;
  }
  if (cr - from > limits_.max_inline)
    return fail(std::string{"Protocol error: "} + too_big);
  if (in_[cr + 1] != '\n')
    return fail("Protocol error: expected '\\n' after '\\r', got '" +
                show_byte(in_[cr + 1]) + "'");
  eol = cr;
  return result::command;
}

resp_parser::result resp_parser::next() {
  if (failed_)
    return result::error;
  args_.clear();
  for (;;) {
    if (elements_left_ > 0) {
      auto r = parse_array_elements();
      return r == result::need_more ? need_more() : r;
    }
    if (start_ >= in_.size())
      return need_more();
    pos_ = start_;
    result r = in_[start_] == '*' ? parse_array_header() : parse_inline();
    if (r == result::command && args_.empty())
      continue; // an empty line or an empty array: nothing to run
    if (r == result::need_more)
      return need_more();
    return r;
  }
}

resp_parser::result resp_parser::parse_inline() {
  // A line longer than max_inline fails whether or not its '\n' has arrived
  // yet, so that the outcome does not depend on how the input was split.
  auto nl = in_.find('\n', start_);
  auto len = (nl == std::string_view::npos ? in_.size() : nl) - start_;
  if (len > limits_.max_inline)
    return fail("Protocol error: too big inline request");
  if (nl == std::string_view::npos)
    return result::need_more;
  auto line = in_.substr(start_, nl - start_);
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  if (!split_inline_args(line, inline_args_))
    return fail("Protocol error: unbalanced quotes in request");
  start_ = pos_ = nl + 1;
  args_.assign(inline_args_.begin(), inline_args_.end());
  return result::command;
}

resp_parser::result resp_parser::parse_array_header() {
  std::size_t eol = 0;
  auto r = find_header_end(start_ + 1, "too big mbulk count string", eol);
  if (r != result::command)
    return r;
  std::int64_t count = 0;
  if (!parse_resp_int(in_.substr(start_ + 1, eol - start_ - 1), count) ||
      (count > 0 && static_cast<std::uint64_t>(count) > limits_.max_elements))
    return fail("Protocol error: invalid multibulk length");
  if (!authenticated_ && count > 0 &&
      static_cast<std::uint64_t>(count) > limits_.unauthenticated_max_elements)
    return fail("Protocol error: unauthenticated multibulk length");
  pos_ = eol + 2;
  if (count <= 0) {
    start_ = pos_; // "*0" and "*-1" are skipped, as redis-server does
    return result::command;
  }
  elements_left_ = count;
  bulk_length_ = -1;
  spans_.clear();
  spans_.reserve(static_cast<std::size_t>(std::min<std::int64_t>(count, 1024)));
  return parse_array_elements();
}

resp_parser::result resp_parser::parse_array_elements() {
  while (elements_left_ > 0) {
    if (bulk_length_ < 0) {
      if (pos_ >= in_.size())
        return result::need_more;
      if (in_[pos_] != '$')
        return fail("Protocol error: expected '$', got '" +
                    show_byte(in_[pos_]) + "'");
      std::size_t eol = 0;
      auto r = find_header_end(pos_ + 1, "too big bulk count string", eol);
      if (r != result::command)
        return r;
      std::int64_t len = 0;
      if (!parse_resp_int(in_.substr(pos_ + 1, eol - pos_ - 1), len) ||
          len < 0 || static_cast<std::uint64_t>(len) > limits_.max_bulk_length)
        return fail("Protocol error: invalid bulk length");
      if (!authenticated_ &&
          static_cast<std::uint64_t>(len) >
            limits_.unauthenticated_max_bulk_length)
        return fail("Protocol error: unauthenticated bulk length");
      pos_ = eol + 2;
      bulk_length_ = len;
      if (pos_ - start_ + static_cast<std::size_t>(len) + 2 >
          limits_.max_buffer)
        return fail(
          "Protocol error: request exceeds the client buffer limit of " +
          std::to_string(limits_.max_buffer) + " bytes");
    }
    auto len = static_cast<std::size_t>(bulk_length_);
    if (in_.size() - pos_ < len + 2)
      return result::need_more;
    if (in_[pos_ + len] != '\r' || in_[pos_ + len + 1] != '\n')
      return fail("Protocol error: bulk string of " + std::to_string(len) +
                  " bytes not followed by CRLF");
    spans_.emplace_back(pos_ - start_, len);
    pos_ += len + 2;
    bulk_length_ = -1;
    --elements_left_;
  }
  args_.reserve(spans_.size());
  for (auto [offset, len] : spans_)
    args_.emplace_back(in_.data() + start_ + offset, len);
  start_ = pos_;
  return result::command;
}

} // namespace rollblock
