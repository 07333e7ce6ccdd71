{{/*
Expand the name of the chart.
*/}}
{{- define "npvdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "npvdb.fullname" -}}
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

{{/*
The headless service that governs the StatefulSet (stable pod DNS names).
*/}}
{{- define "npvdb.headlessName" -}}
{{- printf "%s-headless" (include "npvdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Secret holding the token file, and the key of the file in it.
*/}}
{{- define "npvdb.tokenSecretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- printf "%s-tokens" (include "npvdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "npvdb.tokenSecretKey" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecretKey }}
{{- else }}
{{- "tokens" }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "npvdb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "npvdb.labels" -}}
helm.sh/chart: {{ include "npvdb.chart" . }}
{{ include "npvdb.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "npvdb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "npvdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "npvdb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "npvdb.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the server first gives calls in flight
server.graceMs, then syncs its log and exits, so Kubernetes must wait longer
than graceMs before SIGKILL. Default: graceMs rounded up to seconds, + 20. An
explicit value that is not larger than graceMs is refused.
*/}}
{{- define "npvdb.terminationGracePeriodSeconds" -}}
{{- $graceMs := int .Values.server.graceMs }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- $tgps := int .Values.terminationGracePeriodSeconds }}
{{- if le (mul $tgps 1000) $graceMs }}
{{- fail (printf "terminationGracePeriodSeconds (%d s) must be larger than server.graceMs (%d ms): the server syncs its log after the grace period" $tgps $graceMs) }}
{{- end }}
{{- $tgps }}
{{- else }}
{{- add (div (add $graceMs 999) 1000) 20 }}
{{- end }}
{{- end }}

{{/*
The action of the three probes: the gRPC health check on the server's port,
or with TLS (the kubelet's gRPC probe speaks plaintext only) a TCP connect.
*/}}
{{- define "npvdb.probeAction" -}}
{{- if .Values.tls.secretName }}
tcpSocket:
  port: {{ int .Values.server.port }}
{{- else }}
grpc:
  port: {{ int .Values.server.port }}
{{- end }}
{{- end }}
