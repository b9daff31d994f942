#include "rollblock/messages/durability.hpp"

#include "rollblock/messages/error.hpp"

#include <charconv>
#include <vector>

namespace rollblock {

durability_mode durability_mode::synchronous() {
  return {kind::synchronous, 1024, 1};
}

durability_mode durability_mode::synchronous_relaxed(std::uint32_t sync_every) {
  return {kind::synchronous_relaxed, 1024, sync_every};
}

durability_mode durability_mode::async(std::uint32_t max_pending) {
  return {kind::async, max_pending, 1};
}

durability_mode durability_mode::async_relaxed(std::uint32_t max_pending,
                                               std::uint32_t sync_every) {
  return {kind::async_relaxed, max_pending, sync_every};
}

bool durability_mode::is_synchronous() const {
  return mode == kind::synchronous || mode == kind::synchronous_relaxed;
}

bool durability_mode::is_relaxed() const {
  return mode == kind::synchronous_relaxed || mode == kind::async_relaxed;
}

durability_mode durability_mode::relaxed(std::uint32_t n) const {
  auto result = *this;
  result.mode = is_synchronous() ? kind::synchronous_relaxed
                                 : kind::async_relaxed;
  result.sync_every = n;
  return result;
}

durability_mode durability_mode::strict() const {
  auto result = *this;
  result.mode = is_synchronous() ? kind::synchronous : kind::async;
  result.sync_every = 1;
  return result;
}

std::string to_string(const durability_mode& x) {
  using kind = durability_mode::kind;
  switch (x.mode) {
    case kind::synchronous:
      return "sync";
    case kind::synchronous_relaxed:
      return "sync-relaxed:" + std::to_string(x.sync_every);
    case kind::async:
      return "async:" + std::to_string(x.max_pending);
    case kind::async_relaxed:
      return "async-relaxed:" + std::to_string(x.max_pending) + ":"
             + std::to_string(x.sync_every);
  }
  return "unknown";
}

namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (;;) {
    auto pos = text.find(sep);
    parts.push_back(text.substr(0, pos));
    if (pos == std::string_view::npos)
      return parts;
    text.remove_prefix(pos + 1);
  }
}

bool parse_count(std::string_view text, std::uint32_t& out) {
  auto first = text.data();
  auto last = text.data() + text.size();
  auto [ptr, err] = std::from_chars(first, last, out);
  return err == std::errc{} && ptr == last && out > 0;
}

} // namespace

caf::expected<durability_mode> parse_durability(std::string_view text) {
  auto parts = split(text, ':');
  auto bad = [&](std::string_view why) {
    return make_error(ec::invalid_argument,
                      "invalid durability mode '" + std::string{text}
                        + "': " + std::string{why}
                        + " (expected sync, sync-relaxed:N, async:P or "
                          "async-relaxed:P:N with N, P >= 1)");
  };
  std::uint32_t a = 0;
  std::uint32_t b = 0;
  if (parts[0] == "sync") {
    if (parts.size() != 1)
      return bad("sync takes no count");
    return durability_mode::synchronous();
  }
  if (parts[0] == "sync-relaxed") {
    if (parts.size() != 2 || !parse_count(parts[1], a))
      return bad("sync-relaxed needs one positive count");
    return durability_mode::synchronous_relaxed(a);
  }
  if (parts[0] == "async") {
    if (parts.size() != 2 || !parse_count(parts[1], a))
      return bad("async needs one positive count");
    return durability_mode::async(a);
  }
  if (parts[0] == "async-relaxed") {
    if (parts.size() != 3 || !parse_count(parts[1], a)
        || !parse_count(parts[2], b))
      return bad("async-relaxed needs two positive counts");
    return durability_mode::async_relaxed(a, b);
  }
  return bad("unknown mode");
}

} // namespace rollblock
