// HostResidency: resident copies in host memory, one buffer per resource.
#include <map>
#include <memory>
#include <mutex>

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
    Buffer* buffer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      buffer = &buffers_[id];  // map nodes keep their address
    }
    // Not zeroed: the read overwrites every byte (a load of a large file starts reading at
    // once instead of first touching every page, which is also time without io progress).
    buffer->data.reset(new uint8_t[resource.length]);
    buffer->size = resource.length;
    return reader.Read(resource.location, resource.offset, resource.length, buffer->data.get(),
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
    return absl::MakeConstSpan(it->second.data.get(), it->second.size);
  }

 private:
  std::mutex mu_;  // guards the map's structure; a buffer is only touched by its own load
  struct Buffer {
    std::unique_ptr<uint8_t[]> data;
    size_t size = 0;
  };
  std::map<uint32_t, Buffer> buffers_;
};

}  // namespace

std::unique_ptr<ResidencyStore> CreateHostResidency() { return std::make_unique<HostResidency>(); }

}  // namespace mk::engine::host
