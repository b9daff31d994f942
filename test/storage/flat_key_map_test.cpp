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
  m.prefetch_tags(key_hash(k8(1))); // no slots: nothing to load
  for (auto use : {probe_for::lookup, probe_for::insert, probe_for::erase})
    m.prefetch_slot(key_hash(k8(1)), use);
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
        // of the key's slot before (any use) changes nothing.
        constexpr probe_for uses[] = {probe_for::lookup, probe_for::insert,
                                      probe_for::erase};
        m.prefetch_tags(key_hash(k));
        m.prefetch_slot(key_hash(k), uses[rng() % 3]);
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

// A table 7/8 full, whose clusters may run into its last slot: the
// prefetch for an erase reads the tags after a found key's slot up to an
// empty one or the table's end, for keys present and absent, and changes
// nothing.
TEST(flat_key_map, prefetching_for_an_erase_stays_within_a_full_table) {
  flat_key_map<int> m{8};
  m.reserve(14); // 16 slots, 14 entries before growth
  ASSERT_EQ(m.capacity(), 16u);
  for (int i = 0; i < 14; ++i)
    *m.try_emplace(k8(i)).first = i;
  ASSERT_EQ(m.capacity(), 16u);
  for (int i = 0; i < 1000; ++i) // present keys and absent ones
    m.prefetch_slot(key_hash(k8(i)), probe_for::erase);
  EXPECT_EQ(m.size(), 14u);
  for (int i = 0; i < 14; ++i) {
    ASSERT_NE(m.find(k8(i)), nullptr);
    EXPECT_EQ(*m.find(k8(i)), i);
  }
}

TEST(flat_key_map, reserve_avoids_growth) {
  flat_key_map<int> m{8};
  m.reserve(1000);
  auto cap = m.capacity();
  EXPECT_GE(cap * 7, 1000u * 8);
  for (int i = 0; i < 1000; ++i)
    *m.try_emplace(k8(i)).first = i + 1;
  EXPECT_EQ(m.capacity(), cap);
  // A slot holds the int and the key (12 bytes), plus its tag.
  EXPECT_EQ(m.slot_bytes(), 12u + 1);
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(*m.find(k8(i)), i + 1);
}

TEST(flat_key_map, a_lower_max_fill_grows_the_table_earlier) {
  flat_key_map<int> m{8};
  m.set_max_fill(4); // at most half full
  for (int i = 0; i < 8; ++i)
    *m.try_emplace(k8(i)).first = i;
  EXPECT_EQ(m.capacity(), 16u);
  *m.try_emplace(k8(8)).first = 8;
  EXPECT_EQ(m.capacity(), 32u);
  // The fill stays set across growth, moves and reserve.
  for (int i = 9; i < 17; ++i)
    *m.try_emplace(k8(i)).first = i;
  EXPECT_EQ(m.capacity(), 64u);
  flat_key_map<int> moved{std::move(m)};
  moved.reserve(100);
  EXPECT_EQ(moved.capacity(), 256u);
  for (int i = 17; i < 128; ++i)
    *moved.try_emplace(k8(i)).first = i;
  EXPECT_EQ(moved.capacity(), 256u);
  *moved.try_emplace(k8(128)).first = 128;
  EXPECT_EQ(moved.capacity(), 512u);
  for (int i = 0; i <= 128; ++i)
    EXPECT_EQ(*moved.find(k8(i)), i);
}

TEST(flat_key_map, a_growth_phase_sets_the_capacities_of_the_ladder) {
  // 16 slots, then ceil(16 * 2^(k + 0.5)): 46, 91, 182, 363, ...
  flat_key_map<std::uint64_t> m{8};
  m.set_growth_phase(0.5);
  std::vector<std::size_t> capacities;
  for (std::uint64_t i = 0; i < 300; ++i) {
    *m.try_emplace(k8(i)).first = i;
    if (capacities.empty() || capacities.back() != m.capacity())
      capacities.push_back(m.capacity());
    ASSERT_LE(m.size() * 8, m.capacity() * 7) << i;
  }
  EXPECT_EQ(capacities, (std::vector<std::size_t>{16, 46, 91, 182, 363}));
  for (std::uint64_t i = 0; i < 300; ++i)
    ASSERT_EQ(*m.find(k8(i)), i) << i;
  // reserve takes the first rung that holds the entries at 7/8: 1,000
  // need 1,143 slots, and the ladder goes 725, 1449.
  flat_key_map<std::uint64_t> reserved{8};
  reserved.set_growth_phase(0.5);
  reserved.reserve(1000);
  EXPECT_EQ(reserved.capacity(), 1449u);
}

TEST(flat_key_map, a_slot_of_a_24_byte_value_and_an_8_byte_key_is_32_bytes) {
  struct value24 {
    std::uint64_t a = 0, b = 0, c = 0;
  };
  flat_key_map<value24> m{8};
  m.reserve(100);
  EXPECT_EQ(m.slot_bytes(), 33u);
  auto* v = m.try_emplace(k8(5)).first;
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v) % 32, 0u);
}

TEST(flat_key_map, marks_stay_with_their_entries_and_do_not_change_lookups) {
  flat_key_map<std::uint64_t> m{8};
  for (std::uint64_t i = 0; i < 5000; ++i)
    *m.try_emplace(k8(i)).first = i;
  for (std::uint64_t i = 0; i < 5000; i += 3)
    m.mark(m.find(k8(i)));
  // Erasing shifts entries back, growing places them again: marks move too.
  for (std::uint64_t i = 1; i < 5000; i += 10)
    EXPECT_TRUE(m.erase(k8(i)));
  for (std::uint64_t i = 5000; i < 20000; ++i)
    *m.try_emplace(k8(i)).first = i;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    auto* v = m.find(k8(i));
    if (i < 5000 && i % 10 == 1) {
      EXPECT_EQ(v, nullptr) << i;
      continue;
    }
    ASSERT_NE(v, nullptr) << i;
    EXPECT_EQ(*v, i);
    EXPECT_EQ(m.marked(v), i < 5000 && i % 3 == 0) << i;
    // An update through try_emplace finds the marked entry, keeps its mark.
    auto [u, added] = m.try_emplace(k8(i));
    EXPECT_FALSE(added);
    EXPECT_EQ(u, v);
  }
  // A key inserted again after its erasure starts unmarked.
  m.mark(m.find(k8(3)));
  EXPECT_TRUE(m.erase(k8(3)));
  EXPECT_FALSE(m.marked(m.try_emplace(k8(3)).first));
}

TEST(flat_key_map, erase_in_shows_marks_and_keeps_what_pred_sets) {
  flat_key_map<std::uint64_t> m{8};
  for (std::uint64_t i = 0; i < 100; ++i)
    *m.try_emplace(k8(i)).first = i;
  for (std::uint64_t i = 0; i < 100; i += 2)
    m.mark(m.find(k8(i)));
  // Marked entries get their mark cleared and stay; unmarked odd multiples
  // of 5 go; the rest stay as they are.
  auto removed = m.erase_in(0, m.capacity(),
                            [](std::string_view, std::uint64_t& v,
                               bool& marked) {
                              EXPECT_EQ(marked, v % 2 == 0) << v;
                              if (marked) {
                                marked = false;
                                return false;
                              }
                              return v % 5 == 0;
                            });
  EXPECT_EQ(removed, 10u); // 5, 15, ..., 95
  for (std::uint64_t i = 0; i < 100; ++i) {
    auto* v = m.find(k8(i));
    if (i % 2 == 1 && i % 5 == 0) {
      EXPECT_EQ(v, nullptr) << i;
    } else {
      ASSERT_NE(v, nullptr) << i;
      EXPECT_FALSE(m.marked(v)) << i;
    }
  }
}

TEST(flat_key_map, values_that_own_memory_are_moved_and_destroyed) {
  // compact_value owns a heap block above 10 bytes: growth, erasure and
  // destruction must move and free each exactly once (ASan checks it).
  flat_key_map<compact_value> m{8};
  std::string long_value(100, 'x');
  for (std::uint64_t i = 0; i < 3000; ++i)
    m.try_emplace(k8(i)).first->assign(long_value + std::to_string(i));
  for (std::uint64_t i = 0; i < 3000; i += 2)
    EXPECT_TRUE(m.erase(k8(i)));
  for (std::uint64_t i = 1; i < 3000; i += 2)
    EXPECT_EQ(m.find(k8(i))->view(), long_value + std::to_string(i));
  flat_key_map<compact_value> moved{std::move(m)};
  EXPECT_EQ(moved.size(), 1500u);
  EXPECT_EQ(moved.find(k8(2999))->view(), long_value + "2999");
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
  auto count = [&](std::string_view, std::uint64_t& v, bool&) {
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

TEST(flat_key_map, erase_in_keeps_entries_whose_probe_wraps_into_the_window) {
  // A 16-slot table laid out by the keys' home slots (found by search, so
  // the test holds for any hash): r1, r2 at 12 and 13 (home 12), h at 14
  // (home 12), five keys at 15, 0, 1, 2, 3 (home 14) and e at 4 (home 14).
  // The window 4..13 removes r1 and r2. No empty slot follows the window
  // before its start: the cluster from 14 runs round to e at 4, whose probe
  // crosses slots the lift empties and refills. A lift that left e in place
  // let h move back to 12, the rest down by one, slot 3 empty: e was lost.
  flat_key_map<std::uint64_t> m{8};
  m.reserve(9);
  ASSERT_EQ(m.capacity(), 16u);
  std::uint64_t next = 0;
  auto key_with_home = [&](std::uint64_t home) {
    while (m.home_of(key_hash(k8(next))) != home)
      ++next;
    return next++;
  };
  std::vector<std::uint64_t> order;
  for (std::uint64_t home : {12, 12, 12, 14, 14, 14, 14, 14, 14})
    order.push_back(key_with_home(home));
  for (auto x : order)
    *m.try_emplace(k8(x)).first = x;
  auto removed = m.erase_in(4, 10, [&](std::string_view k, std::uint64_t&,
                                       bool&) {
    return k == k8(order[0]) || k == k8(order[1]);
  });
  EXPECT_EQ(removed, 2u);
  EXPECT_EQ(m.size(), 7u);
  for (std::size_t i = 2; i < order.size(); ++i) {
    auto* v = m.find(k8(order[i]));
    ASSERT_NE(v, nullptr) << "key " << i;
    EXPECT_EQ(*v, order[i]);
  }
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
                                               std::uint64_t& v, bool&) {
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
