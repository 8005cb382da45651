// Package v1alpha1 holds Sluice's own configuration kinds, group gateway.sluice.dev:
// Backend (static endpoints) and TrafficPolicy (policies attached to Gateways and
// HTTPRoutes, such as external processing). The same types are read from YAML files in file
// mode and from the API server in Kubernetes mode.
//
// +kubebuilder:object:generate=true
// +groupName=gateway.sluice.dev
package v1alpha1

import "k8s.io/apimachinery/pkg/runtime/schema"

// GroupVersion is the API group and version of the kinds in this package.
var GroupVersion = schema.GroupVersion{Group: "gateway.sluice.dev", Version: "v1alpha1"}

// Group is the API group of Sluice's kinds, as used in backendRefs and targetRefs.
const Group = "gateway.sluice.dev"
