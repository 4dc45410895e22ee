// HostResidency: resident copies in host memory, one buffer per resource.
#include <map>
#include <mutex>
#include <vector>

#include "host/residency_store.h"

namespace mk::engine::host {
namespace {

class HostResidency final : public ResidencyStore {
 public:
  bool Place(uint32_t id, uint32_t, uint64_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    buffers_[id];  // sized by Fill, outside the loader's lock
    return true;
  }
  absl::Status Fill(uint32_t id, const io::Resource& resource, io::FileReader& reader,
                    io::ReadCallback done) override {
    std::vector<uint8_t>* bytes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      bytes = &buffers_[id];  // map nodes keep their address
    }
    bytes->resize(resource.length);
    return reader.Read(resource.location, resource.offset, resource.length, bytes->data(),
                       std::move(done));
  }
  absl::Status Publish(uint32_t) override { return absl::OkStatus(); }
  void Remove(uint32_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    buffers_.erase(id);
  }
  absl::Span<const uint8_t> HostBytes(uint32_t id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = buffers_.find(id);
    if (it == buffers_.end()) return {};
    return absl::MakeConstSpan(it->second);
  }

 private:
  std::mutex mu_;  // guards the map's structure; a buffer is only touched by its own load
  std::map<uint32_t, std::vector<uint8_t>> buffers_;
};

}  // namespace

std::unique_ptr<ResidencyStore> CreateHostResidency() { return std::make_unique<HostResidency>(); }

}  // namespace mk::engine::host
