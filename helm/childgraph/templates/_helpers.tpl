{{/* The release's name for every object, at most 63 characters. */}}
{{- define "childgraph.fullname" -}}
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

{{- define "childgraph.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "childgraph.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "childgraph.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "childgraph.selector" -}}
app.kubernetes.io/name: {{ include "childgraph.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "childgraph.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "childgraph.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The port the gateway listens on, from config.listen (ADDRESS:PORT). */}}
{{- define "childgraph.port" -}}
{{- regexFind "[0-9]+$" (toString .Values.config.listen) | atoi -}}
{{- end -}}

{{/* The policy's ConfigMap: the chart's own, or one made outside it; empty when the built-in policy is in force. */}}
{{- define "childgraph.policyConfigMap" -}}
{{- if .Values.policy.existingConfigMap -}}
{{- .Values.policy.existingConfigMap -}}
{{- else if .Values.policy.content -}}
{{- printf "%s-policy" (include "childgraph.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The environment variable that carries a source's secret: HEALTH_TOKEN, EARLY_YEARS_CLIENT_SECRET. */}}
{{- define "childgraph.sourceVar" -}}
{{- printf "%s_%s" (upper .source) .suffix -}}
{{- end -}}

{{/*
The sources' secrets, as a list of {var, ref, field}: field is the config key the variable is written into.
*/}}
{{- define "childgraph.sourceSecrets" -}}
{{- $out := list -}}
{{- range $source := list "health" "school" "early_years" -}}
{{- $refs := get $.Values.secrets.sources $source | default dict -}}
{{- if $refs.bearerToken -}}
{{- $out = append $out (dict "source" $source "var" (include "childgraph.sourceVar" (dict "source" $source "suffix" "TOKEN")) "ref" $refs.bearerToken "field" "bearer_token") -}}
{{- end -}}
{{- if $refs.clientSecret -}}
{{- $out = append $out (dict "source" $source "var" (include "childgraph.sourceVar" (dict "source" $source "suffix" "CLIENT_SECRET")) "ref" $refs.clientSecret "field" "client_secret") -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The checks no schema can make: they fail the render with a message naming the value at fault.
*/}}
{{- define "childgraph.validate" -}}
{{- $v := .Values -}}
{{- if not $v.store.postgres.enabled -}}
{{- if gt (int $v.replicaCount) 1 -}}
{{- fail "replicaCount: SQLite serves one replica only; set store.postgres.enabled for more" -}}
{{- end -}}
{{- if $v.autoscaling.enabled -}}
{{- fail "autoscaling.enabled: SQLite serves one replica only; set store.postgres.enabled to autoscale" -}}
{{- end -}}
{{- if $v.podDisruptionBudget.enabled -}}
{{- fail "podDisruptionBudget.enabled: a budget over one SQLite replica would block every node drain; it needs store.postgres.enabled" -}}
{{- end -}}
{{- else -}}
{{- if not (and $v.secrets.databaseUrl $v.secrets.databaseUrl.name $v.secrets.databaseUrl.key) -}}
{{- fail "secrets.databaseUrl: store.postgres.enabled needs {name, key} of the Secret holding the PostgreSQL URL" -}}
{{- end -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas: must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- $pdb := $v.podDisruptionBudget -}}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" -}}
{{- end -}}
{{- if hasKey $v.config "store" -}}
{{- fail "config.store: the chart writes the store from store.postgres and store.sqlite" -}}
{{- end -}}
{{- if hasKey $v.config "policy" -}}
{{- fail "config.policy: the chart writes the policy path from policy.content or policy.existingConfigMap" -}}
{{- end -}}
{{- if and $v.policy.content $v.policy.existingConfigMap -}}
{{- fail "policy: set content or existingConfigMap, not both" -}}
{{- end -}}
{{- $deadlineMs := 2000 -}}
{{- if and $v.config.request (hasKey $v.config.request "deadline_ms") -}}
{{- $deadlineMs = int $v.config.request.deadline_ms -}}
{{- end -}}
{{- if lt (mul (int $v.shutdown.drainSeconds) 1000) $deadlineMs -}}
{{- fail (printf "shutdown.drainSeconds: %d s is shorter than config.request.deadline_ms (%d ms), by which in-flight requests end" (int $v.shutdown.drainSeconds) $deadlineMs) -}}
{{- end -}}
{{- $grace := $v.shutdown.terminationGracePeriodSeconds -}}
{{- $needed := add (int $v.shutdown.preStopSleepSeconds) (int $v.shutdown.drainSeconds) -}}
{{- if and (not (kindIs "invalid" $grace)) (lt (int $grace) (add (int $needed) 6)) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds: %d s leaves no margin after preStopSleepSeconds + drainSeconds (%d s) for the last audit record (up to 5 s) and the exit: give at least %d" (int $grace) (int $needed) (add (int $needed) 6)) -}}
{{- end -}}
{{- range $s := include "childgraph.sourceSecrets" . | fromJsonArray -}}
{{- if not (and $s.ref.name $s.ref.key) -}}
{{- fail (printf "secrets.sources.%s: each reference needs a name and a key" $s.source) -}}
{{- end -}}
{{- $conf := get $v.config.sources $s.source | default dict -}}
{{- if and (eq $s.field "client_secret") (not $conf.client_credentials) -}}
{{- fail (printf "secrets.sources.%s.clientSecret: config.sources.%s.client_credentials (token_url, client_id) is missing" $s.source $s.source) -}}
{{- end -}}
{{- end -}}
{{- range $source, $conf := $v.config.sources -}}
{{- $token := toString (($conf | default dict).bearer_token | default "") -}}
{{- if and $token (not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" $token)) -}}
{{- fail (printf "config.sources.%s.bearer_token: a secret in the ConfigMap; use secrets.sources.%s.bearerToken, or write ${VAR}" $source $source) -}}
{{- end -}}
{{- $cc := ($conf | default dict).client_credentials | default dict -}}
{{- $secret := toString ($cc.client_secret | default "") -}}
{{- if and $secret (not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" $secret)) -}}
{{- fail (printf "config.sources.%s.client_credentials.client_secret: a secret in the ConfigMap; use secrets.sources.%s.clientSecret, or write ${VAR}" $source $source) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The config file: config, with the store, the policy path and the sources' secret variables written in.
*/}}
{{- define "childgraph.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- if .Values.store.postgres.enabled -}}
{{- $pg := .Values.store.postgres -}}
{{- $_ := set $c "store" (dict "postgres" (dict "url" "${DATABASE_URL}" "max_connections" (int $pg.maxConnections) "acquire_timeout_ms" (int $pg.acquireTimeoutMs))) -}}
{{- else -}}
{{- $_ := set $c "store" (dict "sqlite" .Values.store.sqlite.path) -}}
{{- end -}}
{{- if include "childgraph.policyConfigMap" . -}}
{{- $_ := set $c "policy" "/etc/childgraph/policy.yaml" -}}
{{- end -}}
{{- $_ := set $c "shutdown" (dict "drain_seconds" (int .Values.shutdown.drainSeconds)) -}}
{{- range $s := include "childgraph.sourceSecrets" . | fromJsonArray -}}
{{- $source := get $c.sources $s.source -}}
{{- $ref := printf "${%s}" $s.var -}}
{{- if eq $s.field "bearer_token" -}}
{{- $_ := set $source "bearer_token" $ref -}}
{{- else -}}
{{- $_ := set $source.client_credentials "client_secret" $ref -}}
{{- end -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* preStop + drain + margin, unless set outright (and then longer than preStop + drain). */}}
{{- define "childgraph.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- if kindIs "invalid" $s.terminationGracePeriodSeconds -}}
{{- add (int $s.preStopSleepSeconds) (int $s.drainSeconds) (int $s.marginSeconds) -}}
{{- else -}}
{{- int $s.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
An egress rule from a values entry: {cidrs, namespaceSelector, podSelector, ports, protocol}; a CIDR is a string or
{cidr, except}. A selector given empty ({}) is kept: it selects every namespace or pod, never every address.
*/}}
{{- define "childgraph.egressRule" -}}
- to:
    {{- range .cidrs }}
    {{- if kindIs "string" . }}
    - ipBlock:
        cidr: {{ . }}
    {{- else }}
    - ipBlock:
        {{- toYaml . | nindent 8 }}
    {{- end }}
    {{- end }}
    {{- if or (hasKey . "namespaceSelector") (hasKey . "podSelector") }}
    - {{ pick . "namespaceSelector" "podSelector" | toYaml | indent 6 | trim }}
    {{- end }}
  ports:
    {{- range .ports }}
    - port: {{ . }}
      protocol: {{ $.protocol | default "TCP" }}
    {{- end }}
{{- end -}}
