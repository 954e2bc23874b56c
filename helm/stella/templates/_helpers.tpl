{{/* Names: the usual Helm scheme, truncated to the 63 characters of a DNS label. */}}
{{- define "stella.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stella.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stella.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stella.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stella.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stella.labels" -}}
helm.sh/chart: {{ include "stella.chart" . }}
{{ include "stella.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stella
{{- end -}}

{{/* The operator pods: selector labels plus the component. */}}
{{- define "stella.operatorSelectorLabels" -}}
{{ include "stella.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "stella.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stella.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "stella.memberServiceAccountName" -}}
{{- default (printf "%s-member" (include "stella.fullname" .)) .Values.memberRBAC.serviceAccountName | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stella.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Namespaces a member kubeconfig Secret goes to, as a JSON list:
     the entry's own, else watchNamespaces, else the release namespace.
     Called with (dict "entry" $m "root" $). */}}
{{- define "stella.memberSecretNamespaces" -}}
{{- $ns := .entry.namespaces | default .root.Values.watchNamespaces | default (list .root.Release.Namespace) -}}
{{- toJson $ns -}}
{{- end -}}

{{- define "stella.memberSecretName" -}}
{{- printf "stella-member-%s" .name -}}
{{- end -}}

{{/* Checks across values that a JSON schema cannot express; each failure
     names the value, what it holds and what was expected. */}}
{{- define "stella.validate" -}}
{{- if and .Values.operator.enabled (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicaCount: %d replicas with leaderElection.enabled=false would all reconcile at once; expected replicaCount <= 1 or leaderElection.enabled=true" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.operator.enabled .Values.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) -}}
{{- fail "serviceMonitor.enabled: true, but the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor; expected the prometheus-operator CRDs installed (or serviceMonitor.enabled=false; with `helm template` pass --api-versions monitoring.coreos.com/v1/ServiceMonitor)" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $m := .Values.memberClusters -}}
{{- if hasKey $seen $m.name -}}
{{- fail (printf "memberClusters[%d].name: %q is listed twice; expected unique names" $i $m.name) -}}
{{- end -}}
{{- $_ := set $seen $m.name true -}}
{{- if and $m.kubeconfig $m.existingSecret -}}
{{- fail (printf "memberClusters[%d] (%s): both kubeconfig and existingSecret are set; expected exactly one" $i $m.name) -}}
{{- end -}}
{{- if $m.kubeconfig -}}
{{- $kc := fromYaml $m.kubeconfig -}}
{{- if hasKey $kc "Error" -}}
{{- fail (printf "memberClusters[%d].kubeconfig (%s): not a YAML mapping (%s); expected the content of a kubeconfig file" $i $m.name (get $kc "Error")) -}}
{{- end -}}
{{- range $field := list "clusters" "users" "contexts" -}}
{{- if not (kindIs "slice" (get $kc $field)) -}}
{{- fail (printf "memberClusters[%d].kubeconfig (%s): has no %s list; expected a kubeconfig with clusters, users, contexts and current-context" $i $m.name $field) -}}
{{- end -}}
{{- if not (get $kc $field) -}}
{{- fail (printf "memberClusters[%d].kubeconfig (%s): its %s list is empty; expected a kubeconfig with clusters, users, contexts and current-context" $i $m.name $field) -}}
{{- end -}}
{{- end -}}
{{- if not (get $kc "current-context") -}}
{{- fail (printf "memberClusters[%d].kubeconfig (%s): has no current-context; expected the context the operator should use" $i $m.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's rules in the namespaces it watches (operator contract). */}}
{{- define "stella.jobNamespaceRules" -}}
- apiGroups: [stella.dev]
  resources: [stellajobs]
  verbs: [get, list, watch, update, patch]
- apiGroups: [stella.dev]
  resources: [stellajobs/status]
  verbs: [get, update, patch]
- apiGroups: [stella.dev]
  resources: [stellajobs/finalizers]
  verbs: [update]
# Member kubeconfigs and per-job TLS CA/certificates.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update]
# Children when a cluster of the job is the hub itself.
- apiGroups: [""]
  resources: [pods, services]
  verbs: [get, list, watch, create, delete]
# Rank 0's /metrics through the API server (status step, throughput).
- apiGroups: [""]
  resources: [pods/proxy]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
