// Package ir is the validated, defaulted and resolved form of the configuration: what the
// translator produces from Gateway API resources and what the data plane compiles. It holds
// plain data only; nothing here does I/O.
package ir

import (
	"net"
	"strconv"
	"time"

	"github.com/sluice-gateway/sluice/api/v1alpha1"
)

// Config is one whole, consistent configuration of the gateway.
type Config struct {
	// Ports are the listening sockets, sorted by number, then address. Listeners of
	// several Gateways that share an address, port and protocol are merged into one Port.
	Ports []*Port `json:"ports"`
}

// Protocol is a listener protocol.
type Protocol string

// The listener protocols Sluice serves.
const (
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTPS Protocol = "HTTPS"
)

// Port is one listening socket.
type Port struct {
	// Address is the IP address the socket binds; empty binds the data plane's default
	// bind address. Set when Gateways get addresses of their own (an address pool).
	Address  string   `json:"address,omitempty"`
	Number   int32    `json:"number"`
	Protocol Protocol `json:"protocol"`
	// Listeners share the port; a request is served by the listener whose hostname matches
	// its host (or SNI) most specifically: exact, then the longest wildcard, then none.
	Listeners []*Listener `json:"listeners"`
}

// Key identifies the socket of p.
func (p *Port) Key() PortKey { return PortKey{Address: p.Address, Number: p.Number} }

// PortKey identifies one listening socket: an address ("" for the default) and a port.
type PortKey struct {
	Address string
	Number  int32
}

// String is "address:port", or ":port" on the default address.
func (k PortKey) String() string {
	return net.JoinHostPort(k.Address, strconv.Itoa(int(k.Number)))
}

// Listener is one Gateway listener.
type Listener struct {
	// Name is "namespace/gateway/listener".
	Name        string `json:"name"`
	Gateway     string `json:"gateway"` // namespace/name
	SectionName string `json:"sectionName"`
	// Hostname restricts the hosts served; "" serves any host. "*.example.com" is a wildcard.
	Hostname string `json:"hostname,omitempty"`
	// Certificates are the TLS certificates of an HTTPS listener.
	Certificates []Certificate `json:"certificates,omitempty"`
	// ClientValidation, when set, makes an HTTPS listener ask clients for a certificate
	// and verify it (the Gateway's spec.tls.frontend for the listener's port).
	ClientValidation *ClientValidation `json:"clientValidation,omitempty"`
	// VirtualHosts are sorted most specific first: exact names, wildcards by length, then "".
	VirtualHosts []*VirtualHost `json:"virtualHosts"`
	// PreRouting is the processor that runs before a route is chosen, if any.
	PreRouting *ExtProc `json:"preRouting,omitempty"`
}

// Certificate is a PEM certificate chain and key.
type Certificate struct {
	Name    string `json:"name"` // namespace/secret
	CertPEM []byte `json:"-"`
	KeyPEM  []byte `json:"-"`
}

// ClientValidation is how an HTTPS listener checks client certificates.
type ClientValidation struct {
	// CACertificates name the CA bundles trusted ("namespace/name"), for display.
	CACertificates []string `json:"caCertificates"`
	// CAPEM is the PEM bundle of the CA certificates a client certificate must chain to.
	CAPEM []byte `json:"-"`
	// InsecureFallback (AllowInsecureFallback) still asks for a certificate but lets in
	// clients that send none or one that does not verify: authorization is then left to
	// the backends.
	InsecureFallback bool `json:"insecureFallback,omitempty"`
}

// VirtualHost groups the routes of one hostname on a listener.
type VirtualHost struct {
	// Hostname is an exact name, a "*." wildcard, or "" for any host.
	Hostname string `json:"hostname"`
	// Routes are in Gateway API precedence order: the first that matches wins.
	Routes []*Route `json:"routes"`
}

// Route is one match of one HTTPRoute or GRPCRoute rule, with everything needed to serve
// it.
type Route struct {
	// Name is "namespace/route/rule/match", rule and match as indexes (or the rule name),
	// prefixed with "grpc:" for a GRPCRoute.
	Name string `json:"name"`
	// HTTPRoute or GRPCRoute is the route's namespace/name.
	HTTPRoute string `json:"httpRoute,omitempty"`
	GRPCRoute string `json:"grpcRoute,omitempty"`
	RuleIndex int    `json:"ruleIndex"`
	RuleName  string `json:"ruleName,omitempty"`

	Match Match `json:"match"`

	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
	Redirect        *Redirect       `json:"redirect,omitempty"`
	Rewrite         *Rewrite        `json:"rewrite,omitempty"`
	CORS            *CORS           `json:"cors,omitempty"`

	// Backends are chosen by weight. A backend that failed to resolve has Backend nil: the
	// share of requests it would get answers 500, as the Gateway API requires.
	Backends []WeightedBackend `json:"backends,omitempty"`

	// Mirrors get a copy of a share of the requests, after the route's request filters;
	// their responses are discarded. A mirror whose backendRef did not resolve is left
	// out, as the Gateway API requires (the route's ResolvedRefs says why).
	Mirrors []Mirror `json:"mirrors,omitempty"`

	// RequestTimeout bounds the whole request (0: none); BackendTimeout one upstream try.
	RequestTimeout time.Duration `json:"requestTimeout,omitempty"`
	BackendTimeout time.Duration `json:"backendTimeout,omitempty"`

	// Retry, when set, sends a failed request again; nil tries once.
	Retry *Retry `json:"retry,omitempty"`

	// ExtProc is the PostRouting processor of this route, after precedence, if any.
	ExtProc *ExtProc `json:"extProc,omitempty"`
}

// Retry is a rule's retry policy. A try fails when the connection to the backend fails
// before a response (refused, reset, closed, or BackendTimeout reached): such tries are
// always retried, as the Gateway API asks; a response is retried only when its status is
// one of Codes. Each retry picks a backend again, by weight. RequestTimeout bounds all the
// tries and the waits between them; BackendTimeout bounds each try. The client gets the
// last try's response, or the error of its failure.
//
// A request body is replayed from memory, as Envoy's retry buffer: it streams to the
// first try while up to 64 KiB of it are kept (any framing, chunked included); a body
// that grows past that, or whose announced length is larger, is sent once. A retry
// budget, Envoy's default one, bounds the retries in flight to a backend to 20% of the
// requests in flight to it on routes that retry, and never fewer than 3; a retry beyond
// it is not made (the failed try's answer is the client's).
type Retry struct {
	// Codes are the response statuses (400-599) retried, sorted; empty retries only
	// connection failures and timeouts.
	Codes []int `json:"codes,omitempty"`
	// Attempts is the number of retries after the first try: 1+Attempts tries at most.
	// The translator defaults it to 1, as Envoy.
	Attempts int `json:"attempts"`
	// Backoff is the least wait before the first retry; each later retry waits twice as
	// long as the previous one, up to 10 times Backoff, as Envoy does, plus a random
	// jitter of up to half that, so that clients failed together do not retry together.
	// The translator defaults it to Envoy's 25ms.
	Backoff time.Duration `json:"backoff"`
}

// PathMatchType is how a path is matched.
type PathMatchType string

// The path match types of the Gateway API.
const (
	PathExact  PathMatchType = "Exact"
	PathPrefix PathMatchType = "PathPrefix"
	PathRegex  PathMatchType = "RegularExpression"
)

// StringMatchType is how a header or query value is matched.
type StringMatchType string

// The header and query match types.
const (
	MatchExact StringMatchType = "Exact"
	MatchRegex StringMatchType = "RegularExpression"
)

// Match is the conditions a request must meet, all of them.
type Match struct {
	PathType PathMatchType `json:"pathType"`
	Path     string        `json:"path"`
	// Method is empty for any method.
	Method  string        `json:"method,omitempty"`
	Headers []StringMatch `json:"headers,omitempty"`
	Query   []StringMatch `json:"query,omitempty"`
}

// StringMatch matches one header (name canonical) or query parameter.
type StringMatch struct {
	Type  StringMatchType `json:"type"`
	Name  string          `json:"name"`
	Value string          `json:"value"`
}

// HeaderModifier is a RequestHeaderModifier or ResponseHeaderModifier filter.
type HeaderModifier struct {
	Set    []Header `json:"set,omitempty"`
	Add    []Header `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// Header is a name and a value.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Redirect is a RequestRedirect filter. Empty fields keep the request's value.
type Redirect struct {
	Scheme     string   `json:"scheme,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	Port       int32    `json:"port,omitempty"`
	Path       *Rewrite `json:"path,omitempty"`
	StatusCode int      `json:"statusCode"`
}

// RewriteType is how a path is rewritten.
type RewriteType string

// The path rewrite types.
const (
	ReplaceFullPath    RewriteType = "ReplaceFullPath"
	ReplacePrefixMatch RewriteType = "ReplacePrefixMatch"
)

// Rewrite is a URLRewrite filter (or a redirect's path part).
type Rewrite struct {
	Hostname string      `json:"hostname,omitempty"`
	PathType RewriteType `json:"pathType,omitempty"`
	Path     string      `json:"path,omitempty"`
}

// CORS is a CORS filter. The gateway answers the preflight requests of the route itself
// (an OPTIONS request with Origin and Access-Control-Request-Method never reaches the
// backend) and adds the Access-Control-Allow-Origin, -Allow-Credentials and
// -Expose-Headers headers to the route's other responses, its local replies included,
// when their Origin is allowed. Header names are kept as configured: they are echoed to
// clients, which compare them without regard to case.
type CORS struct {
	// AllowOrigins are the origins allowed: either "*" alone, any origin, or
	// "scheme://host[:port]" values, scheme http or https. The port defaults to the
	// scheme's (80 or 443) on both sides of the comparison, so "https://a.example"
	// allows "https://a.example:443" but not "https://a.example:8443". A host of "*"
	// matches any host; a host "*.example.com" matches any host that ends with
	// ".example.com", however many labels precede it, never "example.com" itself. Hosts
	// compare without regard to case. Empty allows no origin: preflights get 403.
	AllowOrigins []string `json:"allowOrigins,omitempty"`
	// AllowMethods is the Access-Control-Allow-Methods of preflight answers: methods,
	// or "*" alone, which echoes the request's Access-Control-Request-Method (valid
	// with and without credentials, where a literal "*" is not). Empty sends no header:
	// browsers then allow only GET, HEAD and POST.
	AllowMethods []string `json:"allowMethods,omitempty"`
	// AllowHeaders is the Access-Control-Allow-Headers of preflight answers: header
	// names, or "*" alone, which echoes the request's Access-Control-Request-Headers
	// (a literal "*" would cover neither Authorization nor credentialed requests).
	AllowHeaders []string `json:"allowHeaders,omitempty"`
	// ExposeHeaders is the Access-Control-Expose-Headers of allowed responses. "*" is
	// sent as is without credentials; with credentials, where browsers take it for a
	// header name, it is replaced by the names of the headers of the response.
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`
	// AllowCredentials sends Access-Control-Allow-Credentials: true with allowed
	// responses. With it, an AllowOrigins of "*" echoes the request's Origin; without
	// it, "*" is sent as is, to every request, Origin or not, so that a shared cache
	// may serve any client the same response (no Vary: Origin is needed then).
	AllowCredentials bool `json:"allowCredentials,omitempty"`
	// MaxAge is the Access-Control-Max-Age of preflight answers, in seconds: how long
	// the browser may cache them. The translator defaults it to 5, as the Gateway API.
	MaxAge int32 `json:"maxAge"`
}

// WeightedBackend is one backendRef of a rule.
type WeightedBackend struct {
	Weight  int32    `json:"weight"`
	Backend *Backend `json:"backend,omitempty"`
	// RequestHeaders and ResponseHeaders are the backendRef's own header filters, applied
	// after the rule's, only to the requests this backend gets and to its responses.
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
}

// Mirror is a RequestMirror filter: a copy of Numerator in Denominator requests, drawn
// at random for each request, goes to Backend. A percent p is p/100; no share at all is
// 1/1, every request.
type Mirror struct {
	Backend     *Backend `json:"backend"`
	Numerator   int32    `json:"numerator"`
	Denominator int32    `json:"denominator"`
}

// UpstreamProtocol is how Sluice speaks to a backend.
type UpstreamProtocol string

// The upstream protocols.
const (
	UpstreamHTTP1 UpstreamProtocol = "HTTP/1.1"
	UpstreamH2C   UpstreamProtocol = "h2c"
	UpstreamHTTPS UpstreamProtocol = "https"
)

// Backend is a resolved set of endpoints.
type Backend struct {
	// Name is "backend/namespace/name" or "service/namespace/name:port".
	Name      string           `json:"name"`
	Protocol  UpstreamProtocol `json:"protocol"`
	Endpoints []Endpoint       `json:"endpoints"`
	// TLS holds the client TLS settings for UpstreamHTTPS.
	TLS *BackendTLS `json:"tls,omitempty"`
}

// Endpoint is one address of a backend.
type Endpoint struct {
	Host string `json:"host"`
	Port int32  `json:"port"`
}

// BackendTLS is the client side of a TLS connection to a backend.
type BackendTLS struct {
	SNI                string `json:"sni,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
	// SubjectAltDNSNames and SubjectAltURIs, when either is set, replace the SNI in
	// verification: the server's certificate must carry one of these names (a
	// BackendTLSPolicy's subjectAltNames).
	SubjectAltDNSNames []string `json:"subjectAltDNSNames,omitempty"`
	SubjectAltURIs     []string `json:"subjectAltURIs,omitempty"`
	CAPEM              []byte   `json:"-"`
	// ClientCertificate names the Secret ("namespace/name") of ClientCertPEM and
	// ClientKeyPEM, the certificate presented to the backend, for display.
	ClientCertificate string `json:"clientCertificate,omitempty"`
	ClientCertPEM     []byte `json:"-"`
	ClientKeyPEM      []byte `json:"-"`
}

// ExtProc is an external processor attached to a listener or route: the policy's
// settings, validated, with its backend resolved.
type ExtProc struct {
	// Policy is "namespace/name" of the TrafficPolicy it comes from.
	Policy  string            `json:"policy"`
	Backend *Backend          `json:"backend"`
	Spec    *v1alpha1.ExtProc `json:"spec"`
}
