{{/* The resources' base name: the release name, as etcd-druid names them after the Etcd. */}}
{{- define "etcdbr.name" -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcdbr.labels" -}}
app.kubernetes.io/name: etcdbr
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "etcdbr.selector" -}}
app.kubernetes.io/name: etcdbr
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The credentials variable and mount path of each provider, as etcd-druid sets them. */}}
{{- define "etcdbr.credentialsVar" -}}
{{- $p := .Values.backup.storageProvider -}}
{{- if eq $p "S3" -}}AWS_APPLICATION_CREDENTIALS
{{- else if eq $p "ABS" -}}AZURE_APPLICATION_CREDENTIALS
{{- else if eq $p "GCS" -}}GOOGLE_APPLICATION_CREDENTIALS
{{- else if eq $p "Swift" -}}OPENSTACK_APPLICATION_CREDENTIALS
{{- else if eq $p "OSS" -}}ALICLOUD_APPLICATION_CREDENTIALS
{{- else if eq $p "OCS" -}}OPENSHIFT_APPLICATION_CREDENTIALS
{{- end -}}
{{- end -}}

{{- define "etcdbr.credentialsDir" -}}
{{- if eq .Values.backup.storageProvider "GCS" -}}/var/.gcp{{- else -}}/var/etcd-backup{{- end -}}
{{- end -}}

{{- define "etcdbr.credentialsPath" -}}
{{- if eq .Values.backup.storageProvider "GCS" -}}/var/.gcp/serviceaccount.json{{- else -}}/var/etcd-backup{{- end -}}
{{- end -}}

{{- define "etcdbr.scheme" -}}
{{- if .Values.backup.tlsSecretName -}}https{{- else -}}http{{- end -}}
{{- end -}}
