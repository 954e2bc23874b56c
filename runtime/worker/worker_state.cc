#include "runtime/worker/worker_state.h"

#include <utility>

#include "src/base/byte_io.h"

namespace stella::worker {
namespace {

constexpr char kMeta[] = "meta";
constexpr char kLoop[] = "loop";
constexpr char kParameters[] = "parameters";
constexpr char kTorchOptimizer[] = "torch_optimizer";
constexpr char kCpuOptimizer[] = "cpu_optimizer";
constexpr char kExchange[] = "exchange";
constexpr char kPipeline[] = "pipeline";
constexpr char kTuner[] = "tuner";

void PutDecisions(const std::vector<tuner::Decision>& decisions, ByteWriter* w) {
  w->U32(static_cast<uint32_t>(decisions.size()));
  for (const auto& d : decisions) {
    std::vector<uint8_t> frame;
    STELLA_CHECK(EncodeDecision(d, &frame).ok());  // the tuner only makes valid decisions
    w->String(std::string_view(reinterpret_cast<const char*>(frame.data()), frame.size()));
  }
}

std::vector<tuner::Decision> GetDecisions(ByteReader* r, const char* field) {
  std::vector<tuner::Decision> out;
  const uint32_t n = r->U32(field);
  for (uint32_t i = 0; i < n && r->ok(); ++i) {
    const std::string frame = r->String(field);
    if (!r->ok()) break;
    auto d = tuner::DecodeDecision(reinterpret_cast<const uint8_t*>(frame.data()), frame.size());
    if (!d.ok()) {
      r->Fail(std::string(field) + "[" + std::to_string(i) + "]: " + d.status().message());
      break;
    }
    out.push_back(std::move(d).value());
  }
  return out;
}

// A section's reader, or a DataLoss naming the missing section.
StatusOr<ByteReader> Section(const checkpoint::Sections& sections, const char* name, const std::string& source) {
  auto bytes = sections.Get(name);
  if (!bytes.ok()) return DataLossError("checkpoint " + source + ": missing section \"" + name + "\"");
  return ByteReader(*bytes, "checkpoint " + source + " section \"" + name + "\"");
}

}  // namespace

checkpoint::Sections EncodeWorkerState(const WorkerState& s) {
  checkpoint::Sections out;
  {
    ByteWriter w;
    w.String(s.meta.mode);
    w.U32(static_cast<uint32_t>(s.meta.world_size));
    w.U32(static_cast<uint32_t>(s.meta.global_rank));
    w.U32(static_cast<uint32_t>(s.meta.staleness));
    w.U32(static_cast<uint32_t>(s.meta.tensor_sizes.size()));
    for (int64_t n : s.meta.tensor_sizes) w.I64(n);
    out.Put(kMeta, w.Release());
  }
  {
    ByteWriter w;
    w.I64(s.loop.step);
    w.I64(s.loop.sampler_epoch);
    w.I64(s.loop.sampler_cursor);
    w.U32(static_cast<uint32_t>(s.loop.batch));
    w.Bool(s.loop.target_reached);
    w.F64(s.loop.final_accuracy);
    w.F32(s.loop.last_loss);
    out.Put(kLoop, w.Release());
  }
  {
    ByteWriter w;
    w.Floats(s.parameters);
    out.Put(kParameters, w.Release());
  }
  if (s.meta.mode == "ddp") out.Put(kTorchOptimizer, s.torch_optimizer);
  if (s.sync) {
    ByteWriter opt;
    opt.U32(static_cast<uint32_t>(s.sync->optimizer.size()));
    for (const auto& t : s.sync->optimizer) {
      opt.I64(t.step);
      opt.Floats(t.first_moment);
      opt.Floats(t.second_moment);
    }
    out.Put(kCpuOptimizer, opt.Release());
    ByteWriter x;
    x.F64(s.density);
    x.U32(static_cast<uint32_t>(s.sync->exchange.size()));
    for (const auto& t : s.sync->exchange) {
      x.String(t.compressor);
      x.Floats(t.residual);
      x.Floats(t.velocity);
    }
    out.Put(kExchange, x.Release());
  }
  if (s.pipeline) {
    ByteWriter w;
    w.I64(s.pipeline->next_step);
    // The newest version is the parameters themselves.
    const size_t older = s.pipeline->versions.empty() ? 0 : s.pipeline->versions.size() - 1;
    w.U32(static_cast<uint32_t>(older));
    for (size_t k = 0; k < older; ++k) w.Floats(s.pipeline->versions[k]);
    w.Floats(s.pipeline->control);
    out.Put(kPipeline, w.Release());
  }
  if (s.tuner) {
    ByteWriter w;
    w.String(s.tuner->tuner);
    w.U32(static_cast<uint32_t>(s.tuner->last_batches.size()));
    for (int b : s.tuner->last_batches) w.U32(static_cast<uint32_t>(b));
    PutDecisions(s.tuner->history, &w);
    PutDecisions(s.tuner->pending, &w);
    out.Put(kTuner, w.Release());
  }
  return out;
}

StatusOr<WorkerState> DecodeWorkerState(const checkpoint::Sections& sections, const std::string& source) {
  WorkerState s;
  {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kMeta, source));
    s.meta.mode = r.String("mode");
    s.meta.world_size = static_cast<int>(r.U32("world size"));
    s.meta.global_rank = static_cast<int>(r.U32("global rank"));
    s.meta.staleness = static_cast<int>(r.U32("staleness"));
    const uint32_t tensors = r.U32("tensor count");
    if (r.ok() && tensors > r.remaining() / 8) r.Fail("tensor count " + std::to_string(tensors) + " is implausible");
    for (uint32_t i = 0; i < tensors && r.ok(); ++i) s.meta.tensor_sizes.push_back(r.I64("tensor size"));
    r.ExpectEnd();
    if (r.ok() && s.meta.mode != "ddp" && s.meta.mode != "stella") r.Fail("unknown mode \"" + s.meta.mode + "\"");
    STELLA_RETURN_IF_ERROR(r.status());
  }
  {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kLoop, source));
    s.loop.step = r.I64("step");
    s.loop.sampler_epoch = r.I64("sampler epoch");
    s.loop.sampler_cursor = r.I64("sampler cursor");
    s.loop.batch = static_cast<int>(r.U32("batch"));
    s.loop.target_reached = r.Bool("target reached");
    s.loop.final_accuracy = r.F64("final accuracy");
    s.loop.last_loss = r.F32("last loss");
    r.ExpectEnd();
    if (r.ok() && (s.loop.step < 0 || s.loop.batch < 1)) {
      r.Fail("step " + std::to_string(s.loop.step) + " / batch " + std::to_string(s.loop.batch) + " out of range");
    }
    STELLA_RETURN_IF_ERROR(r.status());
  }
  {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kParameters, source));
    s.parameters = r.Floats("parameters");
    r.ExpectEnd();
    STELLA_RETURN_IF_ERROR(r.status());
  }
  if (s.meta.mode == "ddp") {
    auto bytes = sections.Get(kTorchOptimizer);
    if (!bytes.ok()) return DataLossError("checkpoint " + source + ": missing section \"torch_optimizer\"");
    s.torch_optimizer = std::string(*bytes);
    return s;
  }
  // stella mode.
  pipeline::SparseSyncState sync;
  sync.master = s.parameters;
  {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kCpuOptimizer, source));
    const uint32_t n = r.U32("tensor count");
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      optim::OptimizerState t;
      t.step = r.I64("optimizer step");
      t.first_moment = r.Floats("first moment");
      t.second_moment = r.Floats("second moment");
      sync.optimizer.push_back(std::move(t));
    }
    r.ExpectEnd();
    STELLA_RETURN_IF_ERROR(r.status());
  }
  {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kExchange, source));
    s.density = r.F64("density");
    const uint32_t n = r.U32("tensor count");
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      pipeline::TensorExchangeState t;
      t.compressor = r.String("compressor state");
      t.residual = r.Floats("residual");
      t.velocity = r.Floats("velocity");
      sync.exchange.push_back(std::move(t));
    }
    r.ExpectEnd();
    STELLA_RETURN_IF_ERROR(r.status());
  }
  s.sync = std::move(sync);
  {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kPipeline, source));
    pipeline::PipelineSnapshot p;
    p.next_step = r.I64("next step");
    const uint32_t older = r.U32("version count");
    for (uint32_t k = 0; k < older && r.ok(); ++k) p.versions.push_back(r.Floats("version"));
    p.versions.push_back(s.parameters);
    p.control = r.Floats("control");
    r.ExpectEnd();
    if (r.ok() && p.next_step != s.loop.step) {
      r.Fail("pipeline step " + std::to_string(p.next_step) + " differs from the loop's " +
             std::to_string(s.loop.step));
    }
    STELLA_RETURN_IF_ERROR(r.status());
    s.pipeline = std::move(p);
  }
  if (sections.Has(kTuner)) {
    STELLA_ASSIGN_OR_RETURN(ByteReader r, Section(sections, kTuner, source));
    TunerRecord t;
    t.tuner = r.String("tuner state");
    const uint32_t n = r.U32("batch count");
    if (r.ok() && n > r.remaining() / 4) r.Fail("batch count " + std::to_string(n) + " is implausible");
    for (uint32_t i = 0; i < n && r.ok(); ++i) t.last_batches.push_back(static_cast<int>(r.U32("batch")));
    t.history = GetDecisions(&r, "batch decision");
    t.pending = GetDecisions(&r, "pending decision");
    r.ExpectEnd();
    STELLA_RETURN_IF_ERROR(r.status());
    s.tuner = std::move(t);
  }
  return s;
}

Status CheckCompatible(const CheckpointMeta& saved, const CheckpointMeta& now) {
  auto refuse = [](const std::string& what) {
    return FailedPreconditionError("the checkpoint cannot continue this job: " + what);
  };
  if (saved.mode != now.mode) {
    return refuse("it was written in spec.sync.mode " + saved.mode + ", the job runs " + now.mode);
  }
  if (saved.world_size != now.world_size || saved.global_rank != now.global_rank) {
    return refuse("it was written by global rank " + std::to_string(saved.global_rank) + " of " +
                  std::to_string(saved.world_size) + " workers, this worker is rank " +
                  std::to_string(now.global_rank) + " of " + std::to_string(now.world_size));
  }
  if (saved.staleness != now.staleness) {
    return refuse("it was written with spec.sync.staleness " + std::to_string(saved.staleness) + ", the job has " +
                  std::to_string(now.staleness));
  }
  if (saved.tensor_sizes != now.tensor_sizes) {
    return refuse("its model has " + std::to_string(saved.tensor_sizes.size()) +
                  " parameter tensors of other sizes than this job's model (" +
                  std::to_string(now.tensor_sizes.size()) + " tensors); spec.model changed");
  }
  return Status::Ok();
}

}  // namespace stella::worker
