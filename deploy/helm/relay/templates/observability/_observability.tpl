{{/*
Observability partials: the alert rules, and the PromQL label selectors that
scope them to this release. Names and labels come from _helpers.tpl.

Why alerts select on namespace + pod name rather than `job`: the job label
depends on how Prometheus finds the pods (ServiceMonitor: the Service name;
PodMonitor: namespace/name; annotation scraping: whatever the scrape config
says), while `namespace` and `pod` are set by all of them. KEDA's Prometheus
triggers in values.yaml make the same assumption.
*/}}

{{/* PromQL matchers for the pods of components. Arg: (list root "gateway") or (list root "runner-interactive|runner-background"). */}}
{{- define "relay.obs.selector" -}}
{{- $root := index . 0 -}}
{{- printf "namespace=%q,pod=~\"%s-(%s)-.*\"" $root.Release.Namespace (include "relay.fullname" $root) (index . 1) -}}
{{- end }}

{{/* A threshold as PromQL reads it: integers without an exponent (2e+07 -> 20000000). */}}
{{- define "relay.obs.number" -}}
{{- $v := float64 . -}}
{{- if eq $v (floor $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- end }}

{{/* A ratio as a percentage for humans: 0.05 -> 5. */}}
{{- define "relay.obs.percent" -}}
{{- include "relay.obs.number" (round (mulf . 100) 4) -}}
{{- end }}

{{/*
Every alert, grouped. `relay.obs.rules` (prometheusrule.yaml) adds the
runbook_url annotation, observability.prometheusRule.alertLabels, and drops
the alerts named in observability.prometheusRule.disabled. Each alert has a
section in docs/runbook.md whose anchor is its name in lower case.
Prometheus templates in annotations are written {{`{{ ... }}`}} so Helm leaves them alone.
*/}}
{{- define "relay.obs.alerts" -}}
{{- $root := . }}
{{- $t := .Values.observability.prometheusRule.thresholds }}
{{- $gw := include "relay.obs.selector" (list $root "gateway") }}
{{- $ev := include "relay.obs.selector" (list $root "events") }}
{{- $st := include "relay.obs.selector" (list $root "state") }}
{{- $rn := include "relay.obs.selector" (list $root "runner-interactive|runner-background") }}
{{- $all := include "relay.obs.selector" (list $root "gateway|events|state|runner-interactive|runner-background") }}
groups:
  - name: relay-gateway
    rules:
      - alert: RelayGatewayDown
        expr: (sum(up{ {{- $gw }}}) or on() vector(0)) < 1
        for: 2m
        labels:
          severity: critical
        annotations:
          summary: No gateway replica is being scraped successfully; the public API is probably down.
          description: Prometheus has no healthy gateway target in namespace {{ $root.Release.Namespace }} for 2 minutes (pods down, crash-looping, or not scraped at all).
      - alert: RelayGatewayHighErrorRate
        expr: |-
          (
            sum(rate(relay_gateway_requests_total{ {{- $gw }},route!~"/healthz|/readyz|/metrics",status=~"5.."}[5m]))
            /
            sum(rate(relay_gateway_requests_total{ {{- $gw }},route!~"/healthz|/readyz|/metrics"}[5m]))
          ) > {{ include "relay.obs.number" $t.gatewayErrorRatio }}
          and on() sum(rate(relay_gateway_requests_total{ {{- $gw }},route!~"/healthz|/readyz|/metrics"}[5m])) > 0.05
          unless on() max(relay_gateway_kill_switch{ {{- $gw }}}) == 1
        for: 5m
        labels:
          severity: critical
        annotations:
          summary: {{`'{{ $value | humanizePercentage }} of gateway requests answer 5xx.'`}}
          description: More than {{ include "relay.obs.percent" $t.gatewayErrorRatio }}% of API requests (probes excluded) failed with a 5xx for 5 minutes while the kill switch is off. A dependency (Redis, state, Postgres) is usually down.
      - alert: RelayKillSwitchOn
        expr: max(relay_gateway_kill_switch{ {{- $gw }}}) == 1
        for: 1m
        labels:
          severity: warning
        annotations:
          summary: 'The kill switch is ON: new runs are refused with 503 and runs in flight stop.'
          description: Someone turned the kill switch on (PUT /v1/admin/kill-switch). Make sure it is meant to be, and that someone owns turning it off.
  - name: relay-runners
    rules:
      - alert: RelayRunnersSaturated
        expr: |-
          sum by (pool) (relay_runner_runs_in_flight{ {{- $rn }}})
          /
          sum by (pool) (relay_runner_capacity{ {{- $rn }}})
          >= {{ include "relay.obs.number" $t.runnerSaturation }}
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: {{`'Runner pool {{ $labels.pool }} is {{ $value | humanizePercentage }} full.'`}}
          description: {{`'Runs in flight in pool {{ $labels.pool }} have been at or above `}}{{ include "relay.obs.percent" $t.runnerSaturation }}{{`% of its capacity for 10 minutes: new runs wait (background) or get 429 (interactive). The autoscaler may be at maxReplicas.'`}}
      - alert: RelayQueueBacklogGrowing
        expr: |-
          max by (pool) (relay_queue_lag{ {{- $st }}}) > {{ include "relay.obs.number" $t.queueLag }}
          and
          max by (pool) (deriv(relay_queue_lag{ {{- $st }}}[15m])) > 0
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: {{`'Queue {{ $labels.pool }} holds {{ $value }} undelivered runs and keeps growing.'`}}
          description: {{`'relay:queue:{{ $labels.pool }} has had more than `}}{{ include "relay.obs.number" $t.queueLag }}{{` entries not yet delivered to a runner, still growing, for 10 minutes. Runners are missing, full, or not reading.'`}}
      - alert: RelayRunsFailingHigh
        expr: |-
          sum by (pool) (increase(relay_runner_runs_finished_total{ {{- $rn }},status="failed"}[15m]))
          /
          sum by (pool) (increase(relay_runner_runs_finished_total{ {{- $rn }}}[15m]))
          > {{ include "relay.obs.number" $t.runsFailedRatio }}
          and
          sum by (pool) (increase(relay_runner_runs_finished_total{ {{- $rn }}}[15m])) >= 10
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: {{`'{{ $value | humanizePercentage }} of runs in pool {{ $labels.pool }} fail.'`}}
          description: More than {{ include "relay.obs.percent" $t.runsFailedRatio }}% of the runs that finished in the last 15 minutes failed (at least 10 finished). Look at the failed runs' error reasons.
      - alert: RelayDeadLetters
        # increase() misses the first dead letter of a pod (its series is born
        # at 1), hence the second term: series that did not exist 30 minutes ago.
        expr: |-
          sum by (pool) (increase(relay_runner_dead_lettered_total{ {{- $rn }}}[30m])) > 0
          or
          sum by (pool) (relay_runner_dead_lettered_total{ {{- $rn }}} unless relay_runner_dead_lettered_total{ {{- $rn }}} offset 30m) > 0
        for: 1m
        labels:
          severity: warning
        annotations:
          summary: {{`'Runs of pool {{ $labels.pool }} went to the dead-letter stream.'`}}
          description: {{`'{{ $value }} run(s) were delivered RELAY_MAX_DELIVERIES times without finishing in the last 30 minutes; they are marked failed and copied to relay:queue:dead.'`}}
      - alert: RelayCircuitBreakerOpen
        expr: |-
          max by (provider, model) (relay_runner_breaker_state{ {{- $rn }}}) >= 2
          or
          sum by (pool) (rate(relay_runner_step_retries_total{ {{- $rn }}}[5m]))
          /
          sum by (pool) (rate(relay_runner_steps_total{ {{- $rn }}}[5m]))
          > {{ include "relay.obs.number" $t.modelRetryRatio }}
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: {{`'A model provider is failing: its circuit breaker is open or model turns are being retried.'`}}
          description: {{`'relay_runner_breaker_state is 2 (open) for a model, or {{ $value | humanize }} model turns are retried per completed turn. Runs fall back to the next model of the chain; check the provider status and relay:breaker:* in Redis.'`}}
      - alert: RelayCostBurnHigh
        expr: sum(rate(relay_runner_cost_usd_total{ {{- $rn }}}[15m])) * 60 > {{ include "relay.obs.number" $t.costUsdPerMinute }}
        for: 15m
        labels:
          severity: warning
        annotations:
          summary: {{`'Model spend is high: {{ $value | humanize }} USD per minute.'`}}
          description: The runners have spent more than {{ include "relay.obs.number" $t.costUsdPerMinute }} USD per minute on model calls (catalog prices, averaged over 15 minutes) for 15 minutes.
  - name: relay-events
    rules:
      - alert: RelayEventsSlowSubscribersDropped
        expr: sum(increase(relay_events_subscribers_dropped_total{ {{- $ev }}}[10m])) > {{ include "relay.obs.number" $t.subscribersDropped }}
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: {{`'{{ $value | humanize }} SSE subscribers were dropped for falling behind in 10 minutes.'`}}
          description: The events service drops a subscriber whose buffer (RELAY_SUBSCRIBER_BUFFER) fills. Clients reconnect with Last-Event-ID and lose nothing, but many drops mean slow clients, a slow network path, or an overloaded events pod.
  - name: relay-state
    rules:
      - alert: RelayStateReconcilerReenqueuing
        expr: sum(increase(relay_state_reconciler_reenqueued_total{ {{- $st }}}[15m])) > {{ include "relay.obs.number" $t.reconcilerReenqueued }}
        for: 5m
        labels:
          severity: warning
        annotations:
          summary: {{`'State re-enqueued {{ $value | humanize }} runs that Redis had lost.'`}}
          description: Runs that Postgres says are queued or running had neither a queue entry marker nor a lease in Redis. Redis lost data (restart without persistence, eviction, failover) or enqueues after commit failed.
  - name: relay-tracing
    rules:
      - alert: RelayTraceSpansDropped
        expr: sum(increase(relay_trace_spans_dropped_total{ {{- $all }}}[10m])) > {{ include "relay.obs.number" $t.spansDropped }}
        for: 10m
        labels:
          severity: info
        annotations:
          summary: {{`'{{ $value | humanize }} trace spans were dropped before export in 10 minutes.'`}}
          description: With tracing on (otel.endpoint), a service drops a finished span when its export queue (OTEL_BSP_MAX_QUEUE_SIZE) is full, rather than slow a run. Traces have holes; runs are not affected. The trace backend is slow, down or unreachable, or the span rate outgrew the queue.
  - name: relay-platform
    rules:
      - alert: RelayDependencyUnready
        expr: max by (pod) (kube_pod_status_ready{ {{- $all }},condition="false"}) == 1
        for: 10m
        labels:
          severity: warning
        annotations:
          summary: {{`'Pod {{ $labels.pod }} has failed its readiness check (/readyz) for 10 minutes.'`}}
          description: /readyz answers 503 with the reason while Redis, state or Postgres is unreachable (or while a runner drains). Needs kube-state-metrics.
{{- end }}

{{/* The rule groups with runbook links and common labels, without disabled alerts. Arg: root. */}}
{{- define "relay.obs.rules" -}}
{{- $pr := .Values.observability.prometheusRule }}
{{- $base := trimSuffix "/" $pr.runbookBaseUrl }}
{{- $groups := list }}
{{- range (include "relay.obs.alerts" . | fromYaml).groups }}
{{- $rules := list }}
{{- range .rules }}
{{- if not (has .alert $pr.disabled) }}
{{- $_ := set . "labels" (merge (deepCopy .labels) $pr.alertLabels) }}
{{- $_ := set .annotations "runbook_url" (printf "%s#%s" $base (lower .alert)) }}
{{- $rules = append $rules . }}
{{- end }}
{{- end }}
{{- if $rules }}
{{- $groups = append $groups (dict "name" .name "rules" $rules) }}
{{- end }}
{{- end }}
{{- toYaml (dict "groups" $groups) }}
{{- end }}
