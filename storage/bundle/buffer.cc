#include <sys/mman.h>

#include <cstdint>
#include <new>
#include <utility>

#include "storage/bundle/tensor.h"

namespace cairn {
namespace {
constexpr size_t kHugePage = 2 << 20;
}  // namespace

Buffer::Buffer(size_t size) : size_(size) {
  if (size == 0) return;
  if (size >= kHugePage) {
    // Huge pages only cover 2 MiB-aligned ranges: map a huge page more and
    // trim both ends so the buffer starts on a boundary and every page of
    // it can be huge (an unaligned 4 MiB buffer would get at most one).
    const size_t len = (size + kHugePage - 1) / kHugePage * kHugePage;
    void* p = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      const uintptr_t raw = reinterpret_cast<uintptr_t>(p);
      const uintptr_t aligned = (raw + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
      if (aligned > raw) ::munmap(p, aligned - raw);
      const uintptr_t tail = raw + len + kHugePage - (aligned + len);
      if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + len), tail);
      ::madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);  // advisory
      data_ = reinterpret_cast<char*>(aligned);
      mapped_ = len;
      return;
    }
  }
  data_ = new char[size];
}

Buffer::Buffer(std::shared_ptr<char> owner, size_t size)
    : data_(owner.get()), size_(size), owner_(std::move(owner)) {}

Buffer::~Buffer() { Release(); }

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)),
      owner_(std::move(other.owner_)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
    owner_ = std::move(other.owner_);
  }
  return *this;
}

void Buffer::Release() {
  if (owner_) {
    owner_.reset();
  } else if (data_ == nullptr) {
    return;
  } else if (mapped_) {
    ::munmap(data_, mapped_);
  } else {
    delete[] data_;
  }
  data_ = nullptr;
  size_ = 0;
  mapped_ = 0;
}

}  // namespace cairn
