#include "rollblock/storage/flat_key_map.hpp"

#include "rollblock/messages/types.hpp"
#include "rollblock/storage/compact_value.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <vector>
#include <string>

using namespace rollblock;
using namespace rollblock::storage;

namespace {

key k8(std::uint64_t x) {
  return key_from_u64(x, 8);
}

} // namespace

TEST(flat_key_map, empty_map_finds_nothing) {
  flat_key_map<int> m{8};
  EXPECT_EQ(m.size(), 0u);
  m.prefetch(key_hash(k8(1))); // no slots: nothing to load
  EXPECT_EQ(m.find(k8(1)), nullptr);
  EXPECT_FALSE(m.erase(k8(1)));
  EXPECT_EQ(m.capacity(), 0u);
}

TEST(flat_key_map, insert_find_update_erase) {
  flat_key_map<int> m{8};
  auto [p, added] = m.try_emplace(k8(7));
  ASSERT_TRUE(added);
  *p = 70;
  auto [q, again] = m.try_emplace(k8(7));
  EXPECT_FALSE(again);
  EXPECT_EQ(*q, 70);
  *q = 71;
  ASSERT_NE(m.find(k8(7)), nullptr);
  EXPECT_EQ(*m.find(k8(7)), 71);
  EXPECT_EQ(m.find(k8(8)), nullptr);
  EXPECT_EQ(m.size(), 1u);
  EXPECT_TRUE(m.erase(k8(7)));
  EXPECT_EQ(m.find(k8(7)), nullptr);
  EXPECT_EQ(m.size(), 0u);
}

TEST(flat_key_map, keys_of_other_widths) {
  for (std::size_t width : {min_key_width, std::size_t{20}, max_key_width}) {
    flat_key_map<std::size_t> m{width};
    for (std::size_t i = 0; i < 1000; ++i)
      *m.try_emplace(key_from_u64(i, width)).first = i;
    for (std::size_t i = 0; i < 1000; ++i) {
      auto* v = m.find(key_from_u64(i, width));
      ASSERT_NE(v, nullptr);
      EXPECT_EQ(*v, i);
    }
    EXPECT_EQ(m.find(key_from_u64(1000, width)), nullptr);
  }
}

// The table against std::map under random inserts, updates and erases,
// through many growths and backward shifts.
TEST(flat_key_map, matches_a_model_under_random_operations_and_erases_by_pointer) {
  std::mt19937_64 rng{20261125};
  flat_key_map<compact_value> m{8};
  std::map<key, std::string> model;
  for (int step = 0; step < 200000; ++step) {
    auto k = k8(rng() % 5000);
    switch (rng() % 3) {
      case 0:
      case 1: {
        auto v = std::to_string(rng()) + std::string(rng() % 20, 'v');
        m.try_emplace(k).first->assign(v);
        model[k] = v;
        break;
      }
      default: {
        // Half the erases by key, half through find's pointer; a prefetch
        // of the key's slot before changes nothing.
        m.prefetch(key_hash(k));
        if (rng() % 2 == 0) {
          EXPECT_EQ(m.erase(k), model.erase(k) == 1);
        } else if (auto* found = m.find(k)) {
          m.erase_found(found);
          EXPECT_EQ(model.erase(k), 1u);
        } else {
          EXPECT_EQ(model.count(k), 0u);
        }
      }
    }
    if (step % 20000 == 0) {
      ASSERT_EQ(m.size(), model.size());
      std::size_t seen = 0;
      m.for_each([&](std::string_view key, const compact_value& v) {
        auto it = model.find(std::string{key});
        ASSERT_NE(it, model.end());
        EXPECT_EQ(v.view(), it->second);
        ++seen;
      });
      EXPECT_EQ(seen, model.size());
    }
  }
  for (auto& [k, v] : model) {
    auto* found = m.find(k);
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(found->view(), v);
  }
  EXPECT_LE(m.size() * 8, m.capacity() * 7);
}

TEST(flat_key_map, erase_if_removes_exactly_the_matching_entries) {
  flat_key_map<std::uint64_t> m{8};
  for (std::uint64_t i = 0; i < 10000; ++i)
    *m.try_emplace(k8(i)).first = i;
  auto removed = m.erase_if(
    [](std::string_view, std::uint64_t v) { return v % 3 == 0; });
  EXPECT_EQ(removed, 3334u);
  EXPECT_EQ(m.size(), 6666u);
  for (std::uint64_t i = 0; i < 10000; ++i) {
    auto* v = m.find(k8(i));
    if (i % 3 == 0) {
      EXPECT_EQ(v, nullptr) << i;
    } else {
      ASSERT_NE(v, nullptr) << i;
      EXPECT_EQ(*v, i);
    }
  }
  EXPECT_EQ(m.erase_if([](std::string_view, std::uint64_t) { return true; }),
            6666u);
  EXPECT_TRUE(m.empty());
}

TEST(flat_key_map, reserve_avoids_growth_clear_keeps_release_frees) {
  flat_key_map<int> m{8};
  m.reserve(1000);
  auto cap = m.capacity();
  EXPECT_GE(cap * 7, 1000u * 8);
  for (int i = 0; i < 1000; ++i)
    *m.try_emplace(k8(i)).first = i + 1;
  EXPECT_EQ(m.capacity(), cap);
  EXPECT_EQ(m.memory_bytes(), cap * (1 + 8 + sizeof(int)));
  m.clear();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.capacity(), cap);
  EXPECT_EQ(m.find(k8(1)), nullptr);
  EXPECT_TRUE(m.try_emplace(k8(1)).second);
  EXPECT_EQ(*m.find(k8(1)), 0); // a fresh value, not the old one
  m.release();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.capacity(), 0u);
  EXPECT_EQ(m.find(k8(1)), nullptr);
}

TEST(flat_key_map, only_an_insertion_grows_the_table) {
  flat_key_map<std::uint64_t> m{8};
  *m.try_emplace(k8(0)).first = 0;
  // Fill to the last entry below the 7/8 threshold.
  std::uint64_t n = 1;
  while ((m.size() + 1) * 8 <= m.capacity() * 7) {
    *m.try_emplace(k8(n)).first = n;
    ++n;
  }
  auto cap = m.capacity();
  // Updating every key leaves the table as it is ...
  for (std::uint64_t i = 0; i < n; ++i) {
    auto [v, added] = m.try_emplace(k8(i));
    EXPECT_FALSE(added);
    EXPECT_EQ(*v, i);
  }
  EXPECT_EQ(m.capacity(), cap);
  // ... one more key doubles it, and every key is still there.
  auto [v, added] = m.try_emplace(k8(n));
  EXPECT_TRUE(added);
  *v = n;
  EXPECT_EQ(m.capacity(), 2 * cap);
  EXPECT_EQ(m.size(), n + 1);
  for (std::uint64_t i = 0; i <= n; ++i) {
    ASSERT_NE(m.find(k8(i)), nullptr) << i;
    EXPECT_EQ(*m.find(k8(i)), i);
  }
}

TEST(flat_key_map, erase_in_visits_a_range_of_slots_with_wraparound) {
  flat_key_map<std::uint64_t> m{8};
  for (std::uint64_t i = 0; i < 100; ++i)
    *m.try_emplace(k8(i)).first = i;
  auto cap = m.capacity();
  // Two halves starting mid-table cover every entry exactly once; values
  // may be changed in place.
  std::vector<int> seen(100, 0);
  auto count = [&](std::string_view, std::uint64_t& v) {
    ++seen[v];
    v += 1000;
    return false;
  };
  EXPECT_EQ(m.erase_in(cap / 3, cap / 2, count), 0u);
  EXPECT_EQ(m.erase_in(cap / 3 + cap / 2, cap - cap / 2, count), 0u);
  for (std::uint64_t i = 0; i < 100; ++i)
    EXPECT_EQ(seen[i], 1) << i;
  EXPECT_EQ(*m.find(k8(42)), 1042u);
  EXPECT_EQ(m.size(), 100u);
}

TEST(flat_key_map, erase_in_keeps_every_other_entry_reachable) {
  // Tables at 7/8 fill (long clusters), windows of every size and start,
  // wrapping around the end, removing dense and sparse selections: every
  // kept entry stays findable with its value, every removed one is gone.
  std::mt19937_64 rng{77};
  for (int round = 0; round < 200; ++round) {
    flat_key_map<std::uint64_t> m{8};
    std::map<std::uint64_t, std::uint64_t> model;
    auto n = 50 + rng() % 400;
    m.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      auto x = rng() % 100000;
      *m.try_emplace(k8(x)).first = x * 3;
      model[x] = x * 3;
    }
    auto cap = m.capacity();
    auto from = rng() % cap;
    // Every fourth round the whole table (or more), where the window wraps
    // onto itself.
    auto width = round % 4 == 0 ? cap + round % 3 : 1 + rng() % cap;
    auto keep_one_in = 1 + rng() % 4; // 1: remove all selected
    std::size_t removed_expected = 0;
    auto removed = m.erase_in(from, width, [&](std::string_view k,
                                               std::uint64_t& v) {
      std::uint64_t x;
      std::memcpy(&x, k.data(), 8);
      EXPECT_EQ(v, x * 3);
      if (x % keep_one_in == 0)
        return false;
      model.erase(x);
      ++removed_expected;
      return true;
    });
    ASSERT_EQ(removed, removed_expected) << "round " << round;
    ASSERT_EQ(m.size(), model.size()) << "round " << round;
    for (auto& [x, v] : model) {
      auto* found = m.find(k8(x));
      ASSERT_NE(found, nullptr) << "round " << round << " key " << x;
      EXPECT_EQ(*found, v);
    }
    for (std::uint64_t x = 0; x < 100000; x += 7) {
      if (!model.contains(x)) {
        ASSERT_EQ(m.find(k8(x)), nullptr) << "round " << round << " key " << x;
      }
    }
    // The table still takes inserts and erases.
    *m.try_emplace(k8(100001)).first = 1;
    EXPECT_TRUE(m.erase(k8(100001)));
  }
}
