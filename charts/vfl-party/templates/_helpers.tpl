{{/*
Paths and ports are fixed: the Dockerfile, `vfl submit --kube` (vfl/deploy/kube.py) and the tests use the same ones.
*/}}
{{- define "vfl-party.grpcPort" -}}50051{{- end }}
{{- define "vfl-party.healthPort" -}}50052{{- end }}
{{- define "vfl-party.metricsPort" -}}9464{{- end }}
{{- define "vfl-party.servingPort" -}}50053{{- end }}
{{- define "vfl-party.configDir" -}}/etc/vfl/config{{- end }}
{{- define "vfl-party.tlsDir" -}}/etc/vfl/tls{{- end }}
{{- define "vfl-party.caDir" -}}/etc/vfl/ca{{- end }}
{{- define "vfl-party.jobSpecDir" -}}/etc/vfl/job{{- end }}
{{- define "vfl-party.stateDir" -}}/var/lib/vfl{{- end }}
{{- define "vfl-party.atRestDir" -}}/etc/vfl/at-rest{{- end }}
{{/* Every vfl container's working directory: the writable emptyDir (the root filesystem is read-only, and Job pods
do not mount the state volume). The Dockerfile's WORKDIR is the same. */}}
{{- define "vfl-party.workDir" -}}/tmp{{- end }}

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

{{- define "vfl-party.rayCluster" -}}
{{- printf "%s-ray" (include "vfl-party.fullname" .) }}
{{- end }}

{{/* The node's compute section: the RayCluster's head service (KubeRay names it <cluster>-head-svc; GCS on 6379). */}}
{{- define "vfl-party.compute" -}}
{{- if .Values.ray.enabled }}
{{- $address := default (printf "%s-head-svc:6379" (include "vfl-party.rayCluster" .)) .Values.ray.address }}
{{- $c := dict "backend" "ray" "address" $address }}
{{- if not (kindIs "invalid" .Values.ray.parallelism) }}{{- $_ := set $c "parallelism" (int .Values.ray.parallelism) }}{{- end }}
{{- if not (kindIs "invalid" .Values.ray.keyActors) }}{{- $_ := set $c "key_actors" (int .Values.ray.keyActors) }}{{- end }}
{{- toYaml $c }}
{{- else }}
backend: local
{{- end }}
{{- end }}

{{/* A Ray pod: the node's image and security settings; /tmp (Ray's session files) and /dev/shm (the object store)
are emptyDirs, since the root filesystem is read-only. (dict "root" $ "container" name "image" image "resources" r
"shm" object store bytes) */}}
{{- define "vfl-party.rayPodTemplate" -}}
{{- $root := .root }}
metadata:
  labels:
    {{- include "vfl-party.selectorLabels" $root | nindent 4 }}
    app.kubernetes.io/component: ray
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "vfl-party.podSecurityContext" $root | nindent 4 }}
  containers:
    - name: {{ .container }}
      image: {{ .image }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      workingDir: {{ include "vfl-party.workDir" $root }}
      env:
        {{- include "vfl-party.env" $root | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- include "vfl-party.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        - name: shm
          mountPath: /dev/shm
  volumes:
    - name: tmp
      emptyDir: {}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ int64 .shm }}
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
{{- include "vfl-party.checkValues" . }}
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
{{- include "vfl-party.checkJobSpecKeys" $spec }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$" (toString (default "" $spec.job_id))) }}
{{- fail (printf "job.spec.job_id: %q must be 1-40 lowercase letters, digits or '-' (it names the Kubernetes Job)" (toString (default "" $spec.job_id))) }}
{{- end }}
{{- $own := dict }}
{{- if and (kindIs "map" $spec.model) (kindIs "map" (index $spec.model "bottom_overrides")) }}
{{- $own = index $spec.model.bottom_overrides .Values.party | default dict }}
{{- end }}
{{- if and (kindIs "map" $own) $own.module (not (hasKey (.Values.models | default dict) (toString $own.module))) }}
{{- $defined := keys (.Values.models | default dict) | sortAlpha }}
{{- fail (printf "job.spec.model.bottom_overrides.%s.module: %q is not one of this release's models (%s); add it under models or fix the name" .Values.party (toString $own.module) (ternary "it defines none" (printf "it defines %s" (join ", " $defined)) (empty $defined))) }}
{{- end }}
{{- if and $spec.active (ne (toString $spec.active) .Values.party) }}
{{- fail (printf "job.spec.active: %q is not this party (%q); submit jobs at the active party's release" (toString $spec.active) .Values.party) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Value formats, checked here rather than by a "pattern" in values.schema.json: helm prints a failed schema pattern as the
bare regular expression, while these messages name the key, say what is expected and give an example. The patterns
follow the node's own checks (vfl/node/config.py); tests/deploy/test_values_schema.py keeps them honest.
*/}}
{{- define "vfl-party.partyNamePattern" -}}^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?${{- end }}
{{- define "vfl-party.dnsNamePattern" -}}^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*${{- end }}
{{- define "vfl-party.addressPattern" -}}^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])${{- end }}
{{- define "vfl-party.cidrPattern" -}}^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}/(3[0-2]|[12]?[0-9])|(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:(:[0-9a-fA-F]{1,4}){1,6}|:((:[0-9a-fA-F]{1,4}){1,7}|:))/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))${{- end }}
{{/* A name under models: and an import path "package.module:factory" (vfl/node/config.py, _MODEL_NAME and _IMPORT_PATH). */}}
{{- define "vfl-party.modelNamePattern" -}}^[A-Za-z_][A-Za-z0-9_.-]{0,62}${{- end }}
{{- define "vfl-party.importPathPattern" -}}^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*${{- end }}
{{/* A path under the data directory: relative, no empty, "." or ".." segment, no leading or trailing "/". */}}
{{- define "vfl-party.dataPathPattern" -}}^([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)(/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+))*${{- end }}

{{- define "vfl-party.checkPartyName" -}}
{{- $key := index . 0 }}{{- $v := toString (index . 1) }}
{{- if not (regexMatch (include "vfl-party.partyNamePattern" .) $v) }}
{{- fail (printf "%s: %q is not a valid party name: use 1-63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. bank-a)" $key $v) }}
{{- end }}
{{- end }}

{{- define "vfl-party.checkIdentity" -}}
{{- $key := index . 0 }}{{- $v := toString (index . 1) }}
{{- if contains "*" $v }}
{{- fail (printf "%s: %q: wildcard identities are not allowed; give the one DNS name the certificate carries (e.g. bank-b or vfl.bank-b.example.com)" $key $v) }}
{{- end }}
{{- if or (gt (len $v) 253) (not (regexMatch (include "vfl-party.dnsNamePattern" .) $v)) }}
{{- fail (printf "%s: %q is not a DNS name: use lowercase letters, digits and '-', in dot-separated labels of at most 63 characters (e.g. bank-b or vfl.bank-b.example.com)" $key $v) }}
{{- end }}
{{- end }}

{{- define "vfl-party.checkAddress" -}}
{{- $key := index . 0 }}{{- $v := toString (index . 1) }}
{{- if not (regexMatch (include "vfl-party.addressPattern" .) $v) }}
{{- fail (printf "%s: %q is not host:port with a port from 1 to 65535 (e.g. vfl.bank-b.example.com:443, 203.0.113.7:50051 or [2001:db8::7]:443)" $key $v) }}
{{- end }}
{{- end }}

{{- define "vfl-party.checkCidr" -}}
{{- $key := index . 0 }}{{- $v := toString (index . 1) }}
{{- if not (regexMatch (include "vfl-party.cidrPattern" .) $v) }}
{{- fail (printf "%s: %q is not a CIDR: give an IPv4 or IPv6 network and prefix length (e.g. 203.0.113.0/24 or 2001:db8::/32)" $key $v) }}
{{- end }}
{{- end }}

{{- define "vfl-party.checkPeers" -}}
{{- $key := index . 0 }}
{{- range $i, $peer := index . 1 }}
{{- $where := printf "%s[%d]" $key $i }}
{{- with $peer.ipBlock }}
{{- include "vfl-party.checkCidr" (list (printf "%s.ipBlock.cidr" $where) .cidr) }}
{{- range $j, $e := .except }}
{{- include "vfl-party.checkCidr" (list (printf "%s.ipBlock.except[%d]" $where $j) $e) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vfl-party.checkValues" -}}
{{- include "vfl-party.checkPartyName" (list "party" .Values.party) }}
{{- if .Values.identity }}
{{- include "vfl-party.checkIdentity" (list "identity" .Values.identity) }}
{{- else }}
{{- include "vfl-party.checkIdentity" (list "identity (defaults to party)" .Values.party) }}
{{- end }}
{{- range $i, $p := .Values.peers }}
{{- include "vfl-party.checkPartyName" (list (printf "peers[%d].name" $i) $p.name) }}
{{- include "vfl-party.checkAddress" (list (printf "peers[%d].address" $i) $p.address) }}
{{- include "vfl-party.checkIdentity" (list (printf "peers[%d].identity" $i) (default $p.name $p.identity)) }}
{{- end }}
{{- range $i, $a := .Values.admins }}
{{- if contains "*" $a }}
{{- fail (printf "admins[%d]: %q: wildcard identities are not allowed; list each identity (e.g. ops-bank-a)" $i $a) }}
{{- end }}
{{- range $j, $p := $.Values.peers }}
{{- if eq (toString $a) (toString (default $p.name $p.identity)) }}
{{- fail (printf "admins[%d]: %q is the identity of peers[%d] (%s); a peer's certificate must not also act as an admin: give the admin its own certificate identity" $i $a $j $p.name) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $identity, $role := .Values.roles }}
{{- if contains "*" $identity }}
{{- fail (printf "roles: %q: wildcard identities are not allowed; list each identity (e.g. ops-bank-a: train)" $identity) }}
{{- end }}
{{- range $j, $p := $.Values.peers }}
{{- if eq (toString $identity) (toString (default $p.name $p.identity)) }}
{{- fail (printf "roles.%s: %q is the identity of peers[%d] (%s); a peer's certificate must not also act as a client of this node: give the client its own certificate identity" $identity $identity $j $p.name) }}
{{- end }}
{{- end }}
{{- if and (has $identity (default (list) $.Values.admins)) (ne (toString $role) "train") }}
{{- fail (printf "roles.%s: %q is also listed in admins, which means role train; list it in one place" $identity $identity) }}
{{- end }}
{{- if and (eq (toString $identity) (include "vfl-party.identity" $)) (ne (toString $role) "train") }}
{{- fail (printf "roles.%s: %q is this node's own identity, which has every right; role %s would not restrict it (remove the entry)" $identity $identity $role) }}
{{- end }}
{{- end }}
{{- range $name, $ds := .Values.datasets }}
{{- if not (regexMatch (include "vfl-party.dataPathPattern" $) (toString $ds.path)) }}
{{- fail (printf "datasets.%s.path: %q must be a path relative to the data directory %s/data, without '..' or '.' parts (e.g. customers.csv or 2024/customers.csv)" $name (toString $ds.path) (include "vfl-party.stateDir" $)) }}
{{- end }}
{{- end }}
{{- range $name, $path := .Values.models }}
{{- if not (regexMatch (include "vfl-party.modelNamePattern" $) $name) }}
{{- fail (printf "models: %q is not a valid model name: use a letter or '_', then up to 62 letters, digits, '_', '.' or '-' (e.g. tabular)" $name) }}
{{- end }}
{{- if not (regexMatch (include "vfl-party.importPathPattern" $) (toString $path)) }}
{{- fail (printf "models.%s: %q is not an import path: give package.module:factory, dotted Python names on both sides of one ':' (e.g. bank_models.nets:tabular_bottom)" $name (toString $path)) }}
{{- end }}
{{- end }}
{{- with .Values.extraPythonPath }}
{{- if not (regexMatch (include "vfl-party.dataPathPattern" $) .) }}
{{- fail (printf "extraPythonPath: %q must be a directory on the data volume, relative to its mount point %s, without '..' or '.' parts (e.g. python for %s/python)" . (include "vfl-party.stateDir" $) (include "vfl-party.stateDir" $)) }}
{{- end }}
{{- if or (eq . "jobs") (hasPrefix "jobs/" .) }}
{{- fail (printf "extraPythonPath: %q is under jobs/, where the node writes the artifacts of every job; use a directory of its own (e.g. python)" .) }}
{{- end }}
{{- end }}
{{- range $name, $m := .Values.serving.models }}
{{- if not (regexMatch (include "vfl-party.modelNamePattern" $) $name) }}
{{- fail (printf "serving.models: %q is not a valid model name: use a letter or '_', then up to 62 letters, digits, '_', '.' or '-' (e.g. credit)" $name) }}
{{- end }}
{{- if eq (empty $m.path) (empty $m.job) }}
{{- fail (printf "serving.models.%s: give exactly one of path (an exported model part on the volume, e.g. models/%s) and job (a finished training job of this node)" $name $name) }}
{{- end }}
{{- if and $m.path (not (regexMatch (include "vfl-party.dataPathPattern" $) (toString $m.path))) }}
{{- fail (printf "serving.models.%s.path: %q must be a directory on the data volume, relative to its mount point %s, without '..' or '.' parts (e.g. models/%s)" $name (toString $m.path) (include "vfl-party.stateDir" $) $name) }}
{{- end }}
{{- if and $m.table (not (hasKey ($.Values.datasets | default dict) (toString $m.table))) }}
{{- fail (printf "serving.models.%s.table: %q is not one of this release's datasets; the online table is a dataset (add it under datasets)" $name (toString $m.table)) }}
{{- end }}
{{- end }}
{{- include "vfl-party.checkPeers" (list "serving.from" .Values.serving.from) }}
{{- range $i, $c := .Values.service.loadBalancerSourceRanges }}
{{- include "vfl-party.checkCidr" (list (printf "service.loadBalancerSourceRanges[%d]" $i) $c) }}
{{- end }}
{{- include "vfl-party.checkPeers" (list "networkPolicy.from" .Values.networkPolicy.from) }}
{{- with .Values.ray }}
{{- if and .enabled .address }}
{{- include "vfl-party.checkAddress" (list "ray.address" .address) }}
{{- end }}
{{- if and .enabled (not .address) }}
{{- if or (gt (int .workers.minReplicas) (int .workers.replicas)) (gt (int .workers.replicas) (int .workers.maxReplicas)) }}
{{- fail (printf "ray.workers: need minReplicas <= replicas <= maxReplicas, got %d, %d, %d" (int .workers.minReplicas) (int .workers.replicas) (int .workers.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end }}
{{- include "vfl-party.checkPeers" (list "networkPolicy.probeFrom" .Values.networkPolicy.probeFrom) }}
{{- end }}

{{/*
The keys a job spec may have (vfl/job/spec.py, parse_job_spec): an unknown key fails here, at install time, rather
than when the node parses the spec. Values are checked by the node when the Job submits the spec; its messages name
the key too. tests/deploy/test_values_schema.py keeps this table equal to vfl/job/spec.py.
*/}}
{{- define "vfl-party.jobSpecKeys" -}}
spec: [job_id, kind, task, active, parties, model, split, train, crypto, psi, privacy, model_job, positive_class]
party: [dataset]
model: [bottom, bottom_overrides, interactive, top]
mlp: [hidden, out, activation, dropout]
override: [hidden, out, activation, dropout, module]
interactive: [out]
top: [hidden, activation, dropout]
split: [validation, test, seed]
train: [epochs, batch_size, lr, interactive_lr, interactive_momentum, weight_decay, seed, checkpoint, early_stopping]
early_stopping: [patience, metric, min_delta]
crypto: [mode, key_bits, precision_bits, gradient_bits, stat_security_bits, activation_bound]
psi: [strip, lowercase]
privacy: [defense, noise_multiplier, clip_norm, strength, delta, record_gradients, attacks]
{{- end }}

{{/* (list "job.spec.train" $mapping $knownKeys): fails on a key not in $knownKeys; a missing section is fine. */}}
{{- define "vfl-party.checkKeys" -}}
{{- $where := index . 0 }}{{- $m := index . 1 }}{{- $known := index . 2 }}
{{- if and (not (kindIs "invalid" $m)) (not (kindIs "map" $m)) }}
{{- fail (printf "%s: must be a mapping with keys %s, got %v" $where (join ", " $known) $m) }}
{{- end }}
{{- if kindIs "map" $m }}
{{- range $k := keys $m | sortAlpha }}
{{- if not (has $k $known) }}
{{- fail (printf "%s.%s: unknown key; %s takes %s" $where $k $where (join ", " $known)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vfl-party.checkJobSpecKeys" -}}
{{- $spec := . }}
{{- $known := include "vfl-party.jobSpecKeys" . | fromYaml }}
{{- include "vfl-party.checkKeys" (list "job.spec" $spec $known.spec) }}
{{- if not $spec.parties }}
{{- fail "job.spec.parties: required: each party of the job and its dataset (e.g. parties: {bank-a: {dataset: customers}, bank-b: {dataset: accounts}})" }}
{{- end }}
{{- if kindIs "map" $spec.parties }}
{{- range $name, $p := $spec.parties }}
{{- include "vfl-party.checkKeys" (list (printf "job.spec.parties.%s" $name) $p $known.party) }}
{{- end }}
{{- else }}
{{- fail (printf "job.spec.parties: must be a mapping of party name to {dataset: ...}, got %v" $spec.parties) }}
{{- end }}
{{- range $section := list "split" "train" "crypto" "psi" "privacy" }}
{{- include "vfl-party.checkKeys" (list (printf "job.spec.%s" $section) (index $spec $section) (index $known $section)) }}
{{- end }}
{{- if kindIs "map" $spec.train }}
{{- include "vfl-party.checkKeys" (list "job.spec.train.early_stopping" $spec.train.early_stopping $known.early_stopping) }}
{{- end }}
{{- $model := $spec.model }}
{{- include "vfl-party.checkKeys" (list "job.spec.model" $model $known.model) }}
{{- if kindIs "map" $model }}
{{- include "vfl-party.checkKeys" (list "job.spec.model.bottom" $model.bottom $known.mlp) }}
{{- include "vfl-party.checkKeys" (list "job.spec.model.interactive" $model.interactive $known.interactive) }}
{{- include "vfl-party.checkKeys" (list "job.spec.model.top" $model.top $known.top) }}
{{- if and (not (kindIs "invalid" $model.bottom_overrides)) (not (kindIs "map" $model.bottom_overrides)) }}
{{- fail (printf "job.spec.model.bottom_overrides: must be a mapping of party name to bottom model keys (%s)" (join ", " $known.override)) }}
{{- end }}
{{- if kindIs "map" $model.bottom_overrides }}
{{- range $name, $o := $model.bottom_overrides }}
{{- include "vfl-party.checkKeys" (list (printf "job.spec.model.bottom_overrides.%s" $name) $o $known.override) }}
{{- end }}
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

{{/* Values policy.<cap> -> node.yaml policy.<cap> (vfl/node/config.py PolicyConfig): the caps on a job's work. */}}
{{- define "vfl-party.policyCaps" -}}
maxKeyBits: max_key_bits
maxHiddenLayers: max_hidden_layers
maxHiddenWidth: max_hidden_width
maxBottomOut: max_bottom_out
maxInteractiveOut: max_interactive_out
maxParameters: max_parameters
maxBatchSize: max_batch_size
maxEpochs: max_epochs
maxOpenJobsPerPeer: max_open_jobs_per_peer
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
{{- with .Values.retention }}
{{- $_ = set $cfg "retention" . }}
{{- end }}
{{- $atRest := dict "encrypt" (ne (toString (dig "encrypt" true (default dict .Values.atRest))) "false") }}
{{- with (default dict .Values.atRest).keySecret }}
{{- $_ = set $atRest "key" (printf "%s/current/key" (include "vfl-party.atRestDir" $)) }}
{{- end }}
{{- $previous := list }}
{{- range $i, $name := (default dict .Values.atRest).previousKeySecrets }}
{{- $previous = append $previous (printf "%s/previous-%d/key" (include "vfl-party.atRestDir" $) $i) }}
{{- end }}
{{- if $previous }}
{{- $_ = set $atRest "previous_keys" $previous }}
{{- end }}
{{- $_ = set $cfg "at_rest" $atRest }}
{{- if .Values.metrics.enabled }}
{{- $_ = set $cfg "metrics_listen" (printf "0.0.0.0:%s" (include "vfl-party.metricsPort" .)) }}
{{- end }}
{{- $_ = set $cfg "tls" $tls }}
{{- $_ = set $cfg "peers" $peers }}
{{- $_ = set $cfg "data_dir" (printf "%s/data" (include "vfl-party.stateDir" .)) }}
{{- $_ = set $cfg "jobs_dir" (printf "%s/jobs" (include "vfl-party.stateDir" .)) }}
{{- $_ = set $cfg "admins" .Values.admins }}
{{- with .Values.roles }}
{{- $_ = set $cfg "roles" . }}
{{- end }}
{{- $_ = set $cfg "workers" .Values.workers }}
{{- $_ = set $cfg "compute" (include "vfl-party.compute" . | fromYaml) }}
{{- $_ = set $cfg "report_handler_timing" (default false .Values.reportHandlerTiming) }}
{{- with .Values.policy }}
{{- $policy := dict "min_key_bits" (int .minKeyBits) "allow_plaintext" .allowPlaintext "allow_attack_harness" .allowAttackHarness "allow_pii_columns" (default (list) .allowPiiColumns) }}
{{- range $camel, $snake := include "vfl-party.policyCaps" $ | fromYaml }}
{{- $v := index $.Values.policy $camel }}
{{- if not (kindIs "invalid" $v) }}{{/* null: the node's own default */}}
{{- $_ := set $policy $snake (int64 $v) }}
{{- end }}
{{- end }}
{{- $_ = set $cfg "policy" $policy }}
{{- end }}
{{- if and .Values.limits .Values.limits.openJobsPerMinute }}{{/* unset: the node's own default */}}
{{- $_ = set $cfg "limits" (dict "open_jobs_per_minute" (int .Values.limits.openJobsPerMinute)) }}
{{- end }}
{{- with .Values.timeouts }}
{{- $timeouts := dict }}
{{- if not (kindIs "invalid" .resumeWaitSeconds) }}{{- $_ := set $timeouts "resume_wait_seconds" (float64 .resumeWaitSeconds) }}{{- end }}
{{- if not (kindIs "invalid" .callSeconds) }}{{- $_ := set $timeouts "call_seconds" (float64 .callSeconds) }}{{- end }}
{{- if not (kindIs "invalid" .leaseSeconds) }}{{- $_ := set $timeouts "lease_seconds" (float64 .leaseSeconds) }}{{- end }}
{{- if not (kindIs "invalid" .drainSeconds) }}{{- $_ := set $timeouts "drain_seconds" (float64 .drainSeconds) }}{{- end }}
{{- if $timeouts }}{{- $_ = set $cfg "timeouts" $timeouts }}{{- end }}
{{- end }}
{{- $_ = set $cfg "datasets" .Values.datasets }}
{{- with .Values.serving }}
{{- if or .enabled .models }}
{{- $serving := dict "missing_ids" .missingIds "max_ids" (int .maxIds) "micro_batch" .microBatch }}
{{- if .enabled }}
{{- $_ := set $serving "listen" (printf "0.0.0.0:%s" (include "vfl-party.servingPort" $)) }}
{{- end }}
{{- $models := dict }}
{{- range $name, $m := .models }}
{{- $entry := dict }}
{{- with $m.path }}{{- $_ := set $entry "path" (printf "%s/%s" (include "vfl-party.stateDir" $) .) }}{{- end }}
{{- with $m.job }}{{- $_ := set $entry "job" . }}{{- end }}
{{- with $m.table }}{{- $_ := set $entry "table" . }}{{- end }}
{{- $_ := set $models $name $entry }}
{{- end }}
{{- $_ := set $serving "models" $models }}
{{- $limits := dict "default" (dict "ids_per_second" (float64 .rateLimit.idsPerSecond) "burst" (float64 (default .rateLimit.idsPerSecond .rateLimit.burst))) }}
{{- range $who, $r := .callers }}
{{- $limit := dict "ids_per_second" (float64 $r.idsPerSecond) }}
{{- if $r.burst }}{{- $_ := set $limit "burst" (float64 $r.burst) }}{{- end }}
{{- $_ := set $limits $who $limit }}
{{- end }}
{{- $_ := set $serving "rate_limits" $limits }}
{{- $_ = set $cfg "serving" $serving }}
{{- end }}
{{- end }}
{{- with .Values.models }}
{{- $_ = set $cfg "models" . }}
{{- end }}
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

{{/* The node container's PYTHONPATH: extraPythonPath on the state volume (only the node pod mounts it). */}}
{{- define "vfl-party.pythonPath" -}}
{{- with .Values.extraPythonPath }}{{ printf "%s/%s" (include "vfl-party.stateDir" $) . }}{{ end }}
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

{{/* The at-rest key Secrets, for the node's container only (a training Job's client never reads job files). */}}
{{- define "vfl-party.atRestVolumes" -}}
{{- with (default dict .Values.atRest).keySecret }}
- name: at-rest-key
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - {key: key, path: key}
{{- end }}
{{- range $i, $name := (default dict .Values.atRest).previousKeySecrets }}
- name: at-rest-previous-{{ $i }}
  secret:
    secretName: {{ $name }}
    defaultMode: 0440
    items:
      - {key: key, path: key}
{{- end }}
{{- end }}

{{- define "vfl-party.atRestMounts" -}}
{{- with (default dict .Values.atRest).keySecret }}
- name: at-rest-key
  mountPath: {{ include "vfl-party.atRestDir" $ }}/current
  readOnly: true
{{- end }}
{{- range $i, $name := (default dict .Values.atRest).previousKeySecrets }}
- name: at-rest-previous-{{ $i }}
  mountPath: {{ include "vfl-party.atRestDir" $ }}/previous-{{ $i }}
  readOnly: true
{{- end }}
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
Checksum of the node config without its datasets and models: a change restarts the pod. Those two are left out
because the node re-reads them from the mounted file for every job, so adding a dataset or a model does not
interrupt running jobs. (extraPythonPath is in the pod's env, so changing it restarts the pod anyway.)
*/}}
{{- define "vfl-party.configChecksum" -}}
{{- $cfg := include "vfl-party.nodeConfig" . | fromYaml }}
{{- $_ := unset $cfg "datasets" }}
{{- $_ = unset $cfg "models" }}
{{- toYaml $cfg | sha256sum }}
{{- end }}
