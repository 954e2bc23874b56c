#include "runtime/pipeline/tensor_pipeline.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "src/base/clock.h"

namespace stella::pipeline {

std::vector<std::pair<size_t, size_t>> MakeBuckets(const std::vector<int64_t>& tensor_sizes, size_t min_bytes) {
  std::vector<std::pair<size_t, size_t>> buckets;
  size_t end = tensor_sizes.size();
  size_t bytes = 0;
  for (size_t i = tensor_sizes.size(); i-- > 0;) {
    bytes += sizeof(float) * static_cast<size_t>(std::max<int64_t>(0, tensor_sizes[i]));
    if (bytes >= min_bytes || i == 0) {
      buckets.emplace_back(i, end);
      end = i;
      bytes = 0;
    }
  }
  return buckets;
}

TensorPipeline::TensorPipeline(const TensorPipelineOptions& options, const float* master, BucketFunction function,
                               const PipelineSnapshot* resume)
    : options_(options),
      num_tensors_(options.tensor_sizes.size()),
      num_parameters_([&] {
        size_t n = 0;
        for (int64_t s : options.tensor_sizes) n += static_cast<size_t>(s);
        return n;
      }()),
      first_step_(resume == nullptr ? 0 : resume->next_step),
      master_(master),
      function_(std::move(function)) {
  offsets_.assign(1, 0);
  for (int64_t s : options.tensor_sizes) offsets_.push_back(offsets_.back() + static_cast<size_t>(s));
  const size_t ring = static_cast<size_t>(options.staleness) + 1;
  slots_.resize(ring);
  for (Slot& slot : slots_) {
    slot.buffer.assign(num_parameters_ + options.num_control, 0.0f);
    slot.ready.assign(num_tensors_, 0);
  }
  published_.resize(ring);
  published_[0].assign(master, master + num_parameters_);
  for (size_t r = 1; r < ring; ++r) published_[r].assign(num_parameters_, 0.0f);
  version_.assign(num_tensors_, 0);
  newest_control_.assign(options.num_control, 0.0f);
  installed_.assign(num_tensors_, -1);
  installed_this_step_.assign(num_tensors_, 0);
  if (resume != nullptr) {
    // As if steps 0 .. next_step - 1 had run here: the ring holds their
    // newest s + 1 versions.
    const int64_t oldest = std::max<int64_t>(0, first_step_ - options.staleness);
    for (size_t k = 0; k < resume->versions.size(); ++k) {
      published_[static_cast<size_t>(oldest + static_cast<int64_t>(k)) % ring] = resume->versions[k];
    }
    version_.assign(num_tensors_, first_step_);
    applied_steps_ = first_step_;
    submitted_ = first_step_;
    newest_control_ = resume->control;
    current_step_ = first_step_ - 1;
  }
}

StatusOr<std::unique_ptr<TensorPipeline>> TensorPipeline::Create(const TensorPipelineOptions& options,
                                                                 const float* master, BucketFunction function,
                                                                 const PipelineSnapshot* resume) {
  if (options.staleness < 0 || options.staleness > 64) {
    return InvalidArgumentError("tensor pipeline: staleness must be in 0..64, got " +
                                std::to_string(options.staleness));
  }
  if (options.tensor_sizes.empty()) return InvalidArgumentError("tensor pipeline: no tensors");
  for (size_t i = 0; i < options.tensor_sizes.size(); ++i) {
    if (options.tensor_sizes[i] < 0) {
      return InvalidArgumentError("tensor pipeline: tensor " + std::to_string(i) + " has size " +
                                  std::to_string(options.tensor_sizes[i]));
    }
  }
  if (master == nullptr) return InvalidArgumentError("tensor pipeline: master copy is null");
  if (!function) return InvalidArgumentError("tensor pipeline: no bucket function");
  if (options.progress_timeout.count() <= 0) {
    return InvalidArgumentError("tensor pipeline: progress_timeout must be > 0, got " +
                                std::to_string(options.progress_timeout.count()) + " ms");
  }
  std::vector<int> covered(options.tensor_sizes.size(), 0);
  for (const auto& [first, end] : options.buckets) {
    if (first >= end || end > covered.size()) {
      return InvalidArgumentError("tensor pipeline: bucket [" + std::to_string(first) + ", " + std::to_string(end) +
                                  ") is empty or outside the " + std::to_string(covered.size()) + " tensors");
    }
    for (size_t i = first; i < end; ++i) ++covered[i];
  }
  for (size_t i = 0; i < covered.size(); ++i) {
    if (covered[i] != 1) {
      return InvalidArgumentError("tensor pipeline: tensor " + std::to_string(i) + " is in " +
                                  std::to_string(covered[i]) + " buckets, expected exactly 1");
    }
  }
  if (options.buckets.back().first != 0) {
    return InvalidArgumentError("tensor pipeline: the last bucket must hold tensor 0 (it carries the control)");
  }
  if (resume != nullptr) {
    size_t n = 0;
    for (int64_t size : options.tensor_sizes) n += static_cast<size_t>(size);
    const int64_t expected = resume->next_step - std::max<int64_t>(0, resume->next_step - options.staleness) + 1;
    if (resume->next_step < 0 || static_cast<int64_t>(resume->versions.size()) != expected) {
      return InvalidArgumentError("tensor pipeline: resuming at step " + std::to_string(resume->next_step) +
                                  " with staleness " + std::to_string(options.staleness) + " needs " +
                                  std::to_string(expected) + " saved versions, got " +
                                  std::to_string(resume->versions.size()));
    }
    for (const auto& v : resume->versions) {
      if (v.size() != n) {
        return InvalidArgumentError("tensor pipeline: a saved version holds " + std::to_string(v.size()) +
                                    " parameters, the model has " + std::to_string(n));
      }
    }
    if (resume->control.size() != options.num_control) {
      return InvalidArgumentError("tensor pipeline: saved control holds " + std::to_string(resume->control.size()) +
                                  " values, expected " + std::to_string(options.num_control));
    }
    if (!std::equal(resume->versions.back().begin(), resume->versions.back().end(), master)) {
      return InvalidArgumentError("tensor pipeline: the master copy is not the snapshot's newest version");
    }
  }
  auto p = std::unique_ptr<TensorPipeline>(new TensorPipeline(options, master, std::move(function), resume));
  try {
    p->thread_ = std::thread(&TensorPipeline::CommunicationLoop, p.get());
  } catch (const std::system_error& e) {
    return InternalError(std::string("tensor pipeline: cannot start the communication thread: ") + e.what());
  }
  return p;
}

TensorPipeline::~TensorPipeline() {
  {
    MutexLock lock(&mu_);
    abort_ = true;
    changed_.SignalAll();
  }
  // The thread finishes the bucket it is in (bounded by the collectives'
  // timeouts) and leaves.
  if (thread_.joinable()) thread_.join();
}

template <typename Pred>
bool TensorPipeline::WaitLocked(Pred done, const std::string& what, Status* status) {
  for (;;) {
    if (!error_.ok()) {
      *status = error_;
      return false;
    }
    if (done()) return true;
    const int64_t seen = progress_;
    // The timeout is on progress: a wait may span several buckets, each
    // bounded by the collective timeout.
    // As std::condition_variable::wait_for with a predicate: false when the
    // deadline passes with the predicate still false.
    auto woken = [&]() REQUIRES(mu_) { return !error_.ok() || done() || progress_ != seen; };
    const auto deadline = std::chrono::steady_clock::now() + options_.progress_timeout;
    bool signalled = true;
    while (!woken()) {
      if (!changed_.WaitUntil(&mu_, deadline)) {
        signalled = woken();
        break;
      }
    }
    if (!signalled) {
      *status = DeadlineExceededError("no parameter update for " + std::to_string(options_.progress_timeout.count()) +
                                      " ms while waiting for " + what);
      return false;
    }
  }
}

void TensorPipeline::CommunicationLoop() {
  pthread_setname_np(pthread_self(), options_.thread_name.substr(0, 15).c_str());
  // slots_ is sized in the constructor: s + 1 slots.
  const size_t ring = static_cast<size_t>(options_.staleness) + 1;
  for (int64_t step = first_step_;; ++step) {
    // Set under mu_ (the vector never changes size; its element is what the
    // lock guards); used outside it only for the bucket's buffer slice.
    Slot* slot_ptr = nullptr;
    for (size_t b = 0; b < options_.buckets.size(); ++b) {
      // Plain variables, not a structured binding: lambdas may not capture
      // those in C++17 (clang rejects it).
      const size_t first = options_.buckets[b].first;
      const size_t end = options_.buckets[b].second;
      const bool last = b + 1 == options_.buckets.size();
      {
        MutexLock lock(&mu_);
        slot_ptr = &slots_[static_cast<size_t>(step) % ring];
        Slot& slot = *slot_ptr;
        auto ready = [&] {
          if (slot.step != step) return false;
          for (size_t i = first; i < end; ++i) {
            if (!slot.ready[i]) return false;
          }
          return !last || slot.control_ready;
        };
        // Idle while the compute thread works; only abort ends the wait.
        while (!abort_ && !ready()) changed_.WaitFor(&mu_, options_.progress_timeout);
        if (abort_) return;
      }
      Slot& slot = *slot_ptr;
      // The compute thread writes other tensors' slices of this buffer
      // meanwhile; this bucket's slice and the control are no longer written.
      float* control = last ? slot.buffer.data() + num_parameters_ : nullptr;
      StatusOr<bool> stop = function_(step, b, slot.buffer.data() + offsets_[first], control);
      MutexLock lock(&mu_);
      if (!stop.ok()) {
        if (error_.ok()) error_ = stop.status();
        changed_.SignalAll();
        return;
      }
      // Version step + 1 replaces version step - s in the ring, which no
      // install needs any more: step `step` installed these tensors before
      // backward produced their gradients, and later steps need newer ones.
      const int64_t version = step + 1;
      float* dst = published_[static_cast<size_t>(version) % ring].data();
      std::memcpy(dst + offsets_[first], master_ + offsets_[first], sizeof(float) * (offsets_[end] - offsets_[first]));
      for (size_t i = first; i < end; ++i) version_[i] = version;
      ++progress_;
      if (last) {
        std::copy(control, control + options_.num_control, newest_control_.begin());
        applied_steps_ = version;
        slot.step = -1;
        if (*stop) finished_ = true;
      }
      changed_.SignalAll();
      if (last && *stop) return;
    }
  }
}

StatusOr<TensorPipeline::StepStart> TensorPipeline::BeginStep(int64_t step) {
  STELLA_CHECK(!finish_called_ && !in_step_ && step == current_step_ + 1);
  const Clock& clock = SystemClock::Get();
  const auto t0 = clock.Now();
  MutexLock lock(&mu_);
  Status st;
  if (!WaitLocked([&]() REQUIRES(mu_) { return finished_ || applied_steps_ >= step - options_.staleness; },
                  "step " + std::to_string(step - options_.staleness - 1) + " to be applied before step " +
                      std::to_string(step),
                  &st)) {
    return st;
  }
  StepStart out;
  out.control = newest_control_;
  out.wait_seconds = SecondsBetween(t0, clock.Now());
  if (finished_) {
    out.finished = true;
    out.version = applied_steps_;
    return out;
  }
  Slot& slot = slots_[static_cast<size_t>(step) % slots_.size()];
  STELLA_CHECK(slot.step == -1);  // its previous step, step - s - 1, is applied
  slot.step = step;
  std::fill(slot.ready.begin(), slot.ready.end(), 0);
  slot.control_ready = false;
  std::fill(installed_this_step_.begin(), installed_this_step_.end(), 0);
  active_step_ = step;
  current_step_ = step;
  in_step_ = true;
  out.version = std::max<int64_t>(0, step - options_.staleness);
  return out;
}

float* TensorPipeline::GradientBuffer() {
  STELLA_CHECK(in_step_);
  MutexLock lock(&mu_);
  return slots_[static_cast<size_t>(current_step_) % slots_.size()].buffer.data();
}

void TensorPipeline::InstallLocked(size_t tensor, int64_t version, const InstallTensorFunction& install) {
  if (installed_[tensor] != version) {
    // The ring holds versions version_[tensor] - s .. version_[tensor].
    STELLA_CHECK(version_[tensor] >= version && version_[tensor] - version <= options_.staleness);
    install(tensor, published_[static_cast<size_t>(version) % slots_.size()].data() + offsets_[tensor]);
    installed_[tensor] = version;
  }
  installed_this_step_[tensor] = 1;
}

Status TensorPipeline::WaitTensors(const std::vector<size_t>& tensors, const InstallTensorFunction& install) {
  STELLA_CHECK(in_step_);
  const int64_t version = std::max<int64_t>(0, current_step_ - options_.staleness);
  MutexLock lock(&mu_);
  auto reached = [&]() REQUIRES(mu_) {
    for (size_t i : tensors) {
      STELLA_CHECK(i < num_tensors_);
      if (version_[i] < version) return false;
    }
    return true;
  };
  Status st;
  if (!WaitLocked(
          [&]() REQUIRES(mu_) { return finished_ || reached(); },
          "version " + std::to_string(version) + " of a layer's tensors in step " + std::to_string(current_step_),
          &st)) {
    return st;
  }
  if (!reached()) return CancelledError("pipeline stopped before step " + std::to_string(current_step_));
  for (size_t i : tensors) InstallLocked(i, version, install);
  return Status::Ok();
}

void TensorPipeline::TensorReady(size_t tensor) {
  MutexLock lock(&mu_);
  STELLA_CHECK(tensor < num_tensors_ && active_step_ >= 0);
  Slot& slot = slots_[static_cast<size_t>(active_step_) % slots_.size()];
  STELLA_CHECK(slot.step == active_step_ && !slot.ready[tensor] && installed_this_step_[tensor]);
  slot.ready[tensor] = 1;
  changed_.SignalAll();
}

Status TensorPipeline::Submit(const InstallTensorFunction& install) {
  STELLA_CHECK(in_step_);
  in_step_ = false;
  const int64_t version = std::max<int64_t>(0, current_step_ - options_.staleness);
  MutexLock lock(&mu_);
  Slot& slot = slots_[static_cast<size_t>(current_step_) % slots_.size()];
  for (size_t i = 0; i < num_tensors_; ++i) {
    if (!installed_this_step_[i]) InstallLocked(i, version, install);
    if (!slot.ready[i]) {
      // No gradient this step (unused parameter): contributes zeros.
      std::fill(slot.buffer.begin() + static_cast<std::ptrdiff_t>(offsets_[i]),
                slot.buffer.begin() + static_cast<std::ptrdiff_t>(offsets_[i + 1]), 0.0f);
      slot.ready[i] = 1;
    }
  }
  slot.control_ready = true;
  active_step_ = -1;
  ++submitted_;
  changed_.SignalAll();
  return error_;
}

StatusOr<PipelineSnapshot> TensorPipeline::Drain() {
  STELLA_CHECK(!finish_called_ && !in_step_);
  MutexLock lock(&mu_);
  Status st;
  if (!WaitLocked([&]() REQUIRES(mu_) { return finished_ || applied_steps_ >= submitted_; },
                  "step " + std::to_string(submitted_ - 1) + " to be applied before a checkpoint", &st)) {
    return st;
  }
  // After an agreed stop the communication thread has left after publishing
  // the stop step; steps computed beyond it are dropped, and the snapshot is
  // of the stop step.
  PipelineSnapshot out;
  out.next_step = applied_steps_;
  const size_t ring = slots_.size();
  for (int64_t v = std::max<int64_t>(0, applied_steps_ - options_.staleness); v <= applied_steps_; ++v) {
    out.versions.push_back(published_[static_cast<size_t>(v) % ring]);
  }
  out.control = newest_control_;
  return out;
}

StatusOr<TensorPipeline::StepStart> TensorPipeline::Finish(const InstallTensorFunction& install) {
  STELLA_CHECK(!finish_called_ && !in_step_);
  finish_called_ = true;
  Status st;
  {
    MutexLock lock(&mu_);
    WaitLocked([&]() REQUIRES(mu_) { return finished_ || applied_steps_ >= submitted_; }, "the last parameter update",
               &st);
    abort_ = true;
    changed_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
  if (!st.ok()) return st;
  MutexLock lock(&mu_);
  StepStart out;
  out.finished = finished_;
  out.version = applied_steps_;
  out.control = newest_control_;
  for (size_t i = 0; i < num_tensors_; ++i) InstallLocked(i, version_[i], install);
  return out;
}

int64_t TensorPipeline::tensor_version(size_t i) const {
  MutexLock lock(&mu_);
  return version_.at(i);
}

}  // namespace stella::pipeline
