#include "region.hpp"

#include "tracked.hpp"

#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/exceptions.hpp>

#include <new>
#include <system_error>

namespace parallelcode::detail {

namespace {

constexpr std::size_t page = 4096;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

}  // namespace

region::region(unsigned channels, std::size_t ring_bytes) {
  const std::size_t controls = round_up(sizeof(region_control) + channels * sizeof(channel_control), page);
  const std::size_t total = controls + std::size_t{2} * channels * ring_bytes;
  try {
    mapping_ = boost::interprocess::anonymous_shared_memory(total);
  } catch (const boost::interprocess::interprocess_exception& e) {
    throw std::system_error(e.get_native_error(), std::system_category(),
                            "parallelcode: cannot map " + std::to_string(total) + " bytes of shared memory");
  }
  auto* base = static_cast<std::byte*>(mapping_.get_address());
  control_ = new (base) region_control{ring_bytes};
  channel_controls_ = reinterpret_cast<channel_control*>(base + sizeof(region_control));
  for (unsigned c = 0; c < channels; ++c) new (&channel_controls_[c]) channel_control{};
  rings_ = base + controls;
  track_mapping(base, total);
}

region& region::operator=(region&& other) noexcept {
  if (this != &other) {
    if (control_) untrack_mapping(control_);
    mapping_ = std::move(other.mapping_);
    control_ = std::exchange(other.control_, nullptr);
    channel_controls_ = std::exchange(other.channel_controls_, nullptr);
    rings_ = std::exchange(other.rings_, nullptr);
  }
  return *this;
}

region::~region() {
  if (control_) untrack_mapping(control_);
}

ring_view region::in(unsigned channel) const noexcept {
  return {&channel_controls_[channel].in, rings_ + std::size_t{2} * channel * control_->ring_bytes,
          control_->ring_bytes};
}

ring_view region::out(unsigned channel) const noexcept {
  return {&channel_controls_[channel].out, rings_ + (std::size_t{2} * channel + 1) * control_->ring_bytes,
          control_->ring_bytes};
}

void region::reset(unsigned channel) noexcept {
  for (ring_control* r : {&channel_controls_[channel].in, &channel_controls_[channel].out}) {
    r->head.store(0);
    r->tail.store(0);
    r->producer_waiting.store(0);
    r->consumer_sleeping.store(0);
  }
}

}  // namespace parallelcode::detail
