#include "runtime/pipeline/stale_pipeline.h"

#include <pthread.h>

#include <algorithm>
#include <system_error>

#include "src/base/clock.h"

namespace stella::pipeline {

StalePipeline::StalePipeline(const StalePipelineOptions& options, const float* master, StepFunction step_function)
    : options_(options),
      master_(master),
      step_function_(std::move(step_function)),
      gate_(0),
      // Room for every step the gate lets the compute thread run ahead
      // (steps t-s .. t in flight), so in steady state Submit never blocks
      // on the queue; the gate is the staleness bound, the capacity a
      // backstop against a caller that skips BeginStep.
      queue_(static_cast<size_t>(options.staleness) + 1),
      published_(static_cast<size_t>(options.staleness) + 1),
      slot_version_(static_cast<size_t>(options.staleness) + 1, -1),
      newest_control_(options.num_control, 0.0f) {
  published_[0].assign(master, master + options.num_parameters);
  slot_version_[0] = 0;
}

StatusOr<std::unique_ptr<StalePipeline>> StalePipeline::Create(const StalePipelineOptions& options,
                                                               const float* master, StepFunction step_function) {
  if (options.staleness < 0 || options.staleness > 64) {
    return InvalidArgumentError("pipeline: staleness must be in 0..64, got " + std::to_string(options.staleness));
  }
  if (options.num_parameters > 0 && master == nullptr) return InvalidArgumentError("pipeline: master copy is null");
  if (!step_function) return InvalidArgumentError("pipeline: no step function");
  if (options.progress_timeout.count() <= 0) {
    return InvalidArgumentError("pipeline: progress_timeout must be > 0, got " +
                                std::to_string(options.progress_timeout.count()) + " ms");
  }
  auto p = std::unique_ptr<StalePipeline>(new StalePipeline(options, master, std::move(step_function)));
  try {
    p->thread_ = std::thread(&StalePipeline::CommunicationLoop, p.get());
  } catch (const std::system_error& e) {
    return InternalError(std::string("pipeline: cannot start the communication thread: ") + e.what());
  }
  return p;
}

StalePipeline::~StalePipeline() {
  // Drops unprocessed steps; the thread finishes the step it is in (bounded
  // by the collectives' timeouts) and leaves.
  queue_.Close(/*discard=*/true);
  if (thread_.joinable()) thread_.join();
}

void StalePipeline::CommunicationLoop() {
  pthread_setname_np(pthread_self(), options_.thread_name.substr(0, 15).c_str());
  for (;;) {
    // The deadline only lets the loop look around while the compute thread
    // is busy (e.g. evaluating); Close ends the wait at once.
    StatusOr<Item> item = queue_.Pop(std::chrono::steady_clock::now() + options_.progress_timeout);
    if (!item.ok()) {
      if (item.status().code() == StatusCode::kCancelled) return;  // closed and drained
      continue;
    }
    StatusOr<bool> stop = step_function_(item->step, &item->buffer);
    if (!stop.ok()) {
      gate_.Fail(stop.status());
      queue_.Close(/*discard=*/true);
      return;
    }
    {
      // The slot being overwritten holds version step - s, which no later
      // BeginStep needs: BeginStep(t) needs t - s >= step + 1 - s, since this
      // step was submitted after BeginStep(step) installed its version.
      std::lock_guard<std::mutex> lock(mu_);
      const int64_t version = item->step + 1;
      const size_t slot = static_cast<size_t>(version % (options_.staleness + 1));
      published_[slot].assign(master_, master_ + options_.num_parameters);
      slot_version_[slot] = version;
      std::copy(item->buffer.begin() + static_cast<std::ptrdiff_t>(options_.num_parameters), item->buffer.end(),
                newest_control_.begin());
      newest_version_ = version;
      free_buffers_.push_back(std::move(item->buffer));
    }
    gate_.Publish(item->step + 1);
    if (*stop) {
      gate_.Finish();
      queue_.Close(/*discard=*/true);
      return;
    }
  }
}

void StalePipeline::Install(int64_t version, const InstallFunction& install, StepStart* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (version != installed_version_) {
    const size_t slot = static_cast<size_t>(version % (options_.staleness + 1));
    STELLA_CHECK(slot_version_[slot] == version);
    install(published_[slot].data());
    installed_version_ = version;
  }
  out->version = version;
  out->control = newest_control_;
}

StatusOr<StalePipeline::StepStart> StalePipeline::BeginStep(int64_t step, const InstallFunction& install) {
  // Steps in order, each submitted before the next begins: otherwise a
  // staleness-0 wait would wait for a step nobody submitted.
  STELLA_CHECK(!finished_called_ && step == next_step_ && submitted_ == step);
  ++next_step_;
  const Clock& clock = SystemClock::Get();
  const auto t0 = clock.Now();
  auto reached = gate_.WaitAtLeast(step - options_.staleness, options_.progress_timeout);
  if (!reached.ok()) return reached.status().WithContext("waiting for the parameters of step " + std::to_string(step));
  StepStart out;
  out.finished = reached->finished;
  if (out.finished) {
    // Agreed stop: the caller runs no more steps; report without installing.
    std::lock_guard<std::mutex> lock(mu_);
    out.version = newest_version_;
    out.control = newest_control_;
  } else {
    Install(std::max<int64_t>(0, step - options_.staleness), install, &out);
  }
  out.wait_seconds = SecondsBetween(t0, clock.Now());
  return out;
}

std::vector<float> StalePipeline::AcquireBuffer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_buffers_.empty()) {
      std::vector<float> b = std::move(free_buffers_.back());
      free_buffers_.pop_back();
      return b;
    }
  }
  return std::vector<float>(options_.num_parameters + options_.num_control);
}

Status StalePipeline::Submit(int64_t step, std::vector<float> buffer) {
  STELLA_CHECK(!finished_called_ && step == submitted_ && step + 1 == next_step_);
  STELLA_CHECK(buffer.size() == options_.num_parameters + options_.num_control);
  ++submitted_;
  STELLA_RETURN_IF_ERROR(gate_.status());
  if (gate_.finished()) return Status::Ok();  // agreed stop: nobody will run it
  Status st = queue_.Push(Item{step, std::move(buffer)},
                          std::chrono::steady_clock::now() + options_.progress_timeout);
  if (st.code() == StatusCode::kCancelled) {
    // Closed under us: by an error (report it) or by the agreed stop (drop).
    STELLA_RETURN_IF_ERROR(gate_.status());
    return Status::Ok();
  }
  if (!st.ok()) return st.WithContext("queueing the gradient of step " + std::to_string(step));
  return Status::Ok();
}

StatusOr<StalePipeline::StepStart> StalePipeline::Finish(const InstallFunction& install) {
  STELLA_CHECK(!finished_called_);
  finished_called_ = true;
  queue_.Close(/*discard=*/false);  // the thread drains what is queued, then leaves
  auto reached = gate_.WaitAtLeast(submitted_, options_.progress_timeout);
  if (!reached.ok()) {
    queue_.Close(/*discard=*/true);
    return reached.status().WithContext("waiting for the last parameter update");
  }
  if (thread_.joinable()) thread_.join();
  StepStart out;
  out.finished = reached->finished;
  Install(reached->version, install, &out);
  return out;
}

}  // namespace stella::pipeline
