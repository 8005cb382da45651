package translate

// refAllowed reports whether an object of fromGroup/fromKind in fromNs may refer to the
// object toGroup/toKind toNs/toName: always within a namespace, and across namespaces only
// when a ReferenceGrant in toNs allows it (GEP-709).
func (t *translator) refAllowed(fromGroup, fromKind, fromNs, toGroup, toKind, toNs, toName string) bool {
	if fromNs == toNs {
		return true
	}
	for _, g := range t.grants {
		if g.Namespace != toNs {
			continue
		}
		fromOK := false
		for _, f := range g.Spec.From {
			if string(f.Group) == fromGroup && string(f.Kind) == fromKind && string(f.Namespace) == fromNs {
				fromOK = true
				break
			}
		}
		if !fromOK {
			continue
		}
		for _, to := range g.Spec.To {
			if string(to.Group) == toGroup && string(to.Kind) == toKind && (to.Name == nil || string(*to.Name) == toName) {
				return true
			}
		}
	}
	return false
}
