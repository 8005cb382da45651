package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Backend is a set of static endpoints that HTTPRoute backendRefs and ext_proc policies can
// name with {group: gateway.sluice.dev, kind: Backend}. In file mode it is the only kind of
// backend; in Kubernetes mode it names services outside the cluster.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=sluice
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.spec.appProtocol`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Backend struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BackendSpec `json:"spec"`
}

// BackendSpec describes where a Backend's endpoints are and how to speak to them.
//
// +kubebuilder:validation:XValidation:rule="!has(self.tls) || (has(self.appProtocol) && self.appProtocol == 'https')",message="tls is only used with appProtocol https",fieldPath=".tls"
type BackendSpec struct {
	// Endpoints are the addresses requests are balanced over, round-robin. At least one.
	//
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Endpoints []BackendEndpoint `json:"endpoints"`

	// AppProtocol is the protocol spoken to the endpoints: "http" (HTTP/1.1, the default),
	// "kubernetes.io/h2c" or "grpc" (HTTP/2 over cleartext, prior knowledge), or "https"
	// (TLS, HTTP/2 or HTTP/1.1 by ALPN). External processors need h2c or https.
	//
	// +kubebuilder:validation:Enum=http;kubernetes.io/h2c;grpc;https
	// +optional
	AppProtocol AppProtocol `json:"appProtocol,omitempty"`

	// TLS configures the client side of "https" connections. Ignored for other protocols.
	// +optional
	TLS *BackendTLS `json:"tls,omitempty"`
}

// BackendEndpoint is one address of a Backend.
type BackendEndpoint struct {
	// Host is an IP address or a DNS name, resolved when a connection is made.
	// +kubebuilder:validation:MinLength=1
	Host string `json:"host"`
	// Port is the TCP port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
}

// BackendTLS configures TLS towards a Backend.
type BackendTLS struct {
	// SNI is the server name sent and verified; defaults to the endpoint's host.
	// +optional
	SNI string `json:"sni,omitempty"`
	// InsecureSkipVerify disables verification of the server's certificate. Tests only.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// CACertificateRefs name Secrets or ConfigMaps (key ca.crt) holding the PEM bundle that
	// verifies the server. Default: the system roots.
	// +optional
	CACertificateRefs []LocalObjectReference `json:"caCertificateRefs,omitempty"`
	// ClientCertificateRef names a kubernetes.io/tls Secret presented as the client
	// certificate (mutual TLS).
	// +optional
	ClientCertificateRef *LocalObjectReference `json:"clientCertificateRef,omitempty"`
}

// LocalObjectReference names an object in the referrer's namespace.
type LocalObjectReference struct {
	// Kind is Secret (the default) or ConfigMap.
	// +kubebuilder:validation:Enum=Secret;ConfigMap
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// AppProtocol names the protocol spoken to a backend.
type AppProtocol string

// The protocols a Backend may speak.
const (
	AppProtocolHTTP  AppProtocol = "http"
	AppProtocolH2C   AppProtocol = "kubernetes.io/h2c"
	AppProtocolGRPC  AppProtocol = "grpc"
	AppProtocolHTTPS AppProtocol = "https"
)

// BackendList is a list of Backends.
//
// +kubebuilder:object:root=true
type BackendList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Backend `json:"items"`
}
