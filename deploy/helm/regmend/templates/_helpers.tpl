{{/* Names and labels. */}}
{{- define "regmend.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "regmend.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "regmend.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regmend.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "regmend.labels" -}}
{{ include "regmend.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "regmend.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The registries, checked once: every template that needs them uses this. */}}
{{- define "regmend.registries" -}}
{{- if not .Values.registries -}}
{{- fail "set registries: the registries regmend serves and heals, e.g. --set 'registries={edge:5000}'" -}}
{{- end -}}
{{- range .Values.registries }}
{{- if not (regexMatch "^[A-Za-z0-9._-]+(:[0-9]+)?$" .) }}
{{- fail (printf "registries: %q is not host[:port]" .) }}
{{- end }}
{{- end -}}
{{- toJson .Values.registries -}}
{{- end -}}

{{- define "regmend.mirrorURL" -}}
http://127.0.0.1:{{ .Values.mirror.port }}
{{- end -}}

{{- define "regmend.mirrorTokenFile" -}}
{{ .Values.mirrorToken.hostDir }}/mirror-token
{{- end -}}

{{- define "regmend.peerTokenSecret" -}}
{{- .Values.cluster.token.existingSecret | default (printf "%s-peer-token" (include "regmend.fullname" .)) -}}
{{- end -}}

{{- define "regmend.peersService" -}}
{{ include "regmend.fullname" . }}-peers
{{- end -}}

{{/* Flags every `regmend hosts` run shares: the hosts dir (mounted at the
same path as on the node, so containerd's config_path and regmend's view of
it agree) and the mirror whose entry is written or removed. */}}
{{- define "regmend.hostsFlags" -}}
- --hosts-dir
- {{ .Values.containerd.hostsDir }}
- --mirror
- {{ include "regmend.mirrorURL" . }}
{{- end -}}

{{/* `regmend hosts REGISTRY...` (install): the init containers run it with one
registry each, the postStart hook with all of them. */}}
{{- define "regmend.ensureFlags" -}}
{{ include "regmend.hostsFlags" . }}
{{- with .Values.containerd.config }}
- --containerd-config
- {{ . }}
{{- end }}
{{- if .Values.mirrorToken.enabled }}
- --mirror-token-file
- {{ include "regmend.mirrorTokenFile" . }}
{{- end }}
{{- end -}}

{{/* `regmend hosts --remove REGISTRY...` (uninstall, the preStop hook): with
the mirror token on, the token file goes too, so no token stays on the node. */}}
{{- define "regmend.removeFlags" -}}
{{ include "regmend.hostsFlags" . }}
{{- if .Values.mirrorToken.enabled }}
- --mirror-token-file
- {{ include "regmend.mirrorTokenFile" . }}
{{- end }}
{{- end -}}

{{- define "regmend.metricsHost" -}}
{{- if or .Values.metrics.onNodeIP .Values.serviceMonitor.enabled -}}
$(NODE_IP)
{{- else -}}
127.0.0.1
{{- end -}}
{{- end -}}

{{- define "regmend.binary" -}}
/usr/bin/regmend
{{- end -}}

{{/* What `regmend hosts` needs, mounted at the node's own paths. */}}
{{- define "regmend.hostsMounts" -}}
- name: hosts-dir
  mountPath: {{ .Values.containerd.hostsDir }}
{{- with .Values.containerd.config }}
- name: containerd-config
  mountPath: {{ . }}
  readOnly: true
{{- end }}
{{- if .Values.mirrorToken.enabled }}
- name: regmend-host
  mountPath: {{ .Values.mirrorToken.hostDir }}
{{- end }}
{{- end -}}

{{- define "regmend.denyConfigMap" -}}
{{- .Values.deny.existingConfigMap | default (printf "%s-deny" (include "regmend.fullname" .)) -}}
{{- end -}}

{{/* Where the deny list's ConfigMap is mounted: a directory of its own, not
under a hostPath mount. */}}
{{- define "regmend.denyDir" -}}
/var/run/regmend/deny
{{- end -}}
