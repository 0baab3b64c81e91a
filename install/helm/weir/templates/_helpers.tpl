{{/* Object names: "weir" unless overridden, at most 63 characters. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "weir.fullname" -}}
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

{{/* Labels that select the daemon's pods; never change on upgrade. */}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weir.labels" -}}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "weir.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* The daemon's enrollment socket and state directory. weir-install
--daemon-config reads them from the daemon's own config file and writes them
into the plugin's daemonSocket and spoolDir: one source, so they cannot
disagree. */}}
{{- define "weir.socket" -}}/run/weir/weir.sock{{- end -}}
{{- define "weir.stateDir" -}}/var/lib/weir{{- end -}}

{{/* weir-install's arguments, shared by the init container and the
sidecar: both write the same CNI entry. */}}
{{- define "weir.installArgs" -}}
- --cni-bin-dir=/host/opt/cni/bin
- --cni-conf-dir=/host/etc/cni/net.d
- --daemon-config=/etc/weir/daemon.yaml
- --failure-policy={{ .Values.cni.failurePolicy }}
- --exclude-namespaces={{ join "," .Values.excludeNamespaces }}
{{- end -}}

{{/* weir-daemon's config file (daemon.yaml). */}}
{{- define "weir.daemonConfig" -}}
{{- $d := .Values.daemon -}}
{{- $cfg := dict
  "socket" (include "weir.socket" .)
  "stateDir" (include "weir.stateDir" .)
  "logLevel" $d.logLevel
  "reconcileInterval" "30s"
  "maxPods" 4096
  "allowedUIDs" (list 0)
  "excludeNamespaces" .Values.excludeNamespaces
  "identity" (dict "criSocket" (printf "%s/%s" .Values.cri.socketDir .Values.cri.socket))
-}}
{{- with $d.capture }}{{ $_ := set $cfg "capture" (deepCopy .) }}{{ end -}}
{{- with $d.bpf }}{{ $_ := set $cfg "bpf" (deepCopy .) }}{{ end -}}
{{- with $d.protocol }}{{ $_ := set $cfg "protocol" (deepCopy .) }}{{ end -}}
{{- with $d.metrics }}{{ $_ := set $cfg "metrics" (deepCopy .) }}{{ end -}}
{{- with .Values.cluster }}{{ $_ := set $cfg "cluster" . }}{{ end -}}
{{- with .Values.oap.address -}}
{{- $oap := dict "address" . "insecure" (not $.Values.oap.tls.enabled) -}}
{{- if $.Values.oap.tls.enabled -}}
{{- with $.Values.oap.tls.caSecret.name }}{{ $_ := set $oap "caFile" (printf "/etc/weir-oap-ca/%s" $.Values.oap.tls.caSecret.key) }}{{ end -}}
{{- with $.Values.oap.tls.serverName }}{{ $_ := set $oap "serverName" . }}{{ end -}}
{{- end -}}
{{- $_ := set $cfg "oap" $oap -}}
{{- end -}}
{{- $cfg = mustMergeOverwrite $cfg (deepCopy $d.extraConfig) -}}
{{- toYaml $cfg -}}
{{- end -}}
