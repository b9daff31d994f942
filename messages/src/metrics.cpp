#include "rollblock/messages/metrics.hpp"

#include <bit>
#include <cmath>

namespace rollblock {

std::string to_string(health_state x) {
  switch (x) {
    case health_state::serving:
      return "serving";
    case health_state::degraded:
      return "degraded";
    case health_state::fatal:
      return "fatal";
  }
  return "unknown";
}

namespace {

// Bucket 0 holds samples up to 1 us; bucket 4k+f+1 (f in 0..3) holds
// [2^k * (1 + f/4), 2^k * (1 + (f+1)/4)) microseconds.
std::size_t bucket_of(std::uint64_t ns) {
  auto us = ns / 1000;
  if (us <= 1)
    return 0;
  auto log2 = static_cast<std::size_t>(std::bit_width(us) - 1);
  // Two fraction bits below the leading one.
  auto fraction = log2 >= 2 ? (us >> (log2 - 2)) & 3 : (us << (2 - log2)) & 3;
  auto bucket = log2 * 4 + fraction + 1;
  return bucket < latency_histogram::bucket_count
           ? bucket
           : latency_histogram::bucket_count - 1;
}

double upper_edge_us(std::size_t bucket) {
  if (bucket == 0)
    return 1.0;
  auto k = static_cast<double>((bucket - 1) / 4);
  auto f = static_cast<double>((bucket - 1) % 4);
  return std::pow(2.0, k) * (1.0 + (f + 1.0) / 4.0);
}

} // namespace

void latency_histogram::record(std::uint64_t nanoseconds) {
  buckets_[bucket_of(nanoseconds)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  total_ns_.fetch_add(nanoseconds, std::memory_order_relaxed);
}

latency_summary latency_histogram::summary() const {
  latency_summary result;
  std::array<std::uint64_t, bucket_count> counts;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
    total += counts[i];
  }
  result.count = total;
  if (total == 0)
    return result;
  result.avg_us = static_cast<double>(total_ns_.load(std::memory_order_relaxed))
                  / 1000.0 / static_cast<double>(count_.load());
  auto quantile = [&](double q) {
    auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts[i];
      if (seen >= rank && counts[i] > 0)
        return upper_edge_us(i);
    }
    return upper_edge_us(bucket_count - 1);
  };
  result.p50_us = quantile(0.50);
  result.p95_us = quantile(0.95);
  result.p99_us = quantile(0.99);
  return result;
}

} // namespace rollblock
