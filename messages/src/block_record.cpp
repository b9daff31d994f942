#include "rollblock/messages/block_record.hpp"

#include <cstring>
#include <limits>
#include <stdexcept>

namespace rollblock {

namespace {

void store_u16(char* p, std::size_t x) {
  p[0] = static_cast<char>(x & 0xFF);
  p[1] = static_cast<char>((x >> 8) & 0xFF);
}

/// Copies `x` to `p`; returns the end of the copy. (memcpy must not see the
/// null data of an empty view.)
char* put_bytes(char* p, std::string_view x) {
  if (!x.empty())
    std::memcpy(p, x.data(), x.size());
  return p + x.size();
}

} // namespace

change_list::change_list(std::initializer_list<key_change> changes) {
  for (auto& c : changes)
    push_back(c);
}

change_list::change_list(const std::vector<key_change>& changes) {
  for (auto& c : changes)
    push_back(c);
}

change_list::change_list(std::string payload,
                         std::vector<std::uint32_t> offsets,
                         std::size_t key_width)
  : bytes_(std::move(payload)),
    offsets_(std::move(offsets)),
    key_width_(offsets_.empty() ? 0 : key_width) {
}

bool change_list::check_payload(std::string_view payload, std::size_t count,
                                std::size_t key_width,
                                std::vector<std::uint32_t>* offsets) {
  std::size_t at = 0;
  for (std::size_t i = 0; i < count; ++i) {
    auto start = at;
    // key + after_len, after + before_len, before
    if (payload.size() - at < key_width + 2)
      return false;
    at += key_width;
    auto after_size = load_length(payload.data() + at);
    at += 2;
    if (payload.size() - at < after_size + 2)
      return false;
    at += after_size;
    auto before_size = load_length(payload.data() + at);
    at += 2;
    if (payload.size() - at < before_size)
      return false;
    at += before_size;
    if (offsets != nullptr)
      offsets->push_back(static_cast<std::uint32_t>(start));
  }
  return at == payload.size();
}

void change_list::push_back(const key_change_view& change) {
  if (empty()) {
    if (change.k.size() < min_key_width || change.k.size() > max_key_width)
      throw std::invalid_argument("change_list: a "
                                  + std::to_string(change.k.size())
                                  + "-byte key is outside the key widths");
    key_width_ = change.k.size();
  } else if (change.k.size() != key_width_) {
    throw std::invalid_argument(
      "change_list: a " + std::to_string(change.k.size())
      + "-byte key in a list of " + std::to_string(key_width_)
      + "-byte keys");
  }
  if (change.after.size() > max_value_size
      || change.before.size() > max_value_size)
    throw std::length_error("change_list: a value longer than "
                            + std::to_string(max_value_size) + " bytes");
  auto start = bytes_.size();
  auto size =
    encoded_size(key_width_, change.after.size(), change.before.size());
  if (start + size > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("change_list: more than 4 GiB of changes");
  bytes_.resize(start + size);
  char* p = put_bytes(bytes_.data() + start, change.k);
  store_u16(p, change.after.size());
  p = put_bytes(p + 2, change.after);
  store_u16(p, change.before.size());
  put_bytes(p + 2, change.before);
  offsets_.push_back(static_cast<std::uint32_t>(start));
}

void change_list::append(const change_list& other) {
  if (other.empty())
    return;
  if (!empty() && other.key_width_ != key_width_)
    throw std::invalid_argument(
      "change_list: a list of " + std::to_string(other.key_width_)
      + "-byte keys appended to a list of " + std::to_string(key_width_)
      + "-byte keys");
  auto base = bytes_.size();
  if (base + other.bytes_.size() > std::numeric_limits<std::uint32_t>::max())
    throw std::length_error("change_list: more than 4 GiB of changes");
  bytes_.append(other.bytes_);
  offsets_.reserve(offsets_.size() + other.offsets_.size());
  for (auto offset : other.offsets_)
    offsets_.push_back(static_cast<std::uint32_t>(base + offset));
  key_width_ = other.key_width_;
}

void change_list::reserve(std::size_t changes, std::size_t bytes) {
  offsets_.reserve(offsets_.size() + changes);
  bytes_.reserve(bytes_.size() + bytes);
}

void change_list::clear() noexcept {
  bytes_.clear();
  offsets_.clear();
  key_width_ = 0;
}

} // namespace rollblock
