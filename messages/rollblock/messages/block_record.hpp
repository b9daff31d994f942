#pragma once

#include "rollblock/messages/types.hpp"

#include <caf/allowed_unsafe_message_type.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rollblock {

/// What one block did to one key: the value after the block and the value
/// before it (the undo). An empty `after` deletes the key; an empty `before`
/// means the key was absent. The owning form, for building records by hand
/// (tests, tools); records store their changes in a change_list.
struct key_change {
  key k;
  value after;
  value before;

  friend bool operator==(const key_change&, const key_change&) = default;
};

/// One change inside a change_list: views into the list's buffer, valid
/// while the list lives and is not modified.
struct key_change_view {
  std::string_view k;
  std::string_view after;
  std::string_view before;

  key_change_view() = default;

  key_change_view(std::string_view k, std::string_view after,
                  std::string_view before)
    : k(k), after(after), before(before) {
  }

  key_change_view(const key_change& x)
    : k(x.k), after(x.after), before(x.before) {
  }

  friend bool operator==(const key_change_view&, const key_change_view&)
    = default;
};

/// A block's changes, one per distinct key, encoded back to back in one
/// buffer in the journal's block payload layout (storage/src/journal.cpp):
///   key (key width bytes), after_len u16, after, before_len u16, before
/// plus each change's offset. A 19,000-change block of 8-byte keys and
/// values takes about 0.46 MB this way instead of 1.8 MB as 57,000
/// std::strings, and the journal writes the buffer as it is.
///
/// All keys of one list have one width (the first key's). push_back throws
/// std::invalid_argument for a key of another width or outside
/// min_key_width..max_key_width and std::length_error for a value longer
/// than max_value_size or a buffer beyond 4 GiB: such a change cannot be
/// encoded, and callers validate input before building records.
class change_list {
public:
  class iterator {
  public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = key_change_view;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = key_change_view;

    iterator() = default;

    iterator(const change_list* list, std::size_t index)
      : list_(list), index_(index) {
    }

    key_change_view operator*() const {
      return (*list_)[index_];
    }

    key_change_view operator[](difference_type n) const {
      return (*list_)[index_ + static_cast<std::size_t>(n)];
    }

    iterator& operator++() {
      ++index_;
      return *this;
    }

    iterator operator++(int) {
      auto result = *this;
      ++index_;
      return result;
    }

    iterator& operator--() {
      --index_;
      return *this;
    }

    iterator operator--(int) {
      auto result = *this;
      --index_;
      return result;
    }

    iterator& operator+=(difference_type n) {
      index_ += static_cast<std::size_t>(n);
      return *this;
    }

    iterator& operator-=(difference_type n) {
      index_ -= static_cast<std::size_t>(n);
      return *this;
    }

    friend iterator operator+(iterator x, difference_type n) {
      return x += n;
    }

    friend iterator operator+(difference_type n, iterator x) {
      return x += n;
    }

    friend iterator operator-(iterator x, difference_type n) {
      return x -= n;
    }

    friend difference_type operator-(const iterator& x, const iterator& y) {
      return static_cast<difference_type>(x.index_)
             - static_cast<difference_type>(y.index_);
    }

    friend bool operator==(const iterator& x, const iterator& y) {
      return x.index_ == y.index_;
    }

    friend auto operator<=>(const iterator& x, const iterator& y) {
      return x.index_ <=> y.index_;
    }

  private:
    const change_list* list_ = nullptr;
    std::size_t index_ = 0;
  };

  change_list() = default;

  change_list(std::initializer_list<key_change> changes);

  change_list(const std::vector<key_change>& changes);

  /// Adopts `payload`, whose changes start at `offsets` and whose keys are
  /// `key_width` bytes. REQUIRES: check_payload accepted it and returned
  /// these offsets.
  change_list(std::string payload, std::vector<std::uint32_t> offsets,
              std::size_t key_width);

  /// Returns whether `payload` holds exactly `count` changes of
  /// `key_width`-byte keys in the layout above (each length within the
  /// payload, nothing left over). When `offsets` is set, appends each
  /// change's offset to it (on false, those of a prefix at most).
  static bool check_payload(std::string_view payload, std::size_t count,
                            std::size_t key_width,
                            std::vector<std::uint32_t>* offsets = nullptr);

  /// Appends a change (copies its bytes).
  void push_back(const key_change_view& change);

  /// Appends every change of `other`, in its order (copies its bytes).
  /// Throws as push_back does for keys of another width or a buffer beyond
  /// 4 GiB, changing nothing then.
  void append(const change_list& other);

  /// Makes room for `changes` more changes of `bytes` encoded bytes in all.
  void reserve(std::size_t changes, std::size_t bytes);

  void clear() noexcept;

  std::size_t size() const noexcept {
    return offsets_.size();
  }

  bool empty() const noexcept {
    return offsets_.empty();
  }

  /// REQUIRES: i < size().
  key_change_view operator[](std::size_t i) const noexcept {
    const char* p = bytes_.data() + offsets_[i];
    std::string_view k{p, key_width_};
    p += key_width_;
    auto after_size = load_length(p);
    std::string_view after{p + 2, after_size};
    p += 2 + after_size;
    return {k, after, std::string_view{p + 2, load_length(p)}};
  }

  /// Starts loading change `i` into the cache, for a walk in another order
  /// than the list's that reads it a few steps later. REQUIRES: i < size().
  void prefetch(std::size_t i) const noexcept {
    __builtin_prefetch(bytes_.data() + offsets_[i]);
  }

  /// REQUIRES: !empty().
  key_change_view front() const noexcept {
    return (*this)[0];
  }

  iterator begin() const noexcept {
    return {this, 0};
  }

  iterator end() const noexcept {
    return {this, size()};
  }

  /// The keys' width; 0 for a list that never held a change.
  std::size_t key_width() const noexcept {
    return key_width_;
  }

  /// The encoded changes: the journal's block payload.
  std::string_view payload() const noexcept {
    return bytes_;
  }

  /// The bytes this list holds on the heap (buffer and offsets).
  std::size_t memory_bytes() const noexcept {
    return bytes_.capacity() + offsets_.capacity() * sizeof(std::uint32_t);
  }

  /// The bytes one change takes in the payload.
  static std::size_t encoded_size(std::size_t key_width,
                                  std::size_t after_size,
                                  std::size_t before_size) noexcept {
    return key_width + 4 + after_size + before_size;
  }

  friend bool operator==(const change_list& x, const change_list& y) noexcept {
    return x.size() == y.size()
           && (x.empty() || x.key_width_ == y.key_width_)
           && x.bytes_ == y.bytes_;
  }

private:
  /// Reads a value length (u16, little endian).
  static std::size_t load_length(const char* p) noexcept {
    return static_cast<std::size_t>(static_cast<unsigned char>(p[0]))
           | static_cast<std::size_t>(static_cast<unsigned char>(p[1])) << 8;
  }

  std::string bytes_;
  std::vector<std::uint32_t> offsets_;
  std::size_t key_width_ = 0;
};

/// One applied block as the journal stores it and the actors pass it on: its
/// height and one change per distinct key it touched, in the order the keys
/// were first touched (several operations on one key coalesce, last wins).
struct block_record {
  block_id height = 0;
  change_list changes;

  friend bool operator==(const block_record&, const block_record&) = default;
};

/// Records are immutable once built and shared between actors without copies.
using block_record_ptr = std::shared_ptr<const block_record>;
using block_record_list = std::vector<block_record_ptr>;

} // namespace rollblock

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rollblock::block_record_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(rollblock::block_record_list)
