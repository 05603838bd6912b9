package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/brindle-net/brindle/api"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// resourceName is how kubectl names an object in messages:
// "networkpolicy.projectcalico.org/allow-tcp-6379".
func resourceName(obj api.Object) string {
	if _, ok := obj.(*networkingv1.NetworkPolicy); ok {
		return "networkpolicy.networking.k8s.io/" + obj.GetName()
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if k, ok := api.KindOf(obj); ok {
		kind = k.Kind
	}
	return strings.ToLower(kind) + "." + api.Group + "/" + obj.GetName()
}

// kindResourceName is resourceName from a kind and a name.
func kindResourceName(k api.KindInfo, name string) string {
	if k.Kind == api.KindKubernetesNetworkPolicy {
		return "networkpolicy.networking.k8s.io/" + name
	}
	return strings.ToLower(k.Kind) + "." + api.Group + "/" + name
}

// Output formats of get.
const (
	outputTable = ""
	outputWide  = "wide"
	outputYAML  = "yaml"
	outputJSON  = "json"
	outputName  = "name"
)

func checkOutputFormat(f string) error {
	switch f {
	case outputTable, outputWide, outputYAML, outputJSON, outputName:
		return nil
	}
	return fmt.Errorf("--output %q: want yaml, json, wide or name", f)
}

// printObjects writes objs of kind k in format. single says the user asked
// for exactly one object by name: yaml and json then print it bare rather
// than as a <Kind>List.
func printObjects(w io.Writer, k api.KindInfo, objs []api.Object, format string, single, allNamespaces bool) error {
	switch format {
	case outputName:
		for _, o := range objs {
			fmt.Fprintln(w, resourceName(o))
		}
		return nil
	case outputYAML, outputJSON:
		var v any
		if single && len(objs) == 1 {
			v = objs[0]
		} else {
			items := make([]any, len(objs))
			for i, o := range objs {
				items[i] = o
			}
			v = objectList{APIVersion: api.APIVersion, Kind: k.Kind + "List", Items: items}
		}
		if format == outputJSON {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	wide := format == outputWide
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	head := append([]string{"NAME"}, tableColumns(k, nil, wide)...)
	if allNamespaces && k.Namespaced {
		head = append([]string{"NAMESPACE"}, head...)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, o := range objs {
		row := append([]string{o.GetName()}, tableColumns(k, o, wide)...)
		if allNamespaces && k.Namespaced {
			row = append([]string{o.GetNamespace()}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// tableColumns returns the column headers of kind k (obj nil) or obj's
// cells.
func tableColumns(k api.KindInfo, obj api.Object, wide bool) []string {
	type cols struct{ head, wideHead []string }
	var c cols
	var cells, wideCells []string
	switch k.Kind {
	case "NetworkPolicy", "GlobalNetworkPolicy":
		c = cols{[]string{"TIER", "ORDER", "SELECTOR"}, []string{"TYPES", "INGRESS", "EGRESS"}}
		if obj != nil {
			var tier, sel string
			var order *float64
			var types []api.PolicyType
			var in, eg int
			switch p := obj.(type) {
			case *api.NetworkPolicy:
				tier, order, sel, types, in, eg = p.Spec.Tier, p.Spec.Order, p.Spec.Selector, p.Spec.Types, len(p.Spec.Ingress), len(p.Spec.Egress)
			case *api.GlobalNetworkPolicy:
				tier, order, sel, types, in, eg = p.Spec.Tier, p.Spec.Order, p.Spec.Selector, p.Spec.Types, len(p.Spec.Ingress), len(p.Spec.Egress)
			}
			ts := make([]string, len(types))
			for i, t := range types {
				ts[i] = string(t)
			}
			cells = []string{orNone(tier), floatOrNone(order), orAll(sel)}
			wideCells = []string{orNone(strings.Join(ts, ",")), strconv.Itoa(in), strconv.Itoa(eg)}
		}
	case "Tier":
		c = cols{[]string{"ORDER", "DEFAULT-ACTION"}, nil}
		if t, ok := obj.(*api.Tier); ok {
			action := "<none>"
			if t.Spec.DefaultAction != nil {
				action = string(*t.Spec.DefaultAction)
			}
			cells = []string{floatOrNone(t.Spec.Order), action}
		}
	case "Profile":
		c = cols{[]string{"INGRESS", "EGRESS"}, []string{"LABELS-TO-APPLY"}}
		if p, ok := obj.(*api.Profile); ok {
			cells = []string{strconv.Itoa(len(p.Spec.Ingress)), strconv.Itoa(len(p.Spec.Egress))}
			wideCells = []string{labelString(p.Spec.LabelsToApply)}
		}
	case "NetworkSet", "GlobalNetworkSet":
		c = cols{[]string{"NETS"}, []string{"LABELS"}}
		if obj != nil {
			var nets []string
			switch s := obj.(type) {
			case *api.NetworkSet:
				nets = s.Spec.Nets
			case *api.GlobalNetworkSet:
				nets = s.Spec.Nets
			}
			cells = []string{list(nets)}
			wideCells = []string{labelString(obj.GetLabels())}
		}
	case "WorkloadEndpoint":
		c = cols{[]string{"WORKLOAD", "NODE", "NETWORKS", "INTERFACE"}, []string{"PROFILES", "MAC"}}
		if e, ok := obj.(*api.WorkloadEndpoint); ok {
			wl := e.Spec.Workload
			if wl == "" {
				wl = e.Spec.Pod
			}
			cells = []string{orNone(wl), orNone(e.Spec.Node), list(e.Spec.IPNetworks), orNone(e.Spec.InterfaceName)}
			wideCells = []string{list(e.Spec.Profiles), orNone(e.Spec.MAC)}
		}
	case "HostEndpoint":
		c = cols{[]string{"NODE", "INTERFACE", "EXPECTED-IPS"}, []string{"PROFILES"}}
		if e, ok := obj.(*api.HostEndpoint); ok {
			cells = []string{orNone(e.Spec.Node), orNone(e.Spec.InterfaceName), list(e.Spec.ExpectedIPs)}
			wideCells = []string{list(e.Spec.Profiles)}
		}
	case "Node":
		c = cols{[]string{"ASN", "IPV4", "IPV6"}, []string{"VXLAN-IPV4"}}
		if n, ok := obj.(*api.Node); ok {
			asn, v4, v6 := "(64512)", "<none>", "<none>"
			if b := n.Spec.BGP; b != nil {
				if b.ASNumber != nil {
					asn = strconv.FormatUint(uint64(*b.ASNumber), 10)
				}
				v4, v6 = orNone(b.IPv4Address), orNone(b.IPv6Address)
			}
			cells = []string{asn, v4, v6}
			wideCells = []string{orNone(n.Spec.IPv4VXLANTunnelAddr)}
		}
	case "IPPool":
		c = cols{[]string{"CIDR", "IPIP", "VXLAN", "NAT", "DISABLED"}, []string{"BLOCKSIZE", "SELECTOR"}}
		if p, ok := obj.(*api.IPPool); ok {
			cells = []string{p.Spec.CIDR, orNone(p.Spec.IPIPMode), orNone(p.Spec.VXLANMode), strconv.FormatBool(p.Spec.NATOutgoing), strconv.FormatBool(p.Spec.Disabled)}
			wideCells = []string{strconv.Itoa(p.Spec.BlockSize), orAll(p.Spec.NodeSelector)}
		}
	case "IPReservation":
		c = cols{[]string{"CIDRS"}, nil}
		if r, ok := obj.(*api.IPReservation); ok {
			cells = []string{list(r.Spec.ReservedCIDRs)}
		}
	case "BGPPeer":
		c = cols{[]string{"PEERIP", "NODE", "ASN"}, []string{"PEER-SELECTOR", "NODE-SELECTOR"}}
		if p, ok := obj.(*api.BGPPeer); ok {
			node := p.Spec.Node
			if node == "" && p.Spec.NodeSelector == "" {
				node = "(global)"
			}
			cells = []string{orNone(p.Spec.PeerIP), orNone(node), strconv.FormatUint(uint64(p.Spec.ASNumber), 10)}
			wideCells = []string{orNone(p.Spec.PeerSelector), orNone(p.Spec.NodeSelector)}
		}
	case api.KindKubernetesNetworkPolicy:
		c = cols{[]string{"POD-SELECTOR"}, []string{"POLICY-TYPES"}}
		if np, ok := obj.(*networkingv1.NetworkPolicy); ok {
			cells = []string{orNone(metav1.FormatLabelSelector(&np.Spec.PodSelector))}
			ts := make([]string, len(np.Spec.PolicyTypes))
			for i, t := range np.Spec.PolicyTypes {
				ts[i] = string(t)
			}
			wideCells = []string{orNone(strings.Join(ts, ","))}
		}
	}
	if obj == nil {
		if wide {
			return append(c.head, c.wideHead...)
		}
		return c.head
	}
	if wide {
		return append(cells, wideCells...)
	}
	return cells
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func orAll(sel string) string {
	if strings.TrimSpace(sel) == "" {
		return "all()"
	}
	return sel
}

func floatOrNone(f *float64) string {
	if f == nil {
		return "<none>"
	}
	return strconv.FormatFloat(*f, 'g', -1, 64)
}

func list(ss []string) string { return orNone(strings.Join(ss, ",")) }

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return orNone(strings.Join(parts, ","))
}

// objectList is the <Kind>List that get prints for several objects.
type objectList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Items      []any  `json:"items"`
}
