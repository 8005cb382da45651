package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds Backend, BackendList, TrafficPolicy and TrafficPolicyList, under
	// GroupVersion, to a scheme (for example a controller-runtime client's).
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource returns the GroupResource of one of this package's resources (for example
// "trafficpolicies"), as API errors and RBAC name it.
func Resource(resource string) schema.GroupResource {
	return GroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Backend{}, &BackendList{},
		&TrafficPolicy{}, &TrafficPolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
