{{/*
The chart name, or nameOverride; 63 characters at most because it becomes a
label value.
*/}}
{{- define "schemaop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: "<release>-<chart>", or just the release
name when it already contains the chart name (so "schemaop" does not become
"schemaop-schemaop").
*/}}
{{- define "schemaop.fullname" -}}
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
"schemaop-0.1.0", for the helm.sh/chart label ("+" is not allowed in labels).
*/}}
{{- define "schemaop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "schemaop.labels" -}}
helm.sh/chart: {{ include "schemaop.chart" . }}
{{ include "schemaop.selectorLabels" . }}
app.kubernetes.io/version: {{ include "schemaop.version" . | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: schemaop
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the operator's pods. They must never change between
upgrades: a Deployment's selector is immutable.
*/}}
{{- define "schemaop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "schemaop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The version label: the image tag in use, so a tag override shows up.
*/}}
{{- define "schemaop.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image reference: repository:tag, with @digest appended when one is set.
*/}}
{{- define "schemaop.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount the pods run as.
*/}}
{{- define "schemaop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "schemaop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The namespace the operator reconciles in namespaced scope: watchNamespace, or
the release namespace. Empty in cluster scope, meaning every namespace.
*/}}
{{- define "schemaop.watchNamespace" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- default .Release.Namespace .Values.rbac.watchNamespace }}
{{- end }}
{{- end }}

{{/*
What the operator needs where it watches SchemaMigrations: the one list of
rules used by the ClusterRole and by the namespaced Role alike, so the two
modes cannot drift apart. Nothing here may be widened without a reason in
the project README's RBAC section.
*/}}
{{- define "schemaop.watchRules" -}}
# Read the resources it reconciles.
- apiGroups: ["schemaop.dev"]
  resources: ["schemamigrations"]
  verbs: ["get", "list", "watch"]
# Write their status, by server-side apply (a patch).
- apiGroups: ["schemaop.dev"]
  resources: ["schemamigrations/status"]
  verbs: ["patch"]
# Record migrations applied, retries and failures.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Database credentials and migration files. Secrets are cached as metadata
# only and read when used, but list/watch still grant reading every Secret in
# scope: prefer rbac.scope=namespaced.
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
# Readiness gates: pods labelled schemaop.dev/migration are watched and their
# schemaop.dev/schema-ready condition is written.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
# spec.job: the Jobs that run an app's own migration tool, owned by their
# SchemaMigration; deleted when the spec changes and once they succeeded.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
# The last lines of a failed Job pod's log, for the Stalled message. (The
# Job's pods are found with the pods list above.)
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- end }}
