// clients/load/latency_histogram.h: a small HDR-style latency histogram.
//
// LatencyHistogram counts nanosecond values in log-linear buckets: exact
// below 32 ns, then each power of two [2^k, 2^(k+1)) split into 16 equal
// sub-buckets, so a reported percentile is within 1/32 (3%) of the true
// value at any magnitude, in 976 counters (7.6 KiB). Not thread-safe: each
// load thread keeps its own and Merge()s them at the end.
//
// Example:
//   LatencyHistogram h;
//   h.Record(1234);
//   h.Percentile(0.99);  // ~1234

#ifndef GROOVE_CLIENTS_LOAD_LATENCY_HISTOGRAM_H_
#define GROOVE_CLIENTS_LOAD_LATENCY_HISTOGRAM_H_

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>

namespace groove::load {

class LatencyHistogram {
 public:
  // Record counts one value (ns). Cost: O(1).
  void Record(uint64_t ns) {
    ++counts_[BucketOf(ns)];
    ++total_;
    max_ = std::max(max_, ns);
  }

  void Merge(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }

  // Percentile returns the value (ns) at quantile q in [0, 1]: the middle
  // of the bucket holding the ceil(q * total)-th smallest value; 0 when
  // empty. Cost: O(buckets).
  double Percentile(double q) const {
    if (total_ == 0) return 0;
    const uint64_t rank = std::max<uint64_t>(
        1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_))));
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const double mid = (static_cast<double>(LowerBound(i)) +
                            static_cast<double>(LowerBound(i + 1))) /
                           2.0;
        return std::min(mid, static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

 private:
  static constexpr size_t kBuckets = 976;  // BucketOf(UINT64_MAX) + 1

  static size_t BucketOf(uint64_t ns) {
    if (ns < 32) return static_cast<size_t>(ns);
    const int msb = std::bit_width(ns) - 1;  // >= 5
    const uint64_t mantissa = ns >> (msb - 4);  // in [16, 32)
    return static_cast<size_t>(msb - 4) * 16 + static_cast<size_t>(mantissa);
  }
  static uint64_t LowerBound(size_t bucket) {
    if (bucket < 32) return bucket;
    const int msb = static_cast<int>(bucket / 16) + 3;
    const uint64_t mantissa = bucket % 16 + 16;
    return mantissa << (msb - 4);
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

}  // namespace groove::load

#endif  // GROOVE_CLIENTS_LOAD_LATENCY_HISTOGRAM_H_
