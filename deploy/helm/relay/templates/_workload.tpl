{{/*
Objects every component renders the same way. Each takes the component
context built by relay.init (see _helpers.tpl).
*/}}

{{- define "relay.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list .root .name) | nindent 4 }}
data:
  {{- include "relay.configData" . | nindent 2 }}
{{- end }}

{{/* Checksum of everything the pods read from ConfigMaps: a change rolls them. */}}
{{- define "relay.configChecksum" -}}
{{- printf "%s\n%s" (include "relay.configData" .) (ternary .root.Values.models.catalog "" (empty .spec.standalone)) | sha256sum }}
{{- end }}

{{- define "relay.containerSecurityContext" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
{{- end }}

{{- define "relay.deployment" -}}
{{- $root := .root }}
{{- $v := .values }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list $root .name) | nindent 4 }}
spec:
  {{- if not .owner }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "relay.selectorLabels" (list $root .name) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      {{- /* Runners: bring the new pod up before an old one starts draining. */}}
      maxUnavailable: {{ ternary 0 "25%" (not (empty .spec.pool)) }}
  template:
    metadata:
      labels:
        {{- include "relay.labels" (list $root .name) | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "relay.configChecksum" . }}
        {{- if and $root.Values.metrics.scrapeAnnotations .management }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .management | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "relay.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- /* Service links would inject RELAY_*_PORT=tcp://... variables (Services
             are named relay-*), which collide with the RELAY_ settings prefix. */}}
      enableServiceLinks: false
      {{- include "relay.imagePullSecrets" $root | nindent 6 }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ include "relay.terminationGrace" . }}
      {{- if and (eq .name "state") $root.Values.postgres.enabled $v.migrations.enabled }}
      initContainers:
        {{- include "relay.migrateContainer" . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ include "relay.image" (dict "root" $root "image" $v.image "defaultTag" (include "relay.defaultTag" $root)) | quote }}
          imagePullPolicy: {{ default $root.Values.image.pullPolicy $v.image.pullPolicy }}
          ports:
            {{- if .port }}
            - name: http
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
            {{- if .management }}
            {{- /* Probes and /metrics: not behind the Service's public port nor the Ingress. */}}
            - name: management
              containerPort: {{ .management }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ .fullname }}
          env:
            {{- if .spec.pool }}
            - name: RELAY_CONSUMER_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            {{- end }}
            {{- include "relay.secretEnv" . | trim | nindent 12 }}
            {{- if and (not .spec.standalone) $root.Values.otel.endpoint $root.Values.otel.headersSecret.name }}
            - name: OTEL_EXPORTER_OTLP_HEADERS
              valueFrom:
                secretKeyRef:
                  name: {{ $root.Values.otel.headersSecret.name | quote }}
                  key: {{ $root.Values.otel.headersSecret.key | quote }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- toYaml (required (printf "%s.resources is required" .spec.key) $v.resources) | nindent 12 }}
          {{- with $v.startupProbe }}
          startupProbe:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          livenessProbe:
            {{- toYaml (required (printf "%s.livenessProbe is required" .spec.key) $v.livenessProbe) | nindent 12 }}
          readinessProbe:
            {{- toYaml (required (printf "%s.readinessProbe is required" .spec.key) $v.readinessProbe) | nindent 12 }}
          {{- with $v.lifecycle }}
          lifecycle:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- include "relay.containerSecurityContext" $root | nindent 10 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and (not .spec.standalone) $root.Values.models.catalog }}
            - name: models
              mountPath: /etc/relay
              readOnly: true
            {{- end }}
      volumes:
        {{- include "relay.tmpVolume" $root | nindent 8 }}
        {{- if and (not .spec.standalone) $root.Values.models.catalog }}
        - name: models
          configMap:
            name: {{ include "relay.componentFullname" (list $root "models") }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{- define "relay.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list .root .name) | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "relay.selectorLabels" (list .root .name) | nindent 4 }}
  ports:
    - name: http
      port: {{ .port }}
      targetPort: http
      protocol: TCP
    {{- if .management }}
    {{- /* For the ServiceMonitor only: the Ingress routes to "http", and the
           NetworkPolicy admits only networkPolicy.metricsScrapers here. */}}
    - name: management
      port: {{ .management }}
      targetPort: management
      protocol: TCP
    {{- end }}
{{- end }}

{{- define "relay.pdb" -}}
{{- $pdb := .values.pdb }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list .root .name) | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- include "relay.selectorLabels" (list .root .name) | nindent 6 }}
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ default 1 $pdb.maxUnavailable }}
  {{- end }}
{{- end }}

{{/*
Replica bounds an API server would refuse, refused at render time instead:
the HPA's validation (minReplicas <= maxReplicas) and the CEL rule of KEDA's
ScaledObject CRD (`minReplicaCount must be less than or equal to
maxReplicaCount`, maxReplicaCount defaulting to 100). tests/deploy checks that
every CEL rule of the vendored CRDs has such a guard. Arg: component context.
*/}}
{{- define "relay.replicaBounds" -}}
{{- $as := .values.autoscaling }}
{{- $max := ternary 100 $as.maxReplicas (kindIs "invalid" $as.maxReplicas) | int }}
{{- if gt (int $as.minReplicas) $max }}
{{- fail (printf "%s.autoscaling.minReplicas (%d) must be less than or equal to maxReplicas (%d): the %s would be refused (%s)" .spec.key (int $as.minReplicas) $max (ternary "ScaledObject" "HorizontalPodAutoscaler" (eq .owner "keda")) (ternary "KEDA: minReplicaCount must be less than or equal to maxReplicaCount" "HPA: maxReplicas must be greater than or equal to minReplicas" (eq .owner "keda"))) }}
{{- end }}
{{- end }}

{{- define "relay.hpa" -}}
{{- $as := .values.autoscaling }}
{{- if lt (int $as.minReplicas) 1 }}
{{- fail (printf "%s.autoscaling.minReplicas must be at least 1 with an HPA; scaling to zero needs KEDA" .spec.key) }}
{{- end }}
{{- include "relay.replicaBounds" . }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list .root .name) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .fullname }}
  minReplicas: {{ $as.minReplicas }}
  maxReplicas: {{ $as.maxReplicas }}
  metrics:
    {{- if $as.metrics }}
    {{- toYaml $as.metrics | nindent 4 }}
    {{- else }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $as.targetCPUUtilizationPercentage }}
    {{- end }}
  {{- with $as.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
KEDA ScaledObject. KEDA creates and owns the HPA; the chart renders none for
this workload.
*/}}
{{- define "relay.scaledObject" -}}
{{- $root := .root }}
{{- $as := .values.autoscaling }}
{{- include "relay.replicaBounds" . }}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list $root .name) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .fullname }}
  pollingInterval: {{ $root.Values.keda.pollingInterval }}
  cooldownPeriod: {{ $root.Values.keda.cooldownPeriod }}
  minReplicaCount: {{ $as.minReplicas }}
  maxReplicaCount: {{ $as.maxReplicas }}
  advanced:
    horizontalPodAutoscalerConfig:
      name: {{ .fullname }}
      {{- with $as.behavior }}
      behavior:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- if eq .spec.keda "redis" }}
    {{- include "relay.kedaRedisModifiers" . | nindent 4 }}
  triggers:
    {{- include "relay.kedaRedisTriggers" . | nindent 4 }}
    {{- else }}
  triggers:
    {{- include "relay.kedaPrometheusTriggers" . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
Runner pools. Demand = runs queued (the group's lag: not yet delivered) + runs
in flight (the group's pending entries: delivered, not yet acknowledged, since
runners XACK only when a run ends). A pool's queue is one stream per partition
(relay_core.keys; the tags come from files/redis-partitions.yaml), so there
are two triggers per partition (redis-streams, or redis-cluster-streams with
redis.cluster), all summed by a scaling modifier: as separate metrics the HPA
would take their max, and with every runner full and as many runs queued each
metric alone reads "enough replicas" — the pool would never grow. In flight
also keeps runners from being scaled in while they still execute runs (lag
alone reads 0 then). Why Redis triggers rather than a Prometheus query of
Relay's own queue gauges: KEDA keeps reading the demand straight from Redis
when state (which exports the gauges) or Prometheus is down or behind, which
is when a backlog builds.
*/}}
{{- define "relay.kedaRedisModifiers" -}}
{{- $k := .values.autoscaling.keda }}
{{- $target := int (required (printf "%s.autoscaling.keda.targetRunsPerReplica is required" .spec.key) $k.targetRunsPerReplica) }}
{{- $env := mergeOverwrite (dict "RELAY_RUNNER_CONCURRENCY" "8") (deepCopy .root.Values.config.env) (deepCopy .values.env) }}
{{- $concurrency := $env.RELAY_RUNNER_CONCURRENCY | int }}
{{- if or (lt $target 1) (gt $target $concurrency) }}
{{- fail (printf "%s.autoscaling.keda.targetRunsPerReplica (%d) must be between 1 and RELAY_RUNNER_CONCURRENCY (%d): a replica can never hold more runs than its concurrency" .spec.key $target $concurrency) }}
{{- end }}
{{- /* Interactive runs wait at the gateway's admission, not in the queue (lag
       stays ~0): only a target below concurrency lets a full pool grow. */}}
{{- if and (eq .spec.pool "interactive") (ge $target $concurrency) }}
{{- fail (printf "%s.autoscaling.keda.targetRunsPerReplica (%d) must be below RELAY_RUNNER_CONCURRENCY (%d): interactive runs wait at the gateway, not in the queue, so a full pool would never grow" .spec.key $target $concurrency) }}
{{- end }}
{{- $names := list }}
{{- range $i, $_ := include "relay.partitionTags" .root | fromJsonArray }}
{{- $names = append $names (printf "queued_%d" $i) }}
{{- $names = append $names (printf "in_flight_%d" $i) }}
{{- end }}
scalingModifiers:
  formula: {{ join " + " $names | quote }}
  target: {{ $target | quote }}
  activationTarget: "0"
  metricType: AverageValue
{{- end }}

{{- define "relay.kedaRedisTriggers" -}}
{{- $root := .root }}
{{- $target := int .values.autoscaling.keda.targetRunsPerReplica }}
{{- $cluster := $root.Values.redis.cluster }}
{{- $address := "" }}
{{- if $root.Values.redis.enabled }}
{{- $address = printf "%s:6379" (include "relay.redisHost" $root) }}
{{- else }}
{{- $address = required "redis.external.address (host:port) is required for KEDA's redis-streams triggers with an external Redis (KEDA scales the runner pools when keda.enabled is true, or \"auto\" on a cluster with KEDA; keda.enabled=false scales them with CPU HPAs)" $root.Values.redis.external.address }}
{{- end }}
{{- range $i, $tag := include "relay.partitionTags" $root | fromJsonArray }}
{{- range $trigger := list "queued" "in_flight" }}
- type: {{ ternary "redis-cluster-streams" "redis-streams" $cluster }}
  name: {{ printf "%s_%d" $trigger $i }}
  metadata:
    {{- if $cluster }}
    addresses: {{ $address | quote }}
    {{- else }}
    address: {{ $address | quote }}
    databaseIndex: {{ $root.Values.redis.database | toString | quote }}
    {{- end }}
    stream: {{ printf "relay:{%s}:queue:%s" $tag $.spec.pool | quote }}
    consumerGroup: runners
    {{- if eq $trigger "queued" }}
    lagCount: {{ $target | quote }}
    activationLagCount: "0"
    {{- else }}
    pendingEntriesCount: {{ $target | quote }}
    {{- end }}
    {{- if and (not $root.Values.redis.enabled) $root.Values.redis.external.tls }}
    enableTLS: "true"
    {{- end }}
  {{- with $root.Values.keda.redisAuthenticationRef }}
  {{- if .name }}
  authenticationRef:
    name: {{ .name }}
    kind: {{ default "TriggerAuthentication" .kind }}
  {{- else if $root.Values.secrets.redisPassword.key }}
  authenticationRef:
    name: {{ include "relay.componentFullname" (list $root "redis-auth") }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* gateway and events: their own gauges, read through Prometheus, plus CPU. */}}
{{- define "relay.kedaPrometheusTriggers" -}}
{{- $root := .root }}
{{- $k := .values.autoscaling.keda }}
{{- $server := required (printf "keda.prometheus.serverAddress is required for %s's KEDA triggers (or set %s.autoscaling.keda.enabled=false to scale it with an HPA on CPU)" .name .spec.key) $root.Values.keda.prometheus.serverAddress }}
{{- range $k.triggers }}
- type: prometheus
  name: {{ .name }}
  metadata:
    serverAddress: {{ $server | quote }}
    query: {{ tpl .query $root | quote }}
    threshold: {{ .threshold | toString | quote }}
{{- end }}
{{- with $k.cpuUtilization }}
- type: cpu
  name: cpu
  metricType: Utilization
  metadata:
    value: {{ . | toString | quote }}
{{- end }}
{{- end }}

{{- define "relay.autoscalerObject" -}}
{{- if eq .owner "keda" }}
{{- include "relay.scaledObject" . }}
{{- else if eq .owner "hpa" }}
{{- include "relay.hpa" . }}
{{- end }}
{{- end }}

{{/*
Ingress NetworkPolicy of a component. The public port ("http"): pods of this
release, and for public components the ingress controller. The management
port (probes, /metrics): only networkPolicy.metricsScrapers (kubelet's
probes come from the node, which NetworkPolicies do not filter in the usual
CNIs). Egress is left open: managed databases and model APIs live outside
the cluster.
*/}}
{{- define "relay.networkPolicy" -}}
{{- $root := .root }}
{{- $np := $root.Values.networkPolicy }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .fullname }}
  labels:
    {{- include "relay.labels" (list $root .name) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "relay.selectorLabels" (list $root .name) | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    {{- if .port }}
    - from:
        - podSelector:
            matchLabels:
              {{- include "relay.releaseSelectorLabels" $root | nindent 14 }}
        {{- if .spec.public }}
        - namespaceSelector:
            {{- toYaml $np.ingressController.namespaceSelector | nindent 12 }}
          podSelector:
            {{- toYaml (default dict $np.ingressController.podSelector) | nindent 12 }}
        {{- end }}
        {{- if not .management }}
        {{- with $np.metricsScrapers }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- end }}
      ports:
        - port: {{ .port }}
          protocol: TCP
    {{- end }}
    {{- if and .management $np.metricsScrapers }}
    - from:
        {{- toYaml $np.metricsScrapers | nindent 8 }}
      ports:
        - port: {{ .management }}
          protocol: TCP
    {{- end }}
    {{- if and (not .port) (not $np.metricsScrapers) }} []{{ end }}
{{- end }}

{{/*
`relay-state migrate` container: the hook Job's, or the state pods' init
container with the in-chart Postgres. It reads only the database settings, so
it gets only the database URL (no internal token, no admin key), inline: a
pre-install hook runs before the chart's ConfigMaps exist.
*/}}
{{- define "relay.migrateContainer" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $dbOnly := dict "root" $root "values" $v "name" .name "port" .port "spec" (dict "secrets" (list "database")) }}
- name: migrate
  image: {{ include "relay.image" (dict "root" $root "image" $v.image "defaultTag" (include "relay.defaultTag" $root)) | quote }}
  imagePullPolicy: {{ default $root.Values.image.pullPolicy $v.image.pullPolicy }}
  args: ["migrate"]
  env:
    - name: RELAY_LOG_LEVEL
      value: {{ $root.Values.config.logLevel | quote }}
    {{- include "relay.secretEnv" $dbOnly | trim | nindent 4 }}
  resources:
    {{- toYaml $v.migrations.resources | nindent 4 }}
  {{- include "relay.containerSecurityContext" $root | nindent 2 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}
