#pragma once

#include "rollblock/messages/types.hpp"

#include <caf/meta/type_name.hpp>

#include <vector>

namespace rollblock {

/// One write in a block: set `k` to `v`, or delete `k` when `v` is empty.
struct operation {
  key k;
  value v;

  friend bool operator==(const operation&, const operation&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, operation& x) {
  return f(caf::meta::type_name("rollblock.operation"), x.k, x.v);
}

using operation_list = std::vector<operation>;

} // namespace rollblock
