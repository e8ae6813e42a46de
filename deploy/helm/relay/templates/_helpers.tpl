{{/*
Names, labels, images and the per-component context.

Every component template starts with:
  {{- $c := dict "root" . "name" "gateway" }}{{- include "relay.init" $c }}
"relay.init" fills $c (a dict, mutated in place because templates cannot return
objects) from the table in _components.tpl and the component's values block,
so the shared templates in _workload.tpl take one argument and every component
renders the same way.
*/}}

{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<fullname>-<component>", e.g. relay-runner-background. Arg: (list root component). */}}
{{- define "relay.componentFullname" -}}
{{- printf "%s-%s" (include "relay.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every pod of the release: NetworkPolicies select "inside the release" with them. */}}
{{- define "relay.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Arg: (list root component). */}}
{{- define "relay.selectorLabels" -}}
{{ include "relay.releaseSelectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Arg: (list root component). */}}
{{- define "relay.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "relay.chart" $root }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/part-of: relay
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end }}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference. Arg: dict root, image (an image block), defaultTag.
`fullName` (set by skaffold) wins; else [global.imageRegistry/]repository:tag[@digest].
*/}}
{{- define "relay.image" -}}
{{- $img := .image }}
{{- if $img.fullName }}
{{- $img.fullName }}
{{- else }}
{{- $repo := required "image.repository is required" $img.repository }}
{{- with .root.Values.global.imageRegistry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}
{{- end }}
{{- $tag := default .defaultTag $img.tag | toString }}
{{- if $img.digest }}
{{- printf "%s:%s@%s" $repo $tag $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}
{{- end }}

{{/* Tag of the relay images when a component sets none. */}}
{{- define "relay.defaultTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "relay.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Fill the component context. Arg: dict with root and name (mutated).
Adds: values, spec (its row of relay.components), fullname, port (0: none),
management (its management port, 0: none), enabled, owner.
*/}}
{{- define "relay.init" -}}
{{- $root := .root }}
{{- $spec := index (include "relay.components" $root | fromYaml) .name }}
{{- $values := index $root.Values $spec.key }}
{{- $_ := set . "spec" $spec }}
{{- $_ := set . "values" $values }}
{{- $_ := set . "fullname" (include "relay.componentFullname" (list $root .name)) }}
{{- $_ := set . "port" (int (default 0 $spec.port)) }}
{{- $_ := set . "management" (int (default 0 $spec.management)) }}
{{- $_ := set . "enabled" $values.enabled }}
{{- $_ := set . "owner" (include "relay.autoscaler" .) }}
{{- end }}

{{/*
Whether the release uses KEDA: "true" or "". keda.enabled is true, false, or
"auto" (the default): KEDA when the cluster serves its API (keda.sh/v1alpha1,
which `helm install`/`upgrade` read from the cluster; `helm template` needs
--api-versions keda.sh/v1alpha1 to see it).
*/}}
{{- define "relay.kedaOn" -}}
{{- $k := .Values.keda.enabled }}
{{- if eq (toString $k) "auto" }}
{{- if .Capabilities.APIVersions.Has "keda.sh/v1alpha1" }}true{{ end }}
{{- else if $k }}true{{ end }}
{{- end }}

{{/*
Who owns the replica count: "keda", "hpa" or "" (the Deployment's replicas).
One owner per workload, by construction: KEDA when the release uses it
(relay.kedaOn) and the component has KEDA triggers it wants; otherwise an HPA.
With keda.enabled "auto", the gateway and events (Prometheus triggers) take
KEDA only when keda.prometheus.serverAddress is set, else a CPU HPA, so a
plain install on a cluster with KEDA works; the runner pools always take KEDA
there (CPU is no signal for them), which needs a Redis address for KEDA.
*/}}
{{- define "relay.autoscaler" -}}
{{- $as := .values.autoscaling | default dict }}
{{- if $as.enabled }}
{{- $keda := and (include "relay.kedaOn" .root) .spec.keda (dig "keda" "enabled" false $as) }}
{{- if and $keda (eq (toString .root.Values.keda.enabled) "auto") (eq .spec.keda "prometheus") }}
{{- $keda = .root.Values.keda.prometheus.serverAddress }}
{{- end }}
{{- if $keda }}keda{{ else }}hpa{{ end }}
{{- end }}
{{- end }}

{{/* secretKeyRef for one entry of .Values.secrets. Arg: dict root, ref. */}}
{{- define "relay.secretKeyRef" -}}
secretKeyRef:
  name: {{ default .root.Values.secrets.existingSecret .ref.secretName | required "secrets.existingSecret (or the entry's secretName) is required: create the Secret first, see docs/deploy.md" }}
  key: {{ required "every secrets.* entry needs a key" .ref.key }}
  {{- if .ref.optional }}
  optional: true
  {{- end }}
{{- end }}

{{/*
The hash tags of the Redis partitions (files/redis-partitions.yaml, generated
from relay_core.partitions) for redis.partitions, as a JSON list. Arg: root.
*/}}
{{- define "relay.partitionTags" -}}
{{- $all := .Files.Get "files/redis-partitions.yaml" | fromYaml }}
{{- $n := toString (int .Values.redis.partitions) }}
{{- if not (hasKey $all $n) }}
{{- fail (printf "redis.partitions (%s) must be one of %s (files/redis-partitions.yaml)" $n (keys $all | sortAlpha | join ", ")) }}
{{- end }}
{{- index $all $n | toJson }}
{{- end }}

{{- define "relay.redisHost" -}}
{{- printf "%s.%s.svc" (include "relay.componentFullname" (list . "redis")) .Release.Namespace }}
{{- end }}

{{/*
Secret environment variables of a component: only valueFrom references. With
the in-chart databases the URL is composed by Kubernetes from the password
($(VAR) expansion), so no URL with a password is ever written in values.
Arg: the component context.
*/}}
{{- define "relay.secretEnv" -}}
{{- $root := .root }}
{{- $s := $root.Values.secrets }}
{{- range .spec.secrets }}
{{- if eq . "redis" }}
{{- if $root.Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.redisPassword) | nindent 4 }}
- name: RELAY_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/%d" (include "relay.componentFullname" (list $root "redis")) (int $root.Values.redis.database) | quote }}
{{- else }}
- name: RELAY_REDIS_URL
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.redisUrl) | nindent 4 }}
{{- end }}
{{- else if eq . "database" }}
{{- if $root.Values.postgres.enabled }}
- name: POSTGRES_PASSWORD
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.postgresPassword) | nindent 4 }}
- name: RELAY_DATABASE_URL
  value: {{ printf "postgresql://%s:$(POSTGRES_PASSWORD)@%s:5432/%s" $root.Values.postgres.username (include "relay.componentFullname" (list $root "postgres")) $root.Values.postgres.database | quote }}
{{- else }}
- name: RELAY_DATABASE_URL
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.databaseUrl) | nindent 4 }}
{{- end }}
{{- else if eq . "internalToken" }}
- name: RELAY_INTERNAL_TOKEN
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.internalToken) | nindent 4 }}
{{- else if eq . "adminApiKey" }}
- name: RELAY_ADMIN_API_KEY
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.adminApiKey) | nindent 4 }}
{{- else if eq . "models" }}
- name: RELAY_ANTHROPIC_API_KEY
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.anthropicApiKey) | nindent 4 }}
{{- /* Against modelsim both SDKs send the one key the simulator requires. */}}
{{- $openai := ternary $s.anthropicApiKey $s.openaiApiKey (and $root.Values.modelsim.enabled (not $root.Values.models.openaiBaseUrl)) }}
- name: RELAY_OPENAI_API_KEY
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $openai) | nindent 4 }}
{{- else if eq . "modelsimApiKey" }}
{{- /* modelsim requires the key the runners send, so the quickstart exercises auth too. */}}
- name: RELAY_MODELSIM_API_KEY
  valueFrom:
    {{- include "relay.secretKeyRef" (dict "root" $root "ref" $s.anthropicApiKey) | nindent 4 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Non-secret settings of a component, as a flat string map (ConfigMap data, the
migration Job's env, and the checksum). Fixed wiring (bind address, port,
runner pool) is applied last so values cannot break it. Arg: component context.
*/}}
{{- define "relay.configData" -}}
{{- $root := .root }}
{{- $data := dict }}
{{- if .spec.standalone }}
{{- $data = merge (dict) .values.env }}
{{- $_ := set $data "RELAY_MODELSIM_HOST" "0.0.0.0" }}
{{- $_ := set $data "RELAY_MODELSIM_PORT" (toString .port) }}
{{- else }}
{{- $_ := set $data "RELAY_LOG_LEVEL" $root.Values.config.logLevel }}
{{- $_ := set $data "RELAY_DEV_MODE" "false" }}
{{- if and $root.Values.redis.cluster $root.Values.redis.enabled }}
{{- fail "redis.cluster needs an external Redis Cluster: the in-chart Redis (redis.enabled) is one server" }}
{{- end }}
{{- if and $root.Values.redis.cluster (ne (int $root.Values.redis.database) 0) }}
{{- fail "redis.database must be 0 with redis.cluster: a Redis Cluster has only database 0" }}
{{- end }}
{{- $_ := set $data "RELAY_REDIS_MODE" (ternary "cluster" "standalone" $root.Values.redis.cluster) }}
{{- $_ := set $data "RELAY_REDIS_PARTITIONS" (include "relay.partitionTags" $root | fromJsonArray | len | toString) }}
{{- $_ := set $data "RELAY_STATE_URL" (printf "http://%s:8082" (include "relay.componentFullname" (list $root "state"))) }}
{{- if .spec.pool }}
{{- $sim := printf "http://%s:8090" (include "relay.componentFullname" (list $root "modelsim")) }}
{{- with $root.Values.models.anthropicBaseUrl }}
{{- $_ := set $data "RELAY_ANTHROPIC_BASE_URL" . }}
{{- else }}
{{- if $root.Values.modelsim.enabled }}{{ $_ := set $data "RELAY_ANTHROPIC_BASE_URL" $sim }}{{ end }}
{{- end }}
{{- with $root.Values.models.openaiBaseUrl }}
{{- $_ := set $data "RELAY_OPENAI_BASE_URL" . }}
{{- else }}
{{- if $root.Values.modelsim.enabled }}{{ $_ := set $data "RELAY_OPENAI_BASE_URL" (printf "%s/v1" $sim) }}{{ end }}
{{- end }}
{{- end }}
{{- if $root.Values.models.catalog }}
{{- $_ := set $data "RELAY_MODELS_FILE" "/etc/relay/models.yaml" }}
{{- end }}
{{- with $root.Values.otel }}
{{- if .endpoint }}
{{- /* Tracing (relay_core.tracing): OpenTelemetry's standard variables. */}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" .endpoint }}
{{- $_ := set $data "OTEL_SERVICE_NAME" (printf "relay-%s" $.name) }}
{{- $_ := set $data "OTEL_TRACES_SAMPLER" .sampler }}
{{- $_ := set $data "OTEL_TRACES_SAMPLER_ARG" (toString .samplerArg) }}
{{- $_ := set $data "RELAY_TRACE_CONTENT" (toString .traceContent) }}
{{- end }}
{{- end }}
{{- $data = mergeOverwrite $data $root.Values.config.env .values.env }}
{{- $_ := set $data "RELAY_HOST" "0.0.0.0" }}
{{- if .port }}
{{- $_ := set $data "RELAY_PORT" (toString .port) }}
{{- end }}
{{- $_ := set $data "RELAY_MANAGEMENT_PORT" (toString .management) }}
{{- with .spec.pool }}
{{- $_ := set $data "RELAY_RUNNER_POOL" . }}
{{- end }}
{{- end }}
{{- $out := dict }}
{{- range $k, $v := $data }}
{{- $_ := set $out $k (toString $v) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The runner drain deadline (RELAY_DRAIN_TIMEOUT_S) as an int. Arg: component context. */}}
{{- define "relay.drainTimeout" -}}
{{- $env := mergeOverwrite (dict "RELAY_DRAIN_TIMEOUT_S" "60") (deepCopy .root.Values.config.env) (deepCopy .values.env) }}
{{- $env.RELAY_DRAIN_TIMEOUT_S | float64 | ceil | int }}
{{- end }}

{{/*
terminationGracePeriodSeconds: runners must outlive their drain deadline, so
runs in flight finish or are checkpointed and released before SIGKILL.
*/}}
{{- define "relay.terminationGrace" -}}
{{- $grace := .values.terminationGracePeriodSeconds }}
{{- if .spec.pool }}
{{- $drain := include "relay.drainTimeout" . | int }}
{{- if kindIs "invalid" $grace }}
{{- $grace = add $drain 15 }}
{{- else if le (int $grace) $drain }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be greater than RELAY_DRAIN_TIMEOUT_S (%d)" .spec.key (int $grace) $drain) }}
{{- end }}
{{- end }}
{{- default 30 $grace | int }}
{{- end }}

{{/* Extra volume mounts and volumes shared by relay containers: /tmp (read-only root fs). */}}
{{- define "relay.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}
