// IntraClusterGroup over NCCL, for clusters whose workers each drive a GPU.
// Built only with -DSTELLA_WITH_NCCL=ON. Buffers stay host-side at this
// interface (the CPU optimizer owns the master copy), so each collective
// stages through one device buffer that grows to the largest size seen.
// The NCCL unique id is exchanged through the cluster's c10d TCPStore.
#include <cuda_runtime.h>
#include <nccl.h>
#include <cstring>

#include "runtime/exchange/intra_cluster.h"
#include "runtime/exchange/store.h"

namespace stella::exchange {
namespace {

Status CudaStatus(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return InternalError(std::string(what) + ": " + cudaGetErrorString(e));
}

Status NcclStatus(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return Status::Ok();
  return UnavailableError(std::string(what) + ": " + ncclGetErrorString(r));
}

class NcclGroup final : public IntraClusterGroup {
 public:
  NcclGroup(ncclComm_t comm, cudaStream_t stream, int rank, int size)
      : comm_(comm), stream_(stream), rank_(rank), size_(size) {}
  ~NcclGroup() override {
    if (device_buffer_ != nullptr) cudaFree(device_buffer_);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  Status AllReduceSum(float* data, size_t n) override {
    STELLA_RETURN_IF_ERROR(Stage(data, n));
    STELLA_RETURN_IF_ERROR(NcclStatus(
        ncclAllReduce(device_buffer_, device_buffer_, n, ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce"));
    return Unstage(data, n);
  }

  Status Broadcast(float* data, size_t n, int root) override {
    STELLA_RETURN_IF_ERROR(Stage(data, n));
    STELLA_RETURN_IF_ERROR(NcclStatus(
        ncclBroadcast(device_buffer_, device_buffer_, n, ncclFloat32, root, comm_, stream_), "ncclBroadcast"));
    return Unstage(data, n);
  }

  Status Barrier() override {
    float token = 0;
    return AllReduceSum(&token, 1);
  }

 private:
  Status Stage(const float* data, size_t n) {
    if (n > capacity_) {
      if (device_buffer_ != nullptr) cudaFree(device_buffer_);
      device_buffer_ = nullptr;
      STELLA_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&device_buffer_, n * sizeof(float)), "cudaMalloc"));
      capacity_ = n;
    }
    return CudaStatus(cudaMemcpyAsync(device_buffer_, data, n * sizeof(float), cudaMemcpyHostToDevice, stream_),
                      "copy to device");
  }
  Status Unstage(float* data, size_t n) {
    STELLA_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpyAsync(data, device_buffer_, n * sizeof(float), cudaMemcpyDeviceToHost, stream_), "copy to host"));
    return CudaStatus(cudaStreamSynchronize(stream_), "stream synchronize");
  }

  ncclComm_t comm_;
  cudaStream_t stream_;
  int rank_;
  int size_;
  float* device_buffer_ = nullptr;  // owned; cudaFree'd in the destructor
  size_t capacity_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<IntraClusterGroup>> CreateNcclGroup(const GlooGroupOptions& o, int device) {
  if (o.size == 1) return CreateSingletonGroup();
  STELLA_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  ncclUniqueId id;
  try {
    auto store = internal::ConnectStore(o);
    if (o.rank == 0) {
      STELLA_RETURN_IF_ERROR(NcclStatus(ncclGetUniqueId(&id), "ncclGetUniqueId"));
      const auto* p = reinterpret_cast<const uint8_t*>(&id);
      store->set(internal::kNcclIdKey, std::vector<uint8_t>(p, p + sizeof(id)));
    }
    auto bytes = store->get(internal::kNcclIdKey);
    if (bytes.size() != sizeof(id)) return DataLossError("NCCL unique id of wrong size in the store");
    std::memcpy(&id, bytes.data(), sizeof(id));
  } catch (const std::exception& e) {
    return UnavailableError("NCCL rendezvous at " + o.store_host + ":" + std::to_string(o.store_port) + ": " +
                            e.what());
  }
  ncclComm_t comm;
  STELLA_RETURN_IF_ERROR(NcclStatus(ncclCommInitRank(&comm, o.size, id, o.rank), "ncclCommInitRank"));
  cudaStream_t stream;
  Status s = CudaStatus(cudaStreamCreate(&stream), "cudaStreamCreate");
  if (!s.ok()) {
    ncclCommDestroy(comm);
    return s;
  }
  return std::unique_ptr<IntraClusterGroup>(new NcclGroup(comm, stream, o.rank, o.size));
}

}  // namespace stella::exchange
