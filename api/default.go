package api

import (
	"net/netip"
	"strings"
)

// Built-in tiers and their fixed orders (compat §2.1).
const (
	DefaultTierOrder      = 1_000_000.0
	KubeAdminTierName     = "kube-admin"
	KubeAdminTierOrder    = 1_000.0
	KubeBaselineTierName  = "kube-baseline"
	KubeBaselineTierOrder = 10_000_000.0
)

// IPPool defaults.
const (
	DefaultIPv4BlockSize      = 26
	DefaultIPv6BlockSize      = 122
	IPPoolAssignmentAutomatic = "Automatic"
	IPPoolAssignmentManual    = "Manual"
)

// Default fills in Calico's defaults on obj, in place, as the Calico API
// server and calicoctl do before storing it:
//
//   - policies: tier "default", the label projectcalico.org/tier=<tier>,
//     and types from the rules when empty (no egress rules → [Ingress],
//     egress only → [Egress], both → [Ingress, Egress]);
//   - rule nets and network-set nets: a bare IP becomes a /32 or /128 and
//     every CIDR is masked (10.1.2.3/16 → 10.1.0.0/16);
//   - tiers: defaultAction Deny (Pass for kube-admin and kube-baseline) and
//     the fixed order of a built-in tier;
//   - IP pools: the deprecated ipip and nat-outgoing fields folded into
//     ipipMode and natOutgoing, blockSize 26 or 122, nodeSelector all(),
//     allowedUses [Workload, Tunnel], ipipMode and vxlanMode Never,
//     assignmentMode Automatic;
//   - workload endpoints: ipNetworks normalised like nets, and the name
//     computed from node, orchestrator, workload and endpoint when empty.
//
// Values that do not parse are left alone for Validate to report. Default
// is idempotent and ignores kinds it has nothing to default.
func Default(obj Object) {
	switch o := obj.(type) {
	case *NetworkPolicy:
		s := &o.Spec
		s.Tier = defaultTier(s.Tier)
		setLabel(&o.ObjectMeta.Labels, LabelTier, s.Tier)
		defaultRules(s.Ingress)
		defaultRules(s.Egress)
		if len(s.Types) == 0 {
			s.Types = defaultPolicyTypes(len(s.Ingress) > 0, len(s.Egress) > 0)
		}
	case *GlobalNetworkPolicy:
		s := &o.Spec
		s.Tier = defaultTier(s.Tier)
		setLabel(&o.ObjectMeta.Labels, LabelTier, s.Tier)
		defaultRules(s.Ingress)
		defaultRules(s.Egress)
		if len(s.Types) == 0 {
			s.Types = defaultPolicyTypes(len(s.Ingress) > 0, len(s.Egress) > 0)
		}
	case *Profile:
		defaultRules(o.Spec.Ingress)
		defaultRules(o.Spec.Egress)
	case *Tier:
		defaultTierSpec(o)
	case *NetworkSet:
		normalizeNets(o.Spec.Nets)
	case *GlobalNetworkSet:
		normalizeNets(o.Spec.Nets)
	case *IPReservation:
		normalizeNets(o.Spec.ReservedCIDRs)
	case *IPPool:
		defaultIPPool(&o.Spec)
	case *WorkloadEndpoint:
		normalizeNets(o.Spec.IPNetworks)
		if o.Name == "" {
			if name, err := WorkloadEndpointName(o.Spec.Node, o.Spec.Orchestrator, wepWorkloadSegment(&o.Spec), o.Spec.Endpoint); err == nil {
				o.Name = name
			}
		}
	}
}

func defaultTier(t string) string {
	if t == "" {
		return DefaultTierName
	}
	return t
}

// defaultPolicyTypes is Calico's types inference for a policy without
// types.
func defaultPolicyTypes(hasIngress, hasEgress bool) []PolicyType {
	switch {
	case !hasEgress:
		// Including a policy with no rules at all.
		return []PolicyType{PolicyTypeIngress}
	case !hasIngress:
		return []PolicyType{PolicyTypeEgress}
	default:
		return []PolicyType{PolicyTypeIngress, PolicyTypeEgress}
	}
}

func setLabel(labels *map[string]string, k, v string) {
	if *labels == nil {
		*labels = map[string]string{}
	}
	(*labels)[k] = v
}

func defaultRules(rules []Rule) {
	for i := range rules {
		for _, e := range []*EntityRule{&rules[i].Source, &rules[i].Destination} {
			normalizeNets(e.Nets)
			normalizeNets(e.NotNets)
		}
	}
}

// normalizeNets rewrites, in place, every parsable entry to a masked CIDR.
func normalizeNets(nets []string) {
	for i, n := range nets {
		if p, err := parseCIDROrIP(strings.TrimSpace(n)); err == nil {
			nets[i] = p.Masked().String()
		}
	}
}

func defaultTierSpec(t *Tier) {
	var order *float64
	action := Deny
	switch t.Name {
	case DefaultTierName:
		order = ptrTo(DefaultTierOrder)
	case KubeAdminTierName:
		order, action = ptrTo(KubeAdminTierOrder), Pass
	case KubeBaselineTierName:
		order, action = ptrTo(KubeBaselineTierOrder), Pass
	}
	if t.Spec.Order == nil {
		t.Spec.Order = order
	}
	if t.Spec.DefaultAction == nil {
		t.Spec.DefaultAction = &action
	}
}

func ptrTo[T any](v T) *T { return &v }

func defaultIPPool(s *IPPoolSpec) {
	if s.IPIP != nil {
		if s.IPIPMode == "" {
			s.IPIPMode = EncapNever
			if s.IPIP.Enabled {
				s.IPIPMode = EncapAlways
				if strings.EqualFold(s.IPIP.Mode, "cross-subnet") {
					s.IPIPMode = EncapCrossSubnet
				}
			}
		}
		// A mode Validate must reject is kept so it can be reported.
		if m := strings.ToLower(s.IPIP.Mode); m == "" || m == "always" || m == "cross-subnet" {
			s.IPIP = nil
		}
	}
	if s.NATOutgoingV1 {
		s.NATOutgoing = true
		s.NATOutgoingV1 = false
	}
	if s.BlockSize == 0 {
		if p, err := netip.ParsePrefix(s.CIDR); err == nil {
			s.BlockSize = DefaultIPv4BlockSize
			if p.Addr().Is6() {
				s.BlockSize = DefaultIPv6BlockSize
			}
		}
	}
	if s.NodeSelector == "" {
		s.NodeSelector = "all()"
	}
	if len(s.AllowedUses) == 0 {
		s.AllowedUses = []string{IPPoolUseWorkload, IPPoolUseTunnel}
	}
	if s.IPIPMode == "" {
		s.IPIPMode = EncapNever
	}
	if s.VXLANMode == "" {
		s.VXLANMode = EncapNever
	}
	if s.AssignmentMode == "" {
		s.AssignmentMode = IPPoolAssignmentAutomatic
	}
}

// wepWorkloadSegment is the third segment of a WorkloadEndpoint name: the
// pod, the container ID or the workload, by orchestrator.
func wepWorkloadSegment(s *WorkloadEndpointSpec) string {
	switch s.Orchestrator {
	case OrchestratorKubernetes:
		return s.Pod
	case OrchestratorCNI:
		return s.ContainerID
	}
	return s.Workload
}
