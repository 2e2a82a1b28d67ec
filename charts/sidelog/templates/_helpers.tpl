{{/*
Names and labels shared by every template.
*/}}

{{/* The chart's name: nameOverride, or "sidelog". */}}
{{- define "sidelog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: fullnameOverride, or the release name when it contains the
chart's name (release "sidelog" gives "sidelog"), or "<release>-<name>". At most 63 characters,
the limit of a DNS-1123 label.
*/}}
{{- define "sidelog.fullname" -}}
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

{{/* "<chart>-<version>", the value of the helm.sh/chart label. */}}
{{- define "sidelog.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select this release's pods; a component adds app.kubernetes.io/component. */}}
{{- define "sidelog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidelog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels of every object. */}}
{{- define "sidelog.labels" -}}
helm.sh/chart: {{ include "sidelog.chart" . }}
{{ include "sidelog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidelog
{{- end }}

{{/* The operator's objects: "<fullname>-operator". */}}
{{- define "sidelog.operator.fullname" -}}
{{- printf "%s-operator" (include "sidelog.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidelog.operator.selectorLabels" -}}
{{ include "sidelog.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sidelog.operator.labels" -}}
{{ include "sidelog.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount: serviceAccount.name, or "<fullname>-operator" when created. */}}
{{- define "sidelog.operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sidelog.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The NATS objects: "<fullname>-nats". */}}
{{- define "sidelog.nats.fullname" -}}
{{- printf "%s-nats" (include "sidelog.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidelog.nats.headlessName" -}}
{{- printf "%s-headless" (include "sidelog.nats.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidelog.nats.selectorLabels" -}}
{{ include "sidelog.selectorLabels" . }}
app.kubernetes.io/component: nats
{{- end }}

{{- define "sidelog.nats.labels" -}}
{{ include "sidelog.labels" . }}
app.kubernetes.io/component: nats
{{- end }}

{{/*
The NATS URL the operator connects to: the chart's NATS Service when nats.enabled, else
nats.url, which is then required. Setting both is refused: nats.url would be ignored.
*/}}
{{- define "sidelog.natsURL" -}}
{{- if .Values.nats.enabled }}
{{- if .Values.nats.url }}
{{- fail "nats.url is set while nats.enabled is true: to use the NATS at nats.url, also set nats.enabled=false; to use the chart's NATS, leave nats.url empty" }}
{{- end }}
{{- printf "nats://%s.%s.svc.%s:4222" (include "sidelog.nats.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- required "nats.url is required when nats.enabled=false: set it to your NATS server(s), e.g. --set nats.url=nats://nats.nats-system:4222" .Values.nats.url }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest} and a default tag:
repository@digest when a digest is set, else repository:tag (the default when tag is empty).
Call with (dict "image" .Values.x.image "defaultTag" "...").
*/}}
{{- define "sidelog.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag) }}
{{- end }}
{{- end }}

{{/* The operator's health, readiness and metrics port. */}}
{{- define "sidelog.operator.healthPort" -}}
8081
{{- end }}

{{/* The security contexts of the helm test pods: the "restricted" Pod Security Standard. */}}
{{- define "sidelog.test.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "sidelog.test.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}
