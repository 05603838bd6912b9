package api

import (
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Validation of the non-policy kinds: tiers, sets, endpoints, IPAM, BGP,
// nodes and configuration.

func (v *validator) tier(t *Tier) {
	if t.Name != "" && (len(t.Name) > 63 || !dnsLabelRegexp.MatchString(t.Name)) {
		v.add("metadata.name", "%q is not a valid tier name: want a DNS label (lowercase letters, digits and '-', no dots)", t.Name)
	}
	if a := t.Spec.DefaultAction; a != nil && *a != Deny && *a != Pass {
		v.add("spec.defaultAction", "unknown default action %q (want Deny or Pass)", *a)
	}
	builtin := map[string]struct {
		order  float64
		action Action
	}{
		DefaultTierName:      {DefaultTierOrder, Deny},
		KubeAdminTierName:    {KubeAdminTierOrder, Pass},
		KubeBaselineTierName: {KubeBaselineTierOrder, Pass},
	}
	if b, ok := builtin[t.Name]; ok {
		if t.Spec.Order == nil || *t.Spec.Order != b.order {
			v.add("spec.order", "the built-in tier %q must have order %s", t.Name, strconv.FormatFloat(b.order, 'f', -1, 64))
		}
		if t.Spec.DefaultAction != nil && *t.Spec.DefaultAction != b.action {
			v.add("spec.defaultAction", "the built-in tier %q must have defaultAction %s", t.Name, b.action)
		}
	}
}

func (v *validator) networkSet(labels map[string]string, s *NetworkSetSpec) {
	if _, ok := labels[LabelNamespace]; ok {
		v.add("metadata.labels["+LabelNamespace+"]", "is reserved: Brindle sets it on namespaced endpoints")
	}
	for i, n := range s.Nets {
		if _, err := parseCIDROrIP(n); err != nil {
			v.add(indexPath("spec.nets", i), "%v", err)
		}
	}
	for i, d := range s.AllowedEgressDomains {
		name := strings.TrimPrefix(d, "*.")
		if len(validation.IsDNS1123Subdomain(strings.ToLower(name))) > 0 {
			v.add(indexPath("spec.allowedEgressDomains", i), "%q is not a domain name (a leading \"*.\" is allowed)", d)
		}
	}
}

var interfaceNameRegexp = regexp.MustCompile(`^[a-zA-Z0-9_.@:-]{1,15}$`)

func (v *validator) interfaceName(path, name string) {
	if !interfaceNameRegexp.MatchString(name) {
		v.add(path, "%q is not a valid interface name (1 to 15 letters, digits and _.@:-)", name)
	}
}

func (v *validator) profileNames(path string, profiles []string) {
	for i, p := range profiles {
		for _, msg := range validation.IsDNS1123Subdomain(p) {
			v.add(indexPath(path, i), "%q is not a valid profile name: %s", p, msg)
		}
	}
}

// endpointPort checks a named port of a workload or host endpoint.
func (v *validator) endpointPort(path, name string, proto Protocol, port uint16) {
	if name == "" {
		v.add(joinPath(path, "name"), "is required")
	} else if len(name) > 128 || !portNameRegexp.MatchString(name) {
		v.add(joinPath(path, "name"), "invalid port name %q", name)
	}
	if !proto.SupportsPorts() || proto.Name != "" && !slices.Contains(protocolNames, proto.Name) {
		v.add(joinPath(path, "protocol"), "must be TCP, UDP or SCTP, not %q", proto.String())
	}
	if port == 0 {
		v.add(joinPath(path, "port"), "must be from 1 to 65535")
	}
}

func (v *validator) workloadEndpoint(w *WorkloadEndpoint) {
	s := &w.Spec
	for _, f := range []struct{ path, value string }{
		{"spec.node", s.Node}, {"spec.orchestrator", s.Orchestrator}, {"spec.endpoint", s.Endpoint},
	} {
		if f.value == "" {
			v.add(f.path, "is required")
		}
	}
	switch s.Orchestrator {
	case OrchestratorKubernetes:
		if s.Pod == "" {
			v.add("spec.pod", "is required for orchestrator k8s")
		}
	case OrchestratorCNI:
		if s.ContainerID == "" {
			v.add("spec.containerID", "is required for orchestrator cni")
		}
	case "libnetwork", "":
	default:
		if s.Workload == "" {
			v.add("spec.workload", "is required for orchestrator %q", s.Orchestrator)
		}
	}
	if s.Node != "" && s.Orchestrator != "" && s.Endpoint != "" && wepWorkloadSegment(s) != "" {
		want, err := WorkloadEndpointName(s.Node, s.Orchestrator, wepWorkloadSegment(s), s.Endpoint)
		switch {
		case err != nil:
			v.add("spec", "%v", err)
		case w.Name != "" && w.Name != want:
			v.add("metadata.name", "must be %q, computed from node, orchestrator, workload and endpoint (or leave it empty)", want)
		}
	}
	var ips []netip.Prefix
	for i, n := range s.IPNetworks {
		p, err := parseCIDROrIP(n)
		if err != nil {
			v.add(indexPath("spec.ipNetworks", i), "%v", err)
			continue
		}
		if p.Bits() != p.Addr().BitLen() {
			v.add(indexPath("spec.ipNetworks", i), "%s: only /32 (IPv4) or /128 (IPv6) addresses are allowed", n)
		}
		ips = append(ips, p)
	}
	for i, nat := range s.IPNATs {
		path := indexPath("spec.ipNATs", i)
		in, ok := parseIP(nat.InternalIP)
		if !ok {
			v.add(path+".internalIP", "%q is not an IP address", nat.InternalIP)
		} else if !slices.ContainsFunc(ips, func(p netip.Prefix) bool { return p.Contains(in) }) {
			v.add(path+".internalIP", "%s is not one of the endpoint's ipNetworks", nat.InternalIP)
		}
		if _, ok := parseIP(nat.ExternalIP); !ok {
			v.add(path+".externalIP", "%q is not an IP address", nat.ExternalIP)
		}
	}
	if s.IPv4Gateway != "" {
		if a, ok := parseIP(s.IPv4Gateway); !ok || !a.Is4() {
			v.add("spec.ipv4Gateway", "%q is not an IPv4 address", s.IPv4Gateway)
		}
	}
	if s.IPv6Gateway != "" {
		if a, ok := parseIP(s.IPv6Gateway); !ok || !a.Is6() {
			v.add("spec.ipv6Gateway", "%q is not an IPv6 address", s.IPv6Gateway)
		}
	}
	v.profileNames("spec.profiles", s.Profiles)
	if s.InterfaceName != "" {
		v.interfaceName("spec.interfaceName", s.InterfaceName)
	}
	if s.MAC != "" {
		if _, err := net.ParseMAC(s.MAC); err != nil {
			v.add("spec.mac", "%q is not a MAC address", s.MAC)
		}
	}
	for i, p := range s.Ports {
		path := indexPath("spec.ports", i)
		v.endpointPort(path, p.Name, p.Protocol, p.Port)
		if p.HostIP != "" {
			if _, ok := parseIP(p.HostIP); !ok {
				v.add(path+".hostIP", "%q is not an IP address", p.HostIP)
			}
		}
	}
	for i, n := range s.AllowSpoofedSourcePrefixes {
		if _, err := parseCIDROrIP(n); err != nil {
			v.add(indexPath("spec.allowSpoofedSourcePrefixes", i), "%v", err)
		}
	}
	if s.ServiceAccountName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.ServiceAccountName) {
			v.add("spec.serviceAccountName", "%q is not a valid service account name: %s", s.ServiceAccountName, msg)
		}
	}
	if q := s.QoSControls; q != nil && q.DSCP != nil && (*q.DSCP < 0 || *q.DSCP > 63) {
		v.add("spec.qosControls.dscp", "DSCP %d is not from 0 to 63", *q.DSCP)
	}
}

func (v *validator) hostEndpoint(s *HostEndpointSpec) {
	if s.Node == "" {
		v.add("spec.node", "is required")
	}
	switch {
	case s.InterfaceName == "" && len(s.ExpectedIPs) == 0:
		v.add("spec", "set interfaceName or expectedIPs (or both)")
	case s.InterfaceName != "" && s.InterfaceName != "*":
		v.interfaceName("spec.interfaceName", s.InterfaceName)
	}
	for i, ip := range s.ExpectedIPs {
		if _, ok := parseIP(ip); !ok {
			v.add(indexPath("spec.expectedIPs", i), "%q is not an IP address", ip)
		}
	}
	v.profileNames("spec.profiles", s.Profiles)
	for i, p := range s.Ports {
		v.endpointPort(indexPath("spec.ports", i), p.Name, p.Protocol, p.Port)
	}
}

var encapModes = []string{EncapNever, EncapAlways, EncapCrossSubnet}

func (v *validator) ipPool(s *IPPoolSpec) {
	var cidr netip.Prefix
	if s.CIDR == "" {
		v.add("spec.cidr", "is required")
	} else if p, err := netip.ParsePrefix(s.CIDR); err != nil {
		v.add("spec.cidr", "%q is not a CIDR", s.CIDR)
	} else {
		cidr = p
		switch {
		case p.Masked() != p:
			v.add("spec.cidr", "%s is not strictly masked (did you mean %s?)", s.CIDR, p.Masked())
		case p.Overlaps(netip.MustParsePrefix("169.254.0.0/16")) || p.Overlaps(netip.MustParsePrefix("fe80::/10")):
			v.add("spec.cidr", "%s overlaps the link-local range", s.CIDR)
		}
	}
	if cidr.IsValid() {
		lo, hi := 20, 32
		if cidr.Addr().Is6() {
			lo, hi = 116, 128
		}
		switch {
		case s.BlockSize < lo || s.BlockSize > hi:
			v.add("spec.blockSize", "%d is not from %d to %d", s.BlockSize, lo, hi)
		case s.BlockSize < cidr.Bits():
			v.add("spec.blockSize", "/%d blocks do not fit in the /%d pool", s.BlockSize, cidr.Bits())
		}
	}
	if !slices.Contains(encapModes, s.IPIPMode) {
		v.add("spec.ipipMode", "unknown mode %q (want Never, Always or CrossSubnet)", s.IPIPMode)
	}
	if !slices.Contains(encapModes, s.VXLANMode) {
		v.add("spec.vxlanMode", "unknown mode %q (want Never, Always or CrossSubnet)", s.VXLANMode)
	}
	ipip := s.IPIPMode != "" && s.IPIPMode != EncapNever
	vxlan := s.VXLANMode != "" && s.VXLANMode != EncapNever
	if ipip && vxlan {
		v.add("spec", "ipipMode and vxlanMode cannot both be enabled")
	}
	if ipip && cidr.IsValid() && cidr.Addr().Is6() {
		v.add("spec.ipipMode", "IPIP is IPv4 only; use vxlanMode for an IPv6 pool")
	}
	if s.IPIP != nil {
		if m := strings.ToLower(s.IPIP.Mode); m != "" && m != "always" && m != "cross-subnet" {
			v.add("spec.ipip.mode", "unknown mode %q (want always or cross-subnet)", s.IPIP.Mode)
		}
	}
	v.selectorField("spec.nodeSelector", s.NodeSelector, false)
	v.selectorField("spec.namespaceSelector", s.NamespaceSelector, false)
	lb := false
	for i, u := range s.AllowedUses {
		switch u {
		case IPPoolUseWorkload, IPPoolUseTunnel:
		case IPPoolUseLoadBalancer:
			lb = true
		default:
			v.add(indexPath("spec.allowedUses", i), "unknown use %q (want Workload, Tunnel or LoadBalancer)", u)
		}
	}
	if lb {
		if ipip || vxlan {
			v.add("spec.allowedUses", "a LoadBalancer pool cannot use IPIP or VXLAN")
		}
		if s.NodeSelector != "" && strings.TrimSpace(s.NodeSelector) != "all()" {
			v.add("spec.nodeSelector", "a LoadBalancer pool must have nodeSelector all()")
		}
	}
	if s.AssignmentMode != "" && s.AssignmentMode != IPPoolAssignmentAutomatic && s.AssignmentMode != IPPoolAssignmentManual {
		v.add("spec.assignmentMode", "unknown mode %q (want Automatic or Manual)", s.AssignmentMode)
	}
}

func (v *validator) ipamConfiguration(c *IPAMConfiguration) {
	if c.Name != "default" {
		v.add("metadata.name", "must be \"default\" (there is one IPAMConfiguration)")
	}
	if c.Spec.MaxBlocksPerHost < 0 {
		v.add("spec.maxBlocksPerHost", "must not be negative")
	}
	if s := c.Spec.IPCooldownSeconds; s != nil && (*s < 0 || *s > 1200) {
		v.add("spec.ipCooldownSeconds", "%d is not from 0 to 1200", *s)
	}
	if m := c.Spec.KubeVirtVMAddressPersistence; m != "" && m != "Enabled" && m != "Disabled" {
		v.add("spec.kubeVirtVMAddressPersistence", "unknown value %q (want Enabled or Disabled)", m)
	}
}

// peerIP parses "ip" or "ip:port" ("[v6]:port" for IPv6).
func peerIP(s string) (netip.Addr, bool) {
	if a, ok := parseIP(s); ok {
		return a, true
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.Addr{}, false
	}
	return ap.Addr(), true
}

func (v *validator) bgpPeer(s *BGPPeerSpec) {
	switch {
	case s.PeerIP != "" && s.PeerSelector != "":
		v.add("spec", "set peerIP or peerSelector, not both")
	case s.PeerIP == "" && s.PeerSelector == "":
		v.add("spec", "set peerIP or peerSelector")
	}
	if s.PeerIP != "" {
		if _, ok := peerIP(s.PeerIP); !ok {
			v.add("spec.peerIP", "%q is not an IP address or ip:port", s.PeerIP)
		}
		if s.ASNumber == 0 {
			v.add("spec.asNumber", "is required with peerIP")
		}
	}
	if s.Node != "" && s.NodeSelector != "" {
		v.add("spec", "set node or nodeSelector, not both")
	}
	if s.Node != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.Node) {
			v.add("spec.node", "%q is not a valid node name: %s", s.Node, msg)
		}
	}
	v.selectorField("spec.nodeSelector", s.NodeSelector, false)
	v.selectorField("spec.peerSelector", s.PeerSelector, false)
	v.selectorField("spec.localWorkloadSelector", s.LocalWorkloadSelector, false)
	if s.LocalASNumber != nil && *s.LocalASNumber == 0 {
		v.add("spec.localASNumber", "AS number 0 is reserved")
	}
	if m := s.NextHopMode; m != "" && m != "Auto" && m != "Self" && m != "Keep" {
		v.add("spec.nextHopMode", "unknown mode %q (want Auto, Self or Keep)", m)
	}
	if s.KeepOriginalNextHop && s.NextHopMode != "" {
		v.add("spec.keepOriginalNextHop", "cannot be combined with nextHopMode")
	}
	if a := s.SourceAddress; a != "" && a != "UseNodeIP" && a != "None" {
		v.add("spec.sourceAddress", "unknown value %q (want UseNodeIP or None)", a)
	}
	if r := s.ReversePeering; r != "" && r != "Auto" && r != "Manual" {
		v.add("spec.reversePeering", "unknown value %q (want Auto or Manual)", r)
	}
	if s.ReachableBy != "" {
		if _, ok := parseIP(s.ReachableBy); !ok {
			v.add("spec.reachableBy", "%q is not an IP address", s.ReachableBy)
		}
	}
	if n := s.NumAllowedLocalASNumbers; n != nil && *n < 0 {
		v.add("spec.numAllowedLocalASNumbers", "must not be negative")
	}
	v.password("spec.password", s.Password)
	for i, f := range s.Filters {
		for _, msg := range validation.IsDNS1123Subdomain(f) {
			v.add(indexPath("spec.filters", i), "%q is not a valid BGPFilter name: %s", f, msg)
		}
	}
}

func (v *validator) password(path string, p *BGPPassword) {
	if p == nil {
		return
	}
	if p.SecretKeyRef == nil {
		v.add(path, "needs secretKeyRef")
		return
	}
	if p.SecretKeyRef.Name == "" {
		v.add(path+".secretKeyRef.name", "is required")
	}
	if p.SecretKeyRef.Key == "" {
		v.add(path+".secretKeyRef.key", "is required")
	}
}

// configName checks the name of a BGPConfiguration or FelixConfiguration:
// "default", "node.<node>" or another valid name.
func (v *validator) configName(name, kind string) {
	if rest, ok := strings.CutPrefix(name, "node."); ok && rest == "" {
		v.add("metadata.name", "a per-node %s is named \"node.<node name>\"", kind)
	}
}

var communityRegexp = regexp.MustCompile(`^(\d+):(\d+)(:(\d+))?$`)

func (v *validator) bgpConfiguration(s *BGPConfigurationSpec) {
	v.logSeverity("spec.logSeverityScreen", s.LogSeverityScreen)
	if s.ASNumber != nil && *s.ASNumber == 0 {
		v.add("spec.asNumber", "AS number 0 is reserved")
	}
	for _, list := range []struct {
		path   string
		blocks []ServiceIPBlock
	}{{"spec.serviceClusterIPs", s.ServiceClusterIPs}, {"spec.serviceExternalIPs", s.ServiceExternalIPs}, {"spec.serviceLoadBalancerIPs", s.ServiceLoadBalancerIPs}} {
		for i, b := range list.blocks {
			if _, err := parseCIDROrIP(b.CIDR); err != nil {
				v.add(indexPath(list.path, i)+".cidr", "%v", err)
			}
		}
	}
	names := map[string]bool{}
	for i, c := range s.Communities {
		path := indexPath("spec.communities", i)
		if c.Name == "" {
			v.add(path+".name", "is required")
		}
		names[c.Name] = true
		if !validCommunity(c.Value) {
			v.add(path+".value", "%q is not a community (aa:nn or aa:nn:mm)", c.Value)
		}
	}
	for i, pa := range s.PrefixAdvertisements {
		path := indexPath("spec.prefixAdvertisements", i)
		if _, err := parseCIDROrIP(pa.CIDR); err != nil {
			v.add(path+".cidr", "%v", err)
		}
		for j, c := range pa.Communities {
			if !names[c] && !validCommunity(c) {
				v.add(indexPath(path+".communities", j), "%q is neither a community defined in spec.communities nor a community value", c)
			}
		}
	}
	if m := s.BindMode; m != "" && m != "None" && m != "NodeIP" {
		v.add("spec.bindMode", "unknown mode %q (want None or NodeIP)", m)
	}
	if a := s.ServiceLoadBalancerAggregation; a != "" && a != "Enabled" && a != "Disabled" {
		v.add("spec.serviceLoadBalancerAggregation", "unknown value %q (want Enabled or Disabled)", a)
	}
	v.password("spec.nodeMeshPassword", s.NodeMeshPassword)
}

func validCommunity(s string) bool {
	m := communityRegexp.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	if m[3] != "" { // large community: three 32-bit numbers
		for _, p := range []string{m[1], m[2], m[4]} {
			if _, err := strconv.ParseUint(p, 10, 32); err != nil {
				return false
			}
		}
		return true
	}
	_, err1 := strconv.ParseUint(m[1], 10, 16)
	_, err2 := strconv.ParseUint(m[2], 10, 16)
	return err1 == nil && err2 == nil
}

var logSeverities = []string{"Trace", "Debug", "Info", "Warning", "Error", "Fatal", "None"}

func (v *validator) logSeverity(path, s string) {
	if s == "" {
		return
	}
	for _, l := range logSeverities {
		if strings.EqualFold(s, l) {
			return
		}
	}
	v.add(path, "unknown log severity %q (want Debug, Info, Warning, Error, Fatal or None)", s)
}

func (v *validator) node(s *NodeSpec) {
	if b := s.BGP; b != nil {
		if b.ASNumber != nil && *b.ASNumber == 0 {
			v.add("spec.bgp.asNumber", "AS number 0 is reserved")
		}
		v.nodeAddr("spec.bgp.ipv4Address", b.IPv4Address, 4)
		v.nodeAddr("spec.bgp.ipv6Address", b.IPv6Address, 6)
		v.ipOfFamily("spec.bgp.ipv4IPIPTunnelAddr", b.IPv4IPIPTunnelAddr, 4)
		v.ipOfFamily("spec.bgp.routeReflectorClusterID", b.RouteReflectorClusterID, 4)
	}
	v.ipOfFamily("spec.ipv4VXLANTunnelAddr", s.IPv4VXLANTunnelAddr, 4)
	v.ipOfFamily("spec.ipv6VXLANTunnelAddr", s.IPv6VXLANTunnelAddr, 6)
	for _, m := range []struct{ path, mac string }{{"spec.vxlanTunnelMACAddr", s.VXLANTunnelMACAddr}, {"spec.vxlanTunnelMACAddrV6", s.VXLANTunnelMACAddrV6}} {
		if m.mac != "" {
			if _, err := net.ParseMAC(m.mac); err != nil {
				v.add(m.path, "%q is not a MAC address", m.mac)
			}
		}
	}
	if w := s.Wireguard; w != nil {
		v.ipOfFamily("spec.wireguard.interfaceIPv4Address", w.InterfaceIPv4Address, 4)
		v.ipOfFamily("spec.wireguard.interfaceIPv6Address", w.InterfaceIPv6Address, 6)
	}
	for i, r := range s.OrchRefs {
		if r.Orchestrator == "" {
			v.add(indexPath("spec.orchRefs", i)+".orchestrator", "is required")
		}
	}
	for i, a := range s.Addresses {
		path := indexPath("spec.addresses", i)
		if _, err := parseCIDROrIP(a.Address); err != nil {
			v.add(path+".address", "%v", err)
		}
		if t := a.Type; t != "" && t != "CalicoNodeIP" && t != "InternalIP" && t != "ExternalIP" {
			v.add(path+".type", "unknown type %q (want CalicoNodeIP, InternalIP or ExternalIP)", t)
		}
	}
}

// nodeAddr checks "a.b.c.d/nn" (or a bare address) of the given family.
func (v *validator) nodeAddr(path, s string, family int) {
	if s == "" {
		return
	}
	p, err := parseCIDROrIP(s)
	if err != nil {
		v.add(path, "%v", err)
		return
	}
	if p.Addr().Is4() != (family == 4) {
		v.add(path, "%s is not an IPv%d address", s, family)
	}
}

func (v *validator) ipOfFamily(path, s string, family int) {
	if s == "" {
		return
	}
	if a, ok := parseIP(s); !ok || a.Is4() != (family == 4) {
		v.add(path, "%q is not an IPv%d address", s, family)
	}
}

func (v *validator) felixConfiguration(s *FelixConfigurationSpec) {
	oneOf := func(path string, val string, allowed ...string) {
		if val == "" {
			return
		}
		for _, a := range allowed {
			if strings.EqualFold(val, a) {
				return
			}
		}
		v.add(path, "unknown value %q (want %s)", val, strings.Join(allowed, ", "))
	}
	deref := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	oneOf("spec.chainInsertMode", s.ChainInsertMode, "Insert", "Append")
	oneOf("spec.defaultEndpointToHostAction", s.DefaultEndpointToHostAction, "Drop", "Return", "Accept")
	oneOf("spec.iptablesFilterAllowAction", s.IptablesFilterAllowAction, "Accept", "Return")
	oneOf("spec.iptablesFilterDenyAction", s.IptablesFilterDenyAction, "Drop", "Reject")
	oneOf("spec.iptablesMangleAllowAction", s.IptablesMangleAllowAction, "Accept", "Return")
	oneOf("spec.nftablesMode", deref(s.NFTablesMode), "Enabled", "Disabled", "Auto")
	oneOf("spec.iptablesBackend", deref(s.IptablesBackend), "Legacy", "NFT", "Auto")
	oneOf("spec.routeSource", s.RouteSource, "CalicoIPAM", "WorkloadIPs")
	oneOf("spec.serviceLoopPrevention", s.ServiceLoopPrevention, "Drop", "Reject", "Disabled")
	v.logSeverity("spec.logSeverityScreen", s.LogSeverityScreen)
	v.logSeverity("spec.logSeverityFile", s.LogSeverityFile)
	v.logSeverity("spec.logSeveritySys", s.LogSeveritySys)
	for _, p := range []struct {
		path string
		val  *int
	}{{"spec.vxlanPort", s.VXLANPort}, {"spec.healthPort", s.HealthPort}, {"spec.prometheusMetricsPort", s.PrometheusMetricsPort},
		{"spec.wireguardListeningPort", s.WireguardListeningPort}, {"spec.metadataPort", s.MetadataPort}} {
		if p.val != nil && (*p.val < 1 || *p.val > 65535) {
			v.add(p.path, "port %d is not from 1 to 65535", *p.val)
		}
	}
	for _, m := range []struct {
		path string
		val  *int
	}{{"spec.ipipMTU", s.IPIPMTU}, {"spec.vxlanMTU", s.VXLANMTU}, {"spec.vxlanMTUV6", s.VXLANMTUV6}, {"spec.wireguardMTU", s.WireguardMTU}} {
		if m.val != nil && *m.val < 0 {
			v.add(m.path, "MTU must not be negative")
		}
	}
	if s.VXLANVNI != nil && (*s.VXLANVNI < 0 || *s.VXLANVNI > 1<<24-1) {
		v.add("spec.vxlanVNI", "VNI %d is not from 0 to 16777215", *s.VXLANVNI)
	}
	for _, fs := range []struct {
		path  string
		ports *[]ProtoPort
	}{{"spec.failsafeInboundHostPorts", s.FailsafeInboundHostPorts}, {"spec.failsafeOutboundHostPorts", s.FailsafeOutboundHostPorts}} {
		if fs.ports == nil {
			continue
		}
		for i, p := range *fs.ports {
			path := indexPath(fs.path, i)
			switch strings.ToLower(p.Protocol) {
			case "tcp", "udp", "sctp":
			default:
				v.add(path+".protocol", "unknown protocol %q (want TCP, UDP or SCTP)", p.Protocol)
			}
			if p.Net != "" {
				if _, err := parseCIDROrIP(p.Net); err != nil {
					v.add(path+".net", "%v", err)
				}
			}
		}
	}
	if s.KubeNodePortRanges != nil {
		for i, p := range *s.KubeNodePortRanges {
			if p.IsNamed() || p.MinPort > p.MaxPort {
				v.add(indexPath("spec.kubeNodePortRanges", i), "%q is not a port range min:max", p.String())
			}
		}
	}
	if p := s.NATPortRange; p != nil && (p.IsNamed() || p.MinPort > p.MaxPort) {
		v.add("spec.natPortRange", "%q is not a port range min:max", p.String())
	}
	if r := s.RouteTableRange; r != nil && (r.Min < 1 || r.Min > r.Max) {
		v.add("spec.routeTableRange", "min %d and max %d do not form a range of table numbers from 1", r.Min, r.Max)
	}
	if rs := s.RouteTableRanges; rs != nil {
		for i, r := range *rs {
			if r.Min < 1 || r.Min > r.Max {
				v.add(indexPath("spec.routeTableRanges", i), "min %d and max %d do not form a range of table numbers from 1", r.Min, r.Max)
			}
		}
	}
	if s.NATOutgoingAddress != "" {
		v.ipOfFamily("spec.natOutgoingAddress", s.NATOutgoingAddress, 4)
	}
}
