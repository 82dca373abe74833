{{/*
Paths and ports are fixed: the Dockerfile, `vfl submit --kube` (vfl/deploy/kube.py) and the tests use the same ones.
*/}}
{{- define "vfl-party.grpcPort" -}}50051{{- end }}
{{- define "vfl-party.healthPort" -}}50052{{- end }}
{{- define "vfl-party.configDir" -}}/etc/vfl/config{{- end }}
{{- define "vfl-party.tlsDir" -}}/etc/vfl/tls{{- end }}
{{- define "vfl-party.caDir" -}}/etc/vfl/ca{{- end }}
{{- define "vfl-party.jobSpecDir" -}}/etc/vfl/job{{- end }}
{{- define "vfl-party.stateDir" -}}/var/lib/vfl{{- end }}

{{/*
Release resources are named after the release; "-vfl" is appended unless the release name already says vfl.
Truncated to leave room for suffixes and job ids.
*/}}
{{- define "vfl-party.fullname" -}}
{{- if contains "vfl" .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-vfl" .Release.Name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "vfl-party.identity" -}}
{{- default .Values.party .Values.identity }}
{{- end }}

{{- define "vfl-party.tlsSecret" -}}
{{- default (printf "%s-tls" (include "vfl-party.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "vfl-party.caSecret" -}}
{{- default (printf "%s-ca" (include "vfl-party.fullname" .)) .Values.tls.caSecretName }}
{{- end }}

{{- define "vfl-party.claimName" -}}
{{- default (printf "%s-data" (include "vfl-party.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "vfl-party.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "vfl-party.selectorLabels" -}}
app.kubernetes.io/name: vfl-party
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vfl-party.labels" -}}
{{ include "vfl-party.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
vfl.dev/party: {{ .Values.party }}
{{- end }}

{{/*
Cross-field rules JSON schema cannot state with a clear message. Each failure names the value to fix.
*/}}
{{- define "vfl-party.validate" -}}
{{- $names := list }}
{{- range $i, $p := .Values.peers }}
{{- if eq $p.name $.Values.party }}
{{- fail (printf "peers[%d].name: %q is this party itself; list only the other organizations" $i $p.name) }}
{{- end }}
{{- if has $p.name $names }}
{{- fail (printf "peers[%d].name: duplicate peer %q" $i $p.name) }}
{{- end }}
{{- $names = append $names $p.name }}
{{- end }}
{{- if and .Values.certManager.enabled (not .Values.certManager.issuerRef.name) }}
{{- fail "certManager.issuerRef.name: required when certManager.enabled is true" }}
{{- end }}
{{- if .Values.job.enabled }}
{{- if ne .Values.role "active" }}
{{- fail (printf "job.enabled: training Jobs run at the active party; this release's role is %q" .Values.role) }}
{{- end }}
{{- $spec := include "vfl-party.jobSpec" . | fromYaml }}
{{- if or (not $spec) (hasKey $spec "Error") }}
{{- fail "job.spec: must be a job spec mapping (or YAML text) when job.enabled is true" }}
{{- end }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$" (toString (default "" $spec.job_id))) }}
{{- fail (printf "job.spec.job_id: %q must be 1-40 lowercase letters, digits or '-' (it names the Kubernetes Job)" (toString (default "" $spec.job_id))) }}
{{- end }}
{{- if and $spec.active (ne (toString $spec.active) .Values.party) }}
{{- fail (printf "job.spec.active: %q is not this party (%q); submit jobs at the active party's release" (toString $spec.active) .Values.party) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The job spec as YAML text, whether given as a mapping or as text. */}}
{{- define "vfl-party.jobSpec" -}}
{{- if kindIs "string" .Values.job.spec }}
{{- .Values.job.spec }}
{{- else if .Values.job.spec }}
{{- toYaml .Values.job.spec }}
{{- end }}
{{- end }}

{{- define "vfl-party.jobName" -}}
{{- $spec := include "vfl-party.jobSpec" . | fromYaml }}
{{- printf "%s-%s" (include "vfl-party.fullname" .) (toString $spec.job_id) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The node config, read by vfl/node/config.py (load_node_config). */}}
{{- define "vfl-party.nodeConfig" -}}
{{- $peers := list }}
{{- range .Values.peers }}
{{- $peers = append $peers (dict "name" .name "address" .address "identity" (default .name .identity)) }}
{{- end }}
{{- $tls := dict "cert" (printf "%s/tls.crt" (include "vfl-party.tlsDir" .)) "key" (printf "%s/tls.key" (include "vfl-party.tlsDir" .)) "ca" (printf "%s/ca.crt" (include "vfl-party.caDir" .)) }}
{{- $cfg := dict "party" .Values.party "role" .Values.role "identity" (include "vfl-party.identity" .) }}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%s" (include "vfl-party.grpcPort" .)) }}
{{- $_ = set $cfg "health_listen" (printf "0.0.0.0:%s" (include "vfl-party.healthPort" .)) }}
{{- $_ = set $cfg "tls" $tls }}
{{- $_ = set $cfg "peers" $peers }}
{{- $_ = set $cfg "data_dir" (printf "%s/data" (include "vfl-party.stateDir" .)) }}
{{- $_ = set $cfg "jobs_dir" (printf "%s/jobs" (include "vfl-party.stateDir" .)) }}
{{- $_ = set $cfg "admins" .Values.admins }}
{{- $_ = set $cfg "workers" .Values.workers }}
{{- with .Values.policy }}
{{- $_ = set $cfg "policy" (dict "min_key_bits" (int .minKeyBits) "allow_plaintext" .allowPlaintext "allow_attack_harness" .allowAttackHarness) }}
{{- end }}
{{- $_ = set $cfg "datasets" .Values.datasets }}
{{- toYaml $cfg }}
{{- end }}

{{/* Environment of every vfl container: the root filesystem is read-only, so HOME and caches live on /tmp. */}}
{{- define "vfl-party.env" -}}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end }}

{{- define "vfl-party.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "vfl-party.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* Volumes every vfl container mounts: node config, this party's key pair, the trusted CA bundle, /tmp. */}}
{{- define "vfl-party.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "vfl-party.fullname" . }}-config
- name: tls
  secret:
    secretName: {{ include "vfl-party.tlsSecret" . }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
- name: ca
  secret:
    secretName: {{ include "vfl-party.caSecret" . }}
    defaultMode: 0440
    items:
      - {key: ca.crt, path: ca.crt}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{- define "vfl-party.commonMounts" -}}
- name: config
  mountPath: {{ include "vfl-party.configDir" . }}
  readOnly: true
- name: tls
  mountPath: {{ include "vfl-party.tlsDir" . }}
  readOnly: true
- name: ca
  mountPath: {{ include "vfl-party.caDir" . }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
Checksum of the node config without its datasets: a change restarts the pod. Datasets are left out because the
node re-reads them from the mounted file, so adding a dataset does not interrupt running jobs.
*/}}
{{- define "vfl-party.configChecksum" -}}
{{- $cfg := include "vfl-party.nodeConfig" . | fromYaml }}
{{- $_ := unset $cfg "datasets" }}
{{- toYaml $cfg | sha256sum }}
{{- end }}
