// Pages of the state database; the encoding is described in state_page.hpp.

#include "rollblock/storage/state_page.hpp"

#include "rollblock/messages/types.hpp"

#include <algorithm>

namespace rollblock::storage {

namespace {

unsigned char without_slot(char c, std::size_t page_keys) noexcept {
  return static_cast<unsigned char>(
    static_cast<unsigned char>(c) & ~static_cast<unsigned char>(page_keys - 1));
}

} // namespace

bool same_page(std::string_view a, std::string_view b,
               std::size_t page_keys) noexcept {
  auto i = slot_byte(a.size());
  if (without_slot(a[i], page_keys) != without_slot(b[i], page_keys))
    return false;
  // Every other byte is equal.
  return a.substr(0, i) == b.substr(0, i) && a.substr(i + 1) == b.substr(i + 1);
}

void page_key_of(std::string_view k, std::size_t page_keys,
                 std::string& out) {
  out.assign(k);
  auto i = slot_byte(k.size());
  out[i] = static_cast<char>(without_slot(out[i], page_keys));
}

void key_in_page(std::string_view page_key, std::size_t slot,
                 std::string& out) {
  out.assign(page_key);
  auto i = slot_byte(page_key.size());
  out[i] = static_cast<char>(static_cast<unsigned char>(out[i]) | slot);
}

std::string page_image::decode(std::string_view page_key,
                              std::string_view bytes, std::size_t page_keys) {
  values_.fill({});
  if (page_key.size() < min_key_width || page_key.size() > max_key_width)
    return "the page key has " + std::to_string(page_key.size())
           + " bytes, not " + std::to_string(min_key_width) + ".."
           + std::to_string(max_key_width);
  if (slot_of(page_key, page_keys) != 0)
    return "the page key's slot bits are not zero";
  std::size_t pos = 0;
  int previous = -1;
  auto fail = [&](std::string why) {
    values_.fill({});
    return "entry at byte " + std::to_string(pos) + ": " + why;
  };
  while (pos < bytes.size()) {
    auto slot = static_cast<unsigned char>(bytes[pos]);
    if (slot >= page_keys)
      return fail("slot " + std::to_string(slot) + " is outside 0.."
                  + std::to_string(page_keys - 1));
    if (static_cast<int>(slot) <= previous)
      return fail("slot " + std::to_string(slot) + " follows slot "
                  + std::to_string(previous) + " (slots must increase)");
    std::size_t at = pos + 1;
    std::uint32_t size = 0;
    for (int shift = 0;; shift += 7) {
      if (at == bytes.size())
        return fail("the value size is truncated");
      if (shift > 14)
        return fail("the value size has more than 3 bytes");
      auto b = static_cast<unsigned char>(bytes[at++]);
      size |= static_cast<std::uint32_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0)
        break;
    }
    if (size == 0)
      return fail("slot " + std::to_string(slot)
                  + " holds an empty value (deletes are never stored)");
    if (size > max_value_size)
      return fail("slot " + std::to_string(slot) + " holds a value of "
                  + std::to_string(size) + " bytes, more than "
                  + std::to_string(max_value_size));
    if (size > bytes.size() - at)
      return fail("slot " + std::to_string(slot) + " holds a value of "
                  + std::to_string(size) + " bytes but only "
                  + std::to_string(bytes.size() - at) + " remain");
    values_[slot] = bytes.substr(at, size);
    previous = slot;
    pos = at + size;
  }
  return {};
}

bool page_image::empty() const noexcept {
  return std::all_of(values_.begin(), values_.end(),
                     [](std::string_view v) { return v.empty(); });
}

void page_image::encode(std::string& out) const {
  for_each([&](std::size_t slot, std::string_view v) {
    out.push_back(static_cast<char>(slot));
    auto size = static_cast<std::uint32_t>(v.size());
    while (size >= 0x80) {
      out.push_back(static_cast<char>((size & 0x7f) | 0x80));
      size >>= 7;
    }
    out.push_back(static_cast<char>(size));
    out.append(v);
  });
}

} // namespace rollblock::storage
