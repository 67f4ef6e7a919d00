{{/* Names, labels and the pieces every Symphony container shares. */}}

{{- define "symphony.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "symphony.fullname" -}}
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

{{- define "symphony.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "symphony.labels" -}}
helm.sh/chart: {{ include "symphony.chart" . }}
{{ include "symphony.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: symphony
{{- end }}

{{- define "symphony.selectorLabels" -}}
app.kubernetes.io/name: {{ include "symphony.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: web, agent-worker, migrate, reaper. */}}
{{- define "symphony.componentLabels" -}}
{{ include "symphony.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "symphony.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "symphony.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "symphony.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "symphony.secretName" -}}
{{- default (include "symphony.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* Environment shared by the web pods, the worker, the migration Job and the reaper. */}}
{{- define "symphony.envFrom" -}}
- configMapRef:
    name: {{ include "symphony.fullname" . }}
- secretRef:
    name: {{ include "symphony.secretName" . }}
{{- end }}

{{- define "symphony.env" -}}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /tmp/prometheus
- name: SYMPHONY_VAR_DIR
  value: /app/var
{{- if .Values.otel.enabled }}
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "otel.endpoint is required when otel.enabled" .Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.otel.tracesSampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.otel.tracesSamplerArg | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.version=%s,deployment.environment=%s" .Chart.AppVersion .Release.Namespace | quote }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "symphony.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
- name: prometheus-multiproc
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
- name: var
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "symphony.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: prometheus-multiproc
  mountPath: /tmp/prometheus
- name: var
  mountPath: /app/var
{{- end }}

{{- define "symphony.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "symphony.containerSecurityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end }}

{{/* Signed audit checkpoints: the key, the shared folder and the interval, for the pods that record events. */}}
{{- define "symphony.auditEnv" -}}
{{- if .Values.auditCheckpoints.enabled }}
- name: SYMPHONY_AUDIT_SIGNING_KEY_FILE
  value: {{ printf "/run/secrets/symphony-audit/%s" .Values.auditCheckpoints.signingKeySecretKey | quote }}
- name: SYMPHONY_AUDIT_CHECKPOINT_DIR
  value: /app/audit-checkpoints
- name: SYMPHONY_AUDIT_CHECKPOINT_EVERY
  value: {{ .Values.auditCheckpoints.every | quote }}
{{- end }}
{{- end }}

{{- define "symphony.auditVolumes" -}}
{{- if .Values.auditCheckpoints.enabled }}
- name: audit-signing-key
  secret:
    secretName: {{ required "auditCheckpoints.signingKeySecret is required when auditCheckpoints.enabled" .Values.auditCheckpoints.signingKeySecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.auditCheckpoints.signingKeySecretKey }}
        path: {{ .Values.auditCheckpoints.signingKeySecretKey }}
- name: audit-checkpoints
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-audit-checkpoints" (include "symphony.fullname" .)) .Values.auditCheckpoints.persistence.existingClaim }}
{{- end }}
{{- end }}

{{- define "symphony.auditVolumeMounts" -}}
{{- if .Values.auditCheckpoints.enabled }}
- name: audit-signing-key
  mountPath: /run/secrets/symphony-audit
  readOnly: true
- name: audit-checkpoints
  mountPath: /app/audit-checkpoints
{{- end }}
{{- end }}
