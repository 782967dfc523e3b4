{{/* Names: <release>-alcove, or the release name when it already says alcove. */}}
{{- define "alcove.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "alcove.labels" -}}
app.kubernetes.io/name: alcove
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "alcove.selector" (list . "master") */}}
{{- define "alcove.selector" -}}
app.kubernetes.io/name: alcove
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "alcove.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Every master's address: the StatefulSet pods behind the headless Service. */}}
{{- define "alcove.masters" -}}
{{- $fn := include "alcove.fullname" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.master.count) -}}
{{- $addrs = append $addrs (printf "%s-master-%d.%s-master.%s.svc.%s:%d" $fn $i $fn $.Release.Namespace $.Values.clusterDomain (int $.Values.master.ports.rpc)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{/* The journal group: ID=HOST:PORT of every master (pod name = journal id). */}}
{{- define "alcove.journalPeers" -}}
{{- $fn := include "alcove.fullname" . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.master.count) -}}
{{- $peers = append $peers (printf "%s-master-%d=%s-master-%d.%s-master.%s.svc.%s:%d" $fn $i $fn $i $fn $.Release.Namespace $.Values.clusterDomain (int $.Values.master.ports.journal)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/* A Kubernetes binary quantity (1Gi) as an Alcove size (1GB = 2^30 bytes). */}}
{{- define "alcove.size" -}}
{{- $s := toString . -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti)$" $s) -}}
{{- fail (printf "size %q: use a binary quantity such as 512Mi or 10Gi" $s) -}}
{{- end -}}
{{- trimSuffix "i" $s }}B
{{- end -}}

{{- define "alcove.nodeSelector" -}}
{{- $sel := .sel | default .root.Values.nodeSelector -}}
{{- with $sel }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with concat (.root.Values.tolerations | default list) (.tol | default list) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment shared by Alcove containers. */}}
{{- define "alcove.env" -}}
- name: ALCOVE_MASTER
  value: {{ include "alcove.masters" . | quote }}
- name: ALCOVE_NODE
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
{{- end -}}

{{/* The root UFS's credentials, from the Secret named in ufs.credentialsSecret (master and workers only). */}}
{{- define "alcove.ufsCredentials" -}}
{{- with .Values.ufs.credentialsSecret }}
{{- if .name }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .name }}, key: {{ .accessKeyIdKey }}}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .name }}, key: {{ .secretAccessKeyKey }}}}
{{- end }}
{{- end }}
{{- end -}}

{{- define "alcove.confVolume" -}}
- name: conf
  configMap: {name: {{ include "alcove.fullname" . }}-conf}
{{- end -}}

{{- define "alcove.confMount" -}}
- {name: conf, mountPath: /etc/alcove, readOnly: true}
{{- end -}}

{{- define "alcove.restricted" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
{{- end -}}
