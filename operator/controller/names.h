// Names, labels and annotations shared by everything the operator creates,
// and the conversion of a StellaJob API object into the shared job spec.
//
// Every child carries the managed-by and origin labels (so the orphan sweep
// can find children whose job is gone, in clusters where ownerReferences to
// the hub cannot exist) plus the job's namespace, name and uid.
#ifndef STELLA_OPERATOR_CONTROLLER_NAMES_H_
#define STELLA_OPERATOR_CONTROLLER_NAMES_H_

#include <string>

#include <nlohmann/json.hpp>

#include "src/base/status.h"
#include "src/spec/stella_job.h"

namespace stella::op {

inline constexpr char kGroupVersion[] = "stella.dev/v1alpha1";
inline constexpr char kPlural[] = "stellajobs";
inline constexpr char kFinalizer[] = "stella.dev/cleanup";

inline constexpr char kLabelManagedBy[] = "app.kubernetes.io/managed-by";
inline constexpr char kManagedByValue[] = "stella-operator";
inline constexpr char kLabelOrigin[] = "stella.dev/origin";
inline constexpr char kLabelJobName[] = "stella.dev/job-name";
inline constexpr char kLabelJobNamespace[] = "stella.dev/job-namespace";
inline constexpr char kLabelJobUid[] = "stella.dev/job-uid";
inline constexpr char kLabelCluster[] = "stella.dev/cluster";
inline constexpr char kLabelRank[] = "stella.dev/rank";
inline constexpr char kAnnotationAttempt[] = "stella.dev/attempt";
// On a TLS Secret: which job CA signed it (all clusters of a job must agree).
inline constexpr char kAnnotationCa[] = "stella.dev/ca";
// On a StellaJob: change its value to have every gateway certificate
// reissued from a new job CA (the workers restart, resuming from checkpoints).
inline constexpr char kAnnotationRotate[] = "stella.dev/rotate-certificates";
inline constexpr char kTlsMountPath[] = "/etc/stella/tls";

// Ports inside a worker pod.
inline constexpr int kStorePort = 29400;  // rank 0's rendezvous store

std::string JobKey(const std::string& ns, const std::string& name);
// Splits "ns/name"; false if malformed.
bool SplitJobKey(const std::string& key, std::string* ns, std::string* name);

std::string PodName(const std::string& job, const std::string& cluster, int rank);
std::string HeadlessServiceName(const std::string& job, const std::string& cluster);
std::string GatewayServiceName(const std::string& job, const std::string& cluster);
// The Secret holding a cluster gateway's mutual-TLS material (ca.crt,
// tls.crt, tls.key), in the cluster the gateway runs in.
std::string TlsSecretName(const std::string& job, const std::string& cluster);

// Every child name must be a DNS-1123 label (Services, pod hostnames): fails
// naming the job and cluster when "<job>-<cluster>-gw" or the longest pod
// name would exceed 63 characters.
Status CheckChildNames(const spec::StellaJob& job);

// The selector that finds every child of every job made by this origin.
std::string OriginSelector(const std::string& origin);

// The API object as the shared spec. Kubernetes adds metadata the spec does
// not model (creationTimestamp, managedFields, finalizers, ...) and the
// operator owns status, so only name, namespace, labels, annotations,
// generation, uid and resourceVersion are kept and status is dropped before
// the shared parser validates the rest.
StatusOr<spec::StellaJob> JobFromApiObject(const nlohmann::json& obj);

// The manifest handed to the workers: the spec only, with no status and no
// server-set metadata, in the YAML the runtime reads.
std::string WorkerManifest(const spec::StellaJob& job);

}  // namespace stella::op

#endif  // STELLA_OPERATOR_CONTROLLER_NAMES_H_
