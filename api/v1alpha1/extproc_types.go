package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ExtProc configures external processing: for every request, Sluice opens one stream of
// envoy.service.ext_proc.v3.ExternalProcessor/Process to the processor and lets it read and
// change the request and response. Defaults follow Envoy's ext_proc filter.
//
// +kubebuilder:validation:XValidation:rule="has(self.backendRef) || (has(self.disabled) && self.disabled)",message="backendRef is required unless disabled is true",fieldPath=".backendRef"
// +kubebuilder:validation:XValidation:rule="!(has(self.failureMode) && self.failureMode == 'FailOpen' && has(self.processingOptions) && ((has(self.processingOptions.requestBodyMode) && self.processingOptions.requestBodyMode == 'FullDuplexStreamed') || (has(self.processingOptions.responseBodyMode) && self.processingOptions.responseBodyMode == 'FullDuplexStreamed')))",message="failureMode FailOpen cannot be combined with a FullDuplexStreamed body mode",fieldPath=".failureMode"
// +kubebuilder:validation:XValidation:rule="!(has(self.observabilityMode) && self.observabilityMode && has(self.processingOptions)) || ((!has(self.processingOptions.requestBodyMode) || self.processingOptions.requestBodyMode in ['None', 'Streamed']) && (!has(self.processingOptions.responseBodyMode) || self.processingOptions.responseBodyMode in ['None', 'Streamed']))",message="body modes must be None or Streamed when observabilityMode is true",fieldPath=".processingOptions"
type ExtProc struct {
	// BackendRef names the processor: a Service (the default kind, Kubernetes mode) or a
	// {group: gateway.sluice.dev, kind: Backend}. The connection is HTTP/2 cleartext (h2c)
	// unless the Backend's appProtocol is https. A port is required for Services.
	//
	// +optional
	BackendRef gwv1.BackendObjectReference `json:"backendRef"`

	// FailureMode says what happens when the processor is unreachable, fails the stream,
	// times out or answers out of turn: FailClosed (the default) answers the request locally
	// (statusOnError, or 504 for timeouts); FailOpen continues without the processor.
	// +optional
	FailureMode FailureMode `json:"failureMode,omitempty"`

	// StatusOnError is the status of the local reply sent on processor errors when
	// FailClosed. Default 500. Timeouts always answer 504.
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	// +optional
	StatusOnError *int32 `json:"statusOnError,omitempty"`

	// MessageTimeout bounds the wait for each answer. Default 200ms; 0s times out at once.
	// Not armed in observabilityMode or for FullDuplexStreamed bodies.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`
	MessageTimeout *metav1.Duration `json:"messageTimeout,omitempty"`

	// MaxMessageTimeout, when above 0, lets a processor extend the wait for its current
	// answer with override_message_timeout, up to this value. Default 0s: overrides ignored.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`
	MaxMessageTimeout *metav1.Duration `json:"maxMessageTimeout,omitempty"`

	// ProcessingOptions chooses which parts of the exchange are sent. Default: request
	// and response headers Send, bodies None, trailers Skip.
	// +optional
	ProcessingOptions *ProcessingOptions `json:"processingOptions,omitempty"`

	// MaxBufferSize bounds Buffered and BufferedPartial bodies. Default 1Mi. A Buffered body
	// above it fails with 413 on the request path and 500 on the response path; a
	// BufferedPartial body sends its first MaxBufferSize bytes and streams the rest past
	// the processor.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="must be greater than 0 (for example 1Mi)"
	MaxBufferSize *resource.Quantity `json:"maxBufferSize,omitempty"`

	// MutationRules limit which headers the processor may change. Default: anything but
	// the routing headers (host, :authority, :method, :scheme) and what can never change
	// (removing pseudo-headers or host, hop-by-hop and framing headers).
	// +optional
	MutationRules *MutationRules `json:"mutationRules,omitempty"`

	// ForwardRules limit which headers (and trailers) are sent to the processor. Default:
	// all of them.
	// +optional
	ForwardRules *ForwardRules `json:"forwardRules,omitempty"`

	// RequestAttributes are sent with the first request-direction message, under
	// attributes["envoy.filters.http.ext_proc"]: each key maps to a CEL expression over
	// Envoy's attribute names (request.path, request.headers, source.address, ...).
	// Attributes that are unavailable are omitted.
	// +optional
	RequestAttributes map[string]string `json:"requestAttributes,omitempty"`

	// ResponseAttributes are sent with the first response-direction message, like
	// RequestAttributes; response.code and response.headers are available here too.
	// +optional
	ResponseAttributes map[string]string `json:"responseAttributes,omitempty"`

	// MetadataContext is sent as metadata_context.filter_metadata with the first message:
	// namespace -> key -> CEL expression. Dynamic metadata returned by an earlier processor
	// of the same request is forwarded too.
	// +optional
	MetadataContext map[string]map[string]string `json:"metadataContext,omitempty"`

	// GRPCInitialMetadata is sent as gRPC metadata when each stream opens.
	// +optional
	GRPCInitialMetadata map[string]string `json:"grpcInitialMetadata,omitempty"`

	// ObservabilityMode sends messages without waiting for answers and ignores the
	// answers: the processor observes but cannot change anything. Bodies may only be None
	// or Streamed. Default false.
	// +optional
	ObservabilityMode bool `json:"observabilityMode,omitempty"`

	// DisableImmediateResponse treats an immediate_response as an out-of-turn answer.
	// Default false.
	// +optional
	DisableImmediateResponse bool `json:"disableImmediateResponse,omitempty"`

	// RouteCacheAction: Default honours clear_route_cache in the processor's request
	// answers (the route is chosen again from the mutated request); Clear always chooses
	// again after a request headers answer; Retain never does.
	// +optional
	RouteCacheAction RouteCacheAction `json:"routeCacheAction,omitempty"`

	// SendBodyWithoutWaitingForHeaderResponse lets Streamed body chunks go to the
	// processor before the headers answer arrives. Default false.
	// +optional
	SendBodyWithoutWaitingForHeaderResponse bool `json:"sendBodyWithoutWaitingForHeaderResponse,omitempty"`

	// HeaderValueField says which HeaderValue field carries the header values Sluice
	// sends: RawValue (the default, as Envoy), Value, or Both, for processors that read
	// only one of them. Values received are read from raw_value when set, else value.
	// +optional
	HeaderValueField HeaderValueField `json:"headerValueField,omitempty"`

	// Disabled switches off, for this target, a processor inherited from a less specific
	// target. All other fields are ignored, and backendRef may be omitted.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// FailureMode says what a processor failure does to the request.
//
// +kubebuilder:validation:Enum=FailClosed;FailOpen
type FailureMode string

// The failure modes.
const (
	FailClosed FailureMode = "FailClosed"
	FailOpen   FailureMode = "FailOpen"
)

// HeaderSendMode is Send or Skip.
//
// +kubebuilder:validation:Enum=Send;Skip
type HeaderSendMode string

// The header and trailer send modes.
const (
	Send HeaderSendMode = "Send"
	Skip HeaderSendMode = "Skip"
)

// BodySendMode says how a body is sent to the processor.
//
// +kubebuilder:validation:Enum=None;Streamed;Buffered;BufferedPartial;FullDuplexStreamed
type BodySendMode string

// The body modes, as Envoy's ProcessingMode.BodySendMode.
const (
	BodyNone               BodySendMode = "None"
	BodyStreamed           BodySendMode = "Streamed"
	BodyBuffered           BodySendMode = "Buffered"
	BodyBufferedPartial    BodySendMode = "BufferedPartial"
	BodyFullDuplexStreamed BodySendMode = "FullDuplexStreamed"
)

// ProcessingOptions chooses, per phase, what the processor is sent.
//
// +kubebuilder:validation:XValidation:rule="!has(self.requestBodyMode) || self.requestBodyMode != 'FullDuplexStreamed' || (has(self.requestTrailerMode) && self.requestTrailerMode == 'Send')",message="requestBodyMode FullDuplexStreamed needs requestTrailerMode Send",fieldPath=".requestTrailerMode"
// +kubebuilder:validation:XValidation:rule="!has(self.responseBodyMode) || self.responseBodyMode != 'FullDuplexStreamed' || (has(self.responseTrailerMode) && self.responseTrailerMode == 'Send')",message="responseBodyMode FullDuplexStreamed needs responseTrailerMode Send",fieldPath=".responseTrailerMode"
// +kubebuilder:validation:XValidation:rule="!has(self.allowedOverrideModes) || size(self.allowedOverrideModes) == 0 || (has(self.allowModeOverride) && self.allowModeOverride)",message="allowedOverrideModes must be empty unless allowModeOverride is true",fieldPath=".allowedOverrideModes"
type ProcessingOptions struct {
	// RequestHeaderMode: Send (default) or Skip.
	// +optional
	RequestHeaderMode HeaderSendMode `json:"requestHeaderMode,omitempty"`
	// ResponseHeaderMode: Send (default) or Skip.
	// +optional
	ResponseHeaderMode HeaderSendMode `json:"responseHeaderMode,omitempty"`
	// RequestBodyMode: None (default), Streamed, Buffered, BufferedPartial or
	// FullDuplexStreamed (which needs requestTrailerMode Send).
	// +optional
	RequestBodyMode BodySendMode `json:"requestBodyMode,omitempty"`
	// ResponseBodyMode: as RequestBodyMode, for the response.
	// +optional
	ResponseBodyMode BodySendMode `json:"responseBodyMode,omitempty"`
	// RequestTrailerMode: Skip (default) or Send.
	// +optional
	RequestTrailerMode HeaderSendMode `json:"requestTrailerMode,omitempty"`
	// ResponseTrailerMode: Skip (default) or Send.
	// +optional
	ResponseTrailerMode HeaderSendMode `json:"responseTrailerMode,omitempty"`
	// AllowModeOverride lets the processor change these modes with mode_override in a
	// headers answer. Default false.
	// +optional
	AllowModeOverride bool `json:"allowModeOverride,omitempty"`
	// AllowedOverrideModes, when not empty, is the list of whole modes a mode_override may
	// select; any other override is ignored. Only with allowModeOverride.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	AllowedOverrideModes []ProcessingMode `json:"allowedOverrideModes,omitempty"`
}

// ProcessingMode is one whole processing mode, as an entry of allowedOverrideModes. Fields
// left out take the defaults of ProcessingOptions.
//
// +kubebuilder:validation:XValidation:rule="!has(self.requestBodyMode) || self.requestBodyMode != 'FullDuplexStreamed' || (has(self.requestTrailerMode) && self.requestTrailerMode == 'Send')",message="requestBodyMode FullDuplexStreamed needs requestTrailerMode Send",fieldPath=".requestTrailerMode"
// +kubebuilder:validation:XValidation:rule="!has(self.responseBodyMode) || self.responseBodyMode != 'FullDuplexStreamed' || (has(self.responseTrailerMode) && self.responseTrailerMode == 'Send')",message="responseBodyMode FullDuplexStreamed needs responseTrailerMode Send",fieldPath=".responseTrailerMode"
type ProcessingMode struct {
	// +optional
	RequestHeaderMode HeaderSendMode `json:"requestHeaderMode,omitempty"`
	// +optional
	ResponseHeaderMode HeaderSendMode `json:"responseHeaderMode,omitempty"`
	// +optional
	RequestBodyMode BodySendMode `json:"requestBodyMode,omitempty"`
	// +optional
	ResponseBodyMode BodySendMode `json:"responseBodyMode,omitempty"`
	// +optional
	RequestTrailerMode HeaderSendMode `json:"requestTrailerMode,omitempty"`
	// +optional
	ResponseTrailerMode HeaderSendMode `json:"responseTrailerMode,omitempty"`
}

// MutationRules limit the header changes a processor may make (Envoy's HeaderMutationRules).
// Whatever the rules, pseudo-headers and host are never removed, and hop-by-hop and framing
// headers are never set.
type MutationRules struct {
	// AllowAllRouting lets the processor change host, :authority, :method and :scheme.
	// Default false: such changes are ignored.
	// +optional
	AllowAllRouting bool `json:"allowAllRouting,omitempty"`
	// AllowEnvoy lets the processor change x-envoy-* headers. Default false.
	// +optional
	AllowEnvoy bool `json:"allowEnvoy,omitempty"`
	// DisallowSystem forbids changing any pseudo-header (":" prefix). Default false.
	// +optional
	DisallowSystem bool `json:"disallowSystem,omitempty"`
	// DisallowAll forbids every header change not allowed by allowExpression.
	// +optional
	DisallowAll bool `json:"disallowAll,omitempty"`
	// AllowExpression is an RE2 regular expression of header names that may change even
	// when other rules say no. Disallow always wins.
	// +optional
	AllowExpression string `json:"allowExpression,omitempty"`
	// DisallowExpression is an RE2 regular expression of header names that may never change.
	// +optional
	DisallowExpression string `json:"disallowExpression,omitempty"`
	// DisallowIsError turns a rejected change into an error (statusOnError) instead of
	// dropping it silently. Default false.
	// +optional
	DisallowIsError bool `json:"disallowIsError,omitempty"`
}

// ForwardRules limit the headers sent to the processor.
type ForwardRules struct {
	// AllowedHeaders, when not empty, are the only headers sent. Entries are header names,
	// or RE2 expressions prefixed with "re:".
	// +optional
	AllowedHeaders []string `json:"allowedHeaders,omitempty"`
	// DisallowedHeaders are never sent; they win over AllowedHeaders.
	// +optional
	DisallowedHeaders []string `json:"disallowedHeaders,omitempty"`
}

// RouteCacheAction says whether a processor's answers make Sluice choose the route again.
//
// +kubebuilder:validation:Enum=Default;Clear;Retain
type RouteCacheAction string

// The route cache actions.
const (
	RouteCacheDefault RouteCacheAction = "Default"
	RouteCacheClear   RouteCacheAction = "Clear"
	RouteCacheRetain  RouteCacheAction = "Retain"
)

// HeaderValueField chooses the HeaderValue field that carries values sent to a processor.
//
// +kubebuilder:validation:Enum=RawValue;Value;Both
type HeaderValueField string

// The header value fields.
const (
	HeaderValueRaw    HeaderValueField = "RawValue"
	HeaderValueString HeaderValueField = "Value"
	HeaderValueBoth   HeaderValueField = "Both"
)
