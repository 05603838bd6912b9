package api

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/brindle-net/brindle/selector"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits Calico enforces (compat §1.5, §2.1, §2.2).
const (
	MaxSelectorLength = 1024
	MaxRules          = 1024
	MaxPorts          = 50
	MaxNets           = 256
)

// Validate checks a (defaulted) object the way Calico's validator does and
// returns FieldErrors naming every problem with its field path, or nil.
// Call Default first: Validate does not fill anything in, so for example a
// policy without types is reported.
func Validate(obj Object) error {
	var v validator
	switch o := obj.(type) {
	case nil:
		return FieldErrors{{Msg: "object is nil"}}
	case *NetworkPolicy:
		v.meta(o, "NetworkPolicy", true)
		v.networkPolicyName(o.Name)
		v.policy(&policyFields{tier: o.Spec.Tier, selector: o.Spec.Selector, types: o.Spec.Types,
			ingress: o.Spec.Ingress, egress: o.Spec.Egress, saSelector: o.Spec.ServiceAccountSelector,
			hints: o.Spec.PerformanceHints, namespaced: true})
	case *GlobalNetworkPolicy:
		v.meta(o, "GlobalNetworkPolicy", false)
		v.globalNetworkPolicyName(o.Name)
		s := &o.Spec
		v.policy(&policyFields{tier: s.Tier, selector: s.Selector, types: s.Types, ingress: s.Ingress,
			egress: s.Egress, saSelector: s.ServiceAccountSelector, hints: s.PerformanceHints,
			nsSelector: s.NamespaceSelector, doNotTrack: s.DoNotTrack, preDNAT: s.PreDNAT})
		v.gnpFlags(s)
	case *Tier:
		v.meta(o, "Tier", false)
		v.tier(o)
	case *Profile:
		v.meta(o, "Profile", false)
		v.rules("spec.ingress", o.Spec.Ingress, ruleContext{ingress: true})
		v.rules("spec.egress", o.Spec.Egress, ruleContext{})
		v.labels("spec.labelsToApply", o.Spec.LabelsToApply)
	case *NetworkSet:
		v.meta(o, "NetworkSet", true)
		v.networkSet(o.Labels, &o.Spec)
	case *GlobalNetworkSet:
		v.meta(o, "GlobalNetworkSet", false)
		v.networkSet(o.Labels, &o.Spec)
	case *WorkloadEndpoint:
		v.meta(o, "WorkloadEndpoint", true)
		v.workloadEndpoint(o)
	case *HostEndpoint:
		v.meta(o, "HostEndpoint", false)
		v.hostEndpoint(&o.Spec)
	case *IPPool:
		v.meta(o, "IPPool", false)
		v.ipPool(&o.Spec)
	case *IPReservation:
		v.meta(o, "IPReservation", false)
		for i, c := range o.Spec.ReservedCIDRs {
			if _, err := parseCIDROrIP(c); err != nil {
				v.add(indexPath("spec.reservedCIDRs", i), "%v", err)
			}
		}
	case *IPAMConfiguration:
		v.meta(o, "IPAMConfiguration", false)
		v.ipamConfiguration(o)
	case *BGPPeer:
		v.meta(o, "BGPPeer", false)
		v.bgpPeer(&o.Spec)
	case *BGPConfiguration:
		v.meta(o, "BGPConfiguration", false)
		v.configName(o.Name, "BGPConfiguration")
		v.bgpConfiguration(&o.Spec)
	case *Node:
		v.meta(o, "Node", false)
		v.node(&o.Spec)
	case *FelixConfiguration:
		v.meta(o, "FelixConfiguration", false)
		v.configName(o.Name, "FelixConfiguration")
		v.felixConfiguration(&o.Spec)
	case *ClusterInformation:
		v.meta(o, "ClusterInformation", false)
		if o.Name != "default" {
			v.add("metadata.name", "must be \"default\" (there is one ClusterInformation)")
		}
	case *networkingv1.NetworkPolicy:
		v.meta(o, "NetworkPolicy", true)
		if _, err := TranslateNetworkPolicy(o); err != nil {
			v.add("", "%v", err)
		}
	default:
		return FieldErrors{{Msg: fmt.Sprintf("unsupported object type %T", obj)}}
	}
	return v.err()
}

// validator accumulates the problems of one object.
type validator struct {
	fieldErrs
}

// meta checks the name, namespace, labels and annotations.
func (v *validator) meta(o metav1.Object, kind string, namespaced bool) {
	name := o.GetName()
	switch {
	case name == "":
		v.add("metadata.name", "is required")
	case kind == "NetworkPolicy" || kind == "GlobalNetworkPolicy" || kind == "Tier":
		// Checked by the kind's own name rule.
	default:
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			v.add("metadata.name", "%q is not a valid name: %s", name, msg)
		}
	}
	ns := o.GetNamespace()
	switch {
	case namespaced && ns == "":
		v.add("metadata.namespace", "is required: %s is namespaced", kind)
	case namespaced:
		for _, msg := range validation.IsDNS1123Label(ns) {
			v.add("metadata.namespace", "%q is not a valid namespace: %s", ns, msg)
		}
	case ns != "":
		v.add("metadata.namespace", "must be empty: %s is cluster-wide", kind)
	}
	v.labels("metadata.labels", o.GetLabels())
	for k := range o.GetAnnotations() {
		for _, msg := range validation.IsQualifiedName(k) {
			v.add("metadata.annotations["+k+"]", "invalid key: %s", msg)
		}
	}
}

// labels checks label keys and values (compat §1.5).
func (v *validator) labels(path string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		for _, msg := range validation.IsQualifiedName(k) {
			v.add(path+"["+k+"]", "invalid label key: %s", msg)
		}
		for _, msg := range validation.IsValidLabelValue(labels[k]) {
			v.add(path+"["+k+"]", "invalid label value %q: %s", labels[k], msg)
		}
	}
}

var dnsLabelRegexp = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// labelDotLabel reports whether s is a DNS label or two joined by one dot.
func labelDotLabel(s string) bool {
	a, b, dot := strings.Cut(s, ".")
	if len(a) > 63 || !dnsLabelRegexp.MatchString(a) {
		return false
	}
	return !dot || len(b) <= 63 && dnsLabelRegexp.MatchString(b)
}

func (v *validator) networkPolicyName(name string) {
	if name == "" {
		return
	}
	for _, prefix := range []string{K8sNetworkPolicyPrefix, "ossg.default."} {
		if rest, ok := strings.CutPrefix(name, prefix); ok {
			for _, msg := range validation.IsDNS1123Subdomain(rest) {
				v.add("metadata.name", "%q is not a valid name: %s", name, msg)
			}
			return
		}
	}
	if !labelDotLabel(name) {
		v.add("metadata.name", "%q is not a valid NetworkPolicy name: want a DNS label (lowercase letters, digits and '-', at most 63 characters), optionally followed by '.' and another", name)
	}
}

func (v *validator) globalNetworkPolicyName(name string) {
	if name != "" && !labelDotLabel(name) {
		v.add("metadata.name", "%q is not a valid GlobalNetworkPolicy name: want a DNS label (lowercase letters, digits and '-', at most 63 characters) with at most one '.'", name)
	}
}

// selectorField checks a selector field. allowGlobal permits global() as
// the whole selector (EntityRule namespaceSelector only).
func (v *validator) selectorField(path, s string, allowGlobal bool) {
	if s == "" {
		return
	}
	if len(s) > MaxSelectorLength {
		v.add(path, "selector is %d characters long, more than the limit of %d", len(s), MaxSelectorLength)
		return
	}
	sel, err := selector.Parse(s)
	if err != nil {
		var pe *selector.ParseError
		if errors.As(err, &pe) {
			v.add(path, "invalid selector %q: at character %d: %s", s, pe.Pos, pe.Msg)
		} else {
			v.add(path, "invalid selector %q: %v", s, err)
		}
		return
	}
	if sel.ContainsGlobal() && !(allowGlobal && sel.IsGlobal()) {
		if allowGlobal {
			v.add(path, "global() must be the whole namespaceSelector, not part of %q", s)
		} else {
			v.add(path, "global() is only allowed as the whole namespaceSelector of a rule's source or destination")
		}
	}
}

// policyFields are the fields NetworkPolicy and GlobalNetworkPolicy share.
type policyFields struct {
	tier, selector, saSelector, nsSelector string
	types                                  []PolicyType
	ingress, egress                        []Rule
	hints                                  []PolicyPerformanceHint
	namespaced, doNotTrack, preDNAT        bool
}

func (v *validator) policy(p *policyFields) {
	switch {
	case p.tier == "":
		v.add("spec.tier", "is required (Default sets \"default\")")
	case len(p.tier) > 63 || !dnsLabelRegexp.MatchString(p.tier):
		v.add("spec.tier", "%q is not a valid tier name: want a DNS label without dots", p.tier)
	}
	v.selectorField("spec.selector", p.selector, false)
	v.selectorField("spec.serviceAccountSelector", p.saSelector, false)
	v.selectorField("spec.namespaceSelector", p.nsSelector, false)
	if len(p.types) == 0 {
		v.add("spec.types", "is required (Default infers it from the rules)")
	}
	seen := map[PolicyType]bool{}
	for i, t := range p.types {
		switch {
		case t != PolicyTypeIngress && t != PolicyTypeEgress:
			v.add(indexPath("spec.types", i), "unknown policy type %q (want Ingress or Egress)", t)
		case seen[t]:
			v.add(indexPath("spec.types", i), "%s is listed twice", t)
		}
		seen[t] = true
	}
	for i, h := range p.hints {
		if h != "AssumeNeededOnEveryNode" {
			v.add(indexPath("spec.performanceHints", i), "unknown performance hint %q (want AssumeNeededOnEveryNode)", h)
		}
	}
	ctx := ruleContext{namespaced: p.namespaced, untracked: p.doNotTrack, preDNAT: p.preDNAT}
	ctx.ingress = true
	v.rules("spec.ingress", p.ingress, ctx)
	ctx.ingress = false
	v.rules("spec.egress", p.egress, ctx)
}

// gnpFlags checks preDNAT, doNotTrack and applyOnForward (compat §2.4).
func (v *validator) gnpFlags(s *GlobalNetworkPolicySpec) {
	if s.PreDNAT && s.DoNotTrack {
		v.add("spec.preDNAT", "preDNAT and doNotTrack cannot both be true")
	}
	if s.PreDNAT {
		if len(s.Egress) > 0 {
			v.add("spec.egress", "a preDNAT policy cannot have egress rules")
		}
		if slices.Contains(s.Types, PolicyTypeEgress) {
			v.add("spec.types", "a preDNAT policy cannot apply to Egress")
		}
	}
	if (s.PreDNAT || s.DoNotTrack) && !s.ApplyOnForward {
		v.add("spec.applyOnForward", "must be true for a preDNAT or doNotTrack policy")
	}
}

type ruleContext struct {
	ingress    bool
	namespaced bool
	untracked  bool
	preDNAT    bool
}

func (v *validator) rules(path string, rules []Rule, ctx ruleContext) {
	if len(rules) > MaxRules {
		v.add(path, "has %d rules, more than the limit of %d", len(rules), MaxRules)
	}
	for i := range rules {
		v.rule(indexPath(path, i), &rules[i], ctx)
	}
}

var validActions = []Action{Allow, Deny, Log, Pass}

func (v *validator) rule(path string, r *Rule, ctx ruleContext) {
	switch {
	case r.Action == "":
		v.add(joinPath(path, "action"), "is required (want Allow, Deny, Log or Pass)")
	case !slices.Contains(validActions, r.Action):
		v.add(joinPath(path, "action"), "unknown action %q (want Allow, Deny, Log or Pass)", r.Action)
	}
	if r.IPVersion != nil && *r.IPVersion != 4 && *r.IPVersion != 6 {
		v.add(joinPath(path, "ipVersion"), "must be 4 or 6, not %d", *r.IPVersion)
	}
	v.protocol(joinPath(path, "protocol"), r.Protocol)
	v.protocol(joinPath(path, "notProtocol"), r.NotProtocol)
	v.icmp(joinPath(path, "icmp"), r.ICMP, r.Protocol, r.IPVersion)
	v.icmp(joinPath(path, "notICMP"), r.NotICMP, r.Protocol, r.IPVersion)

	portsOK := r.Protocol != nil && r.Protocol.SupportsPorts()
	v.entityRule(joinPath(path, "source"), &r.Source, r, portsOK, ctx, true)
	v.entityRule(joinPath(path, "destination"), &r.Destination, r, portsOK, ctx, false)

	if r.HTTP != nil {
		hp := joinPath(path, "http")
		if r.Action != Allow {
			v.add(hp, "HTTP matches are only allowed in Allow rules")
		}
		if r.Protocol != nil {
			if n, ok := r.Protocol.ToNumber(); !ok || n != 6 {
				v.add(hp, "HTTP matches need protocol TCP, not %s", r.Protocol)
			}
		}
		for i, m := range r.HTTP.Methods {
			if m == "" || strings.ContainsAny(m, " \t/") {
				v.add(indexPath(joinPath(hp, "methods"), i), "invalid HTTP method %q", m)
			}
		}
		for i, p := range r.HTTP.Paths {
			pp := indexPath(joinPath(hp, "paths"), i)
			switch {
			case (p.Exact == "") == (p.Prefix == ""):
				v.add(pp, "set exactly one of exact and prefix")
			case !strings.HasPrefix(p.Exact+p.Prefix, "/"):
				v.add(pp, "path %q must start with '/'", p.Exact+p.Prefix)
			}
		}
	}
	if r.Metadata != nil {
		for k := range r.Metadata.Annotations {
			for _, msg := range validation.IsQualifiedName(k) {
				v.add(joinPath(path, "metadata.annotations")+"["+k+"]", "invalid key: %s", msg)
			}
		}
	}
}

var protocolNames = []string{ProtocolTCP, ProtocolUDP, ProtocolICMP, ProtocolICMPv6, ProtocolSCTP, ProtocolUDPLite}

func (v *validator) protocol(path string, p *Protocol) {
	if p == nil {
		return
	}
	if p.Name == "" {
		if p.Number == 0 {
			v.add(path, "protocol number must be from 1 to 255")
		}
		return
	}
	if slices.Contains(protocolNames, p.Name) {
		return
	}
	for _, n := range protocolNames {
		if strings.EqualFold(n, p.Name) {
			v.add(path, "protocol %q must be spelled %q", p.Name, n)
			return
		}
	}
	v.add(path, "unknown protocol %q (want TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number from 1 to 255)", p.Name)
}

func (v *validator) icmp(path string, f *ICMPFields, proto *Protocol, ipVersion *int) {
	if f == nil {
		return
	}
	if f.Type != nil && (*f.Type < 0 || *f.Type > 254) {
		v.add(joinPath(path, "type"), "ICMP type %d is not from 0 to 254", *f.Type)
	}
	if f.Code != nil {
		if *f.Code < 0 || *f.Code > 255 {
			v.add(joinPath(path, "code"), "ICMP code %d is not from 0 to 255", *f.Code)
		}
		if f.Type == nil {
			v.add(joinPath(path, "code"), "an ICMP code needs an ICMP type")
		}
	}
	n, ok := uint8(0), false
	if proto != nil {
		n, ok = proto.ToNumber()
	}
	switch {
	case !ok || n != 1 && n != 58:
		v.add(path, "ICMP matches need protocol ICMP or ICMPv6")
	case n == 1 && ipVersion != nil && *ipVersion == 6:
		v.add(path, "protocol ICMP does not match ipVersion 6 (use ICMPv6)")
	case n == 58 && ipVersion != nil && *ipVersion == 4:
		v.add(path, "protocol ICMPv6 does not match ipVersion 4 (use ICMP)")
	}
}

var portNameRegexp = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$`)

func (v *validator) ports(path string, ports []Port, portsOK bool, proto *Protocol) {
	if len(ports) > MaxPorts {
		v.add(path, "has %d ports, more than the limit of %d", len(ports), MaxPorts)
	}
	for i, p := range ports {
		pp := indexPath(path, i)
		if p.IsNamed() {
			if len(p.PortName) > 128 || !portNameRegexp.MatchString(p.PortName) {
				v.add(pp, "invalid port name %q", p.PortName)
			}
			continue
		}
		if p.MinPort > p.MaxPort {
			v.add(pp, "port range %d:%d is reversed", p.MinPort, p.MaxPort)
		}
		if !portsOK {
			if proto == nil {
				v.add(pp, "numeric ports need protocol TCP, UDP, SCTP or UDPLite in the rule")
			} else {
				v.add(pp, "numeric ports need protocol TCP, UDP, SCTP or UDPLite, not %s", proto)
			}
		}
	}
}

func (v *validator) nets(path string, nets []string, ipVersion *int) {
	if len(nets) > MaxNets {
		v.add(path, "has %d entries, more than the limit of %d", len(nets), MaxNets)
	}
	for i, n := range nets {
		p, err := parseCIDROrIP(n)
		if err != nil {
			v.add(indexPath(path, i), "%v", err)
			continue
		}
		if ipVersion != nil && (*ipVersion == 4) != p.Addr().Is4() {
			v.add(indexPath(path, i), "%s does not match the rule's ipVersion %d", n, *ipVersion)
		}
	}
}

func (v *validator) entityRule(path string, e *EntityRule, r *Rule, portsOK bool, ctx ruleContext, source bool) {
	v.nets(joinPath(path, "nets"), e.Nets, r.IPVersion)
	v.nets(joinPath(path, "notNets"), e.NotNets, r.IPVersion)
	v.selectorField(joinPath(path, "selector"), e.Selector, false)
	v.selectorField(joinPath(path, "notSelector"), e.NotSelector, false)
	v.selectorField(joinPath(path, "namespaceSelector"), e.NamespaceSelector, true)
	v.ports(joinPath(path, "ports"), e.Ports, portsOK, r.Protocol)
	v.ports(joinPath(path, "notPorts"), e.NotPorts, portsOK, r.Protocol)
	if sa := e.ServiceAccounts; sa != nil {
		for i, n := range sa.Names {
			for _, msg := range validation.IsDNS1123Subdomain(n) {
				v.add(indexPath(joinPath(path, "serviceAccounts.names"), i), "%q is not a valid service account name: %s", n, msg)
			}
		}
		v.selectorField(joinPath(path, "serviceAccounts.selector"), sa.Selector, false)
	}
	if svc := e.Services; svc != nil {
		sp := joinPath(path, "services")
		if svc.Name == "" {
			v.add(joinPath(sp, "name"), "is required")
		} else {
			for _, msg := range validation.IsDNS1123Subdomain(svc.Name) {
				v.add(joinPath(sp, "name"), "%q is not a valid service name: %s", svc.Name, msg)
			}
		}
		if svc.Namespace != "" {
			for _, msg := range validation.IsDNS1123Label(svc.Namespace) {
				v.add(joinPath(sp, "namespace"), "%q is not a valid namespace: %s", svc.Namespace, msg)
			}
		}
		for _, c := range []struct {
			field string
			set   bool
		}{
			{"selector", e.Selector != ""}, {"notSelector", e.NotSelector != ""}, {"namespaceSelector", e.NamespaceSelector != ""},
			{"nets", len(e.Nets) > 0}, {"notNets", len(e.NotNets) > 0}, {"serviceAccounts", e.ServiceAccounts != nil},
		} {
			if c.set {
				v.add(sp, "services cannot be combined with %s", c.field)
			}
		}
		if !ctx.ingress && !source && (len(e.Ports) > 0 || len(e.NotPorts) > 0) {
			v.add(sp, "services on an egress rule's destination cannot be combined with ports: the service's ports are used")
		}
	}
}

// sortedKeys returns a map's keys in order, for deterministic errors.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// parseIP parses a plain IP address (no zone).
func parseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Zone() == ""
}
