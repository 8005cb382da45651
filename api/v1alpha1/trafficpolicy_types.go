package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TrafficPolicy attaches traffic behaviour (today: external processing) to Gateways,
// listeners, HTTPRoutes, GRPCRoutes or single route rules. When several policies reach one
// request, the most specific wins as a whole: route rule > route > listener > Gateway.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=sluice
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.spec.traffic.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TrafficPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TrafficPolicySpec `json:"spec"`
	// +optional
	Status gwv1.PolicyStatus `json:"status,omitempty"`
}

// TrafficPolicySpec says what a TrafficPolicy applies to and what it does.
//
// +kubebuilder:validation:XValidation:rule="!has(self.traffic) || !has(self.traffic.phase) || self.traffic.phase != 'PreRouting' || self.targetRefs.all(r, r.kind == 'Gateway')",message="phase PreRouting applies to Gateway targets only: the route is not known before routing",fieldPath=".traffic.phase"
type TrafficPolicySpec struct {
	// TargetRefs are the Gateways (sectionName: a listener name), HTTPRoutes and
	// GRPCRoutes (sectionName: a rule name) in the policy's namespace that it applies to.
	//
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(r, r.group == 'gateway.networking.k8s.io' && (r.kind == 'Gateway' || r.kind == 'HTTPRoute' || r.kind == 'GRPCRoute'))",message="targetRefs must name gateway.networking.k8s.io Gateways, HTTPRoutes or GRPCRoutes"
	TargetRefs []gwv1.LocalPolicyTargetReferenceWithSectionName `json:"targetRefs"`

	// Traffic is the behaviour applied to requests of the targets.
	// +optional
	Traffic *Traffic `json:"traffic,omitempty"`
}

// Phase says when a policy runs relative to route selection.
//
// +kubebuilder:validation:Enum=PreRouting;PostRouting
type Phase string

// The phases of a TrafficPolicy.
const (
	// PhasePreRouting runs before the route is chosen, so a processor may change what the
	// route is chosen from. Gateway (and listener) targets only.
	PhasePreRouting Phase = "PreRouting"
	// PhasePostRouting runs once the route is chosen. The default.
	PhasePostRouting Phase = "PostRouting"
)

// Traffic groups the traffic behaviours of a TrafficPolicy.
type Traffic struct {
	// Phase is PostRouting (the default) or PreRouting. A PreRouting and a PostRouting
	// processor may both apply to one request: they run in that order, on two streams.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// ExtProc attaches an external processor speaking Envoy's
	// envoy.service.ext_proc.v3.ExternalProcessor API.
	// +optional
	ExtProc *ExtProc `json:"extProc,omitempty"`
}

// TrafficPolicyList is a list of TrafficPolicies.
//
// +kubebuilder:object:root=true
type TrafficPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TrafficPolicy `json:"items"`
}
