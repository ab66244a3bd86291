{{/*
Names. `etcd.fullname` is F in docs/architecture.md: every object and every member name derives
from it, so it never depends on anything but the release name and the overrides.
*/}}
{{- define "etcd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcd.fullname" -}}
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

{{- define "etcd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcd.headlessName" -}}
{{- printf "%s-headless" (include "etcd.fullname" .) -}}
{{- end -}}

{{- define "etcd.configMapName" -}}
{{- printf "%s-config" (include "etcd.fullname" .) -}}
{{- end -}}

{{- define "etcd.agentConfigMapName" -}}
{{- printf "%s-agent" (include "etcd.fullname" .) -}}
{{- end -}}

{{/*
The member agent's modules (files/etcd-agent/*.py) as ConfigMap data, one key per file: mounted
as a directory, they run as `python3 /opt/etcd-agent COMMAND`.
*/}}
{{- define "etcd.agentCodeData" -}}
{{- range $path, $_ := .Files.Glob "files/etcd-agent/*.py" }}
{{ base $path }}: |
  {{- $.Files.Get $path | trimSuffix "\n" | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "etcd.recordName" -}}
{{- printf "%s-cluster-record" (include "etcd.fullname" .) -}}
{{- end -}}

{{- define "etcd.scaleDownName" -}}
{{- printf "%s-scale-down" (include "etcd.fullname" .) -}}
{{- end -}}

{{- define "etcd.defragName" -}}
{{- printf "%s-defrag" (include "etcd.fullname" .) -}}
{{- end -}}

{{/* Seconds a removed member's pod waits before deleting itself: longer than any run of the
scale-down hook (its whole budget), so a member the hook removed is never added back while the
hook runs; the StatefulSet has shrunk by then if the upgrade went through. */}}
{{- define "etcd.rejoinAfter" -}}
{{- if .Values.scaleDown.enabled -}}
{{- add (int .Values.scaleDown.timeoutSeconds) 60 -}}
{{- else -}}
60
{{- end -}}
{{- end -}}

{{- define "etcd.webuiName" -}}
{{- printf "%s-webui" (include "etcd.fullname" .) -}}
{{- end -}}

{{/* "true" when the chart's own web UI is deployed. */}}
{{- define "etcd.webuiBuiltin" -}}
{{- if and .Values.webui.enabled (eq .Values.webui.kind "builtin") }}true{{ end -}}
{{- end -}}

{{/* "true" when the member agent creates the built-in UI's etcd user and role (RBAC on). */}}
{{- define "etcd.webuiEtcdUser" -}}
{{- if and (include "etcd.webuiBuiltin" .) .Values.auth.rbac.enabled }}true{{ end -}}
{{- end -}}

{{/* The Secret with the built-in UI's login: webui.auth.existingSecret, else F-webui-login. */}}
{{- define "etcd.webuiLoginSecret" -}}
{{- default (printf "%s-webui-login" (include "etcd.fullname" .)) .Values.webui.auth.existingSecret -}}
{{- end -}}

{{/*
The built-in UI's program (files/webui/: modules, index.html, app.js, style.css) as ConfigMap
data, one flat key per file; its pod adds the agent's etcd_client.py and errors.py beside them.
*/}}
{{- define "etcd.webuiCodeData" -}}
{{- range $path, $_ := .Files.Glob "files/webui/*" }}
{{ base $path }}: |
  {{- $.Files.Get $path | trimSuffix "\n" | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "etcd.backupName" -}}
{{- printf "%s-backup" (include "etcd.fullname" .) -}}
{{- end -}}

{{/* "true" when the member agent creates the backup's etcd user (backups with RBAC on). */}}
{{- define "etcd.backupEtcdUser" -}}
{{- if and .Values.backup.enabled .Values.auth.rbac.enabled }}true{{ end -}}
{{- end -}}

{{/* The claim the backups are written to: backup.pvc.existingClaim, else F-backup. */}}
{{- define "etcd.backupClaim" -}}
{{- default (include "etcd.backupName" .) .Values.backup.pvc.existingClaim -}}
{{- end -}}

{{- define "etcd.backupTlsSecret" -}}
{{- if eq .Values.tls.source "existingSecrets" -}}
{{- .Values.backup.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-backup-tls" (include "etcd.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The client Service's URL: only ready members are behind it. */}}
{{- define "etcd.clientServiceUrl" -}}
{{- printf "%s://%s.%s.svc.%s:%d" (include "etcd.scheme" .) (include "etcd.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.client) -}}
{{- end -}}

{{/* The S3 settings of the agent (the backup's store step, a member's restore fetch), from
backup.s3: endpoint, bucket, addressing, region, the key pair from its Secret, the CA. */}}
{{- define "etcd.s3Env" -}}
{{- $s3 := .Values.backup.s3 -}}
- name: ETCD_AGENT_S3_ENDPOINT
  value: {{ $s3.endpoint | quote }}
- name: ETCD_AGENT_S3_BUCKET
  value: {{ $s3.bucket | quote }}
- name: ETCD_AGENT_S3_PREFIX
  value: {{ $s3.prefix | quote }}
- name: ETCD_AGENT_S3_REGION
  value: {{ $s3.region | quote }}
- name: ETCD_AGENT_S3_PATH_STYLE
  value: {{ ternary "true" "false" $s3.forcePathStyle | quote }}
- name: ETCD_AGENT_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.accessKeyIdKey }}
- name: ETCD_AGENT_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret }}
      key: {{ $s3.secretAccessKeyKey }}
{{- if $s3.caSecret }}
- name: ETCD_AGENT_S3_CA_FILE
  value: /etc/etcd-backup/s3-ca/ca.crt
{{- end }}
{{- end -}}

{{- define "etcd.backupSelectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd.name" . }}-backup
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "etcd.backupLabels" -}}
{{ include "etcd.backupSelectorLabels" . }}
{{ include "etcd.versionLabels" . }}
app.kubernetes.io/component: backup
{{- end -}}

{{/* The label that lets a pod reach the client port when the NetworkPolicy is on. */}}
{{- define "etcd.clientAccessLabel" -}}
{{- printf "%s-client" (include "etcd.fullname" .) -}}
{{- end -}}

{{/* "true" when the NetworkPolicy limits the client port: asked for, or implied by a selector. */}}
{{- define "etcd.restrictClient" -}}
{{- $c := .Values.networkPolicy.client -}}
{{- if or $c.restrict $c.podSelectors $c.namespaceSelectors $c.ipBlocks }}true{{ end -}}
{{- end -}}

{{/* "true" when the client Service carries the metrics port: `service.exposeMetrics`, and when it
is null (the default) only for a ClusterIP Service; the metrics listener is plain HTTP with no
authentication, so NodePort and LoadBalancer Services leave it out unless asked. */}}
{{- define "etcd.exposeMetrics" -}}
{{- $svc := .Values.service -}}
{{- if kindIs "invalid" $svc.exposeMetrics -}}
{{- if eq $svc.type "ClusterIP" }}true{{ end -}}
{{- else if $svc.exposeMetrics }}true{{ end -}}
{{- end -}}

{{/* The label that tells the headless Service from the client Service (both carry the same
common labels): the ServiceMonitor selects the headless one, which lists members that are not
ready. */}}
{{- define "etcd.headlessServiceLabel" -}}
etcd-chart/service: headless
{{- end -}}

{{/* PromQL label matchers of this cluster's series: metrics.selector, or the job the chart's
monitors set and the release namespace. */}}
{{- define "etcd.metricsSelector" -}}
{{- default (printf "job=%q,namespace=%q" (include "etcd.fullname" .) .Release.Namespace) .Values.metrics.selector -}}
{{- end -}}

{{/* A monitor's labels: the chart's and its own (`list $ monitor`), as one map so that a key in
both is written once. */}}
{{- define "etcd.monitoringLabels" -}}
{{- $root := index . 0 -}}
{{- toYaml (merge (deepCopy (default (dict) (index . 1).labels)) (include "etcd.labels" $root | fromYaml)) -}}
{{- end -}}

{{/* The scrape settings shared by the ServiceMonitor and PodMonitor endpoint (`list $ monitor`).
`job` is set to F whatever the monitor's kind (a PodMonitor would name it NS/F, a ServiceMonitor
after the Service), so the alerts and the dashboard have one selector. */}}
{{- define "etcd.scrapeSettings" -}}
{{- $monitor := index . 1 -}}
{{- with $monitor.interval }}
interval: {{ . }}
{{- end }}
{{- with $monitor.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- if $monitor.honorLabels }}
honorLabels: true
{{- end }}
relabelings:
  - action: replace
    targetLabel: job
    replacement: {{ include "etcd.fullname" (index . 0) }}
  {{- with $monitor.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $monitor.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Milliseconds of a Prometheus duration (`1m30s`, `500ms`); "" for "". */}}
{{- define "etcd.durationMs" -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" (toString .) -1 -}}
{{- $unit := regexReplaceAll "^[0-9]+" . "" -}}
{{- $total = add $total (mul (regexReplaceAll "[a-z]+$" . "" | int64) (index $units $unit)) -}}
{{- end -}}
{{- if . }}{{ $total }}{{ end -}}
{{- end -}}

{{/* "true" when the PodDisruptionBudget is rendered: with 3 or more members, or with 2 when
maxUnavailable is 0 (blocking drains, allowed explicitly). With 1 or 2 members no budget keeps a
quorum through a drain. */}}
{{- define "etcd.pdbRendered" -}}
{{- $replicas := int .Values.replicas -}}
{{- if and .Values.pdb.enabled (or (ge $replicas 3) (and (eq $replicas 2) (eq (include "etcd.pdbMaxUnavailable" . | int) 0))) }}true{{ end -}}
{{- end -}}

{{/* Members the budget lets go at once: pdb.maxUnavailable, or replicas - pdb.minAvailable. */}}
{{- define "etcd.pdbMaxUnavailable" -}}
{{- if kindIs "invalid" .Values.pdb.minAvailable -}}
{{- int .Values.pdb.maxUnavailable -}}
{{- else -}}
{{- max 0 (sub (int .Values.replicas) (int .Values.pdb.minAvailable)) -}}
{{- end -}}
{{- end -}}

{{/*
Bytes of a Kubernetes quantity (`8Gi`, `500M`, `1.5Ti`, a plain number) as an integer; "" when it
has another form (an exponent, milli-units), which the callers then leave unchecked.
*/}}
{{- define "etcd.bytes" -}}
{{- if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- int64 . -}}
{{- else if regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" (toString .) -}}
{{- $units := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- $suffix := regexReplaceAll "^[0-9.]+" (toString .) "" -}}
{{- $number := regexReplaceAll "[A-Za-z]+$" (toString .) "" -}}
{{- mulf (float64 $number) (index $units $suffix) | int64 -}}
{{- end -}}
{{- end -}}

{{/* A byte count as GiB for messages: `8 GiB`, `2.5 GiB`. */}}
{{- define "etcd.gib" -}}
{{- printf "%g GiB" (divf (int64 .) 1073741824) -}}
{{- end -}}

{{/* The backend quota etcd applies: config.quotaBackendBytes, 0 meaning etcd's default of 2 GiB. */}}
{{- define "etcd.quotaBytes" -}}
{{- $quota := int64 .Values.config.quotaBackendBytes -}}
{{- if le $quota 0 -}}2147483648{{- else -}}{{ $quota }}{{- end -}}
{{- end -}}

{{/* The smallest data claim for the quota: the database grows up to the quota, a defragmentation
or a snapshot sent by the leader writes a second copy beside it, and WAL segments (64 MiB each,
five kept) and snapshot files need room: twice the quota plus 1 GiB. */}}
{{- define "etcd.minDataBytes" -}}
{{- add (mul 2 (include "etcd.quotaBytes" . | int64)) 1073741824 -}}
{{- end -}}

{{/*
Node placement of a pod the chart runs beside the members (`list $ .Values.scaleDown` for the
hook, `list $ .Values.webui` for the web UI): each of its own values wins when set, even empty;
null takes the members' value, so the pod may run where the members run (tainted or dedicated
nodes). Of the members' affinity only nodeAffinity is taken: their pod (anti-)affinity spreads the
members and could keep this pod off every node.
*/}}
{{- define "etcd.placement" -}}
{{- $v := (index . 0).Values -}}
{{- $own := index . 1 -}}
{{- $priority := $own.priorityClassName -}}
{{- if kindIs "invalid" $priority }}{{ $priority = $v.priorityClassName }}{{ end -}}
{{- $nodeSelector := $own.nodeSelector -}}
{{- if kindIs "invalid" $nodeSelector }}{{ $nodeSelector = $v.nodeSelector }}{{ end -}}
{{- $tolerations := $own.tolerations -}}
{{- if kindIs "invalid" $tolerations }}{{ $tolerations = $v.tolerations }}{{ end -}}
{{- $affinity := $own.affinity -}}
{{- if and (kindIs "invalid" $affinity) (dig "nodeAffinity" nil (default (dict) $v.affinity)) -}}
{{- $affinity = dict "nodeAffinity" $v.affinity.nodeAffinity -}}
{{- end -}}
{{- with $priority }}
priorityClassName: {{ . }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The DNS egress rule of every NetworkPolicy: `networkPolicy.egress.dns.ports` to its `to`
peers (any address when the list is empty). */}}
{{- define "etcd.dnsEgressRule" -}}
{{- $dns := .Values.networkPolicy.egress.dns -}}
- ports:
    {{- toYaml $dns.ports | nindent 4 }}
  {{- with $dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "etcd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "etcd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
An object's `annotations:` block, called with (list $ own): commonAnnotations and the object's own
(its keys win), or nothing when both are empty.
*/}}
{{- define "etcd.annotations" -}}
{{- $own := default (dict) (index . 1) -}}
{{- $common := default (dict) (index . 0).Values.commonAnnotations -}}
{{- with merge (deepCopy $own) (deepCopy $common) -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* commonAnnotations as lines of an annotations block that a template writes itself. */}}
{{- define "etcd.commonAnnotationLines" -}}
{{- with .Values.commonAnnotations -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
Labels. Selector labels never carry the version (selectors cannot change); the member pods add
the component. Other pods the chart runs (hook, web UI) use a different app.kubernetes.io/name so
that no selector of the member set ever matches them.
*/}}
{{- define "etcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "etcd.versionLabels" -}}
helm.sh/chart: {{ include "etcd.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "etcd.labels" -}}
{{ include "etcd.selectorLabels" . }}
{{ include "etcd.versionLabels" . }}
{{- end -}}

{{/*
The member pod template carries no chart or app version: a label that changes with every chart
release would restart every member for changes that do not touch etcd (a new image does).
*/}}
{{- define "etcd.memberLabels" -}}
{{ include "etcd.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
app.kubernetes.io/component: member
{{- end -}}

{{- define "etcd.scaleDownSelectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd.name" . }}-scale-down
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "etcd.scaleDownLabels" -}}
{{ include "etcd.scaleDownSelectorLabels" . }}
{{ include "etcd.versionLabels" . }}
app.kubernetes.io/component: scale-down
{{- end -}}

{{- define "etcd.defragSelectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd.name" . }}-defrag
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "etcd.defragLabels" -}}
{{ include "etcd.defragSelectorLabels" . }}
{{ include "etcd.versionLabels" . }}
app.kubernetes.io/component: defrag
{{- end -}}

{{- define "etcd.webuiSelectorLabels" -}}
app.kubernetes.io/name: {{ include "etcd.name" . }}-webui
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "etcd.webuiLabels" -}}
{{ include "etcd.webuiSelectorLabels" . }}
{{ include "etcd.versionLabels" . }}
app.kubernetes.io/component: webui
{{- end -}}

{{/*
`repository:tag`, or `repository@digest` when a digest pins the image; called with (list $ image).
global.imageRegistry replaces the repository's registry host (its first part when that has a dot
or a port, or is localhost; Docker Hub names have none) or goes in front of a name without one.
*/}}
{{- define "etcd.imageRef" -}}
{{- $image := index . 1 -}}
{{- $repository := $image.repository -}}
{{- with (index . 0).Values.global.imageRegistry -}}
{{- $parts := splitList "/" $repository -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $repository = join "/" (rest $parts) -}}
{{- end -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* URLs. */}}
{{- define "etcd.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* `F-headless.NS.svc.D`: the suffix of every member's stable DNS name. */}}
{{- define "etcd.memberDomain" -}}
{{- printf "%s.%s.svc.%s" (include "etcd.headlessName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The peer list of the bootstrap members: F-0=SCHEME://F-0.F-headless.NS.svc.D:PEER,... */}}
{{- define "etcd.initialCluster" -}}
{{- $fullname := include "etcd.fullname" . -}}
{{- $scheme := include "etcd.scheme" . -}}
{{- $domain := include "etcd.memberDomain" . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $peers = append $peers (printf "%s-%d=%s://%s-%d.%s:%d" $fullname $i $scheme $fullname $i $domain (int $.Values.ports.peer)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{- define "etcd.initialClusterToken" -}}
{{- default (printf "%s-%s" (include "etcd.fullname" .) .Release.Namespace) .Values.config.initialClusterToken -}}
{{- end -}}

{{- define "etcd.initialClusterState" -}}
{{- default "new" .Values.initialClusterState -}}
{{- end -}}

{{/* TLS Secret names, whichever source provides them. */}}
{{- define "etcd.tlsSecret" -}}
{{- $root := index . 0 -}}
{{- $which := index . 1 -}}
{{- if eq $root.Values.tls.source "existingSecrets" -}}
{{- index $root.Values.tls.existingSecrets $which -}}
{{- else -}}
{{- printf "%s-%s-tls" (include "etcd.fullname" $root) $which -}}
{{- end -}}
{{- end -}}

{{- define "etcd.webuiTlsSecret" -}}
{{- if eq .Values.tls.source "existingSecrets" -}}
{{- .Values.webui.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-webui-tls" (include "etcd.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The etcd configuration without `initial-cluster` and `initial-cluster-state`, as JSON. The pod
template's checksum is taken over this, so scaling (which changes only those two keys) does not
restart every member.
*/}}
{{- define "etcd.configBase" -}}
{{- $scheme := include "etcd.scheme" . -}}
{{- $ports := .Values.ports -}}
{{- $domain := include "etcd.memberDomain" . -}}
{{- $clientListen := list (printf "%s://$(POD_IP_URL_HOST):%d" $scheme (int $ports.client)) -}}
{{- if .Values.listen.localhost -}}
{{- $clientListen = append $clientListen (printf "%s://127.0.0.1:%d" $scheme (int $ports.client)) -}}
{{- end -}}
{{- $config := dict
  "name" "$(POD_NAME)"
  "data-dir" "/var/lib/etcd/data"
  "listen-peer-urls" (printf "%s://$(POD_IP_URL_HOST):%d" $scheme (int $ports.peer))
  "listen-client-urls" (join "," $clientListen)
  "listen-metrics-urls" (printf "http://$(POD_IP_URL_HOST):%d" (int $ports.metrics))
  "initial-advertise-peer-urls" (printf "%s://$(POD_NAME).%s:%d" $scheme $domain (int $ports.peer))
  "advertise-client-urls" (printf "%s://$(POD_NAME).%s:%d" $scheme $domain (int $ports.client))
  "initial-cluster-token" (include "etcd.initialClusterToken" .)
  "auto-compaction-mode" .Values.config.autoCompactionMode
  "auto-compaction-retention" (toString .Values.config.autoCompactionRetention)
  "quota-backend-bytes" (int64 .Values.config.quotaBackendBytes)
  "snapshot-count" (int64 .Values.config.snapshotCount)
  "heartbeat-interval" (int64 .Values.config.heartbeatInterval)
  "election-timeout" (int64 .Values.config.electionTimeout)
  "log-level" .Values.config.logLevel
-}}
{{- if and .Values.persistence.enabled .Values.persistence.wal.enabled -}}
{{- $_ := set $config "wal-dir" "/var/lib/etcd-wal/wal" -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $config "client-transport-security" (dict
  "cert-file" "/etc/etcd/tls/server/tls.crt"
  "key-file" "/etc/etcd/tls/server/tls.key"
  "trusted-ca-file" "/etc/etcd/tls/server/ca.crt"
  "client-cert-auth" .Values.tls.clientCertAuth) -}}
{{- $_ := set $config "peer-transport-security" (dict
  "cert-file" "/etc/etcd/tls/peer/tls.crt"
  "key-file" "/etc/etcd/tls/peer/tls.key"
  "trusted-ca-file" "/etc/etcd/tls/peer/ca.crt"
  "client-cert-auth" .Values.tls.peerClientCertAuth) -}}
{{- end -}}
{{- $token := .Values.auth.token -}}
{{- if eq $token.type "jwt" -}}
{{- $jwt := list "jwt" -}}
{{- if $token.jwt.publicKeyKey -}}
{{- $jwt = append $jwt "pub-key=/etc/etcd/jwt/jwt.pub" -}}
{{- end -}}
{{- $jwt = concat $jwt (list "priv-key=/etc/etcd/jwt/jwt.key" (printf "sign-method=%s" $token.jwt.signMethod) (printf "ttl=%s" $token.jwt.ttl)) -}}
{{- $_ := set $config "auth-token" (join "," $jwt) -}}
{{- else if eq $token.type "simple" -}}
{{- $_ := set $config "auth-token" "simple" -}}
{{- end -}}
{{- with .Values.extraFlags -}}
{{- $_ := set $config "x-extra-flags" . -}}
{{- end -}}
{{- range $key, $value := .Values.extraConfig -}}
{{- $_ := set $config $key $value -}}
{{- end -}}
{{- toJson $config -}}
{{- end -}}

{{/* The complete configuration file: the base plus the bootstrap plan. */}}
{{- define "etcd.configFile" -}}
{{- $config := include "etcd.configBase" . | fromJson -}}
{{- $_ := set $config "initial-cluster" (include "etcd.initialCluster" .) -}}
{{- $_ := set $config "initial-cluster-state" (include "etcd.initialClusterState" .) -}}
{{- toPrettyJson $config -}}
{{- end -}}

{{/*
`auth.json` for the member agent: roles and users to create, and where each user's password is
mounted (the root password is always /etc/etcd/auth/root/password). Passwords themselves never
appear in a ConfigMap.
*/}}
{{- define "etcd.authFile" -}}
{{- $rbac := .Values.auth.rbac -}}
{{- $users := list -}}
{{- range $rbac.users -}}
{{- $users = append $users (dict "name" .name "roles" (default (list) .roles) "passwordFile" (printf "/etc/etcd/auth/users/%s/password" .name)) -}}
{{- end -}}
{{- $roles := list -}}
{{- range $rbac.roles -}}
{{- $permissions := list -}}
{{- range .permissions -}}
{{- $permissions = append $permissions (dict "type" .type "key" .key "prefix" (default false .prefix)) -}}
{{- end -}}
{{- $roles = append $roles (dict "name" .name "permissions" $permissions) -}}
{{- end -}}
{{- if include "etcd.webuiEtcdUser" . -}}
{{- $ui := .Values.webui -}}
{{- /* The empty prefix: every key (the agent grants it as etcdctl does, ["\0", "\0")). */ -}}
{{- $permission := dict "type" (ternary "read" "readwrite" $ui.readOnly) "key" "" "prefix" true -}}
{{- $roles = append $roles (dict "name" $ui.etcdUser.name "permissions" (list $permission)) -}}
{{- $users = append $users (dict "name" $ui.etcdUser.name "roles" (list $ui.etcdUser.name) "passwordFile" "/etc/etcd/auth/webui/password") -}}
{{- end -}}
{{- if include "etcd.backupEtcdUser" . -}}
{{- /* etcd takes snapshots only for users with the root role (auth store IsAdminPermitted). */ -}}
{{- $users = append $users (dict "name" .Values.backup.etcdUser.name "roles" (list "root") "passwordFile" "/etc/etcd/auth/backup/password") -}}
{{- end -}}
{{- toPrettyJson (dict "users" $users "roles" $roles) -}}
{{- end -}}

{{/*
What etcd runs with: a change restarts the members. Users and roles (auth.json) are not part of
it: the member agent applies them at run time when the mounted file changes.
*/}}
{{- define "etcd.configChecksum" -}}
{{- include "etcd.configBase" . | sha256sum -}}
{{- end -}}

{{/*
DNS names of the server and peer certificates: every member up to tls.maxMembers under every
name it can be reached by, and both Services, short and qualified. No wildcards.
*/}}
{{- define "etcd.certDnsNames" -}}
{{- $fullname := include "etcd.fullname" . -}}
{{- $headless := include "etcd.headlessName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.clusterDomain -}}
{{- $names := list -}}
{{- range $i := until (int .Values.tls.maxMembers) -}}
{{- $pod := printf "%s-%d" $fullname $i -}}
{{- $names = concat $names (list $pod (printf "%s.%s" $pod $headless) (printf "%s.%s.%s" $pod $headless $ns) (printf "%s.%s.%s.svc" $pod $headless $ns) (printf "%s.%s.%s.svc.%s" $pod $headless $ns $domain)) -}}
{{- end -}}
{{- range $svc := list $fullname $headless -}}
{{- $names = concat $names (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns $domain)) -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}

{{- define "etcd.issuerRef" -}}
{{- $ref := .Values.tls.certManager.issuerRef -}}
{{- if $ref.name -}}
name: {{ $ref.name }}
kind: {{ $ref.kind }}
group: {{ $ref.group }}
{{- else -}}
name: {{ include "etcd.fullname" . }}-ca
kind: Issuer
group: cert-manager.io
{{- end -}}
{{- end -}}

{{- define "etcd.privateKey" -}}
{{- $key := .Values.tls.certManager.privateKey -}}
algorithm: {{ $key.algorithm }}
{{- if ne $key.algorithm "Ed25519" }}
size: {{ int $key.size }}
{{- end }}
encoding: PKCS8
rotationPolicy: {{ $key.rotationPolicy }}
{{- end -}}

{{/*
Environment of every agent container (prepare, member-agent, the hook): the pod's identity from
the downward API and the ETCD_AGENT_* contract of docs/architecture.md.
*/}}
{{- define "etcd.agentEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: ETCD_AGENT_TEMPLATE
  value: /etc/etcd-template/etcd.conf.json
- name: ETCD_AGENT_OUTPUT
  value: /var/run/etcd/etcd.conf.json
- name: ETCD_AGENT_RECORD
  value: {{ ternary (include "etcd.recordName" .) "" .Values.clusterRecord.enabled | quote }}
- name: ETCD_AGENT_CLIENT_PORT
  value: {{ .Values.ports.client | quote }}
- name: ETCD_AGENT_CLIENT_SCHEME
  value: {{ include "etcd.scheme" . }}
- name: ETCD_AGENT_HEADLESS_SERVICE
  value: {{ include "etcd.headlessName" . }}
- name: ETCD_AGENT_CLUSTER_DOMAIN
  value: {{ .Values.clusterDomain }}
{{- if .Values.tls.enabled }}
- name: ETCD_AGENT_CACERT
  value: /etc/etcd/tls/agent/ca.crt
- name: ETCD_AGENT_CERT
  value: /etc/etcd/tls/agent/tls.crt
- name: ETCD_AGENT_KEY
  value: /etc/etcd/tls/agent/tls.key
{{- end }}
{{- if .Values.auth.rbac.enabled }}
- name: ETCD_AGENT_AUTH_FILE
  value: /etc/etcd-template/auth.json
- name: ETCD_AGENT_ROOT_PASSWORD_FILE
  value: /etc/etcd/auth/root/password
{{- end }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- end -}}

{{/* The projected service-account token, mounted only into the agent containers. */}}
{{- define "etcd.kubeApiAccessVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end -}}

{{- define "etcd.kubeApiAccessMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}

{{/* Password Secrets of the RBAC users, mounted into the member agent under /etc/etcd/auth/. */}}
{{- define "etcd.authVolumes" -}}
{{- $rbac := .Values.auth.rbac -}}
- name: auth-root
  secret:
    secretName: {{ $rbac.rootPassword.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $rbac.rootPassword.key }}
        path: password
{{- range $i, $user := $rbac.users }}
- name: auth-user-{{ $i }}
  secret:
    secretName: {{ ($user.password).existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ default "password" ($user.password).key }}
        path: password
{{- end }}
{{- if include "etcd.webuiEtcdUser" . }}
- name: auth-webui
  secret:
    secretName: {{ .Values.webui.etcdUser.password.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.webui.etcdUser.password.key }}
        path: password
{{- end }}
{{- if include "etcd.backupEtcdUser" . }}
- name: auth-backup
  secret:
    secretName: {{ .Values.backup.etcdUser.password.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.backup.etcdUser.password.key }}
        path: password
{{- end }}
{{- end -}}

{{- define "etcd.authMounts" -}}
- name: auth-root
  mountPath: /etc/etcd/auth/root
  readOnly: true
{{- range $i, $user := .Values.auth.rbac.users }}
- name: auth-user-{{ $i }}
  mountPath: /etc/etcd/auth/users/{{ $user.name }}
  readOnly: true
{{- end }}
{{- if include "etcd.webuiEtcdUser" . }}
- name: auth-webui
  mountPath: /etc/etcd/auth/webui
  readOnly: true
{{- end }}
{{- if include "etcd.backupEtcdUser" . }}
- name: auth-backup
  mountPath: /etc/etcd/auth/backup
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Every cross-field value error, collected and reported in one `fail`. The schema catches types,
enums and typos; these are the rules that involve more than one value. Each message names the
value and the fix.
*/}}
{{- define "etcd.validateValues" -}}
{{- $errors := list -}}
{{- $v := .Values -}}
{{- $replicas := int $v.replicas -}}
{{- $fullname := include "etcd.fullname" . -}}
{{- if gt (len $fullname) 47 -}}
{{- $errors = append $errors (printf "fullnameOverride/release name: the full name %q is %d characters; at most 47 fit `<name>-cluster-record`. Set fullnameOverride to a shorter name." $fullname (len $fullname)) -}}
{{- end -}}
{{- if lt $replicas 1 -}}
{{- $errors = append $errors (printf "replicas: %d; an etcd cluster needs at least 1 member. Set replicas to 1, 3, 5 or 7." $replicas) -}}
{{- else if and (eq (mod $replicas 2) 0) (not $v.allowEvenReplicas) -}}
{{- $errors = append $errors (printf "replicas: %d is even; it tolerates no more failures than %d and needs a larger quorum. Use %d or %d, or set allowEvenReplicas=true." $replicas (sub $replicas 1) (sub $replicas 1) (add $replicas 1)) -}}
{{- end -}}
{{- $hasMax := not (kindIs "invalid" $v.pdb.maxUnavailable) -}}
{{- $hasMin := not (kindIs "invalid" $v.pdb.minAvailable) -}}
{{- if and $v.pdb.enabled $hasMax $hasMin -}}
{{- $errors = append $errors "pdb.minAvailable: set together with pdb.maxUnavailable, and a PodDisruptionBudget takes one of them. Set pdb.maxUnavailable=null to use pdb.minAvailable, or remove pdb.minAvailable." -}}
{{- else if and $v.pdb.enabled (not $hasMax) (not $hasMin) -}}
{{- $errors = append $errors "pdb.maxUnavailable: null and pdb.minAvailable is unset, so the budget would say nothing. Set pdb.maxUnavailable (1 is the default) or pdb.minAvailable, or set pdb.enabled=false." -}}
{{- else if and $v.pdb.enabled $hasMin (gt (int $v.pdb.minAvailable) $replicas) -}}
{{- $errors = append $errors (printf "pdb.minAvailable: %d is more than the %d members, so no member could ever be evicted and every drain would wait forever. Set it to at most %d (a quorum is %d)." (int $v.pdb.minAvailable) $replicas $replicas (add (div $replicas 2) 1)) -}}
{{- else if and $v.pdb.enabled (gt $replicas 1) -}}
{{- $safe := div (sub $replicas 1) 2 -}}
{{- $maxUnavailable := include "etcd.pdbMaxUnavailable" . | int -}}
{{- $quorum := add (div $replicas 2) 1 -}}
{{- if and (gt $replicas 2) (gt $maxUnavailable $safe) -}}
{{- if $hasMin -}}
{{- $errors = append $errors (printf "pdb.minAvailable: %d lets %d members down at once, which would break the quorum of %d members; a quorum is (replicas/2)+1 = %d. Raise pdb.minAvailable to %d." (int $v.pdb.minAvailable) $maxUnavailable $replicas $quorum $quorum) -}}
{{- else -}}
{{- $errors = append $errors (printf "pdb.maxUnavailable: %d members down would break the quorum of %d members; at most (replicas-1)/2 = %d. Lower pdb.maxUnavailable to %d." $maxUnavailable $replicas $safe $safe) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $maxUnavailable 0) (not $v.pdb.allowBlockingDrains) -}}
{{- $fix := printf "Set %s, or set pdb.allowBlockingDrains=true if drains should wait for you." (ternary (printf "pdb.minAvailable to %d" $quorum) "pdb.maxUnavailable to 1" $hasMin) -}}
{{- if eq $replicas 2 -}}
{{- $fix = "With 2 members no budget keeps a quorum through a drain: leave pdb.maxUnavailable at 1 (no budget is rendered; a drain stops writes until the member is back), run 3 members, or set pdb.allowBlockingDrains=true if drains should wait for you." -}}
{{- end -}}
{{- $errors = append $errors (printf "%s: %s lets no member be evicted, so every node drain (kubectl drain, node upgrades, the cluster autoscaler) on a node running a member waits until someone moves the member by hand. %s" (ternary "pdb.minAvailable" "pdb.maxUnavailable" $hasMin) (ternary (printf "%d (every member)" (int $v.pdb.minAvailable)) "0" $hasMin) $fix) -}}
{{- end -}}
{{- end -}}
{{- if and $v.tls.enabled (lt (int $v.tls.maxMembers) $replicas) -}}
{{- $errors = append $errors (printf "tls.maxMembers: %d is below replicas %d; the certificates would not name every member. Set tls.maxMembers to at least %d." (int $v.tls.maxMembers) $replicas $replicas) -}}
{{- end -}}
{{- if and $v.tls.enabled (eq $v.tls.source "existingSecrets") -}}
{{- range $which := list "server" "peer" "client" "agent" -}}
{{- if not (index $v.tls.existingSecrets $which) -}}
{{- $errors = append $errors (printf "tls.existingSecrets.%s: required with tls.source=existingSecrets. Name the Secret holding tls.crt, tls.key and ca.crt (`etcd-chart pki` makes them), or use tls.source=cert-manager." $which) -}}
{{- end -}}
{{- end -}}
{{- if and $v.webui.enabled (not $v.webui.tls.existingSecret) -}}
{{- $errors = append $errors "webui.tls.existingSecret: required with webui.enabled, tls.enabled and tls.source=existingSecrets. Name the Secret with the web UI's client certificate." -}}
{{- end -}}
{{- end -}}
{{- if and $v.tls.enabled (eq $v.tls.source "cert-manager") -}}
{{- $key := $v.tls.certManager.privateKey -}}
{{- if and (eq $key.algorithm "RSA") (not (has (int $key.size) (list 2048 4096 8192))) -}}
{{- $errors = append $errors (printf "tls.certManager.privateKey.size: %d is not an RSA key size. Use 2048, 4096 or 8192." (int $key.size)) -}}
{{- else if and (eq $key.algorithm "ECDSA") (not (has (int $key.size) (list 256 384 521))) -}}
{{- $errors = append $errors (printf "tls.certManager.privateKey.size: %d is not an ECDSA key size. Use 256, 384 or 521." (int $key.size)) -}}
{{- end -}}
{{- end -}}
{{- if not (has $v.tls.source (list "cert-manager" "existingSecrets")) -}}
{{- $errors = append $errors (printf "tls.source: %q is unknown. Use cert-manager or existingSecrets." $v.tls.source) -}}
{{- end -}}
{{- $rbac := $v.auth.rbac -}}
{{- if and $rbac.enabled (not $rbac.rootPassword.existingSecret) -}}
{{- $errors = append $errors "auth.rbac.rootPassword.existingSecret: required with auth.rbac.enabled. Create a Secret with the root password (the chart never generates one) and name it here." -}}
{{- end -}}
{{- $tokenType := $v.auth.token.type -}}
{{- if not (has $tokenType (list "" "simple" "jwt")) -}}
{{- $errors = append $errors (printf "auth.token.type: %q is unknown. Use simple or jwt." $tokenType) -}}
{{- end -}}
{{- if and $rbac.enabled (eq $tokenType "") -}}
{{- $errors = append $errors "auth.token.type: choose a token type with auth.rbac.enabled. Set auth.token.type=jwt with auth.token.jwt.existingSecret (recommended), or auth.token.type=simple explicitly." -}}
{{- end -}}
{{- if and (eq $tokenType "jwt") (not $v.auth.token.jwt.existingSecret) -}}
{{- $errors = append $errors "auth.token.jwt.existingSecret: required with auth.token.type=jwt. Create a Secret with the signing key (e.g. jwt.key, jwt.pub) and name it here." -}}
{{- end -}}
{{- $roleNames := list -}}
{{- range $rbac.roles -}}
{{- $roleNames = append $roleNames .name -}}
{{- end -}}
{{- $userNames := list -}}
{{- range $i, $user := $rbac.users -}}
{{- if has $user.name $userNames -}}
{{- $errors = append $errors (printf "auth.rbac.users[%d].name: %q is declared twice. Give each user one entry." $i $user.name) -}}
{{- end -}}
{{- $userNames = append $userNames $user.name -}}
{{- if not ($user.password).existingSecret -}}
{{- $errors = append $errors (printf "auth.rbac.users[%d].password.existingSecret: user %q needs a password Secret. Create one and name it here (with client certificates the CN still selects the user)." $i $user.name) -}}
{{- end -}}
{{- if eq $user.name "root" -}}
{{- $errors = append $errors (printf "auth.rbac.users[%d].name: root is managed through auth.rbac.rootPassword. Remove this entry." $i) -}}
{{- end -}}
{{- range $role := $user.roles -}}
{{- if and (not (has $role $roleNames)) (ne $role "root") -}}
{{- $errors = append $errors (printf "auth.rbac.users[%d].roles: role %q is not declared. Add it to auth.rbac.roles or remove it from the user." $i $role) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (or $rbac.users $rbac.roles) (not $rbac.enabled) -}}
{{- $errors = append $errors "auth.rbac.users/auth.rbac.roles: declared but auth.rbac.enabled is false, so they would never be created. Set auth.rbac.enabled=true or remove them." -}}
{{- end -}}
{{- if lt (int64 $v.config.electionTimeout) (mul 5 (int64 $v.config.heartbeatInterval)) -}}
{{- $errors = append $errors (printf "config.electionTimeout: %d ms is below 5 x config.heartbeatInterval (%d ms), which etcd refuses. Raise config.electionTimeout to at least %d." (int64 $v.config.electionTimeout) (int64 $v.config.heartbeatInterval) (mul 5 (int64 $v.config.heartbeatInterval))) -}}
{{- end -}}
{{- if and (not $v.clusterRecord.enabled) (gt $replicas 1) (not $v.initialClusterState) -}}
{{- $errors = append $errors (printf "clusterRecord.enabled: false with %d replicas needs initialClusterState. Without the record nothing remembers that the cluster was created, so members could bootstrap a second cluster beside it. Set initialClusterState=new for the first install and existing for every later upgrade, or keep clusterRecord.enabled=true." $replicas) -}}
{{- end -}}
{{- if and $v.persistence.wal.enabled (not $v.persistence.enabled) -}}
{{- $errors = append $errors "persistence.wal.enabled: a separate WAL volume needs persistence.enabled=true. Turn persistence on, or turn the WAL volume off." -}}
{{- end -}}
{{- $ui := $v.webui -}}
{{- if not (has $ui.kind (list "builtin" "etcdkeeper" "e3w")) -}}
{{- $errors = append $errors (printf "webui.kind: %q is unknown. Use builtin, etcdkeeper or e3w." $ui.kind) -}}
{{- else if and $ui.enabled (ne $ui.kind "builtin") $ui.auth.enabled -}}
{{- $errors = append $errors (printf "webui.auth.enabled: %s has no login, so anyone who reaches its Service could read (and change) every key. Set webui.auth.enabled=false to run it anyway (keep its Service ClusterIP), or use webui.kind=builtin." $ui.kind) -}}
{{- end -}}
{{- if include "etcd.webuiEtcdUser" . -}}
{{- if not $ui.etcdUser.password.existingSecret -}}
{{- $errors = append $errors (printf "webui.etcdUser.password.existingSecret: required with webui.enabled and auth.rbac.enabled: the web UI logs in to etcd as user %q with this password. Create a Secret with it (kubectl create secret generic etcd-webui-etcd --from-literal=password=\"$(openssl rand -base64 24)\") and name it here." $ui.etcdUser.name) -}}
{{- end -}}
{{- if eq $ui.etcdUser.name "root" -}}
{{- $errors = append $errors "webui.etcdUser.name: root would give the web UI every right in etcd. Give it a user of its own (the default is webui)." -}}
{{- end -}}
{{- range $i, $user := $rbac.users -}}
{{- if eq $user.name $ui.etcdUser.name -}}
{{- $errors = append $errors (printf "auth.rbac.users[%d].name: %q is the web UI's etcd user, which the chart creates (webui.etcdUser). Remove this entry, or set webui.etcdUser.name to another name." $i $user.name) -}}
{{- end -}}
{{- end -}}
{{- range $i, $role := $rbac.roles -}}
{{- if eq $role.name $ui.etcdUser.name -}}
{{- $errors = append $errors (printf "auth.rbac.roles[%d].name: %q is the web UI's role, which the chart creates with the user webui.etcdUser. Rename your role, or set webui.etcdUser.name to another name." $i $role.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (ne $v.service.type "NodePort") (ne $v.service.type "LoadBalancer") -}}
{{- if or $v.service.nodePorts.client $v.service.nodePorts.metrics -}}
{{- $errors = append $errors (printf "service.nodePorts: set but service.type is %s. Use service.type=NodePort or LoadBalancer, or remove the node ports." $v.service.type) -}}
{{- end -}}
{{- if $v.service.externalTrafficPolicy -}}
{{- $errors = append $errors (printf "service.externalTrafficPolicy: only NodePort and LoadBalancer Services have one, service.type is %s. Remove it or change service.type." $v.service.type) -}}
{{- end -}}
{{- else if and $v.service.nodePorts.metrics (not (include "etcd.exposeMetrics" .)) -}}
{{- $why := ternary "unset publishes it only with type ClusterIP" "is false" (kindIs "invalid" $v.service.exposeMetrics) -}}
{{- $errors = append $errors (printf "service.nodePorts.metrics: set, but the metrics port is not on the client Service, since service.exposeMetrics %s. Set service.exposeMetrics=true to publish the plain-HTTP metrics outside the cluster, or remove the node port." $why) -}}
{{- end -}}
{{- $ports := list (int $v.ports.client) (int $v.ports.peer) (int $v.ports.metrics) -}}
{{- if ne (len (uniq $ports)) 3 -}}
{{- $errors = append $errors (printf "ports: client %d, peer %d and metrics %d must differ. Give each its own port." (int $v.ports.client) (int $v.ports.peer) (int $v.ports.metrics)) -}}
{{- end -}}
{{- $owned := list "name" "data-dir" "wal-dir" "listen-peer-urls" "listen-client-urls" "listen-metrics-urls" "initial-advertise-peer-urls" "advertise-client-urls" "initial-cluster" "initial-cluster-state" "initial-cluster-token" "client-transport-security" "peer-transport-security" "auth-token" "x-extra-flags" -}}
{{- range $key, $_ := $v.extraConfig -}}
{{- if has $key $owned -}}
{{- $errors = append $errors (printf "extraConfig.%s: the chart manages this key. Use its own value (ports, listen, tls, config.initialClusterToken, initialClusterState, persistence) instead." $key) -}}
{{- else if or (hasPrefix "experimental-" $key) (eq $key "enable-v2") -}}
{{- $errors = append $errors (printf "extraConfig.%s: not valid in etcd 3.7 (experimental flags and v2 were removed). Remove it or use its non-experimental name." $key) -}}
{{- end -}}
{{- end -}}
{{- range $i, $flag := $v.extraFlags -}}
{{- $key := regexReplaceAll "^--([^=]*).*$" (toString $flag) "${1}" -}}
{{- if has $key $owned -}}
{{- $errors = append $errors (printf "extraFlags[%d]: --%s is managed by the chart. Use its own value (ports, listen, tls, config.initialClusterToken, initialClusterState, persistence) instead." $i $key) -}}
{{- else if or (hasPrefix "experimental-" $key) (eq $key "enable-v2") -}}
{{- $errors = append $errors (printf "extraFlags[%d]: --%s is not valid in etcd 3.7 (experimental flags and v2 were removed). Remove it or use its non-experimental name." $i $key) -}}
{{- end -}}
{{- end -}}
{{- $selectorLabels := list "app.kubernetes.io/name" "app.kubernetes.io/instance" -}}
{{- range $field := list "commonLabels" "podLabels" -}}
{{- $chartLabels := list "app.kubernetes.io/component" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "helm.sh/chart" -}}
{{- if eq $field "commonLabels" -}}
{{- $chartLabels = append $chartLabels (include "etcd.clientAccessLabel" $) -}}
{{- end -}}
{{- range $key, $_ := index $v $field -}}
{{- if has $key $selectorLabels -}}
{{- $errors = append $errors (printf "%s.%s: the chart sets this selector label itself, and a second value renders a duplicate key that can detach the pods from the StatefulSet, Services, PodDisruptionBudget and NetworkPolicy. Remove it from %s; label your pods with keys of your own." $field $key $field) -}}
{{- else if has $key $chartLabels -}}
{{- $errors = append $errors (printf "%s.%s: the chart sets this label itself, so the objects would carry the key twice. Remove it from %s." $field $key $field) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := $v.podLabels -}}
{{- if hasKey (default (dict) $v.commonLabels) $key -}}
{{- $errors = append $errors (printf "podLabels.%s: also set in commonLabels, so the member pod template would carry the key twice. Keep it in one of them." $key) -}}
{{- end -}}
{{- end -}}
{{- $np := $v.networkPolicy -}}
{{- if and $np.enabled $np.extraEgress (not $np.egress.restrict) -}}
{{- $errors = append $errors "networkPolicy.extraEgress: set but networkPolicy.egress.restrict is false, so egress is open and the rules would change nothing. Set networkPolicy.egress.restrict=true, or remove them." -}}
{{- end -}}
{{- if $v.persistence.enabled -}}
{{- $size := include "etcd.bytes" $v.persistence.size -}}
{{- $need := include "etcd.minDataBytes" . | int64 -}}
{{- if and $size (lt (int64 $size) $need) -}}
{{- $errors = append $errors (printf "persistence.size: %s is too small for config.quotaBackendBytes %d (%s): the database grows up to the quota, a defragmentation or a snapshot sent by the leader writes a second copy beside it, and the WAL and snapshot files need room too, so a data claim needs twice the quota plus 1 GiB (%s). Raise persistence.size to at least %dGi, or lower config.quotaBackendBytes." (toString $v.persistence.size) (int64 $v.config.quotaBackendBytes) (include "etcd.gib" (include "etcd.quotaBytes" .)) (include "etcd.gib" $need) (int64 (ceil (divf $need 1073741824)))) -}}
{{- end -}}
{{- end -}}
{{- /* The escape hatches (extra env, volumes, containers, annotations, objects) add to the member
pods and the release; they never take over what the chart and its member agent own. */ -}}
{{- $chartEnv := list "POD_NAME" "ETCDCTL_ENDPOINTS" "ETCDCTL_CACERT" "ETCDCTL_CERT" "ETCDCTL_KEY" -}}
{{- $envNames := list -}}
{{- range $i, $var := $v.extraEnvVars -}}
{{- $name := toString $var.name -}}
{{- if hasPrefix "ETCD_" $name -}}
{{- $errors = append $errors (printf "extraEnvVars[%d].name: %s; etcd runs with --config-file and ignores ETCD_* variables. Set the option in config, extraConfig or extraFlags instead." $i $name) -}}
{{- else if has $name $chartEnv -}}
{{- $errors = append $errors (printf "extraEnvVars[%d].name: %s is set by the chart (the pod's name, etcdctl's endpoint and certificates), so the container would carry it twice. Remove it." $i $name) -}}
{{- else if has $name $envNames -}}
{{- $errors = append $errors (printf "extraEnvVars[%d].name: %s is declared twice. Keep one entry." $i $name) -}}
{{- end -}}
{{- $envNames = append $envNames $name -}}
{{- end -}}
{{- $chartVolumes := list "data" "wal" "runtime" "config" "agent" "kube-api-access" "jwt" "restore-source" "s3-ca" -}}
{{- $volumeNames := list -}}
{{- range $i, $volume := $v.extraVolumes -}}
{{- $name := toString $volume.name -}}
{{- if or (has $name $chartVolumes) (hasPrefix "tls-" $name) (hasPrefix "auth-" $name) -}}
{{- $errors = append $errors (printf "extraVolumes[%d].name: %s is a volume name the chart uses (data, wal, runtime, config, agent, kube-api-access, jwt, restore-source, s3-ca, tls-*, auth-*). Give yours another name." $i $name) -}}
{{- else if has $name $volumeNames -}}
{{- $errors = append $errors (printf "extraVolumes[%d].name: %s is declared twice. Keep one entry." $i $name) -}}
{{- end -}}
{{- $volumeNames = append $volumeNames $name -}}
{{- end -}}
{{- $chartPaths := list "/var/lib/etcd" "/var/lib/etcd-wal" "/var/run/etcd" "/etc/etcd" -}}
{{- range $i, $mount := $v.extraVolumeMounts -}}
{{- $path := trimSuffix "/" (toString $mount.mountPath) -}}
{{- if not (has (toString $mount.name) $volumeNames) -}}
{{- $errors = append $errors (printf "extraVolumeMounts[%d].name: %s is not one of extraVolumes. Add the volume to extraVolumes, or mount one that is there." $i (toString $mount.name)) -}}
{{- end -}}
{{- range $owned := $chartPaths -}}
{{- if or (eq $path $owned) (hasPrefix (printf "%s/" $owned) $path) -}}
{{- $errors = append $errors (printf "extraVolumeMounts[%d].mountPath: %s is at or under %s, which the chart mounts for etcd. Mount it elsewhere." $i (toString $mount.mountPath) $owned) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $chartPorts := list (int $v.ports.client) (int $v.ports.peer) (int $v.ports.metrics) -}}
{{- $containerNames := list "etcd" "prepare" "member-agent" "restore-fetch" "restore" -}}
{{- range $field := list "initContainers" "sidecars" -}}
{{- range $i, $container := index $v $field -}}
{{- $name := toString $container.name -}}
{{- if has $name (list "etcd" "prepare" "member-agent" "restore-fetch" "restore") -}}
{{- $errors = append $errors (printf "%s[%d].name: %s is a container of the chart. Give yours another name." $field $i $name) -}}
{{- else if has $name $containerNames -}}
{{- $errors = append $errors (printf "%s[%d].name: %s is declared twice (sidecars and initContainers share the pod's names). Keep one." $field $i $name) -}}
{{- end -}}
{{- $containerNames = append $containerNames $name -}}
{{- range $port := $container.ports -}}
{{- if has (int $port.containerPort) $chartPorts -}}
{{- $errors = append $errors (printf "%s[%d].ports: %d is one of etcd's ports (client %d, peer %d, metrics %d) and the pod's containers share one network. Use another port." $field $i (int $port.containerPort) (int $v.ports.client) (int $v.ports.peer) (int $v.ports.metrics)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := $v.commonAnnotations -}}
{{- range $prefix := list "helm.sh/" "argocd.argoproj.io/" "etcd-chart/" -}}
{{- if hasPrefix $prefix $key -}}
{{- $errors = append $errors (printf "commonAnnotations.%s: keys under %s are the chart's (its hooks and StatefulSet set them) and would apply to every object. Remove it; annotate single objects through their own values (service.annotations, podAnnotations, ...)." $key $prefix) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $key, $_ := $v.serviceAccount.labels -}}
{{- $chartLabels := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "helm.sh/chart" -}}
{{- if or (has $key $chartLabels) (hasKey (default (dict) $v.commonLabels) $key) -}}
{{- $errors = append $errors (printf "serviceAccount.labels.%s: the chart or commonLabels already sets this label on the ServiceAccount, so it would carry the key twice. Use a key of your own." $key) -}}
{{- end -}}
{{- end -}}
{{- if eq $v.service.clusterIP "None" -}}
{{- $errors = append $errors "service.clusterIP: None would make the client Service headless; the headless Service (F-headless) already names each member. Leave it empty, or give a fixed address." -}}
{{- end -}}
{{- if and $v.service.loadBalancerClass (ne $v.service.type "LoadBalancer") -}}
{{- $errors = append $errors (printf "service.loadBalancerClass: only a LoadBalancer Service has one, service.type is %s. Remove it or set service.type=LoadBalancer." $v.service.type) -}}
{{- end -}}
{{- range $i, $item := $v.extraDeploy -}}
{{- $object := $item -}}
{{- if kindIs "string" $item -}}
{{- $object = tpl $item $ | fromYaml -}}
{{- end -}}
{{- if hasKey $object "Error" -}}
{{- $errors = append $errors (printf "extraDeploy[%d]: not a YAML object after tpl (%s). Give one object per entry." $i $object.Error) -}}
{{- else if not (and $object.apiVersion $object.kind ($object.metadata).name) -}}
{{- $errors = append $errors (printf "extraDeploy[%d]: every object needs apiVersion, kind and metadata.name. Add the missing ones." $i) -}}
{{- end -}}
{{- end -}}
{{- $metrics := $v.metrics -}}
{{- if and $metrics.serviceMonitor.enabled $metrics.podMonitor.enabled -}}
{{- $errors = append $errors "metrics.podMonitor.enabled: set together with metrics.serviceMonitor.enabled, so Prometheus would scrape every member twice and the alerts would count each member twice. Keep one of them." -}}
{{- end -}}
{{- range $kind := list "serviceMonitor" "podMonitor" -}}
{{- $monitor := index $metrics $kind -}}
{{- if $monitor.enabled -}}
{{- $interval := include "etcd.durationMs" $monitor.interval -}}
{{- $timeout := include "etcd.durationMs" $monitor.scrapeTimeout -}}
{{- if and $interval $timeout (gt (int64 $timeout) (int64 $interval)) -}}
{{- $errors = append $errors (printf "metrics.%s.scrapeTimeout: %s is longer than metrics.%s.interval (%s), which the Prometheus Operator refuses. Lower the timeout to at most the interval." $kind $monitor.scrapeTimeout $kind $monitor.interval) -}}
{{- end -}}
{{- if and $np.enabled $np.metrics.restrict (not $np.metrics.namespaceSelectors) (not $np.metrics.podSelectors) -}}
{{- $errors = append $errors (printf "metrics.%s.enabled: networkPolicy.metrics.restrict with no selector lets no pod reach the metrics port, so Prometheus could not scrape the members. Add Prometheus' namespace to networkPolicy.metrics.namespaceSelectors (or its pods to networkPolicy.metrics.podSelectors)." $kind) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (or $metrics.prometheusRule.enabled $metrics.grafanaDashboard.enabled) (not $metrics.serviceMonitor.enabled) (not $metrics.podMonitor.enabled) (not $metrics.selector) -}}
{{- $errors = append $errors (printf "metrics.selector: required for the PrometheusRule and the Grafana dashboard without the chart's ServiceMonitor or PodMonitor, since their queries select job=%q, which only those monitors set. Enable metrics.serviceMonitor or metrics.podMonitor, or set metrics.selector to the labels your scrape configuration gives the members (e.g. job=\"etcd\")." (include "etcd.fullname" .)) -}}
{{- end -}}
{{- $backup := $v.backup -}}
{{- $restore := $v.restore.snapshot -}}
{{- if and $backup.enabled (not $backup.pvc.enabled) (not $backup.s3.enabled) -}}
{{- $errors = append $errors "backup.enabled: the backups would have nowhere to go. Set backup.pvc.enabled=true (a claim), backup.s3.enabled=true (a bucket), or both." -}}
{{- end -}}
{{- if or (and $backup.enabled $backup.s3.enabled) (eq $restore.source "s3") -}}
{{- $s3 := $backup.s3 -}}
{{- $why := ternary "restore.snapshot.source is s3" "backup.s3.enabled is set" (eq $restore.source "s3") -}}
{{- if not (regexMatch "^https?://[^/?#@]+/?$" $s3.endpoint) -}}
{{- $errors = append $errors (printf "backup.s3.endpoint: %q is not an endpoint URL, and %s. Set it to https://HOST[:PORT] (http:// only for a server inside the cluster), without a path: the bucket goes in backup.s3.bucket." $s3.endpoint $why) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" $s3.bucket) -}}
{{- $errors = append $errors (printf "backup.s3.bucket: %q is not a bucket name (3-63 lower-case letters, digits, dots and hyphens), and %s. Set it to the bucket's name." $s3.bucket $why) -}}
{{- end -}}
{{- if not $s3.existingSecret -}}
{{- $errors = append $errors (printf "backup.s3.existingSecret: required, since %s: the requests are signed with the access key pair from this Secret. Create it (kubectl create secret generic etcd-backup-s3 --from-literal=%s=... --from-literal=%s=...) and name it here." $why $s3.accessKeyIdKey $s3.secretAccessKeyKey) -}}
{{- end -}}
{{- end -}}
{{- if and $backup.enabled $v.auth.rbac.enabled -}}
{{- if not $backup.etcdUser.password.existingSecret -}}
{{- $errors = append $errors (printf "backup.etcdUser.password.existingSecret: required with backup.enabled and auth.rbac.enabled: the backup logs in to etcd as user %q (with the root role, which etcd requires for a snapshot) with this password. Create a Secret with it (kubectl create secret generic etcd-backup-etcd --from-literal=password=\"$(openssl rand -base64 24)\") and name it here." $backup.etcdUser.name) -}}
{{- end -}}
{{- if eq $backup.etcdUser.name "root" -}}
{{- $errors = append $errors "backup.etcdUser.name: root is the agent's own user, created from the root password. Give the backup a user of its own (the default is backup)." -}}
{{- else if and (include "etcd.webuiEtcdUser" .) (eq $backup.etcdUser.name $v.webui.etcdUser.name) -}}
{{- $errors = append $errors (printf "backup.etcdUser.name: %q is also the web UI's etcd user (webui.etcdUser.name). Give each its own name." $backup.etcdUser.name) -}}
{{- end -}}
{{- range $i, $user := $v.auth.rbac.users -}}
{{- if eq $user.name $backup.etcdUser.name -}}
{{- $errors = append $errors (printf "auth.rbac.users[%d].name: %q is the backup's etcd user, which the chart creates (backup.etcdUser). Remove this entry, or set backup.etcdUser.name to another name." $i $user.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $backup.enabled $v.tls.enabled (eq $v.tls.source "existingSecrets") (not $backup.tls.existingSecret) -}}
{{- $errors = append $errors "backup.tls.existingSecret: required with backup.enabled and tls.source existingSecrets: the backup needs a client certificate of its own. Create a Secret with tls.crt, tls.key and ca.crt (etcd-chart pki makes one) and name it here." -}}
{{- end -}}
{{- if eq $restore.source "pvc" -}}
{{- if not $restore.pvc.claim -}}
{{- $errors = append $errors "restore.snapshot.pvc.claim: required with restore.snapshot.source pvc. Name the claim that holds the snapshot file (e.g. the old release's F-backup)." -}}
{{- end -}}
{{- if or (not $restore.pvc.path) (hasPrefix "/" $restore.pvc.path) (has ".." (splitList "/" $restore.pvc.path)) -}}
{{- $errors = append $errors (printf "restore.snapshot.pvc.path: %q is not a path inside the claim. Give the snapshot file's path relative to the claim's root, e.g. etcd-20261207T120000Z-r1234.db." $restore.pvc.path) -}}
{{- end -}}
{{- else if and (eq $restore.source "s3") (not $restore.s3.key) -}}
{{- $errors = append $errors "restore.snapshot.s3.key: required with restore.snapshot.source s3. Give the object's full key, prefix included (the backup Job's log names it)." -}}
{{- end -}}
{{- if and $restore.source $v.persistence.wal.enabled -}}
{{- $errors = append $errors "restore.snapshot.source: a restore with a separate WAL volume (persistence.wal.enabled) is not supported yet. Restore into a release without persistence.wal, or restore by hand with etcdutl snapshot restore --wal-dir (README: Restore)." -}}
{{- end -}}
{{- if and $restore.source (eq $v.initialClusterState "existing") -}}
{{- $errors = append $errors "restore.snapshot.source: a restore starts a new cluster, but initialClusterState is existing. Leave initialClusterState empty for the restored release." -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nvalue errors:\n  - %s\n" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}

{{/* "true" when extraEnvVars declares the variable `(list $ name)`. */}}
{{- define "etcd.extraEnvNamed" -}}
{{- $name := index . 1 -}}
{{- range (index . 0).Values.extraEnvVars -}}
{{- if eq (toString .name) $name }}true{{ end -}}
{{- end -}}
{{- end -}}
