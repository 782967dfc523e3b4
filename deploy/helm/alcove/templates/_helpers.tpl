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
{{- include "alcove.tlsEnv" . }}
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

{{/*
mTLS (values tls): each container mounts the Secret of its role at
/etc/alcove-tls and finds it through ALCOVE_TLS_DIR, which `alcove` reads
like --tls-dir. The environment (not a flag) reaches the processes a
container starts (the CSI node plugin's FUSE daemons) and the CLI run with
`kubectl exec`. Default Secret file modes: the Secret is the pod's own, and
containers running as another user (the job worker) must read it.
*/}}
{{- define "alcove.tlsSecretName" -}}
{{ include "alcove.fullname" .root }}-tls-{{ .role }}
{{- end -}}

{{- define "alcove.tlsEnv" -}}
{{- if .Values.tls.enabled }}
- {name: ALCOVE_TLS_DIR, value: /etc/alcove-tls}
{{- end }}
{{- end -}}

{{/* include "alcove.tlsMount" (dict "root" . "role" "worker") */}}
{{- define "alcove.tlsMount" -}}
{{- if .root.Values.tls.enabled }}
- {name: tls-{{ .role }}, mountPath: /etc/alcove-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "alcove.tlsVolume" -}}
{{- if .root.Values.tls.enabled }}
- name: tls-{{ .role }}
  secret: {secretName: {{ include "alcove.tlsSecretName" . }}}
{{- end }}
{{- end -}}

{{/* The roles whose Secrets the release needs. */}}
{{- define "alcove.tlsRoles" -}}
{{- $roles := list "master" "worker" "admin" -}}
{{- if .Values.jobMaster.enabled }}{{ $roles = append $roles "job" }}{{ end -}}
{{- if or .Values.csi.enabled .Values.extender.enabled }}{{ $roles = append $roles "node" }}{{ end -}}
{{- join "," $roles -}}
{{- end -}}

{{/*
DNS names of the servers' certificates (ROLE=NAME): the masters' per-pod
names and Service, the job master's. Workers are reached at pod IPs, and
Alcove checks a server's role in its certificate, not its name; the names
are for other TLS clients (and for people reading the certificate).
*/}}
{{- define "alcove.tlsDNS" -}}
{{- $fn := include "alcove.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $d := .Values.clusterDomain -}}
{{- $names := list -}}
{{- range $i := until (int .Values.master.count) -}}
{{- $names = append $names (printf "master=%s-master-%d.%s-master.%s.svc.%s" $fn $i $fn $ns $d) -}}
{{- end -}}
{{- $names = append $names (printf "master=%s-master.%s.svc.%s" $fn $ns $d) -}}
{{- $names = append $names (printf "master=%s-master.%s.svc" $fn $ns) -}}
{{- if .Values.jobMaster.enabled -}}
{{- $names = append $names (printf "job=%s-job-master-0.%s-job-master.%s.svc.%s" $fn $fn $ns $d) -}}
{{- $names = append $names (printf "job=%s-job-master.%s.svc.%s" $fn $ns $d) -}}
{{- $names = append $names (printf "job=%s-job-master.%s.svc" $fn $ns) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}
