#include "support/fault_file_system.hpp"

namespace rollblock::test {

namespace {

std::error_code errno_code(int err) {
  return {err, std::generic_category()};
}

/// Runs `f` unless the schedule says otherwise.
template <class F>
std::error_code guarded(fault_schedule& s, fault_op op, F&& f) {
  auto act = s.next(op);
  if (act.kind == fault_action::crash)
    crash_process();
  if (act.kind == fault_action::fail)
    return errno_code(act.error);
  return f();
}

class fault_file final : public storage::file {
public:
  fault_file(std::unique_ptr<storage::file> base, fault_schedule& s)
    : base_(std::move(base)), schedule_(s) {
  }

  storage::io_result read_at(std::uint64_t offset, char* data,
                             std::size_t size) override {
    return base_->read_at(offset, data, size);
  }

  storage::io_result write_at(std::uint64_t offset, const char* data,
                              std::size_t size) override {
    auto act = schedule_.next(fault_op::write, size);
    switch (act.kind) {
      case fault_action::proceed:
        return base_->write_at(offset, data, size);
      case fault_action::fail:
        return {0, errno_code(act.error)};
      case fault_action::shorten:
        return base_->write_at(offset, data, act.bytes);
      case fault_action::crash:
        if (act.bytes > 0)
          base_->write_at(offset, data, act.bytes);
        crash_process();
    }
    return {};
  }

  std::error_code sync_data() override {
    return guarded(schedule_, fault_op::sync,
                   [this] { return base_->sync_data(); });
  }

  std::error_code sync() override {
    return guarded(schedule_, fault_op::sync,
                   [this] { return base_->sync(); });
  }

  std::error_code truncate(std::uint64_t size) override {
    return guarded(schedule_, fault_op::truncate,
                   [this, size] { return base_->truncate(size); });
  }

  std::error_code size(std::uint64_t& size) override {
    return base_->size(size);
  }

private:
  std::unique_ptr<storage::file> base_;
  fault_schedule& schedule_;
};

} // namespace

fault_file_system::fault_file_system() : base_(storage::posix_file_system()) {
}

std::error_code fault_file_system::open(const std::filesystem::path& path,
                                        storage::open_mode mode,
                                        std::unique_ptr<storage::file>& out) {
  std::unique_ptr<storage::file> base;
  auto run = [&] { return base_->open(path, mode, base); };
  auto err = mode == storage::open_mode::create_new
               ? guarded(schedule_, fault_op::create, run)
               : run();
  if (!err)
    out = std::make_unique<fault_file>(std::move(base), schedule_);
  return err;
}

std::error_code fault_file_system::remove(const std::filesystem::path& path) {
  return guarded(schedule_, fault_op::remove,
                 [&] { return base_->remove(path); });
}

std::error_code fault_file_system::list(const std::filesystem::path& dir,
                                        std::vector<std::string>& names) {
  return base_->list(dir, names);
}

std::error_code
fault_file_system::create_directories(const std::filesystem::path& dir) {
  return base_->create_directories(dir);
}

std::error_code
fault_file_system::sync_directory(const std::filesystem::path& dir) {
  return guarded(schedule_, fault_op::sync_directory,
                 [&] { return base_->sync_directory(dir); });
}

} // namespace rollblock::test
