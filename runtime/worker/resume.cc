// Checkpoints and resume: the periodic and final checkpoint of a worker, and
// the job-wide agreement on the checkpoint to resume from.
#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "runtime/worker/worker_internal.h"

namespace stella::worker {
namespace {

// Resume agreement: the all-reduce round (WAN frame tag) it uses, before any
// training round (the mesh's tags only go forward), and how many of its
// newest complete checkpoints each worker offers.
constexpr uint32_t kAgreementRound = exchange::kSetupRoundTag;
constexpr size_t kAgreementSlots = 8;

}  // namespace

Status Worker::MaybeCheckpoint(Loop& loop, pipeline::TensorPipeline* pipe) {
  State& s = *state_;
  const int interval = s.options.job.spec.checkpoint.interval_steps;
  // The last step is left to the end-of-training checkpoint.
  if (!s.store || interval <= 0 || loop.step % interval != 0 || loop.step >= s.total_steps) return Status::Ok();
  if (pipe == nullptr) return SaveCheckpoint(loop, nullptr);
  STELLA_ASSIGN_OR_RETURN(pipeline::PipelineSnapshot snapshot, pipe->Drain());
  // An agreed stop already ended the pipeline behind this step; the
  // end-of-training checkpoint records where.
  if (snapshot.next_step != loop.step) return Status::Ok();
  loop.applied = snapshot.next_step;
  return SaveCheckpoint(loop, &snapshot);
}

Status Worker::SaveCheckpoint(Loop& loop, const pipeline::PipelineSnapshot* snapshot) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const int64_t step = loop.applied;
  WorkerState w;
  w.meta = s.meta;
  w.loop.step = step;
  w.loop.sampler_epoch = loop.sampler->epoch();
  w.loop.sampler_cursor = loop.sampler->cursor();
  w.loop.batch = loop.batch;
  w.loop.target_reached = loop.target_reached;
  w.loop.final_accuracy = loop.final_accuracy;
  w.loop.last_loss = loop.last_loss;
  if (spec.sync.mode == spec::SyncMode::kStella) {
    STELLA_CHECK(snapshot != nullptr && snapshot->next_step == step);
    if (loop.step != step) {
      // Steps step .. loop.step - 1 were computed but dropped: record where
      // step `step` began.
      bool found = false;
      for (const auto& m : loop.sampler_marks) {
        if (m.step == step) {
          w.loop.sampler_epoch = m.epoch;
          w.loop.sampler_cursor = m.cursor;
          found = true;
        }
      }
      STELLA_CHECK(found);  // at most staleness + 1 steps are in flight
    }
    // The communication thread is idle at a drained boundary, so its state
    // (exchange, tuner driver) can be read here.
    w.sync = s.sparse_sync->SaveState();
    w.parameters = w.sync->master;
    w.pipeline = *snapshot;
    const tuner::TunerDriverState d = s.driver->SaveState(step);
    w.density = d.density;
    if (d.has_tuner) {
      w.tuner = TunerRecord{d.tuner, d.last_batches, d.history, d.pending};
      w.loop.batch = step > 0 ? s.driver->BatchAt(step - 1, s.global_rank()) : spec.batch_size;
    }
  } else {
    w.parameters.resize(static_cast<size_t>(s.trainer->num_parameters()));
    s.trainer->CopyParametersTo(w.parameters.data());
    STELLA_ASSIGN_OR_RETURN(w.torch_optimizer, s.trainer->SaveOptimizerState());
  }
  auto saved = s.store->Save(step, EncodeWorkerState(w));
  if (!saved.ok()) return saved.status().WithContext("spec.checkpoint: checkpoint of step " + std::to_string(step));
  loop.last_checkpoint = step;
  s.events->Emit("checkpoint", {{"step", step},
                                {"path", saved->path},
                                {"bytes", saved->bytes},
                                {"seconds", saved->seconds},
                                {"removed_steps", saved->removed}});
  return Status::Ok();
}

Status Worker::AgreeAndRestore(Loop& loop) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  if (!s.store) return Status::Ok();
  // Every worker of a job with a checkpoint path takes part, told to resume
  // or not, so the collectives always match; one that was not told to offers
  // nothing, and the job starts over.
  std::vector<int64_t> mine;
  std::vector<std::string> skipped;
  if (s.options.resume) {
    STELLA_ASSIGN_OR_RETURN(checkpoint::ScanResult scan, s.store->Scan());
    for (const auto& why : scan.skipped) {
      std::fprintf(stderr, "stella-runtime: checkpoint: skipping %s\n", why.c_str());
    }
    skipped = scan.skipped;
    mine = scan.steps;
    if (mine.size() > kAgreementSlots) mine.resize(kAgreementSlots);
  }
  const size_t block = kAgreementSlots * checkpoint::kFloatsPerStep;
  std::vector<float> all(block * static_cast<size_t>(s.world_size()), 0.0f);
  checkpoint::StepsToFloats(mine, kAgreementSlots, all.data() + block * static_cast<size_t>(s.global_rank()));
  exchange::DenseAllReduce agreement(s.group.get(), s.mesh.get(), ClusterWorkers(spec));
  exchange::DenseRoundInfo round;
  Status agreed_ok = agreement.AllReduceMean(all.data(), all.size(), kAgreementRound,
                                             loop.clock.Now() + s.options.collective_timeout, &round);
  if (!agreed_ok.ok()) return agreed_ok.WithContext("checkpoint resume agreement");
  if (round.degraded) {
    // Every worker must offer its steps, or clusters could resume from
    // different checkpoints.
    return UnavailableError("checkpoint resume agreement: only " + std::to_string(round.workers) + " of " +
                            std::to_string(s.world_size()) + " workers were reached (a WAN link is down)");
  }
  std::vector<std::vector<int64_t>> per_worker;
  for (int g = 0; g < s.world_size(); ++g) {
    per_worker.push_back(
        checkpoint::FloatsToSteps(all.data() + block * static_cast<size_t>(g), kAgreementSlots, s.world_size()));
  }
  const int64_t step = checkpoint::NewestCommonStep(per_worker);
  if (!s.options.resume) return Status::Ok();
  if (step < 0) {
    std::fprintf(stderr,
                 "stella-runtime: --resume: no checkpoint that every worker holds complete (or a worker was not "
                 "told to resume); starting at step 0\n");
    s.events->Emit("resume", {{"step", 0}, {"from_checkpoint", false}, {"skipped", skipped}});
    return Status::Ok();
  }
  STELLA_RETURN_IF_ERROR(RestoreFrom(loop, step));
  loop.step = loop.applied = loop.resumed_from = loop.last_checkpoint = step;
  applied_.store(step);
  const std::string path = s.store->PathFor(step);
  std::fprintf(stderr, "stella-runtime: resuming from checkpoint %s (step %lld)\n", path.c_str(),
               static_cast<long long>(step));
  s.events->Emit("resume", {{"step", step}, {"from_checkpoint", true}, {"path", path}, {"skipped", skipped}});
  return Status::Ok();
}

// Loads the agreed checkpoint of `step` into the model, the sync stage, the
// tuner driver and the loop.
Status Worker::RestoreFrom(Loop& loop, int64_t step) {
  State& s = *state_;
  const auto& spec = s.options.job.spec;
  const std::string path = s.store->PathFor(step);
  STELLA_ASSIGN_OR_RETURN(checkpoint::Sections sections, s.store->Load(step));
  STELLA_ASSIGN_OR_RETURN(WorkerState w, DecodeWorkerState(sections, path));
  STELLA_RETURN_IF_ERROR(CheckCompatible(w.meta, s.meta).WithContext("checkpoint " + path));
  const size_t n = static_cast<size_t>(s.trainer->num_parameters());
  if (w.loop.step != step || w.parameters.size() != n) {
    return DataLossError("checkpoint " + path + ": holds step " + std::to_string(w.loop.step) + " and " +
                         std::to_string(w.parameters.size()) + " parameters, expected step " + std::to_string(step) +
                         " and " + std::to_string(n));
  }
  STELLA_RETURN_IF_ERROR(
      loop.sampler->Seek(w.loop.sampler_epoch, w.loop.sampler_cursor).WithContext("checkpoint " + path));
  s.trainer->SetParameters(w.parameters.data());
  if (spec.sync.mode == spec::SyncMode::kStella) {
    STELLA_RETURN_IF_ERROR(s.sparse_sync->LoadState(*w.sync).WithContext("checkpoint " + path));
    loop.resume_snapshot = std::make_unique<pipeline::PipelineSnapshot>(std::move(*w.pipeline));
    loop.batch = w.loop.batch;
    tuner::TunerDriverState d;
    d.density = w.density;
    if (w.tuner) {
      d.has_tuner = true;
      d.tuner = w.tuner->tuner;
      d.last_batches = w.tuner->last_batches;
      d.history = w.tuner->history;
      d.pending = w.tuner->pending;
    }
    STELLA_RETURN_IF_ERROR(s.driver->LoadState(d).WithContext("checkpoint " + path));
    if (s.driver->has_tuner() != d.has_tuner) {
      // The tuner was switched on or off: the spec's density and batch.
      loop.batch = spec.batch_size;
      if (s.driver->has_tuner() && s.global_rank() == 0) {
        std::fprintf(stderr, "stella-runtime: the checkpoint has no tuner state; the tuner starts afresh\n");
      }
    }
  } else {
    STELLA_RETURN_IF_ERROR(s.trainer->LoadOptimizerState(w.torch_optimizer).WithContext("checkpoint " + path));
  }
  loop.target_reached = w.loop.target_reached;
  loop.final_accuracy = w.loop.final_accuracy;
  loop.last_loss = w.loop.last_loss;
  return Status::Ok();
}

}  // namespace stella::worker
