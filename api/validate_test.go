package api

import (
	"errors"
	"strings"
	"testing"
)

// doc builds a v3 document.
func doc(kind, metadata, spec string) string {
	s := "apiVersion: projectcalico.org/v3\nkind: " + kind + "\nmetadata: " + metadata + "\n"
	if spec != "" {
		s += "spec:\n" + spec
	}
	return s
}

// gnpRule builds a GlobalNetworkPolicy with one ingress rule (YAML lines
// indented for a list item).
func gnpRule(rule string) string {
	return doc("GlobalNetworkPolicy", "{name: x}", "  ingress:\n  - "+strings.ReplaceAll(strings.TrimSpace(rule), "\n", "\n    ")+"\n")
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("a", 1025)
	tests := []struct {
		name string
		in   string
		want []string
	}{
		// Names and namespaces.
		{"np name with two dots", doc("NetworkPolicy", "{name: a.b.c, namespace: ns}", ""), []string{`metadata.name: "a.b.c" is not a valid NetworkPolicy name`}},
		{"np name upper", doc("NetworkPolicy", "{name: Allow, namespace: ns}", ""), []string{`"Allow" is not a valid NetworkPolicy name`}},
		{"gnp name two dots", doc("GlobalNetworkPolicy", "{name: a.b.c}", ""), []string{`"a.b.c" is not a valid GlobalNetworkPolicy name`}},
		{"gnp name underscore", doc("GlobalNetworkPolicy", "{name: a_b}", ""), []string{"metadata.name"}},
		{"knp bad rest", doc("NetworkPolicy", "{name: knp.default.Bad_Name, namespace: ns}", ""), []string{`metadata.name: "knp.default.Bad_Name" is not a valid name`}},
		{"tier name with dot", doc("Tier", "{name: a.b}", ""), []string{`metadata.name: "a.b" is not a valid tier name`}},
		{"missing name", doc("Profile", "{}", ""), []string{"metadata.name: is required"}},
		{"bad subdomain name", doc("Profile", "{name: 'Bad Name'}", ""), []string{`metadata.name: "Bad Name" is not a valid name`}},
		{"namespace on cluster kind", doc("GlobalNetworkSet", "{name: x, namespace: ns}", ""), []string{"metadata.namespace: must be empty: GlobalNetworkSet is cluster-wide"}},
		{"bad namespace", doc("NetworkSet", "{name: x, namespace: Bad_NS}", ""), []string{`metadata.namespace: "Bad_NS" is not a valid namespace`}},
		// Labels.
		{"bad label key", doc("Profile", "{name: x, labels: {'-bad': v}}", ""), []string{"metadata.labels[-bad]: invalid label key"}},
		{"bad label prefix", doc("Profile", "{name: x, labels: {'Bad_Prefix/k': v}}", ""), []string{"metadata.labels[Bad_Prefix/k]: invalid label key"}},
		{"long label value", doc("Profile", "{name: x, labels: {k: "+strings.Repeat("v", 64)+"}}", ""), []string{"metadata.labels[k]: invalid label value"}},
		{"bad labelsToApply", doc("Profile", "{name: x}", "  labelsToApply: {'a b': c}\n"), []string{"spec.labelsToApply[a b]: invalid label key"}},
		{"reserved netset label", doc("NetworkSet", "{name: x, namespace: ns, labels: {projectcalico.org/namespace: other}}", ""), []string{"metadata.labels[projectcalico.org/namespace]: is reserved"}},
		{"reserved gns label", doc("GlobalNetworkSet", "{name: x, labels: {projectcalico.org/namespace: other}}", ""), []string{"is reserved"}},
		// Selectors.
		{"bad policy selector", doc("GlobalNetworkPolicy", "{name: x}", "  selector: a = 'b'\n"), []string{`spec.selector: invalid selector "a = 'b'": at character 3`}},
		{"long selector", doc("GlobalNetworkPolicy", "{name: x}", "  selector: has("+long+")\n"), []string{"spec.selector: selector is 1030 characters long, more than the limit of 1024"}},
		{"global in policy selector", doc("GlobalNetworkPolicy", "{name: x}", "  selector: global()\n"), []string{"spec.selector: global() is only allowed as the whole namespaceSelector"}},
		{"global in gnp namespaceSelector", doc("GlobalNetworkPolicy", "{name: x}", "  namespaceSelector: global()\n"), []string{"spec.namespaceSelector: global() is only allowed"}},
		{"global in rule selector", gnpRule("action: Allow\nsource: {selector: global()}"), []string{"spec.ingress[0].source.selector: global() is only allowed"}},
		{"global not sole term", gnpRule("action: Allow\nsource: {namespaceSelector: global() && has(a)}"), []string{`spec.ingress[0].source.namespaceSelector: global() must be the whole namespaceSelector`}},
		{"bad notSelector", gnpRule("action: Allow\ndestination: {notSelector: 'has('}"), []string{"spec.ingress[0].destination.notSelector: invalid selector"}},
		{"bad sa selector", gnpRule("action: Allow\nsource: {serviceAccounts: {selector: '&&'}}"), []string{"spec.ingress[0].source.serviceAccounts.selector: invalid selector"}},
		{"bad sa name", gnpRule("action: Allow\nsource: {serviceAccounts: {names: [Bad_SA]}}"), []string{`spec.ingress[0].source.serviceAccounts.names[0]: "Bad_SA" is not a valid service account name`}},
		{"bad serviceAccountSelector", doc("NetworkPolicy", "{name: x, namespace: ns}", "  serviceAccountSelector: '!'\n"), []string{"spec.serviceAccountSelector: invalid selector"}},
		// Policy spec.
		{"bad type", doc("GlobalNetworkPolicy", "{name: x}", "  types: [Ingres]\n"), []string{`spec.types[0]: unknown policy type "Ingres" (want Ingress or Egress)`}},
		{"duplicate type", doc("GlobalNetworkPolicy", "{name: x}", "  types: [Ingress, Ingress]\n"), []string{"spec.types[1]: Ingress is listed twice"}},
		{"bad tier", doc("GlobalNetworkPolicy", "{name: x}", "  tier: Bad.Tier\n"), []string{`spec.tier: "Bad.Tier" is not a valid tier name`}},
		{"bad hint", doc("GlobalNetworkPolicy", "{name: x}", "  performanceHints: [Fast]\n"), []string{`spec.performanceHints[0]: unknown performance hint "Fast"`}},
		{"prednat and donottrack", doc("GlobalNetworkPolicy", "{name: x}", "  preDNAT: true\n  doNotTrack: true\n  applyOnForward: true\n"), []string{"spec.preDNAT: preDNAT and doNotTrack cannot both be true"}},
		{"prednat egress", doc("GlobalNetworkPolicy", "{name: x}", "  preDNAT: true\n  applyOnForward: true\n  egress: [{action: Allow}]\n"), []string{"spec.egress: a preDNAT policy cannot have egress rules", "spec.types: a preDNAT policy cannot apply to Egress"}},
		{"prednat egress type", doc("GlobalNetworkPolicy", "{name: x}", "  preDNAT: true\n  applyOnForward: true\n  types: [Ingress, Egress]\n"), []string{"spec.types: a preDNAT policy cannot apply to Egress"}},
		{"donottrack needs applyOnForward", doc("GlobalNetworkPolicy", "{name: x}", "  doNotTrack: true\n"), []string{"spec.applyOnForward: must be true for a preDNAT or doNotTrack policy"}},
		// Rules.
		{"missing action", gnpRule("protocol: TCP"), []string{"spec.ingress[0].action: is required (want Allow, Deny, Log or Pass)"}},
		{"bad action", gnpRule("action: alow"), []string{`document 1 (GlobalNetworkPolicy "x"): spec.ingress[0].action: unknown action "alow" (want Allow, Deny, Log or Pass)`}},
		{"lowercase action", gnpRule("action: allow"), []string{`unknown action "allow"`}},
		{"bad ipVersion", gnpRule("action: Allow\nipVersion: 5"), []string{"spec.ingress[0].ipVersion: must be 4 or 6, not 5"}},
		{"bad protocol", gnpRule("action: Allow\nprotocol: TCPP"), []string{`spec.ingress[0].protocol: unknown protocol "TCPP"`}},
		{"lowercase protocol", gnpRule("action: Allow\nprotocol: tcp"), []string{`spec.ingress[0].protocol: protocol "tcp" must be spelled "TCP"`}},
		{"protocol zero string", gnpRule("action: Allow\nprotocol: '0'"), []string{"spec.ingress[0].protocol: protocol number 0 must be from 1 to 255"}},
		{"bad notProtocol", gnpRule("action: Allow\nnotProtocol: foo"), []string{`spec.ingress[0].notProtocol: unknown protocol "foo"`}},
		{"icmp type range", gnpRule("action: Allow\nprotocol: ICMP\nicmp: {type: 255}"), []string{"spec.ingress[0].icmp.type: ICMP type 255 is not from 0 to 254"}},
		{"icmp code range", gnpRule("action: Allow\nprotocol: ICMP\nicmp: {type: 3, code: 256}"), []string{"spec.ingress[0].icmp.code: ICMP code 256 is not from 0 to 255"}},
		{"icmp negative", gnpRule("action: Allow\nprotocol: ICMP\nicmp: {type: -1}"), []string{"spec.ingress[0].icmp.type: ICMP type -1"}},
		{"icmp code without type", gnpRule("action: Allow\nprotocol: ICMP\nicmp: {code: 1}"), []string{"spec.ingress[0].icmp.code: an ICMP code needs an ICMP type"}},
		{"icmp without protocol", gnpRule("action: Allow\nicmp: {type: 8}"), []string{"spec.ingress[0].icmp: ICMP matches need protocol ICMP or ICMPv6"}},
		{"icmp with tcp", gnpRule("action: Allow\nprotocol: TCP\nnotICMP: {type: 8}"), []string{"spec.ingress[0].notICMP: ICMP matches need protocol ICMP or ICMPv6"}},
		{"icmp v6 mismatch", gnpRule("action: Allow\nprotocol: ICMP\nipVersion: 6\nicmp: {type: 8}"), []string{"spec.ingress[0].icmp: protocol ICMP does not match ipVersion 6"}},
		{"icmpv6 v4 mismatch", gnpRule("action: Allow\nprotocol: ICMPv6\nipVersion: 4\nicmp: {type: 128}"), []string{"protocol ICMPv6 does not match ipVersion 4"}},
		{"ports without protocol", gnpRule("action: Allow\ndestination: {ports: [80]}"), []string{"spec.ingress[0].destination.ports[0]: numeric ports need protocol TCP, UDP, SCTP or UDPLite in the rule"}},
		{"ports with icmp", gnpRule("action: Allow\nprotocol: ICMP\nsource: {notPorts: ['1:2']}"), []string{"spec.ingress[0].source.notPorts[0]: numeric ports need protocol TCP, UDP, SCTP or UDPLite, not ICMP"}},
		{"reversed range", gnpRule("action: Allow\nprotocol: TCP\ndestination: {ports: [22, '90:80']}"), []string{"spec.ingress[0].destination.ports[1]: port range 90:80 is reversed"}},
		{"bad port name", gnpRule("action: Allow\nprotocol: TCP\ndestination: {ports: ['-http']}"), []string{`spec.ingress[0].destination.ports[0]: invalid port name "-http"`}},
		{"too many ports", gnpRule("action: Allow\nprotocol: TCP\ndestination: {ports: [" + strings.TrimSuffix(strings.Repeat("1,", 51), ",") + "]}"), []string{"spec.ingress[0].destination.ports: has 51 ports, more than the limit of 50"}},
		{"bad net", gnpRule("action: Allow\nsource: {nets: [10.0.0.0/8, 10.0.0.0/40]}"), []string{`spec.ingress[0].source.nets[1]: "10.0.0.0/40" is not a CIDR`}},
		{"bad notNet", gnpRule("action: Allow\ndestination: {notNets: [example.com]}"), []string{`spec.ingress[0].destination.notNets[0]: "example.com" is not an IP address or CIDR`}},
		{"net version mismatch", gnpRule("action: Allow\nipVersion: 4\nsource: {nets: ['fd00::/8']}"), []string{"spec.ingress[0].source.nets[0]: fd00::/8 does not match the rule's ipVersion 4"}},
		{"too many nets", gnpRule("action: Allow\nsource: {nets: [" + strings.TrimSuffix(strings.Repeat("10.0.0.1,", 257), ",") + "]}"), []string{"spec.ingress[0].source.nets: has 257 entries, more than the limit of 256"}},
		{"services with selector", gnpRule("action: Allow\nsource: {services: {name: s, namespace: ns}, selector: has(a), nets: [10.0.0.0/8]}"), []string{"spec.ingress[0].source.services: services cannot be combined with selector", "services cannot be combined with nets"}},
		{"services no name", gnpRule("action: Allow\nsource: {services: {namespace: ns}}"), []string{"spec.ingress[0].source.services.name: is required"}},
		{"egress services with ports", doc("GlobalNetworkPolicy", "{name: x}", "  egress:\n  - action: Allow\n    protocol: TCP\n    destination: {services: {name: s, namespace: ns}, ports: [80]}\n"), []string{"spec.egress[0].destination.services: services on an egress rule's destination cannot be combined with ports"}},
		{"http on deny", gnpRule("action: Deny\nhttp: {methods: [GET]}"), []string{"spec.ingress[0].http: HTTP matches are only allowed in Allow rules"}},
		{"http on udp", gnpRule("action: Allow\nprotocol: UDP\nhttp: {methods: [GET]}"), []string{"spec.ingress[0].http: HTTP matches need protocol TCP, not UDP"}},
		{"http path both", gnpRule("action: Allow\nhttp: {paths: [{exact: /a, prefix: /b}]}"), []string{"spec.ingress[0].http.paths[0]: set exactly one of exact and prefix"}},
		{"http path relative", gnpRule("action: Allow\nhttp: {paths: [{prefix: api}]}"), []string{`spec.ingress[0].http.paths[0]: path "api" must start with '/'`}},
		{"http bad method", gnpRule("action: Allow\nhttp: {methods: ['GE T']}"), []string{`spec.ingress[0].http.methods[0]: invalid HTTP method "GE T"`}},
		{"too many rules", doc("GlobalNetworkPolicy", "{name: x}", "  ingress: ["+strings.TrimSuffix(strings.Repeat("{action: Allow},", 1025), ",")+"]\n"), []string{"spec.ingress: has 1025 rules, more than the limit of 1024"}},
		{"profile rule", doc("Profile", "{name: p}", "  egress: [{action: Nope}]\n"), []string{`spec.egress[0].action: unknown action "Nope"`}},
		{"several problems", gnpRule("action: Nope\nipVersion: 7\nprotocol: TCP\ndestination: {ports: ['9:1']}"), []string{"spec.ingress[0].action", "spec.ingress[0].ipVersion", "spec.ingress[0].destination.ports[0]: port range 9:1 is reversed"}},
		// Tiers.
		{"default tier must deny", doc("Tier", "{name: default}", "  defaultAction: Pass\n"), []string{`spec.defaultAction: the built-in tier "default" must have defaultAction Deny`}},
		{"default tier order", doc("Tier", "{name: default}", "  order: 5\n"), []string{`spec.order: the built-in tier "default" must have order 1000000`}},
		{"kube-admin order", doc("Tier", "{name: kube-admin}", "  order: 7\n"), []string{`must have order 1000`}},
		{"tier bad action", doc("Tier", "{name: t}", "  defaultAction: Allow\n"), []string{`spec.defaultAction: unknown default action "Allow" (want Deny or Pass)`}},
		// Network sets.
		{"netset bad net", doc("GlobalNetworkSet", "{name: x}", "  nets: [1.2.3.4/99]\n"), []string{`spec.nets[0]: "1.2.3.4/99" is not a CIDR`}},
		{"netset bad domain", doc("NetworkSet", "{name: x, namespace: ns}", "  allowedEgressDomains: ['bad domain']\n"), []string{"spec.allowedEgressDomains[0]"}},
		// Workload endpoints.
		{"wep missing ids", doc("WorkloadEndpoint", "{name: x, namespace: ns}", "  interfaceName: cali1\n"), []string{"spec.node: is required", "spec.orchestrator: is required", "spec.endpoint: is required"}},
		{"wep wrong name", doc("WorkloadEndpoint", "{name: x, namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n"), []string{`metadata.name: must be "node1-k8s-p-eth0"`}},
		{"wep k8s without pod", doc("WorkloadEndpoint", "{name: x, namespace: ns}", "  node: node1\n  orchestrator: k8s\n  endpoint: eth0\n"), []string{"spec.pod: is required for orchestrator k8s"}},
		{"wep ipNetwork not host", doc("WorkloadEndpoint", "{namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n  ipNetworks: [10.0.0.0/24]\n"), []string{"spec.ipNetworks[0]: 10.0.0.0/24: only /32 (IPv4) or /128 (IPv6)"}},
		{"wep nat outside", doc("WorkloadEndpoint", "{namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n  ipNetworks: [10.0.0.1/32]\n  ipNATs: [{internalIP: 10.0.0.2, externalIP: 1.1.1.1}]\n"), []string{"spec.ipNATs[0].internalIP: 10.0.0.2 is not one of the endpoint's ipNetworks"}},
		{"wep bad mac", doc("WorkloadEndpoint", "{namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n  mac: 'zz:zz'\n"), []string{`spec.mac: "zz:zz" is not a MAC address`}},
		{"wep long iface", doc("WorkloadEndpoint", "{namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n  interfaceName: cali0123456789abcdef\n"), []string{`spec.interfaceName: "cali0123456789abcdef" is not a valid interface name`}},
		{"wep gateway family", doc("WorkloadEndpoint", "{namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n  ipv4Gateway: 'fe80::1'\n"), []string{`spec.ipv4Gateway: "fe80::1" is not an IPv4 address`}},
		{"wep port protocol", doc("WorkloadEndpoint", "{namespace: ns}", "  node: node1\n  orchestrator: k8s\n  pod: p\n  endpoint: eth0\n  ports: [{name: http, protocol: ICMP, port: 80}, {name: '', protocol: TCP, port: 0}]\n"), []string{`spec.ports[0].protocol: must be TCP, UDP or SCTP, not "ICMP"`, "spec.ports[1].name: is required", "spec.ports[1].port: must be from 1 to 65535"}},
		{"namespace defaults", "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: x}\n", nil},
		// Host endpoints.
		{"hep needs iface or ips", doc("HostEndpoint", "{name: h}", "  node: n1\n"), []string{"spec: set interfaceName or expectedIPs"}},
		{"hep long iface", doc("HostEndpoint", "{name: h}", "  node: n1\n  interfaceName: averyveryverylongname\n"), []string{`spec.interfaceName: "averyveryverylongname" is not a valid interface name`}},
		{"hep no node", doc("HostEndpoint", "{name: h}", "  interfaceName: '*'\n"), []string{"spec.node: is required"}},
		{"hep bad ip", doc("HostEndpoint", "{name: h}", "  node: n1\n  expectedIPs: [10.0.0.0/8]\n"), []string{`spec.expectedIPs[0]: "10.0.0.0/8" is not an IP address`}},
		{"hep bad profile", doc("HostEndpoint", "{name: h}", "  node: n1\n  interfaceName: eth0\n  profiles: [Bad_Profile]\n"), []string{`spec.profiles[0]: "Bad_Profile" is not a valid profile name`}},
		// IP pools.
		{"pool unmasked", doc("IPPool", "{name: p}", "  cidr: 10.0.0.1/16\n"), []string{"spec.cidr: 10.0.0.1/16 is not strictly masked (did you mean 10.0.0.0/16?)"}},
		{"pool link local", doc("IPPool", "{name: p}", "  cidr: 169.254.0.0/16\n"), []string{"spec.cidr: 169.254.0.0/16 overlaps the link-local range"}},
		{"pool v6 link local", doc("IPPool", "{name: p}", "  cidr: 'fe80::/64'\n"), []string{"overlaps the link-local range"}},
		{"pool no cidr", doc("IPPool", "{name: p}", "  natOutgoing: true\n"), []string{"spec.cidr: is required"}},
		{"pool bad cidr", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0\n"), []string{`spec.cidr: "10.0.0.0" is not a CIDR`}},
		{"pool block size v4", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/8\n  blockSize: 19\n"), []string{"spec.blockSize: 19 is not from 20 to 32"}},
		{"pool block size v6", doc("IPPool", "{name: p}", "  cidr: 'fd00::/48'\n  blockSize: 26\n"), []string{"spec.blockSize: 26 is not from 116 to 128"}},
		{"pool block bigger than pool", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/28\n  blockSize: 26\n"), []string{"spec.blockSize: /26 blocks do not fit in the /28 pool"}},
		{"pool ipip and vxlan", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  ipipMode: Always\n  vxlanMode: CrossSubnet\n"), []string{"spec: ipipMode and vxlanMode cannot both be enabled"}},
		{"pool ipip v6", doc("IPPool", "{name: p}", "  cidr: 'fd00::/48'\n  ipipMode: Always\n"), []string{"spec.ipipMode: IPIP is IPv4 only"}},
		{"pool bad mode", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  vxlanMode: always\n"), []string{`spec.vxlanMode: unknown mode "always"`}},
		{"pool deprecated ipip bad mode", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  ipip: {enabled: true, mode: weird}\n"), []string{`spec.ipip.mode: unknown mode "weird"`}},
		{"pool bad use", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  allowedUses: [Everything]\n"), []string{`spec.allowedUses[0]: unknown use "Everything"`}},
		{"pool lb encap", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  allowedUses: [LoadBalancer]\n  vxlanMode: Always\n"), []string{"spec.allowedUses: a LoadBalancer pool cannot use IPIP or VXLAN"}},
		{"pool lb selector", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  allowedUses: [LoadBalancer]\n  nodeSelector: has(x)\n"), []string{"spec.nodeSelector: a LoadBalancer pool must have nodeSelector all()"}},
		{"pool bad node selector", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  nodeSelector: 'x =='\n"), []string{"spec.nodeSelector: invalid selector"}},
		{"pool assignment", doc("IPPool", "{name: p}", "  cidr: 10.0.0.0/16\n  assignmentMode: Sometimes\n"), []string{`spec.assignmentMode: unknown mode "Sometimes"`}},
		// IPAM.
		{"reservation bad cidr", doc("IPReservation", "{name: r}", "  reservedCIDRs: [10.0.0.0/8, nope]\n"), []string{`spec.reservedCIDRs[1]: "nope" is not an IP address or CIDR`}},
		{"ipam config name", doc("IPAMConfiguration", "{name: other}", "  strictAffinity: false\n"), []string{`metadata.name: must be "default"`}},
		{"ipam negative blocks", doc("IPAMConfiguration", "{name: default}", "  strictAffinity: false\n  maxBlocksPerHost: -1\n"), []string{"spec.maxBlocksPerHost: must not be negative"}},
		{"ipam cooldown", doc("IPAMConfiguration", "{name: default}", "  strictAffinity: false\n  ipCooldownSeconds: 1201\n"), []string{"spec.ipCooldownSeconds: 1201 is not from 0 to 1200"}},
		{"ipam kubevirt", doc("IPAMConfiguration", "{name: default}", "  strictAffinity: false\n  kubeVirtVMAddressPersistence: Maybe\n"), []string{`spec.kubeVirtVMAddressPersistence: unknown value "Maybe"`}},
		// BGP.
		{"peer ip and selector", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  peerSelector: has(rr)\n  asNumber: 64512\n"), []string{"spec: set peerIP or peerSelector, not both"}},
		{"peer neither", doc("BGPPeer", "{name: p}", "  asNumber: 64512\n"), []string{"spec: set peerIP or peerSelector"}},
		{"peer node and selector", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: 64512\n  node: n1\n  nodeSelector: all()\n"), []string{"spec: set node or nodeSelector, not both"}},
		{"peer bad ip", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1:99999\n  asNumber: 64512\n"), []string{`spec.peerIP: "10.0.0.1:99999" is not an IP address or ip:port`}},
		{"peer no as", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n"), []string{"spec.asNumber: is required with peerIP"}},
		{"peer bad as string", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: abc\n"), []string{`spec.asNumber: AS number "abc"`}},
		{"peer as too big", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: 4294967296\n"), []string{"spec.asNumber: AS number"}},
		{"peer next hop", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: 1\n  nextHopMode: Other\n"), []string{`spec.nextHopMode: unknown mode "Other"`}},
		{"peer keep and mode", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: 1\n  nextHopMode: Self\n  keepOriginalNextHop: true\n"), []string{"spec.keepOriginalNextHop: cannot be combined with nextHopMode"}},
		{"peer password", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: 1\n  password: {secretKeyRef: {name: s}}\n"), []string{"spec.password.secretKeyRef.key: is required"}},
		{"peer source address", doc("BGPPeer", "{name: p}", "  peerIP: 10.0.0.1\n  asNumber: 1\n  sourceAddress: Other\n"), []string{`spec.sourceAddress: unknown value "Other"`}},
		{"bgpconfig community", doc("BGPConfiguration", "{name: default}", "  communities: [{name: c, value: '1:2:3:4'}]\n  prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [undefined]}]\n"), []string{`spec.communities[0].value: "1:2:3:4" is not a community`, `spec.prefixAdvertisements[0].communities[0]: "undefined" is neither`}},
		{"bgpconfig service cidr", doc("BGPConfiguration", "{name: default}", "  serviceClusterIPs: [{cidr: 10.96.0.0/99}]\n"), []string{"spec.serviceClusterIPs[0].cidr"}},
		{"bgpconfig log", doc("BGPConfiguration", "{name: default}", "  logSeverityScreen: Loud\n"), []string{`spec.logSeverityScreen: unknown log severity "Loud"`}},
		{"bgpconfig as zero", doc("BGPConfiguration", "{name: default}", "  asNumber: 0\n"), []string{"spec.asNumber: AS number 0 is reserved"}},
		{"bgpconfig node name", doc("BGPConfiguration", "{name: node.}", ""), []string{"metadata.name"}},
		// Nodes.
		{"node bgp family", doc("Node", "{name: n1}", "  bgp: {ipv4Address: '2001:db8::1/64', ipv6Address: 10.0.0.1/24}\n"), []string{"spec.bgp.ipv4Address: 2001:db8::1/64 is not an IPv4 address", "spec.bgp.ipv6Address: 10.0.0.1/24 is not an IPv6 address"}},
		{"node bad address", doc("Node", "{name: n1}", "  addresses: [{address: nope, type: InternalIP}, {address: 10.0.0.1, type: Weird}]\n"), []string{`spec.addresses[0].address: "nope"`, `spec.addresses[1].type: unknown type "Weird"`}},
		{"node bad tunnel", doc("Node", "{name: n1}", "  ipv4VXLANTunnelAddr: 10.0.0.300\n  vxlanTunnelMACAddr: nope\n"), []string{`spec.ipv4VXLANTunnelAddr: "10.0.0.300" is not an IPv4 address`, `spec.vxlanTunnelMACAddr: "nope" is not a MAC address`}},
		{"node rr cluster id", doc("Node", "{name: n1}", "  bgp: {ipv4Address: 10.0.0.1/24, routeReflectorClusterID: abc}\n"), []string{"spec.bgp.routeReflectorClusterID"}},
		// Felix.
		{"felix enums", doc("FelixConfiguration", "{name: default}", "  chainInsertMode: Middle\n  defaultEndpointToHostAction: Allow\n  vxlanPort: 70000\n  ipipMTU: -1\n"), []string{`spec.chainInsertMode: unknown value "Middle"`, `spec.defaultEndpointToHostAction: unknown value "Allow"`, "spec.vxlanPort: port 70000 is not from 1 to 65535", "spec.ipipMTU: MTU must not be negative"}},
		{"felix failsafe", doc("FelixConfiguration", "{name: default}", "  failsafeInboundHostPorts: [{protocol: icmp, port: 1}]\n"), []string{`spec.failsafeInboundHostPorts[0].protocol: unknown protocol "icmp"`}},
		{"felix route tables", doc("FelixConfiguration", "{name: default}", "  routeTableRanges: [{min: 10, max: 5}]\n"), []string{"spec.routeTableRanges[0]: min 10 and max 5"}},
		{"cluster info name", doc("ClusterInformation", "{name: other}", ""), []string{`metadata.name: must be "default"`}},
		// Kubernetes NetworkPolicy.
		{"k8s bad ipblock", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: ns}\nspec:\n  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: nope}}]\n", []string{"spec.ingress[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeAndValidate([]byte(tt.in))
			if tt.want == nil {
				// A namespaced object without a namespace gets "default".
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; got %v", objs)
			}
			var de *DocumentError
			if !errors.As(err, &de) {
				t.Errorf("error is not a *DocumentError: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestValidateDirect checks Validate on objects built in Go: namespace
// rules that DecodeAndValidate would paper over, undefaulted objects and
// unsupported types.
func TestValidateDirect(t *testing.T) {
	np := &NetworkPolicy{TypeMeta: typed("NetworkPolicy")}
	np.Name = "p"
	err := Validate(np)
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error %v is not FieldErrors", err)
	}
	for _, w := range []string{"metadata.namespace: is required: NetworkPolicy is namespaced", "spec.tier: is required", "spec.types: is required"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not contain %q", err, w)
		}
	}
	Default(np)
	np.Namespace = "ns"
	if err := Validate(np); err != nil {
		t.Errorf("defaulted policy: %v", err)
	}
	if err := Validate(nil); err == nil {
		t.Error("Validate(nil) passed")
	}
}
