{{/*
The components and what differs between them; everything else is shared.
  key         values block
  port        RELAY_PORT (docs/configuration.md); modelsim: RELAY_MODELSIM_PORT
  secrets     secret env groups (relay.secretEnv)
  service     has a ClusterIP Service (runners receive no traffic)
  public      reachable from the ingress controller (NetworkPolicy)
  pool        runner pool (RELAY_RUNNER_POOL) and its queue stream
  keda        KEDA trigger family: redis (queue streams) or prometheus
  standalone  modelsim: own env prefix, no shared relay settings
*/}}
{{- define "relay.components" -}}
gateway:
  key: gateway
  port: 8080
  secrets: [redis, internalToken]
  service: true
  public: true
  keda: prometheus
events:
  key: events
  port: 8081
  secrets: [redis, internalToken]
  service: true
  public: true
  keda: prometheus
state:
  key: state
  port: 8082
  secrets: [redis, internalToken, database, adminApiKey]
  service: true
runner-interactive:
  key: runnerInteractive
  port: 8083
  secrets: [redis, internalToken, models]
  pool: interactive
  keda: redis
runner-background:
  key: runnerBackground
  port: 8083
  secrets: [redis, internalToken, models]
  pool: background
  keda: redis
modelsim:
  key: modelsim
  port: 8090
  secrets: [modelsimApiKey]
  service: true
  standalone: true
{{- end }}
