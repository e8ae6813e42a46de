{{/*
The components and what differs between them; everything else is shared.
  key         values block
  port        RELAY_PORT, the public port "http" (docs/configuration.md); modelsim:
              RELAY_MODELSIM_PORT; runners have none (no public API)
  management  RELAY_MANAGEMENT_PORT, the port "management": probes (/livez,
              /readyz), /metrics, the detailed /healthz; never behind the
              Service's public port or the Ingress (modelsim has none)
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
  management: 9080
  secrets: [redis, internalToken]
  service: true
  public: true
  keda: prometheus
events:
  key: events
  port: 8081
  management: 9081
  secrets: [redis, internalToken]
  service: true
  public: true
  keda: prometheus
state:
  key: state
  port: 8082
  management: 9082
  secrets: [redis, internalToken, database, adminApiKey]
  service: true
runner-interactive:
  key: runnerInteractive
  management: 9083
  secrets: [redis, internalToken, models]
  pool: interactive
  keda: redis
runner-background:
  key: runnerBackground
  management: 9083
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
