{{/* The image both components run: one image holds both binaries. */}}
{{- define "herald.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The image of the speaker Pod's containers when BGP is on: FRR, FRR's tools and the speaker. */}}
{{- define "herald.bgpImage" -}}
{{ .Values.speaker.bgp.image.repository }}:{{ .Values.speaker.bgp.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels on every object; "component" is controller or speaker. */}}
{{- define "herald.labels" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: herald
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}

{{/* The labels that select a component's pods. */}}
{{- define "herald.selector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/component: {{ . }}
{{- end }}
