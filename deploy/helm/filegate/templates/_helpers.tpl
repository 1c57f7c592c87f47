{{/* The release's objects' name: the release, with "filegate" unless the release name says it already. */}}
{{- define "filegate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "filegate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "filegate.labels" -}}
{{ include "filegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "filegate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "filegate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "filegate.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* What clients reach: the operator's URL, else the Ingress host, else the Service inside the cluster. */}}
{{- define "filegate.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "filegate.fullname" .) .Release.Namespace .Values.service.port -}}
{{- end -}}
{{- end -}}

{{/* Several nodes share one database and one bucket: refuse what would not. */}}
{{- define "filegate.validate" -}}
{{- if not (regexMatch "^(s3|gs|az)://[^/]+" .Values.blobStore) -}}
{{- fail "blobStore must be a bucket every node shares: s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX" -}}
{{- end -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret must name the Secret holding the PostgreSQL URL (key database.urlKey)" -}}
{{- end -}}
{{- if not .Values.apiKeys.existingSecret -}}
{{- fail "apiKeys.existingSecret must name the Secret holding the API keys (key apiKeys.key)" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.host is required when the Ingress is enabled" -}}
{{- end -}}
{{- if and (eq .Values.upstream.kind "gemini") (not .Values.upstream.geminiApiKey.existingSecret) -}}
{{- fail "upstream.geminiApiKey.existingSecret must name the Secret holding the Gemini API key" -}}
{{- end -}}
{{- if and (or .Values.credentials.env .Values.credentials.files) (not .Values.credentials.existingSecret) -}}
{{- fail "credentials.existingSecret must name the Secret that credentials.env and credentials.files read" -}}
{{- end -}}
{{- range $name, $_ := .Values.settings -}}
{{- if regexMatch "(KEY|SECRET|TOKEN|PASSWORD|DATABASE_URL)" $name -}}
{{- fail (printf "settings.%s looks secret: take it from a Secret (credentials.env or credentials.files)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The security context of every container. */}}
{{- define "filegate.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "filegate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The settings both the nodes and the migration Job read (no secret among them). */}}
{{- define "filegate.storageEnv" -}}
- name: FILEGATE_DATABASE_URL_FILE
  value: /run/secrets/filegate/database/{{ .Values.database.urlKey }}
- name: FILEGATE_BLOB_STORE
  value: {{ .Values.blobStore | quote }}
- name: FILEGATE_DATABASE_MAX_CONNECTIONS
  value: {{ .Values.database.maxConnections | quote }}
- name: FILEGATE_DATA_DIR
  value: /data
{{- range $name, $key := .Values.credentials.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.credentials.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- range $name, $key := .Values.credentials.files }}
- name: {{ $name }}
  value: /run/secrets/filegate/credentials/{{ $key }}
{{- end }}
{{- range $name, $value := .Values.settings }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "filegate.storageVolumes" -}}
- name: data
  emptyDir: {}
- name: database
  secret:
    secretName: {{ .Values.database.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.database.urlKey }}
        path: {{ .Values.database.urlKey }}
{{- if .Values.credentials.files }}
- name: credentials
  secret:
    secretName: {{ .Values.credentials.existingSecret }}
    defaultMode: 0440
    items:
{{- range $_, $key := .Values.credentials.files }}
      - key: {{ $key }}
        path: {{ $key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "filegate.storageMounts" -}}
- name: data
  mountPath: /data
- name: database
  mountPath: /run/secrets/filegate/database
  readOnly: true
{{- if .Values.credentials.files }}
- name: credentials
  mountPath: /run/secrets/filegate/credentials
  readOnly: true
{{- end }}
{{- end -}}
