package api

import (
	"reflect"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindKubernetesNetworkPolicy names the stored original of a Kubernetes
// networking.k8s.io/v1 NetworkPolicy. Its Go type is
// *networkingv1.NetworkPolicy; what is enforced is its translation, the
// NetworkPolicy "knp.default.<name>".
const KindKubernetesNetworkPolicy = "KubernetesNetworkPolicy"

func typed(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: APIVersion, Kind: kind}
}

// kinds is the registry, in the order brindlectl lists and applies kinds:
// things others refer to come first (tiers before policies, pools before
// endpoints).
var kinds = []KindInfo{
	{Kind: "ClusterInformation", Plural: "clusterinformations", Aliases: []string{"clusterinformation", "clusterinfo", "clusterinfos"},
		New: func() Object { return &ClusterInformation{TypeMeta: typed("ClusterInformation")} }},
	{Kind: "FelixConfiguration", Plural: "felixconfigurations", Aliases: []string{"felixconfiguration", "felixconfig", "felixconfigs"},
		New: func() Object { return &FelixConfiguration{TypeMeta: typed("FelixConfiguration")} }},
	{Kind: "BGPConfiguration", Plural: "bgpconfigurations", Aliases: []string{"bgpconfiguration", "bgpconfig", "bgpconfigs"},
		New: func() Object { return &BGPConfiguration{TypeMeta: typed("BGPConfiguration")} }},
	{Kind: "IPAMConfiguration", Plural: "ipamconfigurations", Aliases: []string{"ipamconfiguration", "ipamconfig", "ipamconfigs"},
		New: func() Object { return &IPAMConfiguration{TypeMeta: typed("IPAMConfiguration")} }},
	{Kind: "IPPool", Plural: "ippools", Aliases: []string{"ippool", "ipp", "ipps", "pool", "pools"},
		New: func() Object { return &IPPool{TypeMeta: typed("IPPool")} }},
	{Kind: "IPReservation", Plural: "ipreservations", Aliases: []string{"ipreservation", "ipr", "iprs"},
		New: func() Object { return &IPReservation{TypeMeta: typed("IPReservation")} }},
	{Kind: "Node", Plural: "nodes", Aliases: []string{"node", "no"},
		New: func() Object { return &Node{TypeMeta: typed("Node")} }},
	{Kind: "BGPPeer", Plural: "bgppeers", Aliases: []string{"bgppeer", "bgpp", "bgpps", "bp", "bps"},
		New: func() Object { return &BGPPeer{TypeMeta: typed("BGPPeer")} }},
	{Kind: "Tier", Plural: "tiers", Aliases: []string{"tier"},
		New: func() Object { return &Tier{TypeMeta: typed("Tier")} }},
	{Kind: "Profile", Plural: "profiles", Aliases: []string{"profile", "pro", "pros"},
		New: func() Object { return &Profile{TypeMeta: typed("Profile")} }},
	{Kind: "GlobalNetworkSet", Plural: "globalnetworksets", Aliases: []string{"globalnetworkset", "gns", "globalnetset", "globalnetsets"},
		New: func() Object { return &GlobalNetworkSet{TypeMeta: typed("GlobalNetworkSet")} }},
	{Kind: "NetworkSet", Plural: "networksets", Namespaced: true, Aliases: []string{"networkset", "netset", "netsets"},
		New: func() Object { return &NetworkSet{TypeMeta: typed("NetworkSet")} }},
	{Kind: "HostEndpoint", Plural: "hostendpoints", Aliases: []string{"hostendpoint", "hep", "heps"},
		New: func() Object { return &HostEndpoint{TypeMeta: typed("HostEndpoint")} }},
	{Kind: "WorkloadEndpoint", Plural: "workloadendpoints", Namespaced: true, Aliases: []string{"workloadendpoint", "wep", "weps"},
		New: func() Object { return &WorkloadEndpoint{TypeMeta: typed("WorkloadEndpoint")} }},
	{Kind: "GlobalNetworkPolicy", Plural: "globalnetworkpolicies", Aliases: []string{"globalnetworkpolicy", "gnp", "gnps", "globalpolicy", "globalpolicies"},
		New: func() Object { return &GlobalNetworkPolicy{TypeMeta: typed("GlobalNetworkPolicy")} }},
	{Kind: "NetworkPolicy", Plural: "networkpolicies", Namespaced: true, Aliases: []string{"networkpolicy", "netpol", "netpols", "np", "nps", "policy", "policies", "pol", "pols"},
		New: func() Object { return &NetworkPolicy{TypeMeta: typed("NetworkPolicy")} }},
	{Kind: KindKubernetesNetworkPolicy, Plural: "kubernetesnetworkpolicies", Namespaced: true, Aliases: []string{"kubernetesnetworkpolicy", "knp", "knps"},
		New: func() Object {
			return &networkingv1.NetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}}
		}},
}

// kindByName and kindByType index the static registry; they are built once
// and never written afterwards.
var kindByName, kindByType = indexKinds()

func indexKinds() (map[string]int, map[reflect.Type]int) {
	byName, byType := map[string]int{}, map[reflect.Type]int{}
	for i, k := range kinds {
		for _, n := range append([]string{k.Kind, k.Plural}, k.Aliases...) {
			byName[strings.ToLower(n)] = i
		}
		byType[reflect.TypeOf(k.New())] = i
	}
	return byName, byType
}

// Kinds returns every resource kind, in dependency order: a file's
// documents are safe to apply in this order.
func Kinds() []KindInfo {
	return append([]KindInfo(nil), kinds...)
}

// LookupKind finds a kind by its name, plural or an alias,
// case-insensitively.
func LookupKind(name string) (KindInfo, bool) {
	i, ok := kindByName[strings.ToLower(name)]
	if !ok {
		return KindInfo{}, false
	}
	return kinds[i], true
}

// KindOf returns the kind of obj by its Go type.
func KindOf(obj Object) (KindInfo, bool) {
	i, ok := kindByType[reflect.TypeOf(obj)]
	if !ok {
		return KindInfo{}, false
	}
	return kinds[i], true
}
